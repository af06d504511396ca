"""Coordinator planning: parsing, the untrusted-plan checks, repair, streaming, bounds, review."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import agentplex as ap
from agentplex import events as ev
from agentplex.exceptions import PlanParseError
from agentplex.model.roles import RoleLibrary
from agentplex.planning.ask import ask
from agentplex.planning.check import check_plan
from agentplex.planning.parse import AgentStream, find_plan
from agentplex.sim.plans import LAYOUTS, plan_agents, render

if TYPE_CHECKING:
    from agentplex.sim.server import SimServer

COMPARE = "Compare Python, Rust, Go and JavaScript for backend development"
ROLES = RoleLibrary()


def plan_of(*agents: dict[str, Any]) -> dict[str, Any]:
    return {"agents": list(agents)}


def agent(role: str = "researcher", task: str = "t", deps: list[Any] | None = None, **more: Any):
    return {"role": role, "task": task, "depends_on": deps or [], **more}


# -- finding a plan ----------------------------------------------------------------------------


def test_a_plan_is_found_in_prose_and_code_fences() -> None:
    text = 'Sure! Here it is:\n```json\n{"agents": [{"role": "researcher", "task": "x"}]}\n```\nBye'
    assert find_plan(text) == {"agents": [{"role": "researcher", "task": "x"}]}
    with pytest.raises(PlanParseError, match="invalid JSON"):
        find_plan('{"agents": [{"role": "researcher", "task": unterminated')
    with pytest.raises(PlanParseError, match='without "agents"'):
        find_plan('{"steps": []}')


def stream_all(text: str, chunk: int) -> list[tuple[int, dict[str, Any]]]:
    stream = AgentStream()
    got: list[tuple[int, dict[str, Any]]] = []
    for i in range(0, len(text), chunk):
        got += stream.feed(text[i : i + chunk])
    return got + stream.close()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_streamed_agents_are_found_in_any_layout_and_any_chunks(layout: str) -> None:
    agents = plan_agents("Compare A, B and C for x", 20)
    text = render(agents, "d", layout)
    for chunk in (1, 2, 7, 64, len(text)):  # arbitrary chunk boundaries
        assert stream_all(text, chunk) == list(enumerate(agents)), (layout, chunk)
    fenced = "Here is the plan:\n```json\n" + text + "\n```\nIt has five agents."
    assert stream_all(fenced, 5) == list(enumerate(agents))


def test_an_invalid_element_keeps_its_index_so_indices_match_the_whole_plan() -> None:
    text = json.dumps(
        {"agents": [{"function": "os:system"}, 5, "x", [1], {"role": "writer", "task": "w"}]},
        indent=2,
    )
    got = stream_all(text, 3)
    assert [(i, a.get("role")) for i, a in got] == [(0, None), (4, "writer")]


def test_an_agent_is_handed_over_only_when_its_object_closes() -> None:
    stream = AgentStream()
    head = '{"agents": [\n  {\n    "role": "researcher",\n    "task": "a } and a \\" and '
    assert stream.feed(head) == []  # a brace and an escaped quote inside the task: still text
    assert stream.feed('more",\n    "depends_on": [1') == []  # [1 may still become [12
    assert stream.feed("2]\n  ") == []
    [(index, entry)] = stream.feed("},")
    assert index == 0
    assert entry == {"role": "researcher", "task": 'a } and a " and more', "depends_on": [12]}
    assert stream.feed('\n  {"role": "writer", "task": "cut off') == []
    assert stream.close() == []  # the stream ended inside the second agent: it never starts


def test_a_plan_after_braces_in_prose_or_inside_a_wrapper_is_found() -> None:
    plan = {"agents": [{"role": "researcher", "task": "x"}]}
    assert find_plan("Use {placeholder} and {x} here, then: " + json.dumps(plan)) == plan
    assert find_plan(json.dumps({"response": plan})) == plan
    with pytest.raises(PlanParseError, match="no JSON object"):
        find_plan("a {template} with {braces} but no JSON")
    assert isinstance(PlanParseError("x"), ap.AgentplexError)


def test_a_streamed_agent_nested_too_deeply_keeps_its_index_but_never_starts() -> None:
    deep = '{"role": "researcher", "task": "t", "depends_on": ' + "[" * 40 + "]" * 40 + "},\n"
    got = stream_all('{"agents": [' + deep + '{"role": "writer", "task": "w"}]}', 9)
    assert [(i, a["role"]) for i, a in got] == [(1, "writer")]


# -- the untrusted-plan checks ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ({"agents": []}, "no agents"),
        ({"steps": [1]}, "no agents"),
        (plan_of(*[agent() for _ in range(10_000)]), "10,000 agents; at most 20"),
        (plan_of(agent("astrologer")), "unknown role 'astrologer'"),
        (plan_of({"function": "os:system", "task": "x"}), "asks to run code ('function')"),
        (plan_of(agent(shell="rm -rf /")), "asks to run code ('shell')"),
        (plan_of(agent(tools=["browser"])), "unknown tool(s) ['browser']"),
        (plan_of(agent(task="")), 'non-empty "task"'),
    ],
)
def test_unusable_plans_are_refused_with_the_exact_error(plan: Any, message: str) -> None:
    checked = check_plan(plan, ROLES, max_agents=20)
    assert not checked.ok
    assert message in " ".join(checked.errors)


def test_bad_dependencies_are_dropped_with_a_warning() -> None:
    checked = check_plan(
        plan_of(agent(), agent(deps=[0, 0, 7, "x", 1])), ROLES, {"search"}, max_agents=5
    )
    assert checked.ok
    assert checked.agents[1].depends_on == (0,)
    assert len(checked.warnings) == 3
    assert "out of range" in checked.warnings[0]


def test_a_cycle_is_broken_by_dropping_its_dependencies_on_later_agents() -> None:
    # 0 -> 1 -> 2 -> 0 (through later agents) and 3 -> 4 (later, but no cycle: kept)
    plan = plan_of(agent(deps=[1]), agent(deps=[2]), agent(deps=[0]), agent(deps=[4]), agent())
    checked = check_plan(plan, ROLES, max_agents=20)
    assert checked.ok, checked.errors
    assert [a.depends_on for a in checked.agents] == [(), (), (0,), (4,), ()]
    assert len(checked.warnings) == 2
    assert "dropped dependency 1, a later agent that depends on it in turn" in checked.warnings[0]


def test_declared_order_fallback_runs_the_valid_agents_in_a_chain() -> None:
    plan = plan_of(agent(task="a"), agent("astrologer"), agent(task="c", deps=[3]), agent(deps=[2]))
    checked = check_plan(plan, ROLES, max_agents=20, fallback=True)
    assert checked.ok
    assert [(a.index, a.depends_on) for a in checked.agents] == [(0, ()), (2, (0,)), (3, (2,))]
    assert any("declared order" in w for w in checked.warnings)


# -- planning and running with the simulator ---------------------------------------------------------


def test_compare_questions_plan_one_researcher_per_item_then_analysis_and_synthesis() -> None:
    result = ap.plan(COMPARE, sim_scale=0)
    assert result.run.ok
    roles = [a["role"] for a in result.plan["agents"]]  # type: ignore[index]
    assert roles == ["researcher"] * 4 + ["analyzer", "synthesizer"]
    assert result.plan["agents"][4]["depends_on"] == [0, 1, 2, 3]  # type: ignore[index]
    assert list(result.run.nodes) == ["coordinator"]  # planning only: nothing ran


def test_ask_runs_the_plan_and_answers() -> None:
    seen: list[ev.Event] = []
    result = ask(COMPARE, sim_scale=0, observers=[seen.append])
    assert result.ok
    assert set(result.run.nodes) == {
        "coordinator",
        "researcher_0",
        "researcher_1",
        "researcher_2",
        "researcher_3",
        "analyzer_4",
        "synthesizer_5",
    }
    assert result.answer == result.run.outputs["synthesizer_5"]
    assert [a["node"] for a in result.plan["agents"]][-1] == "synthesizer_5"  # type: ignore[index]
    planned = [e for e in seen if isinstance(e, ev.NodePlanned)]
    assert [e.node_id for e in planned][:4] == [f"researcher_{i}" for i in range(4)]
    assert planned[4].depends_on == tuple(f"researcher_{i}" for i in range(4))
    record = result.to_dict()
    assert record["plan"]["agents"][0]["role"] == "researcher"
    assert record["answer"] == result.answer
    # The same plan and outputs with and without streaming, and for a generic question.
    unstreamed = ask(COMPARE, sim_scale=0, stream=False)
    assert unstreamed.run.outputs == result.run.outputs
    generic = ask("Business plan for a bike repair shop", sim_scale=0)
    assert generic.ok
    assert len(generic.plan["agents"]) == 5  # type: ignore[index]


def order_of(events: list[ev.Event]) -> tuple[float, float]:
    first_start = min(
        e.t for e in events if isinstance(e, ev.NodeStarted) and e.node_id != "coordinator"
    )
    planner_end = next(
        e.t for e in events if isinstance(e, ev.NodeFinished) and e.node_id == "coordinator"
    )
    return first_start, planner_end


def test_streamed_agents_start_before_the_plan_is_finished() -> None:
    for stream in (True, False):
        seen: list[ev.Event] = []
        result = ask(COMPARE, sim_scale=0.2, stream=stream, observers=[seen.append])
        assert result.ok
        first_start, planner_end = order_of(seen)
        if stream:
            assert first_start < planner_end
        else:
            assert first_start >= planner_end


def test_streaming_against_the_simulator_server(server: SimServer) -> None:
    """Over real HTTP: the openai SDK's stream feeds the planner line by line."""
    server.configure(scale=0.3)
    seen: list[ev.Event] = []
    result = ask(
        COMPARE, model="openai:sim", base_url=server.url, api_key="k", observers=[seen.append]
    )
    assert result.ok, result.run
    first_start, planner_end = order_of(seen)
    assert first_start < planner_end
    kinds = [type(e).__name__ for e in seen if getattr(e, "node_id", None) == "researcher_0"]
    assert kinds[:3] == ["NodePlanned", "NodeReady", "NodeStarted"]
    assert server.stats()["by_status"]["200"] == 7  # the coordinator and six agents
    [attempt] = result.attempts
    assert attempt["usage"]["output_tokens"] > 0  # the plan's own tokens, as the server counted
    assert result.planning["plan_usage"] == attempt["usage"]


