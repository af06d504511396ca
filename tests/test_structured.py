"""Output caps, truncation policies and structured outputs, as a workflow declares them.

The engine applies them; these tests pin what a file or the builder may say,
what validation refuses (and how it says so), and the pure helpers of
:mod:`agentplex.model.schema` the engine uses on every structured answer.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, TypedDict

import pytest
from pydantic import BaseModel

import agentplex as ap
from agentplex.exceptions import InvalidWorkflowError, SchemaError, TemplateError
from agentplex.files.loader import UNTRUSTED_MAX_OUTPUT_TOKENS
from agentplex.model import schema as sch
from agentplex.model.roles import Role
from agentplex.model.templates import render, template_fields, template_paths, value_text
from agentplex.model.workflow import AgentNode, MapNode, WorkflowDefaults
from tests.cli import cli


class Author(BaseModel):
    name: str
    email: str | None = None


class Paper(BaseModel):
    title: str
    year: int
    author: Author


@dataclasses.dataclass
class Point:
    x: float
    y: float


class Row(TypedDict):
    city: str
    population: int


MOVIE = {
    "title": "Movie",
    "type": "object",
    "properties": {"title": {"type": "string"}, "year": {"type": "integer"}},
    "required": ["title", "year"],
}


def write(tmp_path: Path, text: str, name: str = "flow.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(wf: ap.Workflow) -> list[ap.exceptions.WorkflowError]:
    with pytest.raises(InvalidWorkflowError) as info:
        wf.compile()
    return list(info.value.errors)


def agent(compiled: Any, node_id: str) -> AgentNode:
    node = compiled.nodes[node_id]
    assert isinstance(node, AgentNode)
    return node


# -- schema_for, schema_name, check_schema ------------------------------------------------


def test_schema_for_describes_pydantic_models_dataclasses_and_typeddicts() -> None:
    paper = sch.schema_for(Paper)
    assert paper["type"] == "object"
    assert set(paper["properties"]) == {"title", "year", "author"}
    assert "Author" in paper["$defs"]
    point = sch.schema_for(Point)
    assert point["properties"]["x"]["type"] == "number"
    assert point["required"] == ["x", "y"]
    row = sch.schema_for(Row)
    assert row["properties"]["population"]["type"] == "integer"
    for schema in (paper, point, row):
        assert sch.check_schema(schema) == []


def test_schema_for_copies_a_dict_schema_as_plain_json() -> None:
    given = {"type": "object", "properties": {"a": {"type": "string"}}}
    copied = sch.schema_for(given)
    assert copied == given
    given["properties"]["a"]["type"] = "integer"
    assert copied["properties"]["a"]["type"] == "string"
    with pytest.raises(TypeError, match="must be JSON data"):
        sch.schema_for({"type": "object", "default": {1, 2}})


@pytest.mark.parametrize("value", [42, "Paper", lambda: 1, object()])
def test_schema_for_refuses_what_is_not_a_type(value: Any) -> None:
    with pytest.raises(TypeError):
        sch.schema_for(value)


@pytest.mark.parametrize(
    ("tp", "fallback", "expected"),
    [
        (Paper, "n", "Paper"),
        ({"title": "My movie: v2!"}, "n", "My_movie_v2"),
        ({"type": "object"}, "extract-1", "extract-1"),
        ({"title": "!!!"}, "node", "node"),
        ({"title": "x" * 100}, "n", "x" * 64),
    ],
)
def test_schema_names_are_what_providers_accept(tp: Any, fallback: str, expected: str) -> None:
    name = sch.schema_name(tp, fallback)
    assert name == expected
    assert 1 <= len(name) <= 64


@pytest.mark.parametrize(
    ("schema", "text"),
    [
        ({"type": "object", "properties": {"a": {"type": "strnig"}}}, "not a valid JSON Schema"),
        ({"type": "array", "items": {"type": "string"}}, "top level must be an object"),
        ({"type": "string"}, "top level must be an object"),
        (
            {"type": "object", "properties": {"a": {"$ref": "https://evil.example/s.json"}}},
            "points outside the schema",
        ),
        (["not", "a", "mapping"], "must be a JSON Schema object"),
    ],
)
def test_check_schema_names_what_is_wrong(schema: Any, text: str) -> None:
    found = sch.check_schema(schema)
    assert found
    assert any(text in p for p in found), found


# -- validate, parse_json_answer -------------------------------------------------------------


def test_validate_gives_one_line_per_problem_with_its_json_path() -> None:
    schema = sch.schema_for(Paper)
    assert sch.validate(schema, {"title": "T", "year": 2001, "author": {"name": "A"}}) == []
    lines = sch.validate(schema, {"title": 7, "author": {"email": "x"}})
    assert "at $: 'year' is a required property" in lines
    assert "at $.title: 7 is not of type 'string'" in lines
    assert "at $.author: 'name' is a required property" in lines
    assert lines == sorted(lines, key=lambda line: line.count(".") + line.count("["))


def test_validate_lists_at_most_ten_problems_then_counts_the_rest() -> None:
    schema = {
        "type": "object",
        "properties": {"xs": {"type": "array", "items": {"type": "integer"}}},
    }
    lines = sch.validate(schema, {"xs": [f"v{i}" for i in range(25)]})
    assert len(lines) == sch.MAX_PROBLEMS + 1
    assert lines[0] == "at $.xs[0]: 'v0' is not of type 'integer'"
    assert lines[-1] == "... and 15 more problems"


def test_validate_cuts_a_huge_offending_value() -> None:
    lines = sch.validate(
        {"type": "object", "properties": {"a": {"type": "integer"}}}, {"a": "x" * 10_000}
    )
    assert len(lines) == 1
    assert len(lines[0]) < 300


def test_validate_of_an_invalid_schema_says_so_instead_of_raising() -> None:
    (line,) = sch.validate({"type": "nonsense"}, {})
    assert "output_schema itself is invalid" in line


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('{"title": "T", "year": 1}', {"title": "T", "year": 1}),
        ("  \n[1, 2, 3]\n", [1, 2, 3]),
        ('Here you go:\n```json\n{"a": 1}\n```\nAnything else?', {"a": 1}),
        ('```\n{"a": [1, {"b": 2}]}\n```', {"a": [1, {"b": 2}]}),
        ('```python\nx = 1\n```\n```json\n{"a": 2}\n```', {"a": 2}),
        ('Sure! The answer is {"a": {"b": "}"}} as requested.', {"a": {"b": "}"}}),
        ("The list: [1, 2] and that is all.", [1, 2]),
    ],
)
def test_parse_json_answer_finds_the_json(text: str, value: Any) -> None:
    assert sch.parse_json_answer(text) == value


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "the answer is empty"),
        ("   \n ", "the answer is empty"),
        ("I cannot do that.", "no JSON in the answer"),
        ('Almost: {"title": "T", "year": }', "the JSON in the answer is invalid"),
        ("```json\n{oops}\n```", "invalid"),
    ],
)
def test_parse_json_answer_says_why_there_is_no_json(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        sch.parse_json_answer(text)


def test_parse_json_answer_is_fast_on_a_long_answer_without_json() -> None:
    import time

    text = "{" + "word " * 200_000  # an opening brace never closed
    started = time.perf_counter()
    with pytest.raises(ValueError, match="no JSON"):
        sch.parse_json_answer(text)
    assert time.perf_counter() - started < 1.0


# -- declaring structured outputs ------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "name", "fields"),
    [
        (Paper, "Paper", {"title", "year", "author"}),
        (Point, "Point", {"x", "y"}),
        (Row, "Row", {"city", "population"}),
        (MOVIE, "Movie", {"title", "year"}),
        ({"type": "object", "properties": {"k": {"type": "string"}}}, "extract", {"k"}),
    ],
)
def test_python_output_types_become_a_json_schema_and_a_name(
    output: Any, name: str, fields: set[str]
) -> None:
    wf = ap.Workflow("s")
    wf.agent("researcher", "Extract it", id="extract", output=output)
    node = agent(wf.compile(), "extract")
    assert node.output_schema is not None
    assert set(node.output_schema["properties"]) == fields
    assert node.schema_name == name


def test_a_python_output_that_is_not_a_type_fails_at_once_naming_the_node() -> None:
    wf = ap.Workflow("s")
    with pytest.raises(SchemaError) as info:
        wf.agent("researcher", "x", id="extract", output="Paper")
    assert (info.value.node_id, info.value.field) == ("extract", "output")
    assert "Fix: pass a pydantic model" in str(info.value)


def test_yaml_output_schema_is_read_and_named(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "nodes:\n"
        "  extract:\n"
        "    role: researcher\n"
        "    task: Extract the paper.\n"
        "    output_schema:\n"
        "      type: object\n"
        "      properties: {title: {type: string}, year: {type: integer}}\n"
        "      required: [title, year]\n"
        "  titled:\n"
        "    role: researcher\n"
        "    task: x\n"
        "    output_schema: {title: Paper record, type: object}\n",
    )
    compiled = ap.load_workflow(path).compile()
    node = agent(compiled, "extract")
    assert node.output_schema == {
        "type": "object",
        "properties": {"title": {"type": "string"}, "year": {"type": "integer"}},
        "required": ["title", "year"],
    }
    assert type(node.output_schema) is dict  # plain JSON data, not the loader's mapping
    assert node.schema_name == "extract"
    assert agent(compiled, "titled").schema_name == "Paper_record"


def test_json_workflow_output_schema(tmp_path: Path) -> None:
    data = {"nodes": {"extract": {"role": "researcher", "task": "x", "output_schema": MOVIE}}}
    path = write(tmp_path, json.dumps(data), "flow.json")
    assert agent(ap.load_workflow(path).compile(), "extract").output_schema == MOVIE


@pytest.mark.parametrize(
    ("schema", "text"),
    [
        ("{type: object, properties: {a: {type: strnig}}}", "is not a valid JSON Schema"),
        ("{type: array, items: {type: string}}", "top level must be an object"),
        ("{type: object, properties: {a: {$ref: 'http://x/y.json'}}}", "points outside the schema"),
        ("[type, object]", "must be a JSON Schema object (a mapping)"),
        ("{type: object, default: 2001-02-03}", "must be JSON data"),
    ],
)
def test_an_invalid_output_schema_is_a_located_error(
    tmp_path: Path, schema: str, text: str
) -> None:
    path = write(
        tmp_path,
        "nodes:\n  a: {role: researcher, task: x}\n"
        f"  b:\n    role: writer\n    task: y\n    output_schema: {schema}\n",
    )
    with pytest.raises(InvalidWorkflowError) as info:
        ap.load_workflow(path).compile()
    (error,) = info.value.errors
    assert isinstance(error, SchemaError)
    assert (error.path, error.node_id, error.field) == (str(path), "b", "output_schema")
    assert text in str(error)
    assert "Fix:" in str(error)
    assert error.line is not None


def test_a_python_dict_schema_is_checked_at_compile() -> None:
    wf = ap.Workflow("s")
    wf.agent("writer", "x", id="a", output={"type": "object", "properties": {"n": {"type": 3}}})
    (error,) = problems(wf)
    assert (error.node_id, error.field) == ("a", "output_schema")


@pytest.mark.parametrize("field", ["output_schema", "max_output_tokens", "on_truncated"])
def test_agent_settings_on_a_function_node_are_refused(tmp_path: Path, field: str) -> None:
    value = {"output_schema": "{type: object}", "max_output_tokens": "10", "on_truncated": "warn"}
    path = write(tmp_path, f"nodes:\n  f: {{function: 'os:getcwd', {field}: {value[field]}}}\n")
    errors = ap.load_workflow(path).load_errors
    assert len(errors) == 1
    assert f"{field} applies to agent nodes" in str(errors[0])


def test_a_map_of_agents_takes_the_settings_for_each_item(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "nodes:\n  list: {role: researcher, task: x}\n"
        "  each:\n    map: list\n    role: fact_checker\n    task: 'Check {item}'\n"
        "    max_output_tokens: 64\n    on_truncated: fail\n    output_schema: {type: object}\n",
    )
    node = ap.load_workflow(path).compile().nodes["each"]
    assert isinstance(node, MapNode)
    assert isinstance(node.body, AgentNode)
    assert (node.body.max_output_tokens, node.body.on_truncated) == (64, "fail")
    assert node.body.output_schema == {"type": "object"}
    wf = ap.Workflow("m")
    src = wf.agent("researcher", "x", id="list")
    each = wf.map(src, role="writer", task="{item}", output=Point, max_output_tokens=32)
    body = wf.compile().nodes[each].body  # type: ignore[attr-defined]
    assert (body.max_output_tokens, body.schema_name) == (32, "Point")
    with pytest.raises(SchemaError, match="applies to agent calls"):
        wf.map(src, fn=len, max_output_tokens=10)


# -- output caps and truncation policies ------------------------------------------------------


def test_caps_and_policies_from_yaml_and_python(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "nodes:\n  a: {role: researcher, task: x, max_output_tokens: 300, on_truncated: retry}\n"
        "  b: {role: writer, task: y, options: {max_tokens: 50}}\n",
    )
    compiled = ap.load_workflow(path).compile()
    a = agent(compiled, "a")
    assert (a.max_output_tokens, a.on_truncated) == (300, "retry")
    b = agent(compiled, "b")
    assert (b.max_output_tokens, b.on_truncated, b.options["max_tokens"]) == (None, None, 50)
    wf = ap.Workflow("p")
    wf.agent("researcher", "x", id="a", max_output_tokens=200, on_truncated="fail", top_p=0.5)
    node = agent(wf.compile(), "a")
    assert (node.max_output_tokens, node.on_truncated) == (200, "fail")
    assert dict(node.options) == {"top_p": 0.5}


@pytest.mark.parametrize(
    ("line", "text"),
    [
        ("max_output_tokens: 0", "must be a whole number of tokens >= 1, got 0"),
        ("max_output_tokens: -5", "must be a whole number of tokens >= 1, got -5"),
        ("max_output_tokens: lots", "must be a whole number of tokens >= 1, got 'lots'"),
        ("max_output_tokens: true", "must be a whole number of tokens >= 1, got True"),
        ("on_truncated: ignore", "must be one of accept, warn, retry, fail, got 'ignore'"),
        ("on_truncated: 3", "must be one of accept, warn, retry, fail, got 3"),
    ],
)
def test_bad_caps_and_policies_in_a_file_name_file_node_and_fix(
    tmp_path: Path, line: str, text: str
) -> None:
    path = write(tmp_path, f"nodes:\n  a:\n    role: researcher\n    task: x\n    {line}\n")
    with pytest.raises(InvalidWorkflowError) as info:
        ap.load_workflow(path).compile()
    (error,) = info.value.errors
    assert isinstance(error, SchemaError)
    assert (error.path, error.node_id, error.line) == (str(path), "a", 5)
    assert text in str(error)
    assert "Fix:" in str(error)


def test_bad_caps_and_policies_in_python_are_compile_errors() -> None:
    wf = ap.Workflow("p")
    wf.agent("researcher", "x", id="a", max_output_tokens=0)
    wf.agent("researcher", "x", id="b", on_truncated="retyr")  # type: ignore[arg-type]
    wf.agent("researcher", "x", id="c", max_output_tokens=2.5)  # type: ignore[arg-type]
    errors = {e.node_id: e for e in problems(wf)}
    assert errors["a"].field == "max_output_tokens"
    assert "got 0" in str(errors["a"])
    assert errors["b"].field == "on_truncated"
    assert "accept, warn, retry, fail" in str(errors["b"])
    assert "did you mean 'retry'" in str(errors["b"])
    assert "got 2.5" in str(errors["c"])


def test_defaults_are_kept_on_the_workflow_and_nodes_override_them(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "defaults: {max_output_tokens: 500, on_truncated: retry, retries: 1}\n"
        "nodes:\n  a: {role: researcher, task: x}\n"
        "  b: {role: writer, task: y, max_output_tokens: 80, on_truncated: accept}\n",
    )
    compiled = ap.load_workflow(path).compile()
    assert compiled.defaults == WorkflowDefaults(max_output_tokens=500, on_truncated="retry")
    a, b = agent(compiled, "a"), agent(compiled, "b")
    # Inherited at run time, below the role and the run's flags: never copied into a node.
    assert (a.max_output_tokens, a.on_truncated, a.retries) == (None, None, 1)
    assert (b.max_output_tokens, b.on_truncated) == (80, "accept")
    wf = ap.Workflow("p", defaults={"max_output_tokens": 256, "on_truncated": "fail"})
    wf.agent("writer", "x")
    assert wf.compile().defaults.max_output_tokens == 256
    with pytest.raises(SchemaError, match="defaults may set max_output_tokens, on_truncated"):
        ap.Workflow("p", defaults={"max_tokens": 5})


def test_bad_defaults_are_errors(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "defaults: {max_output_tokens: 0, on_truncated: never}\nnodes:\n  a: {role: writer, task: x}\n",
    )
    with pytest.raises(InvalidWorkflowError) as info:
        ap.load_workflow(path).compile()
    text = str(info.value)
    assert "max_output_tokens" in text
    assert "must be a whole number of tokens >= 1" in text
    assert "must be one of accept, warn, retry, fail, got 'never'" in text
    assert all(e.line == 1 for e in info.value.errors)
    wf = ap.Workflow("p", defaults={"max_output_tokens": -1})
    wf.agent("writer", "x")
    (error,) = problems(wf)
    assert error.field == "defaults.max_output_tokens"


def test_roles_in_a_file_may_set_an_output_cap(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "roles:\n  brief: {description: Short., system_prompt: Be brief., max_output_tokens: 120}\n"
        "  bad: {system_prompt: x, max_output_tokens: 0}\n"
        "nodes:\n  a: {role: brief, task: x}\n",
    )
    wf = ap.load_workflow(path)
    assert wf.roles["brief"].max_output_tokens == 120
    (error,) = wf.load_errors
    assert "role 'bad': max_output_tokens must be a whole number of tokens >= 1" in str(error)
    assert isinstance(error, ap.exceptions.WorkflowError)
    assert error.line == 3


def test_a_python_role_with_a_bad_cap_is_a_compile_error() -> None:
    wf = ap.Workflow("r", roles=[Role("terse", "Short.", "Be short.", max_output_tokens=0)])
    wf.agent("terse", "x")
    (error,) = problems(wf)
    assert error.field == "roles"
    assert "role 'terse': max_output_tokens must be a whole number of tokens >= 1" in str(error)


# -- untrusted files ---------------------------------------------------------------------------


def test_untrusted_files_get_their_output_caps_cut_to_the_maximum(tmp_path: Path) -> None:
    huge = UNTRUSTED_MAX_OUTPUT_TOKENS * 30
    path = write(
        tmp_path,
        f"defaults: {{max_output_tokens: {huge}}}\n"
        f"roles:\n  long: {{system_prompt: Go on., max_output_tokens: {huge}}}\n"
        "nodes:\n"
        f"  a: {{role: long, task: x, max_output_tokens: {huge}}}\n"
        f"  b: {{role: writer, task: y, options: {{max_tokens: {huge}}}}}\n"
        "  c: {role: writer, task: z, max_output_tokens: 100}\n",
    )
    compiled = ap.load_workflow(path, trusted=False).compile()
    assert compiled.defaults.max_output_tokens == UNTRUSTED_MAX_OUTPUT_TOKENS
    assert compiled.roles["long"].max_output_tokens == UNTRUSTED_MAX_OUTPUT_TOKENS
    assert agent(compiled, "a").max_output_tokens == UNTRUSTED_MAX_OUTPUT_TOKENS
    assert agent(compiled, "b").options["max_tokens"] == UNTRUSTED_MAX_OUTPUT_TOKENS
    assert agent(compiled, "c").max_output_tokens == 100  # lowering a cap is always fine
    cut = [w for w in compiled.warnings if "an untrusted file may ask for an output cap" in w]
    assert len(cut) == 4
    assert any(w.startswith(f"{path}:5: node 'a'") for w in cut)
    trusted = ap.load_workflow(path).compile()  # your own file: as written
    assert agent(trusted, "a").max_output_tokens == huge
    assert not trusted.warnings


def test_untrusted_files_may_not_put_regular_expressions_in_output_schemas(
    tmp_path: Path,
) -> None:
    schema = "{type: object, properties: {code: {type: string, pattern: '^(a+)+$'}}}"
    path = write(tmp_path, f"nodes:\n  a: {{role: writer, task: x, output_schema: {schema}}}\n")
    with pytest.raises(InvalidWorkflowError) as info:
        ap.load_workflow(path, trusted=False).compile()
    (error,) = info.value.errors
    assert isinstance(error, ap.exceptions.UntrustedInputError)
    assert (error.node_id, error.field) == ("a", "output_schema")
    assert "exponential time" in str(error)
    assert sch.has_patterns({"type": "object", "patternProperties": {"^x": {}}})
    # A property that is merely called "pattern" is no regular expression.
    named = {"type": "object", "properties": {"pattern": {"type": "string"}}}
    assert not sch.has_patterns(named)
    compiled = ap.load_workflow(path).compile()  # your own file may use them
    assert agent(compiled, "a").output_schema is not None


def test_untrusted_plans_may_set_output_caps_within_the_maximum(tmp_path: Path) -> None:
    plan = {
        "agents": [
            {"role": "researcher", "task": "a", "max_output_tokens": 400},
            {"role": "writer", "task": "b", "depends_on": [0], "max_output_tokens": 10**9},
        ]
    }
    path = write(tmp_path, json.dumps(plan), "plan.json")
    compiled = ap.load_workflow(path).compile()
    assert agent(compiled, "researcher_0").max_output_tokens == 400
    assert agent(compiled, "writer_1").max_output_tokens == UNTRUSTED_MAX_OUTPUT_TOKENS
    (warning,) = compiled.warnings
    assert "node 'writer_1'" in warning
    assert "1,000,000,000" in warning
    trusted = ap.load_workflow(path, trusted=True).compile()
    assert agent(trusted, "writer_1").max_output_tokens == 10**9
    bad = write(
        tmp_path,
        json.dumps({"agents": [{"role": "writer", "task": "b", "max_output_tokens": "big"}]}),
        "bad.json",
    )
    with pytest.raises(InvalidWorkflowError, match="max_output_tokens must be a whole number"):
        ap.load_workflow(bad).compile()


# -- fields of structured outputs in templates ------------------------------------------------


def paper_flow(task: str, *, upstream_output: Any = Paper) -> ap.Workflow:
    wf = ap.Workflow("t", inputs=["query"])
    wf.agent("researcher", "Find a paper on {query}", id="extract", output=upstream_output)
    wf.agent("writer", task, id="write", depends_on=["extract"])
    return wf


def test_declared_fields_validate_in_a_downstream_task() -> None:
    wf = paper_flow("Summarise {extract.title} ({extract.year}) by {extract.author.name}.")
    compiled = wf.compile()
    assert template_fields(agent(compiled, "write").task) == ["extract"]


def test_an_undeclared_field_names_the_node_the_field_and_the_declared_fields() -> None:
    (error,) = problems(paper_flow("Summarise {extract.titel}."))
    assert isinstance(error, TemplateError)
    assert (error.node_id, error.field) == ("write", "task")
    text = str(error)
    assert "{extract.titel}" in text
    assert "node 'extract' has no field 'titel'" in text
    assert "declares title, year, author" in text
    assert "did you mean 'title'?" in text
    assert "Fix:" in text


def test_nested_fields_follow_refs_into_defs() -> None:
    (error,) = problems(paper_flow("By {extract.author.nme}."))
    assert "has no field 'author.nme'" in str(error)
    assert "declares name, email under 'author'" in str(error)
    (error,) = problems(paper_flow("By {extract.titel.first}."))
    assert "has no field 'titel'" in str(error)
    assert "did you mean 'title'?" in str(error)
    (error,) = problems(paper_flow("By {extract.year.value}."))
    assert "'year' is integer, not an object" in str(error)
    assert "write {extract.year} to insert that value" in str(error)


def test_a_field_of_a_plain_agent_is_refused_with_the_fix_to_declare_a_schema() -> None:
    wf = ap.Workflow("t")
    wf.agent("researcher", "x", id="extract")
    wf.agent("writer", "Use {extract.title}", id="write", depends_on=["extract"])
    (error,) = problems(wf)
    assert "whose output is text: it declares no output_schema" in str(error)
    assert "declare output_schema on 'extract'" in str(error)


def test_fields_of_a_function_step_are_allowed_and_of_an_input_refused() -> None:
    wf = ap.Workflow("t", inputs=["query"])

    @wf.step()
    def facts() -> dict[str, str]:
        return {"title": "T"}

    wf.agent("writer", "Use {facts.title} and {facts.anything.at.all}", id="w", depends_on=[facts])
    wf.compile()
    wf.agent("writer", "Use {query.title}", id="q")
    (error,) = problems(wf)
    assert "reads field 'title' of input 'query'" in str(error)


def test_an_open_object_schema_allows_any_field() -> None:
    wf = paper_flow("{extract.whatever}", upstream_output={"type": "object"})
    wf.compile()


def test_item_fields_in_a_map_follow_what_the_map_is_over() -> None:
    wf = ap.Workflow("m")
    src = wf.agent("researcher", "List papers", id="papers")
    each = wf.map(src, role="researcher", task="Detail {item}", output=Paper, id="each")
    wf.map(each, role="writer", task="Review {item.title} ({item.author.name})", id="review")
    wf.compile()
    wf.map(each, role="writer", task="Review {item.ttle}", id="bad_field")
    wf.map(src, role="writer", task="Review {item.title}", id="bad_text")
    errors = {e.node_id: str(e) for e in problems(wf)}
    assert "{item} has no field 'ttle'" in errors["bad_field"]
    assert "the items of 'papers' are lines of text" in errors["bad_text"]


def test_a_map_over_a_structured_answer_is_refused() -> None:
    wf = ap.Workflow("m")
    src = wf.agent("researcher", "x", id="extract", output=Paper)
    wf.map(src, role="writer", task="{item}", id="each")
    (error,) = problems(wf)
    assert (error.node_id, error.field) == ("each", "map")
    assert "makes its answer an object, not a list" in str(error)


@pytest.mark.parametrize(
    "task", ["{a..b}", "{a.}", "{a.b[0]}", "{a." + ".".join("b" * 1 for _ in range(8)) + "}"]
)
def test_malformed_or_too_deep_paths_are_template_errors(task: str) -> None:
    wf = ap.Workflow("t", inputs=["a"])
    wf.agent("writer", task, id="w")
    (error,) = problems(wf)
    assert isinstance(error, TemplateError)


def test_template_paths_lists_each_dotted_placeholder_once() -> None:
    text = "{a.b} {c} {a.b} {a.b.c:>5} {{x.y}}"
    assert template_paths(text) == [("a", ("b",)), ("a", ("b", "c"))]
    assert template_fields(text) == ["a", "c"]


# -- rendering structured values ---------------------------------------------------------------


def test_render_reads_fields_of_mappings_and_shows_values_as_json() -> None:
    value = {"title": "Tides", "year": 2001, "score": 0.5, "author": {"name": "Ann"}, "x": None}
    out = render(
        "{p.title} {p.year} {p.score:.2f} {p.author.name} {p.x} | {p.author}",
        {"p": value},
    )
    assert out == 'Tides 2001 0.50 Ann null | {\n  "name": "Ann"\n}'
    whole = render("{p}", {"p": value})
    assert json.loads(whole) == value
    assert "None" not in whole


def test_render_refuses_a_path_the_value_does_not_have() -> None:
    with pytest.raises(TemplateError, match=r"p has no field 'titel' \(it has: title\)"):
        render("{p.titel}", {"p": {"title": "T"}})
    with pytest.raises(TemplateError, match=r"p\.title is str, not a mapping"):
        render("{p.title.x}", {"p": {"title": "T"}})

    class Secretive:
        title = "attribute, never read"

    with pytest.raises(TemplateError, match="not a mapping"):
        render("{p.title}", {"p": Secretive()})


def test_value_text_shows_text_lists_and_mappings_for_a_prompt() -> None:
    assert value_text("plain") == "plain"
    assert value_text(["a", "b"]) == "- a\n- b"
    assert json.loads(value_text([{"a": 1}])) == [{"a": 1}]
    assert json.loads(value_text({"é": [1, 2]})) == {"é": [1, 2]}
    assert "é" in value_text({"é": 1})  # not escaped: models read it as written
    assert value_text(3) == "3"


# -- the CLI --------------------------------------------------------------------------------


def test_validate_prints_each_problem_as_one_clear_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "defaults: {on_truncated: sometimes}\n"
        "nodes:\n"
        "  extract:\n"
        "    role: researcher\n"
        "    task: x\n"
        "    max_output_tokens: 0\n"
        "    output_schema: {type: array}\n"
        "  write: {role: writer, task: 'Use {extract.title}', depends_on: [extract]}\n",
    )
    done = cli("validate", path)
    assert done.exit_code == 2
    assert "Traceback" not in done.output
    lines = [line for line in done.stderr.splitlines() if line.strip().startswith("- ")]
    assert len(lines) >= 3, done.stderr
    joined = " ".join(" ".join(done.stderr.split()).split())
    assert "must be one of accept, warn, retry, fail, got 'sometimes'" in joined
    assert "node 'extract', field 'max_output_tokens'" in joined
    assert "node 'extract', field 'output_schema'" in joined
    assert "top level must be an object" in joined
    done = cli("validate", path, "--json")
    assert done.exit_code == 2
    assert json.loads(done.stdout)["status"] == "error"


# -- end to end, through a scripted provider -------------------------------------------------


class JsonWhenAsked(ap.Provider):
    """Answers a request that carries a schema with fenced JSON, any other with its prompt."""

    name = "structured-test"
    requests: ClassVar[list[ap.Request]] = []

    def __init__(self, resolved: Any, *, max_connections: int = 16) -> None:
        super().__init__()

    async def _complete(self, request: ap.Request) -> ap.Completion:
        JsonWhenAsked.requests.append(request)
        if request.schema is not None:
            text = 'Here it is:\n```json\n{"title": "Tides", "year": 2001, "author": {"name": "Ann"}}\n```'
        else:
            text = "ANSWER " + request.messages[-1].content
        return ap.Completion(
            text, ap.Usage(input_tokens=1, output_tokens=1), request.model, self.label, 0.0
        )


@pytest.fixture
def scripted() -> Iterator[list[ap.Request]]:
    from agentplex import llm

    JsonWhenAsked.requests = []
    ap.register_provider(JsonWhenAsked.name, JsonWhenAsked)
    yield JsonWhenAsked.requests
    llm._PROVIDERS.pop(JsonWhenAsked.name)


def test_a_structured_answer_reaches_later_steps_as_data(
    tmp_path: Path, scripted: list[ap.Request]
) -> None:
    (tmp_path / "paper_steps.py").write_text(
        "def next_year(extract):\n    return extract['year'] + 1\n"
    )
    path = write(
        tmp_path,
        "defaults: {model: 'structured-test:m', max_output_tokens: 300}\n"
        "roles:\n  brief: {system_prompt: Be brief., max_output_tokens: 90}\n"
        "nodes:\n"
        "  extract:\n"
        "    role: researcher\n"
        "    task: Find a paper.\n"
        "    max_output_tokens: 150\n"
        "    output_schema:\n"
        "      title: Paper\n"
        "      type: object\n"
        "      properties:\n"
        "        title: {type: string}\n"
        "        year: {type: integer}\n"
        "        author: {type: object, properties: {name: {type: string}}}\n"
        "      required: [title, year]\n"
        "  write: {role: brief, task: 'On {extract.title} by {extract.author.name}', "
        "depends_on: [extract]}\n"
        "  review: {role: critic, task: Review it., depends_on: [extract]}\n"
        "  later: {function: 'paper_steps:next_year', depends_on: [extract]}\n",
    )
    try:
        result = ap.run(ap.load_workflow(path).compile())
    finally:
        import sys

        sys.modules.pop("paper_steps", None)
        if str(tmp_path.resolve()) in sys.path:
            sys.path.remove(str(tmp_path.resolve()))
    result.raise_for_status()
    paper = {"title": "Tides", "year": 2001, "author": {"name": "Ann"}}
    assert result.outputs["extract"] == paper
    assert result.outputs["later"] == 2002
    assert result.outputs["write"].startswith("ANSWER On Tides by Ann")
    by_node = {r.node_id: r for r in scripted}
    assert by_node["extract"].schema is not None
    assert by_node["extract"].schema_name == "Paper"
    # The node's cap, then its role's, then the workflow's defaults.
    caps = {n: r.max_output_tokens for n, r in by_node.items()}
    assert caps == {"extract": 150, "write": 90, "review": 300}
    # A whole structured output reaches a prompt as JSON, never as a Python repr.
    review_prompt = by_node["review"].messages[-1].content
    assert '"title": "Tides"' in review_prompt
    assert "{'title'" not in review_prompt
