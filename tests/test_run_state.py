"""The run-state model: typed statuses, the result schema, the planner's protocol, --verbose data."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest

import agentplex as ap
from agentplex import events as ev
from agentplex.engine.runner import Run, arun
from agentplex.engine.state import RunControl
from agentplex.exceptions import DecodeError
from agentplex.result import NodeResult, RunResult, Status


async def _no_sleep(_: float) -> None:
    return None


def _mixed_run() -> RunResult:
    """A run with a success after a retry, a failure, a skip and an agent."""
    calls = 0

    def flaky() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls < 2:
            raise ap.exceptions.RetryableError("try again")
        return {"n": [1, 2], "text": "ok"}

    def broken(flaky: dict[str, Any]) -> int:
        return 1 // 0

    def after(broken: int) -> int:
        return broken

    wf = ap.Workflow("mixed")
    wf.function(flaky, retries=2)
    wf.function(broken, depends_on=["flaky"])
    wf.function(after, depends_on=["broken"])
    wf.agent("researcher", "Say something", id="agent")
    return ap.run(wf, error_policy="continue", sleep=_no_sleep, rng=random.Random(0), sim_scale=0)


def test_statuses_are_one_typed_set_equal_to_their_strings() -> None:
    result = _mixed_run()
    statuses = {nid: n.status for nid, n in result.nodes.items()}
    assert statuses == {
        "flaky": "succeeded",
        "broken": "failed",
        "after": "skipped",
        "agent": "succeeded",
    }
    assert all(isinstance(s, Status) for s in statuses.values())
    assert result.status is Status.FAILED
    assert result.status == "failed"
    assert "status='failed'" in repr(result)  # the plain string, not the enum's repr


def test_results_round_trip_through_plain_json() -> None:
    result = _mixed_run()
    record = json.loads(json.dumps(result.to_dict()))  # plain JSON, no custom encoder
    back = RunResult.from_dict(record)
    again = back.to_dict()
    # Times are written to the microsecond, so figures derived from them move by up to
    # a microsecond per node over a run of a few milliseconds: about 0.1-1% here.
    # Everything else comes back exactly.
    derived = ("sequential_s", "speedup", "efficiency", "nodes")
    assert {k: v for k, v in again.items() if k not in derived} == {
        k: v for k, v in record.items() if k not in derived
    }
    for key in derived[:3]:
        assert again[key] == pytest.approx(record[key], rel=2e-2, abs=1e-4)
    for node_id, node in record["nodes"].items():
        assert {k: v for k, v in again["nodes"][node_id].items() if k != "duration_s"} == {
            k: v for k, v in node.items() if k != "duration_s"
        }
    assert RunResult.from_dict(again).to_dict()["nodes"] == again["nodes"]
    assert back.nodes["flaky"].output == {"n": [1, 2], "text": "ok"}
    assert back.nodes["flaky"].attempt_starts == pytest.approx(
        result.nodes["flaky"].attempt_starts, abs=1e-6
    )
    assert back.nodes["broken"].traceback == result.nodes["broken"].traceback
    node = result.nodes["agent"]
    again_node = NodeResult.from_dict(json.loads(json.dumps(node.to_dict()))).to_dict()
    first_node = node.to_dict()
    assert again_node.pop("duration_s") == pytest.approx(first_node.pop("duration_s"), abs=2e-6)
    assert again_node == first_node  # the duration is the difference of two rounded times


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("attempts", "two", "field 'attempts' = 'two', not a whole number"),
        ("status", "exploded", "field 'status' = 'exploded', not one of"),
        ("deps", "a", "field 'deps' = 'a', not a list of strings"),
        ("usage", {"input_tokens": -1}, "field 'usage'"),
    ],
)
def test_a_bad_node_field_is_a_decode_error_naming_it(field: str, value: Any, message: str) -> None:
    record = _mixed_run().nodes["flaky"].to_dict()
    record[field] = value
    with pytest.raises(DecodeError, match=message) as caught:
        NodeResult.from_dict(record)
    assert isinstance(caught.value, ValueError)
    assert "node record 'flaky'" in str(caught.value)


def test_a_bad_run_record_is_a_decode_error() -> None:
    record = _mixed_run().to_dict()
    with pytest.raises(DecodeError, match="no field 'run_id'"):
        RunResult.from_dict({k: v for k, v in record.items() if k != "run_id"})
    with pytest.raises(DecodeError, match="not one of cancelled, failed, succeeded"):
        RunResult.from_dict({**record, "status": "pending"})
    with pytest.raises(DecodeError, match="not an object"):
        RunResult.from_dict([1, 2])  # type: ignore[arg-type]


def test_attempt_starts_keep_their_api_and_a_single_attempt_stores_no_list() -> None:
    result = _mixed_run()
    flaky = result.nodes["flaky"]
    assert flaky.attempts == 2
    assert len(flaky.retry_starts) == 1
    assert flaky.attempt_starts == (flaky.started_s, *flaky.retry_starts)
    agent = result.nodes["agent"]
    assert agent.retry_starts == ()
    assert agent.attempt_starts == (agent.started_s,)
    assert result.nodes["after"].attempt_starts == ()  # never ran
    assert result.nodes["broken"].deps == ("flaky",)


def test_a_failed_step_carries_its_traceback_in_the_event_and_the_result() -> None:
    failures: list[ev.NodeFailed] = []

    def step() -> int:
        secret_line = 1
        return secret_line // 0

    wf = ap.Workflow("boom")
    wf.function(step)
    result = ap.run(
        wf, observers=[lambda e: failures.append(e) if isinstance(e, ev.NodeFailed) else None]
    )
    (failed,) = failures
    assert failed.error_type == "ZeroDivisionError"
    assert "Traceback (most recent call last)" in failed.traceback
    assert "in step" in failed.traceback
    assert "secret_line // 0" in failed.traceback
    assert result.nodes["step"].traceback == failed.traceback
    assert result.nodes["step"].to_dict()["traceback"] == failed.traceback


def test_a_failure_that_is_not_a_python_step_has_no_traceback() -> None:
    failures: list[ev.NodeFailed] = []

    def slow() -> None:
        import time

        time.sleep(0.5)

    wf = ap.Workflow("timeout")
    wf.function(slow, timeout_s=0.01, executor="thread")
    result = ap.run(
        wf, observers=[lambda e: failures.append(e) if isinstance(e, ev.NodeFailed) else None]
    )
    assert failures[0].error_type in ("TimeoutError", "NodeTimeoutError")
    assert failures[0].traceback == ""
    assert result.nodes["slow"].traceback is None
    assert "traceback" not in result.nodes["slow"].to_dict()


def test_requests_are_announced_only_when_asked() -> None:
    wf = ap.Workflow("ask")
    wf.agent("researcher", "Explain {topic}", id="explain")
    seen: list[ev.Event] = []
    ap.run(wf, inputs={"topic": "queues"}, sim_scale=0, observers=[seen.append])
    assert not [e for e in seen if isinstance(e, ev.NodeRequest)]
    seen.clear()
    result = ap.run(
        wf, inputs={"topic": "queues"}, sim_scale=0, observers=[seen.append], record_requests=True
    )
    (request,) = [e for e in seen if isinstance(e, ev.NodeRequest)]
    assert (request.node_id, request.attempt) == ("explain", 1)
    assert request.model == result.nodes["explain"].model
    assert all(isinstance(r, str) and isinstance(c, str) for r, c in request.messages)
    assert any("queues" in content for _, content in request.messages)
    started = next(e for e in seen if isinstance(e, ev.NodeStarted))
    assert started.t <= request.t  # announced after the attempt starts, before the answer


def test_the_runner_implements_the_planner_protocol() -> None:
    seen: list[RunControl] = []
    gated: list[str] = []

    def refuse_c(node_id: str) -> None:
        gated.append(node_id)
        if node_id == "c":
            raise ap.exceptions.BudgetExceededError("no budget for c")

    async def finish(node_id: str, answer: Any) -> Any:
        await asyncio.sleep(0)
        return f"{answer} (finished later)"

    def control(run: RunControl) -> None:
        assert isinstance(run, Run)
        seen.append(run)
        run.gate(refuse_c)
        run.finish_later("a", finish)

    wf = ap.Workflow("control")
    wf.function(lambda: "A", id="a")
    wf.function(lambda a: a + "!", id="b", depends_on=["a"])
    wf.function(lambda: "C", id="c")
    result = asyncio.run(arun(wf, control=control, error_policy="continue"))
    assert sorted(gated) == ["a", "b", "c"]
    assert result.nodes["a"].output == "A (finished later)"
    assert result.nodes["b"].output == "A (finished later)!"
    assert result.nodes["c"].status == "failed"
    assert "no budget" in (result.nodes["c"].error or "")
    (run,) = seen
    assert run.node("a").status == "succeeded"
    assert run.tokens_used() == 0
    assert run.workflow.deps["b"] == ("a",)


def test_a_record_without_its_output_is_the_full_record_minus_the_output() -> None:
    for node in _mixed_run().nodes.values():
        full = node.to_dict()
        del full["output"]
        lean = node.to_dict(output=False)
        assert list(lean) == list(full)  # same fields, same order: the stored text is the same
        assert lean == full


def test_a_run_raises_the_young_gc_threshold_only_while_it_goes() -> None:
    import gc

    from agentplex.engine.runner import RUN_GC_GEN0

    seen: list[int] = []

    def probe() -> int:
        seen.append(gc.get_threshold()[0])
        return 0

    wf = ap.Workflow("gc")
    wf.function(probe)
    saved = gc.get_threshold()
    try:
        gc.set_threshold(700, saved[1], saved[2])
        assert ap.run(wf).ok
        assert gc.get_threshold()[0] == 700  # restored after the run
        gc.set_threshold(RUN_GC_GEN0 * 2, saved[1], saved[2])  # a higher one is left alone
        assert ap.run(wf).ok
        assert gc.get_threshold()[0] == RUN_GC_GEN0 * 2
    finally:
        gc.set_threshold(*saved)
    assert seen == [RUN_GC_GEN0, RUN_GC_GEN0 * 2]


def test_nested_runs_restore_the_gc_threshold_after_the_last() -> None:
    import gc

    from agentplex.engine.runner import RUN_GC_GEN0, relaxed_gc

    saved = gc.get_threshold()
    try:
        gc.set_threshold(700, saved[1], saved[2])
        with relaxed_gc():
            with relaxed_gc():
                assert gc.get_threshold()[0] == RUN_GC_GEN0
            assert gc.get_threshold()[0] == RUN_GC_GEN0  # the outer run still goes
        assert gc.get_threshold()[0] == 700
    finally:
        gc.set_threshold(*saved)


def test_a_stored_run_without_observers_builds_no_lifecycle_events_yet_records_the_rest() -> None:
    from agentplex.store import MemoryStore

    def ok() -> int:
        return 1

    def broken(ok: int) -> int:
        raise ValueError("no")

    def after(broken: int) -> int:
        return broken

    wf = ap.Workflow("rows")
    wf.function(ok)
    wf.function(broken, depends_on=["ok"])
    wf.function(after, depends_on=["broken"])
    store = MemoryStore()
    result = ap.run(wf, store=store, error_policy="continue")
    kinds = [row[2] for row in store.events[result.run_id]]
    assert kinds == ["RunStarted", "NodeFailed", "NodeSkipped", "RunFinished"]

    # An observer added while the run goes (the planner's observe) gets every event.
    seen: list[str] = []

    def attach(control: RunControl) -> None:
        control.observe(lambda event: seen.append(type(event).__name__))

    asyncio.run(arun(wf, store=MemoryStore(), error_policy="continue", control=attach))
    assert {"NodeReady", "NodeStarted", "NodeFinished", "NodeFailed", "NodeSkipped"} <= set(seen)