# -- repair and fallback --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("bad-json", "invalid JSON"),
        ("unknown-role", "unknown role 'astrologer'"),
        ("function", "asks to run code"),
        ("unknown-tool", "unknown tool"),
        ("empty", "no agents"),
        ("huge", "cut off at the output cap of 2,176 tokens"),  # 10,000 agents do not fit
    ],
)
def test_every_broken_plan_goes_back_with_its_errors_and_is_repaired(
    fault: str, error: str
) -> None:
    result = ask("Compare A, B and C for x", model=f"sim:plan-{fault}", sim_scale=0)
    assert result.ok, result.run.nodes["coordinator"].error
    assert result.planning["attempts_made"] == 2
    assert error in " ".join(result.attempts[0]["errors"])
    assert result.attempts[1]["errors"] == []
    assert result.answer


@pytest.mark.parametrize(
    ("fault", "warning"),
    [("out-of-range", "dependency 99, out of range"), ("cycle", "(a cycle)")],
)
def test_bad_dependencies_are_repaired_without_asking_again(fault: str, warning: str) -> None:
    result = ask("Compare A, B and C for x", model=f"sim:plan-{fault}", sim_scale=0)
    assert result.ok
    assert result.planning["attempts_made"] == 1
    assert any(warning in w for w in result.warnings)


