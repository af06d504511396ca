"""The coordinator on a model that behaves like a real one: schema, output cap, streaming, tokens.

A scripted provider (registered like any plug-in) plays the coordinator as
SmolLM2 on llama.cpp did: plans pretty-printed and streamed a few characters
at a time, answers cut off at the output cap, calls that hang. It records
every request, so the tests see exactly what the planner asked for.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import agentplex as ap
from agentplex import events as ev
from agentplex.model.roles import RoleLibrary
from agentplex.model.schema import check_schema, validate
from agentplex.planning import prompts
from agentplex.planning.parse import MAX_PLAN_CHARS, AgentStream

QUESTION = "Compare Python and Rust for web servers"
OFFERED = [name for name in RoleLibrary() if name != "coordinator"]


@dataclass
class Answer:
    """One scripted coordinator answer."""

    text: str
    usage: ap.Usage = field(default_factory=lambda: ap.Usage(400, 100))
    finish_reason: str = "stop"
    chunk: int = 12
    gap_s: float = 0.0
    hang: bool = False
    """Never answer (until the call's deadline cancels the call)."""


@dataclass
class Script:
    """What the coordinator answers, in order (the last one again and again)."""

    answers: list[Answer]
    requests: list[ap.Request] = field(default_factory=list)
    log: list[tuple[str, str]] = field(default_factory=list)
    """("chunk", text) as the coordinator streams, ("planned"/"started", node) as the run goes."""

    def watch(self, event: ev.Event) -> None:
        if isinstance(event, ev.NodePlanned):
            self.log.append(("planned", event.node_id))
        elif isinstance(event, ev.NodeStarted):
            self.log.append(("started", event.node_id))


class ScriptedProvider(ap.Provider):
    """The coordinator plays its script; every other agent answers at once."""

    name = "scripted"
    script: ClassVar[Script | None] = None

    def __init__(self, resolved: Any, *, max_connections: int = 16) -> None:
        super().__init__()

    async def _complete(self, request: ap.Request) -> ap.Completion:
        script = type(self).script
        assert script is not None
        script.requests.append(request)
        if prompts.FORMAT not in request.messages[-1].content:
            usage = ap.Usage(10, 5)
            return ap.Completion(f"answer of {request.node_id}", usage, request.model, self.label)
        coordinated = sum(1 for r in script.requests if r.schema is not None)
        answer = script.answers[min(coordinated, len(script.answers)) - 1]
        if answer.hang:
            await asyncio.sleep(3600)
        if request.on_text is not None:
            for i in range(0, len(answer.text), answer.chunk):
                piece = answer.text[i : i + answer.chunk]
                script.log.append(("chunk", piece))
                request.on_text(piece)
                await asyncio.sleep(answer.gap_s)
        return ap.Completion(
            answer.text, answer.usage, request.model, self.label, 0.0, answer.finish_reason
        )


@pytest.fixture(autouse=True, scope="module")
def registered() -> Iterator[None]:
    ap.register_provider(ScriptedProvider.name, ScriptedProvider)
    yield
    from agentplex import llm

    llm._PROVIDERS.pop(ScriptedProvider.name)


def scripted(*answers: Answer) -> Script:
    script = ScriptedProvider.script = Script(list(answers))
    return script


def plan_text(*agents: dict[str, Any], indent: int | None = 2) -> str:
    return json.dumps({"agents": list(agents)}, indent=indent)


def agent(role: str, task: str, deps: list[int] | None = None) -> dict[str, Any]:
    return {"role": role, "task": task, "depends_on": deps or [], "delegate": False}


GOOD = plan_text(
    agent("researcher", "Research Python web servers: throughput, latency, ecosystem."),
    agent("researcher", "Research Rust web servers: throughput, latency, ecosystem."),
    agent("analyzer", "Compare both for a web server.", [0, 1]),
)


def run(script: Script, **options: Any) -> ap.AskResult:
    options.setdefault("max_depth", 1)
    return ap.ask(QUESTION, model="scripted:coordinator", observers=[script.watch], **options)


# -- what the coordinator is asked ---------------------------------------------------------


def test_the_plan_is_asked_for_with_its_schema_and_an_output_cap() -> None:
    script = scripted(Answer(GOOD))
    result = run(script)
    assert result.ok, result.run.nodes["coordinator"].error
    [request] = [r for r in script.requests if r.node_id == "coordinator"]
    assert request.schema == prompts.plan_schema(OFFERED, [], max_agents=20, can_delegate=True)
    assert request.schema == prompts.PLAN_SCHEMA
    assert request.schema_name == "plan"
    assert request.max_output_tokens == prompts.plan_output_cap(20) == 2176
    assert "response_format" not in request.options  # the schema replaces JSON mode
    # The agents' calls carry no plan schema.
    assert all(r.schema is None for r in script.requests if r.node_id != "coordinator")

    async def lookup(task: str) -> str:
        return "found"

    script = scripted(Answer(GOOD))
    run(script, max_agents=5, max_depth=0, tools={"lookup": lookup})
    schema = script.requests[0].schema
    assert schema is not None
    item = schema["properties"]["agents"]["items"]
    assert list(item["properties"]) == ["role", "task", "depends_on", "tools"]  # no delegate
    assert item["properties"]["tools"]["items"]["enum"] == ["lookup"]
    assert schema["properties"]["agents"]["maxItems"] == 5
    assert item["properties"]["depends_on"]["items"] == {
        "type": "integer",
        "minimum": 0,
        "maximum": 4,
    }
    assert script.requests[0].max_output_tokens == prompts.plan_output_cap(5)


# Keywords llama.cpp's json-schema-to-grammar converts and OpenAI's strict mode accepts.
PORTABLE = {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "enum",
    "minimum",
    "maximum",
}


def _keywords(schema: Any) -> set[str]:
    if not isinstance(schema, dict):
        return set()
    found = set(schema)
    for key, value in schema.items():
        if key == "properties":
            found |= set().union(*(_keywords(v) for v in value.values()))
        elif isinstance(value, dict):
            found |= _keywords(value)
    return found


def test_the_schema_admits_exactly_the_plans_a_constrained_model_may_write() -> None:
    schema = prompts.plan_schema(OFFERED, ["lookup"], max_agents=3, can_delegate=True)
    assert check_schema(schema) == []
    assert _keywords(schema) <= PORTABLE
    ok = {"role": "researcher", "task": "t", "depends_on": [], "tools": [], "delegate": False}
    assert validate(schema, {"agents": [ok, {**ok, "depends_on": [0]}]}) == []
    refused = [
        {"agents": []},
        {"agents": [ok] * 4},  # more than max_agents
        {"agents": [{**ok, "role": "astrologer"}]},
        {"agents": [{**ok, "function": "os:system"}]},
        {"agents": [{**ok, "tools": ["shell"]}]},
        {"agents": [{**ok, "depends_on": [3]}]},  # past the last possible index
        {"agents": [{**ok, "depends_on": ["0"]}]},
        {"agents": [{k: v for k, v in ok.items() if k != "task"}]},
        {"agents": [ok], "steps": []},
    ]
    for plan in refused:
        assert validate(schema, plan), plan


# -- streaming -------------------------------------------------------------------------------


def test_a_pretty_printed_plan_starts_agents_while_the_rest_still_streams() -> None:
    script = scripted(Answer(GOOD, chunk=6, gap_s=0.01))
    result = run(script)
    assert result.ok
    log = script.log
    last_chunk = max(i for i, (kind, _) in enumerate(log) if kind == "chunk")
    started = log.index(("started", "researcher_0"))
    assert started < last_chunk  # working while the coordinator still writes
    # Each agent joins the run right after the chunk that closes its object, never before.
    streamed = ""
    for kind, value in log:
        if kind == "chunk":
            streamed += value
        elif kind == "planned":
            index = int(value.rsplit("_", 1)[1])
            assert streamed.count("}") > index, (value, streamed)
    assert [v for k, v in log if k == "planned"] == ["researcher_0", "researcher_1", "analyzer_2"]


def test_a_one_line_plan_streams_too() -> None:
    script = scripted(Answer(plan_text(*json.loads(GOOD)["agents"], indent=None), gap_s=0.01))
    assert run(script).ok
    log = script.log
    last_chunk = max(i for i, (kind, _) in enumerate(log) if kind == "chunk")
    assert log.index(("started", "researcher_0")) < last_chunk


def test_a_half_written_agent_never_starts_and_a_cut_off_plan_is_repaired() -> None:
    cut = GOOD[: GOOD.index("Rust web") + 4]  # the stream stops inside the second agent's task
    script = scripted(
        Answer(cut, usage=ap.Usage(400, 2176), finish_reason="length", chunk=5, gap_s=0.005),
        Answer(GOOD),
    )
    result = run(script)
    assert result.ok, result.run.nodes["coordinator"].error
    first, second = result.attempts
    assert "cut off at the output cap of 2,176 tokens (finish_reason 'length')" in " ".join(
        first["errors"]
    )
    assert first["finish_reason"] == "length"
    assert second["errors"] == []
    # While the first answer streamed, only its complete first agent joined the run.
    planned = [v for k, v in script.log if k == "planned"]
    assert planned == ["researcher_0", "researcher_1", "analyzer_2"]
    streamed = 0
    for kind, value in script.log:
        if kind == "chunk":
            streamed += len(value)
        elif value == "researcher_1":
            assert streamed > len(cut)  # planned from the second answer, not the cut-off one
            break
    repair_at = next(
        i for i, r in enumerate(script.requests) if prompts.REPAIR in r.messages[-1].content
    )
    # The repair prompt says why and shows what was kept.
    repair = script.requests[repair_at].messages[-1].content
    assert "cut off at the output cap" in repair
    assert "Agents [0] of that plan have already started" in repair


def test_a_plan_complete_before_the_cap_cut_off_what_followed_is_accepted() -> None:
    script = scripted(Answer(GOOD + "\n\nThis plan has three agents since", finish_reason="length"))
    result = run(script)
    assert result.ok
    assert result.planning["attempts_made"] == 1
    assert any("after a complete plan" in w for w in result.warnings)


def test_a_plan_of_more_agents_than_allowed_goes_back_and_none_of_the_extra_start() -> None:
    many = plan_text(*(agent("researcher", f"Part {i}.") for i in range(25)))
    script = scripted(Answer(many, chunk=40), Answer(GOOD))
    result = run(script)
    assert result.ok
    assert "the plan has 25 agents; at most 20 are allowed" in result.attempts[0]["errors"][0]
    started = {n for n in result.run.nodes if n.startswith("researcher_")}
    assert len(started) <= 20 + 2  # streamed up to the budget, then the repaired plan's own
    assert any("refused plan" in w for w in result.warnings)


def test_an_agent_repeated_in_one_plan_runs_once_and_says_so() -> None:
    same = agent("researcher", "Research both.")
    script = scripted(Answer(plan_text(same, same, agent("analyzer", "Compare.", [0, 1]))))
    result = run(script)
    assert result.ok
    assert [a["node"] for a in result.plan["agents"]] == [  # type: ignore[index]
        "researcher_0",
        "researcher_0",
        "analyzer_2",
    ]
    assert any("repeats an earlier agent" in w for w in result.warnings)
    assert set(result.run.nodes) == {"coordinator", "researcher_0", "analyzer_2"}


# -- tokens ----------------------------------------------------------------------------------

UNKNOWN_ROLE = plan_text(agent("astrologer", "Read the stars."))


def test_every_plan_attempt_counts_when_planning_fails() -> None:
    script = scripted(Answer(UNKNOWN_ROLE, usage=ap.Usage(400, 100)))
    result = run(script)
    assert not result.ok
    coordinator = result.run.nodes["coordinator"]
    assert coordinator.usage == ap.Usage(1200, 300)  # three refused plans, all billed
    assert result.run.usage.total_tokens == 1500
    assert result.planning["plan_usage"]["input_tokens"] == 1200
    error = coordinator.error or ""
    assert "after 3 attempt(s); what was wrong with the last: agent 0 has unknown role" in error


def test_a_repaired_plan_counts_the_refused_attempt_too() -> None:
    script = scripted(Answer(UNKNOWN_ROLE, usage=ap.Usage(400, 100)), Answer(GOOD))
    result = run(script)
    assert result.ok
    assert result.run.nodes["coordinator"].usage == ap.Usage(800, 200)
    assert [a["usage"]["input_tokens"] for a in result.attempts] == [400, 400]
    agents = sum(n.usage.total_tokens for k, n in result.run.nodes.items() if k != "coordinator")
    assert result.run.usage.total_tokens == 1000 + agents


def test_the_token_budget_sees_refused_plan_attempts_before_the_plan_ends() -> None:
    # The refused attempt used 1,500 tokens: the repaired plan's agents may not start.
    script = scripted(Answer(UNKNOWN_ROLE, usage=ap.Usage(1000, 500)), Answer(GOOD, gap_s=0.01))
    result = run(script, token_budget=1200)
    assert not result.ok
    failed = [n for k, n in result.run.nodes.items() if n.status == "failed"]
    assert failed
    assert all("BudgetExceededError" in (n.error_type or "") for n in failed)
    assert "token_budget=1,200 is used up (1,500 tokens so far" in (failed[0].error or "")


def test_a_plan_call_that_timed_out_is_counted_estimated() -> None:
    script = scripted(Answer("", hang=True), Answer(GOOD))
    result = run(script, timeout_s=0.2, backoff_base_s=0.01)
    assert result.ok, result.run.nodes["coordinator"].error
    usage = result.run.nodes["coordinator"].usage
    assert usage is not None
    assert usage.estimated  # the hung call's prompt, estimated, plus the good answer
    assert usage.input_tokens > 400
    assert result.attempts[0]["usage"] is None
    assert "the call was cancelled" in result.attempts[0]["errors"][0]  # by the node's limit


# -- the parser ------------------------------------------------------------------------------

TEXT = st.text(st.sampled_from('ab {}[]",:\\\n\té€'), max_size=12)
ELEMENT = st.one_of(
    st.fixed_dictionaries(
        {"role": TEXT, "task": TEXT, "depends_on": st.lists(st.integers(0, 99), max_size=3)},
        optional={"tools": st.lists(TEXT, max_size=2), "x": st.dictionaries(TEXT, TEXT)},
    ),
    st.integers(),
    TEXT,
    st.lists(st.integers(), max_size=2),
    st.none(),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(ELEMENT, max_size=6),
    st.sampled_from([None, 0, 2, "\t"]),
    st.lists(st.integers(1, 9), min_size=1, max_size=8),
    st.booleans(),
)
def test_streamed_agents_are_exactly_the_whole_plans_objects_with_their_indices(
    elements: list[Any], indent: int | str | None, sizes: list[int], prose: bool
) -> None:
    text = json.dumps({"agents": elements, "description": "d"}, indent=indent)
    if prose:
        text = "Here is the plan:\n```json\n" + text + "\n```\nDone."
    stream = AgentStream()
    got: list[tuple[int, dict[str, Any]]] = []
    start = 0
    while start < len(text):
        size = sizes[start % len(sizes)]
        got += stream.feed(text[start : start + size])
        start += size
    got += stream.close()
    assert got == [(i, e) for i, e in enumerate(elements) if isinstance(e, dict)]
    assert stream.count == len(elements)
    assert stream.decoded <= len(text)


def test_streaming_a_megabyte_plan_in_ten_byte_chunks_decodes_each_character_once() -> None:
    task = "x" * 900
    one = json.dumps(agent("researcher", task), indent=2)
    count = (MAX_PLAN_CHARS - 100) // (len(one) + 6)
    text = '{\n  "agents": [\n' + ",\n".join([one] * count) + "\n  ]\n}"
    assert len(text) <= MAX_PLAN_CHARS
    stream = AgentStream()
    got = 0
    for i in range(0, len(text), 10):
        got += len(stream.feed(text[i : i + 10]))
    assert got == count == stream.count
    assert stream.chars == len(text)
    assert stream.decoded <= len(text)  # each agent's text decoded once, nothing else


# -- the command line ----------------------------------------------------------------------------


def test_ask_takes_a_token_budget_and_no_longer_a_max_tokens() -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "agentplex", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "AGENTPLEX_SIM_SCALE": "0", "COLUMNS": "200", "NO_COLOR": "1"},
        )

    helped = cli("ask", "--help")
    assert helped.returncode == 0
    assert "--token-budget" in helped.stdout
    assert "--max-tokens" not in helped.stdout
    budget = cli("ask", "Compare A, B and C for x", "--token-budget", "500", "--json")
    assert budget.returncode == 1, budget.stderr
    record = json.loads(budget.stdout)
    errors = [n["error"] or "" for n in record["nodes"].values() if n["status"] == "failed"]
    assert any("--token-budget" in e for e in errors)
    old = cli("ask", "Compare A and B", "--max-tokens", "500")
    assert old.returncode == 2
    assert "--max-tokens" in old.stderr
