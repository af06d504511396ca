"""Fuzzing the untrusted-input readers: whatever the bytes, a valid result or a typed error.

The workflow loader gets raw bytes, near-valid YAML and JSON assembled from
fragments, and structured workflows and plans with a random type in every
field, each written to a real ``.yaml`` and ``.json`` file, then
``load_workflow(path).compile()``. The plan parser gets arbitrary text and
near-valid plans, whole (``find_plan`` then ``check_plan``) and streamed in
random chunks (``AgentStream``). The result must be a compiled workflow, a
plan or an :class:`~agentplex.exceptions.AgentplexError`; any other exception
fails the test with the input that caused it, and hypothesis's deadline bounds
the time of every example (no hangs).

Function names in generated files are drawn so that nothing importable by
accident is ever imported: a known module of agentplex itself, malformed
names, or names under a ``zz_fuzz_`` prefix that no module has.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agentplex.exceptions import AgentplexError, PlanParseError
from agentplex.files.loader import load_workflow
from agentplex.model.roles import RoleLibrary
from agentplex.model.templates import render, template_fields
from agentplex.model.workflow import AgentNode, CompiledWorkflow, MapNode
from agentplex.planning.check import check_agent, check_plan
from agentplex.planning.parse import AgentStream, find_plan

ROLES = RoleLibrary()

FUZZ = settings(
    max_examples=120,
    deadline=timedelta(seconds=3),
    database=None,  # the suite shares one checkout; failures print their input instead
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _compile(path: Path) -> CompiledWorkflow | None:
    """Load and compile ``path``; a typed agentplex error is an answer too.

    A compiled workflow must also be usable within bounds: every agent's task
    renders (placeholders filled with a short value) to text at most
    ``MAX_FORMAT_WIDTH`` times longer than the template.
    """
    try:
        compiled = load_workflow(path).compile()
    except AgentplexError:
        return None
    assert isinstance(compiled, CompiledWorkflow)
    for node in compiled.nodes.values():
        body = node.body if isinstance(node, MapNode) else node
        if isinstance(body, AgentNode) and not body.literal_task:
            values = dict.fromkeys(template_fields(body.task), "v")
            assert len(render(body.task, values)) <= 1001 * (len(body.task) + 1)
    return compiled


def _both_formats(folder: Path, data: bytes | str) -> Iterator[Path]:
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    for suffix in (".yaml", ".json"):
        path = folder / f"fuzzed{suffix}"
        path.write_bytes(raw)
        yield path


# -- the workflow loader: bytes and near-valid text ------------------------------------------

FRAGMENTS = [
    "nodes:",
    "\n  a:",
    "\n  b:",
    " {role: researcher, task: x}",
    " {role: writer, task: 'Use {a}', depends_on: [a]}",
    " {function: 'agentplex.model.ids:is_valid_node_id'}",
    " {function: '../x:y'}",
    " {map: a, role: fact_checker, task: 'Check {item}'}",
    "\ninputs: {query: x}",
    "\ndefaults: {retries: 1}",
    "\nproviders: {p: {kind: openai, base_url: 'http://127.0.0.1:1/v1'}}",
    "\nprices: {m: {input: 1, output: 2}}",
    "\nroles: {r: {system_prompt: s}}",
    '{"agents": [',
    '{"role": "researcher", "task": "t", "depends_on": [0]}',
    '{"nodes": {"a": {"role": "researcher", "task": "t"}}}',
    "[",
    "]",
    "{",
    "}",
    ",",
    ": ",
    "- ",
    "&a ",
    "*a ",
    "<<: ",
    "!!binary ",
    "!!python/object/apply:os.system ['true']",
    "!!timestamp ",
    "!!set ",
    "!!omap ",
    "2001-13-45",
    "9" * 5000,
    "1e999",
    ".nan",
    "~",
    "\t",
    '"',
    "'",
    "\\",
    "\x00",
    "\ufeff",
    "\ud800",
    "\n",
    "---\n",
    "...\n",
    "%YAML 1.1\n",
    "? ",
    "|\n  ",
    "{x:>2000000000}",
]


@FUZZ
@given(st.binary(max_size=400))
@example(b"\xff\xfe")
@example(b"nodes: {a: {role: researcher, task: [x]}}")
@example(b"[" * 5000)
@example(b'{"nodes": {"a": {"retries": ' + b"9" * 5000 + b"}}}")
def test_any_bytes_load_as_a_workflow_or_a_typed_error(folder: Path, data: bytes) -> None:
    for path in _both_formats(folder, data):
        _compile(path)


@FUZZ
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=30).map("".join))
@example("nodes: {a: {[1]: 2}}")
@example("nodes: {a: {role: researcher, task: 2001-13-45}}")
@example("nodes: &a {b: *a}")
@example("a: &a [*a]")
def test_near_valid_text_loads_as_a_workflow_or_a_typed_error(folder: Path, text: str) -> None:
    for path in _both_formats(folder, text):
        _compile(path)


# -- the workflow loader: structured data with random types in every field --------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
NODE_IDS = st.one_of(
    st.sampled_from(["a", "b", "c", "research", "x-y", "_z"]), st.text(max_size=10)
)
FUNCTIONS = st.one_of(
    st.sampled_from(
        [
            "agentplex.model.ids:is_valid_node_id",
            "agentplex.model.ids:no_such_function",
            "../x:y",
            "/abs/path:y",
            "a..b:c",
            "-x:y",
            ":y",
            "x:",
            "x:y:z",
            "zz_fuzz_missing:run",
        ]
    ),
    st.text(max_size=12).map(lambda t: "zz_fuzz_" + t),  # never an importable module
)
TASKS = st.sampled_from(
    [
        "Research {query}",
        "Use {a} and {b}",
        "Check {item} at {index}",
        "Pad {query:>2000000000}",
        "{query:.999999999f}",
        "{query:{a}}",
        "{query!r:^99999999}",
        "{query!z}",
        "{}",
        "{0}",
        "{a.b}",
        "{a[0]}",
        "{",
        "}",
        "plain text",
    ]
)


def _or_random(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(strategy, VALUES)


NODE_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "role": _or_random(st.sampled_from(["researcher", "writer", "analyzer", "astrologer", "r"])),
    "task": _or_random(st.one_of(TASKS, st.text(max_size=30))),
    "depends_on": _or_random(st.one_of(st.lists(NODE_IDS, max_size=4), NODE_IDS)),
    "function": _or_random(FUNCTIONS),
    "map": _or_random(NODE_IDS),
    "model": _or_random(st.sampled_from(["sim", "sim:instant", "openai:gpt-4o", "p:m", "nope:"])),
    "options": _or_random(
        st.dictionaries(st.sampled_from(["temperature", "seed", "model"]), VALUES)
    ),
    "timeout_s": VALUES,
    "retries": VALUES,
    "estimate_s": VALUES,
    "latency_s": VALUES,
    "description": VALUES,
    "cache": VALUES,
    "cpu_bound": VALUES,
    "executor": _or_random(st.sampled_from(["auto", "inline", "thread", "process", "dask"])),
    "depend_on": VALUES,
}
NODE_BODIES = st.one_of(st.fixed_dictionaries({}, optional=NODE_FIELDS), VALUES)
TOP_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "name": VALUES,
    "description": VALUES,
    "inputs": _or_random(st.dictionaries(st.sampled_from(["query", "a", "item"]), VALUES)),
    "defaults": _or_random(st.fixed_dictionaries({}, optional=NODE_FIELDS)),
    "roles": _or_random(
        st.dictionaries(
            st.text(max_size=8), _or_random(st.fixed_dictionaries({"system_prompt": VALUES}))
        )
    ),
    "providers": _or_random(
        st.dictionaries(
            st.text(max_size=6),
            _or_random(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "kind": _or_random(
                            st.sampled_from(["openai", "anthropic", "ollama", "sim"])
                        ),
                        "base_url": _or_random(st.just("http://127.0.0.1:1/v1")),
                        "api_key_env": VALUES,
                        "rpm": VALUES,
                        "headers": VALUES,
                    },
                )
            ),
        )
    ),
    "prices": _or_random(st.dictionaries(st.text(max_size=6), VALUES)),
    "nodes": st.one_of(
        st.dictionaries(NODE_IDS, NODE_BODIES, max_size=5),
        st.lists(
            st.one_of(
                NODE_BODIES,
                st.builds(
                    lambda i, b: {"id": i, **b},
                    NODE_IDS,
                    st.fixed_dictionaries({}, optional=NODE_FIELDS),
                ),
            ),
            max_size=5,
        ),
        VALUES,
    ),
    "extra": VALUES,
}
WORKFLOWS = st.fixed_dictionaries({}, optional=TOP_FIELDS)
AGENTS = st.fixed_dictionaries(
    {},
    optional={
        "role": NODE_FIELDS["role"],
        "task": NODE_FIELDS["task"],
        "depends_on": _or_random(st.lists(st.integers(-2, 6), max_size=4)),
        "function": NODE_FIELDS["function"],
        "latency_s": VALUES,
        "model": VALUES,
        "tools": _or_random(st.lists(st.text(max_size=6), max_size=3)),
        "delegate": VALUES,
        "shell": VALUES,
    },
)
PLANS = st.fixed_dictionaries(
    {"agents": _or_random(st.lists(_or_random(AGENTS), max_size=6))},
    optional={"description": VALUES, "name": VALUES, "nodes": VALUES},
)


def _dump_yaml(data: Any) -> str | None:
    try:
        return yaml.safe_dump(data, allow_unicode=True)
    except yaml.YAMLError:
        return None  # e.g. a string YAML cannot represent: nothing to test


@FUZZ
@given(st.one_of(WORKFLOWS, PLANS))
@example({"nodes": {"a": {"function": "../x:y"}}})
@example({"nodes": {"a": {"role": "researcher", "task": "Pad {query:>2000000000}"}}})
def test_near_valid_workflows_and_plans_compile_or_give_a_typed_error(
    folder: Path, data: dict[str, Any]
) -> None:
    json_path = folder / "structured.json"
    json_path.write_text(json.dumps(data), encoding="utf-8", errors="surrogatepass")
    _compile(json_path)
    text = _dump_yaml(data)
    if text is not None:
        yaml_path = folder / "structured.yaml"
        yaml_path.write_text(text, encoding="utf-8", errors="surrogatepass")
        _compile(yaml_path)


# -- the plan parser --------------------------------------------------------------------------


def _find(text: str) -> dict[str, Any] | None:
    try:
        plan = find_plan(text)
    except PlanParseError:
        return None
    assert isinstance(plan, dict)
    assert "agents" in plan
    return plan


def _check(plan: Any) -> None:
    for fallback in (False, True):
        checked = check_plan(plan, ROLES, ["search"], max_agents=5, fallback=fallback)
        assert checked.ok or checked.errors


PLAN_FRAGMENTS = [
    '{"agents": [',
    '{"role": "researcher", "task": "t", "depends_on": []}',
    '{"role": "writer", "task": "w", "depends_on": [0]}',
    '{"function": "os:system", "task": "x"}',
    "]}",
    "\n",
    ",\n",
    "```json\n",
    "```",
    "Sure! Here is the plan:",
    "{",
    "}",
    "[",
    "]",
    '"',
    '{"',
    '{"a":',
    "\\",
    ":",
    "9" * 5000,
    "[" * 2000,
    '{"a":' * 1500,
    "NaN",
    "-Infinity",
    "\ud800",
]


@FUZZ
@given(
    st.one_of(
        st.text(max_size=300), st.lists(st.sampled_from(PLAN_FRAGMENTS), max_size=25).map("".join)
    )
)
@example('{"agents": [' + "[" * 5000 + "]}")
@example('"' + '{"}":' * 3000)
def test_any_text_gives_a_plan_or_a_plan_parse_error(text: str) -> None:
    plan = _find(text)
    if plan is not None:
        _check(plan)


@FUZZ
@given(PLANS, st.integers(min_value=0), st.sampled_from(PLAN_FRAGMENTS))
def test_a_damaged_plan_gives_a_plan_or_a_plan_parse_error(
    data: dict[str, Any], cut: int, junk: str
) -> None:
    text = json.dumps(data)
    cut %= len(text) + 1
    for damaged in (
        text,
        text[:cut],
        text[:cut] + junk + text[cut:],
        f"Plan:\n```json\n{text}\n```",
    ):
        plan = _find(damaged)
        if plan is not None:
            _check(plan)
    _check(data)


@FUZZ
@given(
    st.one_of(
        st.text(max_size=300),
        st.lists(st.sampled_from(PLAN_FRAGMENTS), max_size=25).map("".join),
        PLANS.map(lambda p: json.dumps(p, indent=1)),
    ),
    st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=20),
)
@example('{"role": "researcher", "depends_on": ' + "[" * 5000 + "]" * 5000 + "}\n", [7])
def test_streamed_text_in_any_chunks_gives_agents_or_nothing(text: str, sizes: list[int]) -> None:
    lines = AgentStream()
    got: list[tuple[int, dict[str, Any]]] = []
    start = 0
    for size in sizes * (len(text) // sum(sizes) + 1):
        if start >= len(text):
            break
        got += lines.feed(text[start : start + size])
        start += size
    got += lines.close()
    indices = [index for index, _ in got]
    assert indices == sorted(set(indices))
    warnings: list[str] = []
    for index, entry in got:
        assert isinstance(entry, dict)
        agent, errors = check_agent(index, entry, None, ROLES, ["search"], warnings)
        assert (agent is None) == bool(errors)