@pytest.mark.parametrize("layout", ["pretty", "oneline"])
def test_pretty_printed_and_one_line_plans_stream_like_one_agent_per_line(layout: str) -> None:
    seen: list[ev.Event] = []
    result = ask(COMPARE, model=f"sim:plan-{layout}", sim_scale=0.2, observers=[seen.append])
    assert result.ok
    first_start, planner_end = order_of(seen)
    assert first_start < planner_end  # started from the plan while it was still streaming
    assert result.plan == ap.plan(COMPARE, sim_scale=0).plan  # the same plan, laid out otherwise


def test_a_plan_that_stays_broken_is_a_clear_error_or_the_fallback() -> None:
    model = "sim:plan-always-unknown-role"
    failed = ask("Compare A, B and C for x", model=model, sim_scale=0)
    assert not failed.ok
    error = failed.run.nodes["coordinator"].error or ""
    assert "PlanningError" in error
    assert "after 3 attempt(s); what was wrong with the last: agent 0 has unknown role" in error
    assert "--fallback" in error
    assert failed.planning["attempts_made"] == 3
    fallback = ask("Compare A, B and C for x", model=model, sim_scale=0, fallback=True)
    assert fallback.ok
    assert any("declared-order fallback" in w for w in fallback.warnings)
    deps = [a["depends_on"] for a in fallback.plan["agents"]]  # type: ignore[index]
    assert deps == [[], [1], [2], [3]]  # agent 0 is dropped; the rest run in declared order


