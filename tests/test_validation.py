"""Every kind of invalid workflow: typed errors naming the file, node, problem and fix."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import agentplex as ap
from tests.cli import cli

# (file name, content, error type, node named, text in the message)
INVALID = [
    (
        "cycle.yaml",
        "nodes:\n  a: {role: researcher, task: x, depends_on: [c]}\n"
        "  b: {role: analyzer, task: y, depends_on: [a]}\n  c: {role: writer, task: z, depends_on: [b]}\n",
        ap.exceptions.CycleError,
        "a",
        "cycle: a -> c -> b -> a",
    ),
    (
        "unknown_dep.yaml",
        "nodes:\n  a: {role: researcher, task: x}\n  b: {role: analyzer, task: y, depends_on: [aa, zzz]}\n",
        ap.exceptions.DependencyError,
        "b",
        "'zzz', which is not a node",
    ),
    (
        "out_of_range.json",
        json.dumps({"agents": [{"role": "researcher", "task": "x", "depends_on": [5]}]}),
        ap.exceptions.DependencyError,
        "researcher_0",
        "index 5 is out of range",
    ),
    (
        "self_dep.yaml",
        "nodes:\n  a: {role: researcher, task: x, depends_on: [a]}\n",
        ap.exceptions.DependencyError,
        "a",
        "depends on itself",
    ),
    (
        "self_dep_plan.json",
        json.dumps({"agents": [{"role": "researcher", "task": "x", "depends_on": [0]}]}),
        ap.exceptions.DependencyError,
        "researcher_0",
        "depends on itself",
    ),
    (
        "duplicate.yaml",
        "nodes:\n  a: {role: researcher, task: x}\n  a: {role: writer, task: y}\n",
        ap.exceptions.DuplicateNodeError,
        "a",
        "defined twice",
    ),
    (
        "duplicate.json",
        '{"nodes": {"a": {"role": "researcher", "task": "x"}, "a": {"role": "writer", "task": "y"}}}',
        ap.exceptions.DuplicateNodeError,
        "a",
        "defined twice",
    ),
    (
        "unknown_role.yaml",
        "nodes:\n  a: {role: reseacher, task: x}\n",
        ap.exceptions.UnknownRoleError,
        "a",
        "did you mean 'researcher'",
    ),
    (
        "missing_field.yaml",
        "nodes:\n  a: {role: researcher}\n",
        ap.exceptions.SchemaError,
        "a",
        "needs task",
    ),
    (
        "wrong_type.yaml",
        "nodes:\n  a: {role: researcher, task: x, retries: many}\n",
        ap.exceptions.SchemaError,
        "a",
        "must be a whole number >= 0, got 'many'",
    ),
    (
        "unknown_field.yaml",
        "nodes:\n  a: {role: researcher, task: x, depend_on: [b]}\n  b: {role: writer, task: y}\n",
        ap.exceptions.SchemaError,
        "a",
        "did you mean 'depends_on'",
    ),
    ("empty.yaml", "nodes: {}\n", ap.exceptions.EmptyWorkflowError, None, "has no nodes"),
    ("empty_plan.json", '{"agents": []}', ap.exceptions.EmptyWorkflowError, None, "has no nodes"),
    (
        "placeholder.yaml",
        "inputs: {query: x}\nnodes:\n  a: {role: researcher, task: 'Research {qurey}'}\n",
        ap.exceptions.TemplateError,
        "a",
        "{qurey} matches no input or dependency (did you mean 'query'?)",
    ),
    (
        "placeholder_not_dep.yaml",
        "nodes:\n  a: {role: researcher, task: x}\n  b: {role: writer, task: 'Use {a}'}\n",
        ap.exceptions.TemplateError,
        "b",
        "add 'a' to depends_on",
    ),
    (
        "bad_output_cap.yaml",
        "nodes:\n  a: {role: researcher, task: x, max_output_tokens: 0}\n",
        ap.exceptions.SchemaError,
        "a",
        "must be a whole number of tokens >= 1, got 0",
    ),
    (
        "bad_on_truncated.yaml",
        "nodes:\n  a: {role: researcher, task: x, on_truncated: ignore}\n",
        ap.exceptions.SchemaError,
        "a",
        "must be one of accept, warn, retry, fail, got 'ignore'",
    ),
    (
        "bad_default_cap.yaml",
        "defaults: {max_output_tokens: -3}\nnodes:\n  a: {role: researcher, task: x}\n",
        ap.exceptions.SchemaError,
        None,
        "must be a whole number of tokens >= 1, got -3",
    ),
    (
        "bad_output_schema.yaml",
        "nodes:\n  a: {role: researcher, task: x, output_schema: {type: strnig}}\n",
        ap.exceptions.SchemaError,
        "a",
        "output_schema is not a valid JSON Schema",
    ),
    (
        "list_output_schema.json",
        json.dumps(
            {"nodes": {"a": {"role": "writer", "task": "x", "output_schema": {"type": "array"}}}}
        ),
        ap.exceptions.SchemaError,
        "a",
        "its top level must be an object schema (type: object)",
    ),
    (
        "undeclared_field.yaml",
        "nodes:\n  a: {role: researcher, task: x, output_schema: {type: object, properties: "
        "{title: {type: string}}}}\n  b: {role: writer, task: 'Use {a.titel}', depends_on: [a]}\n",
        ap.exceptions.TemplateError,
        "b",
        "node 'a' has no field 'titel': its output_schema declares title (did you mean 'title'?)",
    ),
    (
        "field_of_text.yaml",
        "nodes:\n  a: {role: researcher, task: x}\n  b: {role: writer, task: 'Use {a.title}', "
        "depends_on: [a]}\n",
        ap.exceptions.TemplateError,
        "b",
        "whose output is text: it declares no output_schema",
    ),
    (
        "bad_import.yaml",
        "nodes:\n  a: {function: 'no_such_module_xyz:run'}\n",
        ap.exceptions.SchemaError,
        "a",
        "cannot import module 'no_such_module_xyz'",
    ),
]


def write(tmp_path: Path, name: str, content: str) -> Path:
    path = tmp_path / name
    path.write_text(content)
    return path


@pytest.mark.parametrize(
    ("name", "content", "error", "node", "text"), INVALID, ids=[c[0] for c in INVALID]
)
def test_invalid_workflow_raises_a_typed_located_error(
    tmp_path, name, content, error, node, text
) -> None:
    path = write(tmp_path, name, content)
    with pytest.raises(ap.exceptions.InvalidWorkflowError) as info:
        ap.load_workflow(path).compile()
    matching = [e for e in info.value.errors if isinstance(e, error) and text in str(e)]
    assert matching, info.value
    first = matching[0]
    assert first.path == str(path)
    assert first.node_id == node
    assert "Fix:" in str(first)


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize(
    ("name", "content", "error", "node", "text"), INVALID, ids=[c[0] for c in INVALID]
)
def test_cli_rejects_invalid_workflow_without_traceback(
    tmp_path, command, name, content, error, node, text
) -> None:
    path = write(tmp_path, name, content)
    imports = ["--import"] if command == "validate" and name == "bad_import.yaml" else []
    proc = cli(command, str(path), *imports)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    message = " ".join(proc.stderr.split())
    assert str(path) in message
    assert " ".join(text.split()) in message
    if node is not None:
        assert f"node {node!r}" in message


def test_yaml_errors_name_the_line(tmp_path) -> None:
    path = write(
        tmp_path,
        "lines.yaml",
        "nodes:\n  a:\n    role: researcher\n    task: x\n  b:\n    role: nobody\n    task: y\n",
    )
    with pytest.raises(ap.exceptions.InvalidWorkflowError) as info:
        ap.load_workflow(path).compile()
    (err,) = info.value.errors
    assert err.line == 5
    assert str(err).startswith(f"{path}:5: node 'b', field 'role'")


def test_all_problems_are_reported_at_once(tmp_path) -> None:
    path = write(
        tmp_path,
        "many.yaml",
        "nodes:\n  a: {role: nobody, task: x}\n  b: {role: writer, task: y, depends_on: [ghost]}\n",
    )
    with pytest.raises(ap.exceptions.InvalidWorkflowError) as info:
        ap.load_workflow(path).compile()
    assert {type(e) for e in info.value.errors} == {
        ap.exceptions.UnknownRoleError,
        ap.exceptions.DependencyError,
    }
    assert "2 problems" in str(info.value)


def test_unparsable_files_get_a_file_error(tmp_path) -> None:
    bad_yaml = write(tmp_path, "bad.yaml", "nodes:\n  a: [unclosed\n")
    with pytest.raises(ap.exceptions.WorkflowFileError, match="invalid YAML"):
        ap.load_workflow(bad_yaml)
    bad_json = write(tmp_path, "bad.json", '{"agents": [}')
    with pytest.raises(ap.exceptions.WorkflowFileError, match=r"bad.json:1: invalid JSON"):
        ap.load_workflow(bad_json)
    with pytest.raises(ap.exceptions.WorkflowFileError, match="no such file"):
        ap.load_workflow(tmp_path / "missing.yaml")
    proc = cli("run", str(bad_yaml))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


def test_lenient_mode_drops_invalid_dependencies_with_warnings(tmp_path) -> None:
    plan = {
        "agents": [
            {"role": "researcher", "task": "a", "depends_on": [7, 0]},
            {"role": "analyzer", "task": "b", "depends_on": [0, -1]},
        ]
    }
    path = write(tmp_path, "plan.json", json.dumps(plan))
    compiled = ap.load_workflow(path, lenient=True).compile(lenient=True)
    assert compiled.deps == {"researcher_0": (), "analyzer_1": ("researcher_0",)}
    assert len(compiled.warnings) == 3
    assert any("index 7 is out of range" in w for w in compiled.warnings)
    wf = ap.Workflow("named")
    wf.agent("researcher", "x", id="a", depends_on=["ghost", "a"])
    assert wf.compile(lenient=True).deps == {"a": ()}


def test_cycle_is_an_error_even_in_lenient_mode_unless_declared_order(tmp_path) -> None:
    plan = {
        "agents": [
            {"role": "researcher", "task": "a", "depends_on": [1]},
            {"role": "analyzer", "task": "b", "depends_on": [0]},
        ]
    }
    path = write(tmp_path, "cyc.json", json.dumps(plan))
    with pytest.raises(ap.exceptions.InvalidWorkflowError, match="cycle"):
        ap.load_workflow(path, lenient=True).compile(lenient=True)
    compiled = ap.load_workflow(path).compile(on_cycle="declared_order")
    assert compiled.deps == {"researcher_0": (), "analyzer_1": ("researcher_0",)}
    assert "to break the cycle" in compiled.warnings[0]
    proc = cli("validate", str(path), "--on-cycle", "declared-order")
    assert proc.returncode == 0, proc.stderr
    assert "warning" in proc.stderr


def test_untrusted_plans_may_not_run_python(tmp_path) -> None:
    plan = {"agents": [{"role": "researcher", "task": "x", "function": "os:system"}]}
    path = write(tmp_path, "evil.json", json.dumps(plan))
    with pytest.raises(ap.exceptions.InvalidWorkflowError) as info:
        ap.load_workflow(path, trusted=False).compile()
    assert isinstance(info.value.errors[0], ap.exceptions.UntrustedCodeError)
    named = write(tmp_path, "evil.yaml", "nodes:\n  a: {function: 'os:getcwd'}\n")
    with pytest.raises(ap.exceptions.InvalidWorkflowError, match="untrusted"):
        ap.load_workflow(named, trusted=False).compile()
    assert ap.load_workflow(named).compile().nodes["a"].fn is not None  # trusted: allowed
    proc = cli("validate", "--untrusted", str(named))
    assert proc.returncode == 2
    assert "not allowed in an untrusted plan" in proc.stderr


def test_builder_rejects_duplicates_and_bad_ids_at_once() -> None:
    wf = ap.Workflow("b")
    wf.agent("researcher", "x", id="a")
    with pytest.raises(ap.exceptions.DuplicateNodeError):
        wf.agent("writer", "y", id="a")
    with pytest.raises(ap.exceptions.SchemaError, match="not a valid node id"):
        wf.agent("writer", "y", id="has space")
    with pytest.raises(ap.exceptions.SchemaError, match="either role and task"):
        wf.map("a", role="writer")


def test_process_nodes_must_be_importable() -> None:
    wf = ap.Workflow("p")
    wf.function(lambda: 1, id="l", cpu_bound=True)
    with pytest.raises(
        ap.exceptions.InvalidWorkflowError, match="define the function at module level"
    ):
        wf.compile()


def test_function_parameters_must_bind(tmp_path) -> None:
    wf = ap.Workflow("bind", inputs=["topic"])

    def step(topic: str, unknown: int) -> None:
        return None

    wf.function(step)
    with pytest.raises(ap.exceptions.InvalidWorkflowError, match="parameter 'unknown'"):
        wf.compile()


def test_declared_inputs_get_defaults_and_unknown_inputs_are_refused(examples) -> None:
    compiled = ap.load_workflow(examples / "compare_languages.yaml").compile()
    result = ap.run(compiled, model="sim:instant")
    assert result.inputs == {"query": "web development"}
    with pytest.raises(ap.exceptions.ConfigError, match="did you mean 'query'"):
        ap.run(compiled, inputs={"qurey": "x"})


def uses_ctx(ctx: ap.NodeContext) -> str:
    return ctx.node_id


def test_process_nodes_cannot_take_ctx() -> None:
    wf = ap.Workflow("ctx")
    wf.function(uses_ctx, cpu_bound=True)
    with pytest.raises(
        ap.exceptions.InvalidWorkflowError, match="cannot be sent to a process pool"
    ):
        wf.compile()


def test_the_nesting_a_workflow_needs_still_loads(tmp_path) -> None:
    nested = "{x: " * 20 + "1" + "}" * 20
    yaml_path = write(
        tmp_path,
        "ok.yaml",
        f"nodes:\n  a: {{role: researcher, task: t, options: {{d: {nested}}}}}\n",
    )
    json_path = write(
        tmp_path,
        "ok.json",
        json.dumps(
            {"nodes": {"a": {"role": "researcher", "task": "t", "options": {"d": [[[[1]]]]}}}}
        ),
    )
    assert ap.load_workflow(yaml_path).compile().nodes["a"].options["d"]["x"]  # type: ignore[attr-defined]
    assert ap.load_workflow(json_path).compile().nodes["a"].options["d"] == [[[[1]]]]  # type: ignore[attr-defined]


def test_brackets_and_escaped_quotes_inside_strings_are_not_nesting(tmp_path) -> None:
    text = '"' * 3 + "[[[{{{" * 50 + "\\" * 3
    node = {"role": "writer", "task": "[[[" * 50, "description": text}
    path = write(tmp_path, "strings.json", json.dumps({"nodes": {"a": node}}))
    assert ap.load_workflow(path).compile().nodes["a"].description == text


def test_yaml_anchors_and_merge_keys_still_work(tmp_path) -> None:
    path = write(
        tmp_path,
        "anchors.yaml",
        "defaults: {retries: 1}\nnodes:\n  a: &base {role: researcher, task: x, timeout_s: 9}\n"
        "  b: {<<: *base, retries: 2}\n  c: {role: writer, task: z, depends_on: [a, b]}\n",
    )
    compiled = ap.load_workflow(path).compile()
    assert compiled.nodes["b"].timeout_s == 9
    assert compiled.deps["c"] == ("a", "b")


def test_untrusted_workflows_never_extend_sys_path(tmp_path) -> None:
    folder = str(tmp_path.resolve())
    path = write(tmp_path, "steps.yaml", "nodes:\n  a: {function: 'local_steps:run'}\n")
    with pytest.raises(ap.exceptions.InvalidWorkflowError, match="untrusted"):
        ap.load_workflow(path, trusted=False).compile()
    assert folder not in sys.path
    with pytest.raises(
        ap.exceptions.InvalidWorkflowError, match="cannot import module 'local_steps'"
    ):
        ap.load_workflow(path).compile()  # trusted: the user's own folder is searched
    assert folder in sys.path
    sys.path.remove(folder)


def test_without_imports_a_warning_says_what_was_not_imported(tmp_path) -> None:
    path = write(tmp_path, "f.yaml", "nodes:\n  a: {function: 'no_such_module_xyz:run'}\n")
    compiled = ap.load_workflow(path).compile(imports=False)
    assert compiled.nodes["a"].fn is None  # type: ignore[attr-defined]
    assert compiled.bindings == {}
    (warning,) = compiled.warnings
    assert "function node(s) a were checked but not imported" in warning
    assert "--import" in warning


def test_a_module_that_fails_on_import_is_one_clear_error(tmp_path) -> None:
    (tmp_path / "broken_steps_mod.py").write_text("raise RuntimeError('boom at import')\n")
    path = write(tmp_path, "b.yaml", "nodes:\n  a: {function: 'broken_steps_mod:run'}\n")
    try:
        with pytest.raises(ap.exceptions.InvalidWorkflowError) as info:
            ap.load_workflow(path).compile()
    finally:
        sys.modules.pop("broken_steps_mod", None)
        if str(tmp_path.resolve()) in sys.path:
            sys.path.remove(str(tmp_path.resolve()))
    (error,) = info.value.errors
    assert (error.node_id, error.field) == ("a", "function")
    assert "RuntimeError: boom at import" in str(error)


@pytest.mark.parametrize(
    ("task", "ok"),
    [
        ("{x:>10} {x:.2f} {x!r:^20} {x:0>1000}", True),
        ("{x!z}", False),
        ("{x:>1001}", False),
        ("{x:{y}}", False),
        ("{x.attr}", False),  # an input has no declared fields
        ("{x.a.b.c.d.e.f.g.h}", False),  # deeper than MAX_FIELD_DEPTH
        ("{x[0]}", False),
        ("{}", False),
    ],
)
def test_format_specs_within_the_cap_validate_and_others_are_template_errors(
    task: str, ok: bool
) -> None:
    wf = ap.Workflow("t", inputs=["x", "y"])
    wf.agent("writer", task, id="a")
    if ok:
        assert wf.compile().nodes["a"].task == task  # type: ignore[attr-defined]
        return
    with pytest.raises(ap.exceptions.InvalidWorkflowError) as info:
        wf.compile()
    (error,) = info.value.errors
    assert isinstance(error, ap.exceptions.TemplateError)
    assert (error.node_id, error.field) == ("a", "task")
    assert "Fix:" in str(error)


def test_few_problems_are_all_listed_and_many_are_counted() -> None:
    wf = ap.Workflow("m")
    wf.agent("researcher", "x", id="a", depends_on=[f"ghost_{i}" for i in range(60)])
    with pytest.raises(ap.exceptions.InvalidWorkflowError) as info:
        wf.compile()
    assert len(info.value.errors) == 51
    assert str(info.value).startswith("invalid workflow (60 problems, the first 50 listed):")
    assert (
        str(info.value.errors[-1])
        == "... and 10 more problems (fix the ones above, then validate again)"
    )
    wf = ap.Workflow("few")
    wf.agent("researcher", "x", id="a", depends_on=["b_node"])
    wf.agent("writer", "y", id="b_nod")
    with pytest.raises(ap.exceptions.InvalidWorkflowError, match=r"did you mean 'b_nod'") as info:
        wf.compile()
    assert "1 problem" in str(info.value)


def test_a_yaml_merge_key_is_overridden_by_the_mappings_own_key(tmp_path) -> None:
    path = tmp_path / "merge.yaml"
    path.write_text(
        "nodes:\n"
        "  a: &base {role: researcher, task: base task}\n"
        "  b: {<<: *base, task: own task}\n"
        "  c: {role: researcher, task: x, task: y}\n"
    )
    wf = ap.load_workflow(path)
    assert wf.nodes["b"].task == "own task"
    errors = [str(e) for e in wf.load_errors]
    assert len(errors) == 1
    assert "'task' is given twice" in errors[0]
    assert "'c'" in errors[0]


def test_a_workflow_compiled_without_imports_refuses_to_run(tmp_path) -> None:
    (tmp_path / "never_run_steps.py").write_text("def step():\n    return 1\n")
    path = tmp_path / "flow.yaml"
    path.write_text("nodes:\n  a: {function: 'never_run_steps:step'}\n")
    compiled = ap.load_workflow(path).compile(imports=False)
    with pytest.raises(ap.exceptions.ConfigError, match="compiled with imports=False"):
        ap.run(compiled)