def test_a_ten_thousand_agent_plan_never_runs_ten_thousand_agents() -> None:
    result = ask(
        "Compare A, B and C for x", model="sim:plan-always-huge", sim_scale=0, stream=False
    )
    assert not result.ok
    # The simulator, like a real model, stops at the plan's output cap: long before the end.
    error = result.run.nodes["coordinator"].error or ""
    assert "cut off at the output cap of 2,176 tokens (finish_reason 'length')" in error
    assert list(result.run.nodes) == ["coordinator"]
    streamed = ask("Compare A, B and C for x", model="sim:plan-huge", sim_scale=0)
    assert streamed.ok  # the streamed agents stop at the budget; the repaired plan runs
    assert len(streamed.run.nodes) <= 1 + 20 + 5
    assert any("refused plan" in w for w in streamed.warnings)


# -- bounds ---------------------------------------------------------------------------------

NESTED = "Build the platform: web (ui (forms, tables), api); data (storage, pipelines)"


def test_delegation_nests_to_depth_two_under_the_same_run() -> None:
    seen: list[ev.Event] = []
    result = ask(NESTED, max_depth=2, sim_scale=0, observers=[seen.append])
    assert result.ok
    nodes = set(result.run.nodes)
    assert "planner_0/planner_0/researcher_0" in nodes  # depth 2
    assert "planner_1/researcher_0" in nodes  # depth 1
    parents = {e.node_id: e.parent for e in seen if isinstance(e, ev.NodePlanned)}
    assert parents["planner_0/planner_0/researcher_0"] == "planner_0/planner_0"
    assert parents["planner_0"] is None
    # A delegating agent's output is its sub-plan's result, not the sub-plan itself.
    assert result.run.outputs["planner_1"] == result.run.outputs["planner_1/synthesizer_2"]
    assert set(result.planning["sub_plans"]) == {"planner_0", "planner_1", "planner_0/planner_0"}


def test_max_depth_stops_delegation_and_says_so() -> None:
    result = ask(NESTED, max_depth=1, sim_scale=0)
    assert result.ok
    assert not any(n.count("/") == 2 for n in result.run.nodes)
    assert any("max_depth=1 is reached" in w for w in result.warnings)
    flat = ask(NESTED, max_depth=0, sim_scale=0)
    assert not any("/" in n for n in flat.run.nodes)


def test_max_agents_counts_every_level_and_is_reported() -> None:
    result = ask(NESTED, max_depth=2, max_agents=6, sim_scale=0)
    assert not result.ok
    errors = [n.error or "" for n in result.run.nodes.values() if n.status == "failed"]
    assert any("sub-plan was refused" in e and "--max-agents" in e for e in errors)
    assert result.planning["agents_planned"] <= 6


def test_the_token_budget_stops_new_nodes_with_a_clear_error() -> None:
    result = ask(COMPARE, token_budget=1500, sim_scale=0)
    assert not result.ok
    failed = [n for n in result.run.nodes.values() if n.status == "failed"]
    assert failed
    assert "token_budget=1,500 is used up" in (failed[0].error or "")
    assert "--token-budget" in (failed[0].error or "")
    with pytest.raises(ap.exceptions.ConfigError, match="token_budget=N"):
        ask(COMPARE, max_tokens=1500)  # the old name is refused, never taken as an output cap


def test_bad_bounds_and_the_layers_strategy_fail_before_anything_runs() -> None:
    with pytest.raises(ap.exceptions.ConfigError, match="max_agents"):
        ask(COMPARE, max_agents=0)
    with pytest.raises(ap.exceptions.ConfigError, match="layers"):
        ask(COMPARE, strategy="layers")
    with pytest.raises(ap.exceptions.ConfigError, match="empty"):
        ask("  ")


# -- tools and review -------------------------------------------------------------------------


def test_registered_tools_are_called_side_by_side_and_feed_the_prompt() -> None:
    calls: list[str] = []

    async def lookup(task: str) -> str:
        calls.append(task)
        return f"LOOKUP RESULT for {task[:12]}"

    result = ask("Compare A, B and C for x", tools={"lookup": lookup}, sim_scale=0)
    assert result.ok
    assert len(calls) == 3  # one per researcher
    assert "LOOKUP RESULT" in result.run.outputs["researcher_0"]
    assert result.plan["agents"][0]["tools"] == ["lookup"]  # type: ignore[index]


def test_manager_review_sends_results_back_once() -> None:
    result = ask(COMPARE, review=1, sim_scale=0)
    assert result.ok
    assert "review" in result.run.nodes
    [(original, revised)] = result.planning["revised"].items()
    assert revised == f"{original}_revised"
    assert result.run.nodes[revised].deps == (original,)
    assert (
        "Revise your earlier answer" not in result.run.outputs[revised]
    )  # an answer, not a prompt
    assert "review" not in ask(COMPARE, sim_scale=0).run.nodes


# -- the CLI ----------------------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentplex", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "AGENTPLEX_SIM_SCALE": "0",
            "COLUMNS": "200",
        },
    )


def test_cli_plan_save_then_run_and_ask_json(tmp_path: Path) -> None:
    saved = tmp_path / "plan.json"
    planned = cli("plan", COMPARE, "--save", str(saved))
    assert planned.returncode == 0, planned.stderr
    assert "4 in parallel" in planned.stdout
    assert json.loads(saved.read_text())["agents"][0]["role"] == "researcher"
    ran = cli("run", str(saved), "--json", "--no-store")
    assert ran.returncode == 0, ran.stderr
    assert len(json.loads(ran.stdout)["nodes"]) == 6
    asked = cli("ask", COMPARE, "--json", "--max-agents", "10", "--out", str(tmp_path / "out"))
    assert asked.returncode == 0, asked.stderr
    record = json.loads(asked.stdout)
    assert record["plan"]["agents"][0]["node"] == "researcher_0"
    assert record["answer"]
    assert record["status"] == "succeeded"
    assert (tmp_path / "out" / "ask.json").is_file()
    broken = cli("plan", "Compare A and B", "--model", "sim:plan-always-function")
    assert broken.returncode == 1
    assert "asks to run code" in broken.stderr
    bad = cli("ask", COMPARE, "--max-agents", "0")
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr


def test_a_planned_run_is_recorded_and_resume_explains_itself(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    result = ask(COMPARE, sim_scale=0, store=path)
    from agentplex.store import open_store

    store = open_store(path)
    try:
        nodes = store.get_nodes(result.run.run_id)
        assert set(nodes) == set(result.run.nodes)  # every planned node is in the store
        assert store.get_run(result.run.run_id).total_nodes == 7
        events = [e["kind"] for e in store.get_events(result.run.run_id)]
        assert events.count("NodePlanned") == 6
    finally:
        store.close()
    with pytest.raises(ap.exceptions.ConfigError, match="planned run"):
        ap.resume(result.run.run_id, store=path)
