from __future__ import annotations

import asyncio
import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agentplex as ap
from agentplex.events import NodeRetrying, RunFinished
from agentplex.model.workflow import FunctionNode, MapNode


def pinned(latencies: dict[str, float], deps: dict[str, list[str]]) -> ap.Workflow:
    wf = ap.Workflow("pinned")
    for node_id, latency in latencies.items():
        wf.agent(
            "researcher",
            f"Work on {node_id}",
            id=node_id,
            depends_on=deps.get(node_id, []),
            latency_s=latency,
        )
    return wf


def test_fast_branch_does_not_wait_for_slow_sibling() -> None:
    wf = pinned(
        {"slow": 0.5, "fast": 0.05, "after_fast": 0.05, "after_slow": 0.05},
        {"after_fast": ["fast"], "after_slow": ["slow"]},
    )
    result = ap.run(wf, sim_scale=1.0)
    assert result.ok
    nodes = result.nodes
    # after_fast starts right after fast, long before slow ends.
    assert nodes["after_fast"].started_s < nodes["slow"].finished_s - 0.3
    # and layers would have made it wait for slow:
    layered = ap.run(wf, sim_scale=1.0, strategy="layers")
    assert layered.nodes["after_fast"].started_s >= layered.nodes["slow"].finished_s


def test_dataflow_wall_time_is_close_to_the_critical_path() -> None:
    wf = pinned(
        {"a": 0.3, "b": 0.1, "c": 0.1, "d": 0.1},
        {"c": ["b"], "d": ["c"]},
    )
    result = ap.run(wf, sim_scale=1.0)
    assert result.critical_path == ("a",) or result.critical_path == ("b", "c", "d")
    assert result.wall_s < result.sequential_s
    assert result.efficiency > 0.5  # loose: timing belongs in bench/, this only checks sanity


def test_python_api_example_from_the_readme() -> None:
    wf = ap.Workflow("compare")
    py = wf.agent("researcher", "Research Python web frameworks for {query}")
    rs = wf.agent("researcher", "Research Rust web frameworks for {query}")
    cmp = wf.agent("analyzer", "Compare the findings", depends_on=[py, rs], id="compare")

    @wf.step(depends_on=[cmp])
    def word_count(compare: str) -> int:
        return len(compare.split())

    result = ap.run(wf, inputs={"query": "web backends"}, max_concurrency=8)
    assert result.ok
    assert result.outputs["word_count"] == len(result.outputs["compare"].split())
    assert "researcher" in result.outputs["compare"]  # the labelled context reached the analyzer
    assert result.speedup > 1.0


@pytest.mark.parametrize("example", ["compare_languages", "business_plan", "software_architecture"])
def test_outputs_are_identical_under_every_strategy_and_concurrency(examples, example) -> None:
    wf = ap.load_workflow(examples / f"{example}.yaml").compile()
    outputs = []
    for strategy, limit in [("dataflow", 16), ("dataflow", 2), ("layers", 3), ("sequential", 1)]:
        result = ap.run(wf, strategy=strategy, max_concurrency=limit)
        assert result.ok
        assert result.strategy == strategy
        outputs.append(result.outputs)
    assert all(o == outputs[0] for o in outputs)


def test_strategy_comes_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("AGENTPLEX_STRATEGY", "sequential")
    result = ap.run(pinned({"a": 0, "b": 0}, {}))
    assert result.strategy == "sequential"
    monkeypatch.setenv("AGENTPLEX_STRATEGY", "warp")
    with pytest.raises(ap.exceptions.ConfigError, match="AGENTPLEX_STRATEGY"):
        ap.run(pinned({"a": 0}, {}))


def test_concurrency_limit_is_never_exceeded() -> None:
    live = 0
    peak = 0

    async def work() -> None:
        nonlocal live, peak
        live += 1
        peak = max(peak, live)
        await asyncio.sleep(0.01)
        live -= 1

    wf = ap.Workflow("wide")
    for i in range(20):
        wf.function(work, id=f"w{i}")
    result = ap.run(wf, max_concurrency=3)
    assert result.ok
    assert peak == 3


def test_fail_fast_cancels_running_work_and_keeps_finished_outputs() -> None:
    async def boom() -> None:
        await asyncio.sleep(0.05)
        raise ValueError("bad data")

    async def slow() -> str:
        await asyncio.sleep(5)
        return "never"

    async def quick() -> str:
        return "kept"

    wf = ap.Workflow("ff")
    wf.function(quick)
    wf.function(boom)
    wf.function(slow)
    wf.function(quick, id="after", depends_on=["slow"])
    started = time.perf_counter()
    result = ap.run(wf)
    assert time.perf_counter() - started < 2
    assert result.status == "failed"
    statuses = {n: r.status for n, r in result.nodes.items()}
    assert statuses == {
        "quick": "succeeded",
        "boom": "failed",
        "slow": "cancelled",
        "after": "cancelled",
    }
    assert result.outputs == {"quick": "kept"}
    assert result.nodes["boom"].error == "ValueError: bad data"
    with pytest.raises(ap.exceptions.RunFailedError, match="boom"):
        result.raise_for_status()


def test_continue_policy_skips_only_dependents_of_the_failure() -> None:
    def boom() -> None:
        raise RuntimeError("nope")

    def ok() -> int:
        return 1

    wf = ap.Workflow("cont")
    wf.function(boom)
    wf.function(ok, id="child", depends_on=["boom"])
    wf.function(ok, id="grandchild", depends_on=["child"])
    wf.function(ok, id="independent")
    wf.function(ok, id="after_independent", depends_on=["independent"])
    result = ap.run(wf, error_policy="continue")
    statuses = {n: r.status for n, r in result.nodes.items()}
    assert statuses == {
        "boom": "failed",
        "child": "skipped",
        "grandchild": "skipped",
        "independent": "succeeded",
        "after_independent": "succeeded",
    }
    assert result.status == "failed"


def test_retryable_errors_are_retried_with_backoff_then_succeed() -> None:
    calls = 0

    def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ap.exceptions.RetryableError("try again")
        return "ok"

    delays: list[float] = []

    async def fake_sleep(delay: float) -> None:
        delays.append(delay)

    events: list[object] = []
    wf = ap.Workflow("retry")
    wf.function(flaky, retries=3)
    result = ap.run(
        wf, sleep=fake_sleep, rng=random.Random(1), observers=[events.append], backoff_base_s=1.0
    )
    assert result.ok
    assert result.nodes["flaky"].attempts == 3
    assert len(delays) == 2
    assert 0 <= delays[0] <= 1.0
    assert 0 <= delays[1] <= 2.0  # exponential ceiling, full jitter
    assert [e.attempt for e in events if isinstance(e, NodeRetrying)] == [1, 2]


def test_retry_after_sets_the_backoff_floor() -> None:
    calls = 0

    def limited() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ap.exceptions.ProviderError(
                "x", "slow down", retryable=True, status=429, retry_after_s=7
            )
        return "ok"

    delays: list[float] = []

    async def fake_sleep(delay: float) -> None:
        delays.append(delay)

    wf = ap.Workflow("ra")
    wf.function(limited)
    assert ap.run(wf, sleep=fake_sleep).ok
    assert delays == [7]


def test_non_retryable_errors_fail_at_once() -> None:
    calls = 0

    def broken() -> None:
        nonlocal calls
        calls += 1
        raise KeyError("missing")

    wf = ap.Workflow("nr")
    wf.function(broken, retries=5)
    result = ap.run(wf)
    assert calls == 1
    assert result.nodes["broken"].error_type == "KeyError"


def test_retry_on_makes_other_exception_types_retryable() -> None:
    calls = 0

    def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("reset")
        return "ok"

    async def no_sleep(_: float) -> None:
        return None

    wf = ap.Workflow("ro")
    wf.function(flaky, retry_on=[ConnectionError])
    assert ap.run(wf, sleep=no_sleep).ok


def test_node_timeout_fails_the_node_with_a_clear_error() -> None:
    async def hang() -> None:
        await asyncio.sleep(10)

    wf = ap.Workflow("to")
    wf.function(hang, timeout_s=0.05, retries=1)

    async def no_sleep(_: float) -> None:
        return None

    result = ap.run(wf, sleep=no_sleep)
    node = result.nodes["hang"]
    assert node.status == "failed"
    assert node.attempts == 2
    assert "timed out after 0.05s" in node.error


def test_sim_retry_does_not_hold_a_slot_and_succeeds() -> None:
    wf = ap.Workflow("simretry")
    wf.agent("researcher", "Flaky call", id="flaky", sim_fail_first=2)
    result = ap.run(wf, backoff_base_s=0.001)
    assert result.ok
    assert result.nodes["flaky"].attempts == 3


def test_map_fans_out_in_order_and_respects_the_limit() -> None:
    live = peak = 0

    def claims() -> list[str]:
        return [f"claim {i}" for i in range(8)]

    async def check(item: str, index: int) -> str:
        nonlocal live, peak
        live += 1
        peak = max(peak, live)
        await asyncio.sleep(0.01 * (8 - index))  # later items finish first
        live -= 1
        return item.upper()

    wf = ap.Workflow("map")
    wf.function(claims)
    wf.map("claims", fn=check, id="checked")
    result = ap.run(wf, max_concurrency=3)
    assert result.outputs["checked"] == [f"CLAIM {i}" for i in range(8)]
    assert peak == 3


def test_map_over_agent_text_runs_one_agent_per_bullet() -> None:
    wf = ap.Workflow("claims")
    src = wf.agent("researcher", "List claims about {topic}", id="source")
    wf.map(src, role="fact_checker", task="Check this claim: {item}", id="checks")
    result = ap.run(wf, inputs={"topic": "coffee"})
    assert result.ok
    bullets = [line[2:] for line in result.outputs["source"].splitlines() if line.startswith("- ")]
    assert len(result.outputs["checks"]) == len(bullets)
    assert bullets[0] in result.outputs["checks"][0]  # each check saw its own claim


def test_map_failure_cancels_remaining_items() -> None:
    started: list[int] = []

    def items() -> list[int]:
        return list(range(5))

    async def body(item: int) -> int:
        started.append(item)
        if item == 0:
            raise ValueError("first item is bad")
        await asyncio.sleep(5)
        return item

    wf = ap.Workflow("mapfail")
    wf.function(items)
    wf.map("items", fn=body, id="each")
    t0 = time.perf_counter()
    result = ap.run(wf, max_concurrency=5)
    assert time.perf_counter() - t0 < 2
    assert result.nodes["each"].status == "failed"
    assert "first item is bad" in result.nodes["each"].error


def test_fan_out_inside_a_node_uses_ctx_ask() -> None:
    wf = ap.Workflow("fan")

    @wf.step()
    async def survey(ctx: ap.NodeContext) -> list[str]:
        return await ap.fan_out(
            ctx.ask("researcher", f"Research {lang}") for lang in ("Go", "Rust", "Zig")
        )

    result = ap.run(wf)
    answers = result.outputs["survey"]
    assert [("Go" in a, "Rust" in a, "Zig" in a) for a in answers] == [
        (True, False, False),
        (False, True, False),
        (False, False, True),
    ]
    assert result.nodes["survey"].usage.output_tokens > 0


def test_fan_out_cancels_siblings_when_one_fails() -> None:
    cancelled: list[str] = []

    async def slow(name: str) -> str:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(name)
            raise
        return name

    async def bad() -> str:
        raise ValueError("tool failed")

    async def main() -> None:
        with pytest.raises(ExceptionGroup) as info:
            await ap.fan_out([slow("a"), bad(), slow("b")])
        assert info.group_contains(ValueError)

    asyncio.run(main())
    assert sorted(cancelled) == ["a", "b"]


def test_fan_out_limit_and_callables() -> None:
    live = peak = 0

    async def task(i: int) -> int:
        nonlocal live, peak
        live += 1
        peak = max(peak, live)
        await asyncio.sleep(0.005)
        live -= 1
        return i

    results = asyncio.run(ap.fan_out([lambda i=i: task(i) for i in range(6)], limit=2))
    assert results == list(range(6))
    assert peak == 2
    with pytest.raises(ValueError, match="limit"):
        asyncio.run(ap.fan_out([], limit=0))


def test_cancelling_a_run_reports_what_finished() -> None:
    async def quick() -> str:
        return "done"

    async def slow() -> str:
        await asyncio.sleep(10)
        return "never"

    wf = ap.Workflow("cancel")
    wf.function(quick)
    wf.function(slow)
    seen: list[RunFinished] = []

    async def main() -> None:
        task = asyncio.create_task(
            ap.arun(
                wf, observers=[lambda e: seen.append(e) if isinstance(e, RunFinished) else None]
            )
        )
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    (finished,) = seen
    assert finished.result.status == "cancelled"
    assert finished.result.outputs == {"quick": "done"}
    assert finished.result.nodes["slow"].status == "cancelled"


def test_events_follow_the_node_lifecycle() -> None:
    events: list[object] = []
    wf = pinned({"a": 0, "b": 0}, {"b": ["a"]})
    ap.run(wf, observers=[events.append])
    kinds = [(type(e).__name__, getattr(e, "node_id", None)) for e in events]
    assert kinds == [
        ("RunStarted", None),
        ("NodeReady", "a"),
        ("NodeStarted", "a"),
        ("NodeFinished", "a"),
        ("NodeReady", "b"),
        ("NodeStarted", "b"),
        ("NodeFinished", "b"),
        ("RunFinished", None),
    ]


def test_run_inside_an_event_loop_points_to_arun() -> None:
    async def main() -> None:
        with pytest.raises(RuntimeError, match="arun"):
            ap.run(pinned({"a": 0}, {}))

    asyncio.run(main())


def test_bad_options_fail_before_anything_runs() -> None:
    wf = pinned({"a": 0}, {})
    with pytest.raises(ap.exceptions.ConfigError, match="max_concurrency"):
        ap.run(wf, max_concurrency=0)
    with pytest.raises(ap.exceptions.ConfigError, match="provider:model"):
        ap.run(wf, model="gpt4")
    with pytest.raises(ap.exceptions.ConfigError, match="unknown provider"):
        ap.run(wf, model="nope:x")
    with pytest.raises(ap.exceptions.ConfigError, match="run options are"):
        ap.run(wf, max_concurency=3)
    with pytest.raises(ap.exceptions.ConfigError, match="error policy"):
        ap.run(wf, error_policy="ignore")


def test_missing_input_is_reported_with_the_flag_to_pass() -> None:
    wf = ap.Workflow("needs")
    wf.agent("researcher", "Research {topic}")
    with pytest.raises(ap.exceptions.ConfigError, match=r"--input topic=\.\.\."):
        ap.run(wf)


def test_cpu_bound_function_runs_in_a_process() -> None:
    from tests.helpers import pid_and_square

    wf = ap.Workflow("cpu")
    wf.function(pid_and_square, id="sq", cpu_bound=True)
    wf.function(lambda: 7, id="x", executor="inline")
    result = ap.run(wf)
    import os

    pid, value = result.outputs["sq"]
    assert value == 49
    assert pid != os.getpid()


@st.composite
def random_workflows(draw: st.DrawFn) -> dict[str, list[str]]:
    n = draw(st.integers(min_value=1, max_value=15))
    deps: dict[str, list[str]] = {}
    for i in range(n):
        earlier = [f"n{j}" for j in range(i)]
        deps[f"n{i}"] = (
            draw(st.lists(st.sampled_from(earlier), max_size=3, unique=True)) if earlier else []
        )
    return deps


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(random_workflows(), st.sampled_from(["dataflow", "layers", "sequential"]), st.integers(1, 4))
def test_runner_runs_each_node_once_after_deps_within_limit(deps, strategy, limit) -> None:
    live = 0
    peak = 0
    order: list[str] = []
    finished: set[str] = set()

    def make(node_id: str):
        async def body() -> str:
            nonlocal live, peak
            for dep in deps[node_id]:
                assert dep in finished
            live += 1
            peak = max(peak, live)
            order.append(node_id)
            await asyncio.sleep(0.001 * (hash(node_id) % 3))
            live -= 1
            finished.add(node_id)
            return node_id

        return body

    wf = ap.Workflow("prop")
    for node_id, node_deps in deps.items():
        wf.function(make(node_id), id=node_id, depends_on=node_deps)
    result = ap.run(wf, strategy=strategy, max_concurrency=limit)
    assert result.ok
    assert sorted(order) == sorted(deps)
    assert peak <= (1 if strategy == "sequential" else limit)


def limited(times: int, *, status: int = 429, retry_after_s: float | None = None) -> object:
    """A function that raises ``times`` rate limits (ProviderErrors of ``status``), then returns."""
    calls = 0

    def fn() -> str:
        nonlocal calls
        calls += 1
        if calls <= times:
            raise ap.exceptions.ProviderError(
                "x", "slow down", retryable=True, status=status, retry_after_s=retry_after_s
            )
        return "ok"

    return fn


async def no_wait(_: float) -> None:
    return None


def test_rate_limits_have_their_own_budget_and_every_attempt_shows() -> None:
    wf = ap.Workflow("rl")
    wf.function(limited(20), id="busy", retries=0)
    events: list[object] = []
    result = ap.run(wf, sleep=no_wait, observers=[events.append])
    assert result.ok
    assert result.nodes["busy"].attempts == 21
    assert [e.attempt for e in events if isinstance(e, NodeRetrying)] == list(range(1, 21))


def test_the_rate_limit_budget_ends_too() -> None:
    wf = ap.Workflow("rl")
    wf.function(limited(5, status=529), id="busy")
    result = ap.run(wf, sleep=no_wait, rate_limit_retries=2)
    node = result.nodes["busy"]
    assert node.status == "failed"
    assert node.attempts == 3
    assert "slow down" in (node.error or "")


def test_any_error_with_a_retry_after_counts_as_a_rate_limit() -> None:
    wf = ap.Workflow("rl")
    wf.function(limited(3, status=503, retry_after_s=0.5), id="busy", retries=0)
    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)

    assert ap.run(wf, sleep=sleep).ok
    assert delays == [0.5, 0.5, 0.5]  # the Retry-After is waited out as given


def test_a_5xx_without_retry_after_is_a_real_error() -> None:
    wf = ap.Workflow("rl")
    wf.function(limited(3, status=503), id="busy", retries=2)
    assert ap.run(wf, sleep=no_wait).nodes["busy"].status == "failed"


def test_each_budget_backs_off_from_its_own_count() -> None:
    calls = 0

    def mixed() -> str:
        nonlocal calls
        calls += 1
        if calls <= 3:
            raise ap.exceptions.ProviderError("x", "busy", retryable=True, status=429)
        if calls == 4:
            raise ap.exceptions.RetryableError("real")
        return "ok"

    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)

    wf = ap.Workflow("mixed")
    wf.function(mixed, retries=1)
    result = ap.run(wf, sleep=sleep, rng=random.Random(3), backoff_base_s=1.0)
    assert result.ok
    assert result.nodes["mixed"].attempts == 5
    assert delays[3] <= 1.0  # the first real error backs off from the base, not from 2 ** 3


def test_a_group_of_rate_limits_is_a_rate_limit() -> None:
    calls = 0

    async def asks() -> str:
        nonlocal calls
        calls += 1
        if calls <= 4:
            raise ExceptionGroup(
                "asks", [ap.exceptions.ProviderError("x", "busy", retryable=True, status=429)]
            )
        return "ok"

    wf = ap.Workflow("group")
    wf.function(asks, retries=0)
    assert ap.run(wf, sleep=no_wait).ok


def test_time_limits_default_for_model_calls_only() -> None:
    import math

    from agentplex.engine.attempts import time_limits
    from agentplex.engine.options import DEFAULT_TOTAL_TIMEOUT_S, RunOptions

    wf = ap.Workflow("limits")
    wf.agent("researcher", "x", id="agent")
    wf.function(lambda: ["a"], id="items")
    wf.map("items", role="fact_checker", task="Check {item}", id="agents_each")
    wf.map("items", fn=lambda item: item, id="functions_each")
    nodes = wf.compile().nodes
    defaults = RunOptions()
    assert time_limits(nodes["agent"], defaults) == (None, DEFAULT_TOTAL_TIMEOUT_S)
    assert time_limits(nodes["agents_each"], defaults) == (None, DEFAULT_TOTAL_TIMEOUT_S)
    assert time_limits(nodes["items"], defaults) == (None, None)
    assert time_limits(nodes["functions_each"], defaults) == (None, None)
    assert time_limits(nodes["items"], RunOptions(total_timeout_s=9)) == (None, 9)
    off = RunOptions(timeout_s=math.inf, total_timeout_s=math.inf)
    assert time_limits(nodes["agent"], off) == (None, None)
    off.check()  # math.inf is how a limit is turned off


def test_bad_budgets_are_config_errors() -> None:
    from agentplex.engine.options import RunOptions

    with pytest.raises(ap.exceptions.ConfigError, match="rate_limit_retries"):
        RunOptions(rate_limit_retries=-1).check()
    with pytest.raises(ap.exceptions.ConfigError, match="total_timeout_s"):
        RunOptions(total_timeout_s=0).check()


def test_a_map_past_max_items_fails_with_the_count_and_the_fix() -> None:
    def items() -> list[int]:
        return list(range(11))

    wf = ap.Workflow("m")
    wf.function(items)
    wf.add(
        MapNode(
            id="each",
            over="items",
            body=FunctionNode(id="body", fn=lambda item: item),
            depends_on=("items",),
            max_items=10,
        )
    )
    node = ap.run(wf).nodes["each"]
    assert node.status == "failed"
    assert "'items' gave 11 items to map over, more than the node's limit of 10" in (
        node.error or ""
    )
    assert "max_items: 11" in (node.error or "")


def test_max_items_must_be_a_whole_number_of_at_least_one() -> None:
    body = FunctionNode(id="body", fn=lambda item: item)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ap.exceptions.SchemaError, match="max_items"):
            MapNode(id="each", over="items", body=body, max_items=bad)  # type: ignore[arg-type]


def test_an_agents_default_total_limit_rides_on_its_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    import agentplex.engine.options

    monkeypatch.setattr(agentplex.engine.options, "DEFAULT_TOTAL_TIMEOUT_S", 0.3)
    wf = ap.Workflow("slow")
    wf.agent("researcher", "Take your time", id="slow", latency_s=30)
    result = ap.run(wf, sim_scale=1)
    node = result.nodes["slow"]
    assert node.status == "failed"
    assert node.attempts == 1  # the total ran out: not retried
    assert "total time limit of 0.3s" in (node.error or "")


class _Hungry:
    def dispatch(self) -> None:
        return None


def test_a_freed_slot_stays_with_its_run_only_when_nothing_else_goes_first() -> None:
    from agentplex.engine.slots import Slot, SlotPool

    pool = SlotPool(2)
    mine, other = _Hungry(), _Hungry()
    held = Slot(True)
    pool.busy = 2
    assert pool.keeps(held, mine, 0.0, -5.0, 0)  # nobody else waits
    assert not pool.keeps(Slot(False), mine, 0.0, -5.0, 0)  # no slot to hand on
    pool.want(mine, 0.0, -9.0, 0)  # its own (stale) entry does not outrank it
    assert pool.keeps(held, mine, 0.0, -5.0, 0)
    pool.want(other, 0.0, -7.0, 1)  # another run's more urgent work goes first
    assert not pool.keeps(held, mine, 0.0, -5.0, 0)
    assert pool.keeps(held, mine, 0.0, -8.0, 0)  # unless this run's is more urgent still
    loop = asyncio.new_event_loop()
    try:
        pool.waiters.append(loop.create_future())
        assert not pool.keeps(held, mine, 0.0, -8.0, 0)  # started work waiting goes first
    finally:
        loop.close()


def test_pop_ready_hands_out_what_get_ready_would() -> None:
    from agentplex.engine.scheduler import Scheduler

    deps: dict[str, list[str]] = {"a": [], "b": [], "c": ["a"], "d": ["a", "b"]}
    estimates = {"a": 3.0, "b": 1.0, "c": 1.0, "d": 5.0}
    one, other = (Scheduler(deps, estimates=estimates) for _ in range(2))
    one.start(), other.start()
    order: list[str] = []
    while one.ready_count:
        node = one.pop_ready()
        assert node is not None
        assert [node] == other.get_ready(1)
        order.append(node)
        one.done(node), other.done(node)
    assert order == ["a", "b", "d", "c"]  # longest remaining path first: a (8), b (6), d, c
    assert one.pop_ready() is None
    sequential = Scheduler(deps, strategy="sequential")
    sequential.start()
    first = sequential.pop_ready()
    assert first == "a"
    assert sequential.pop_ready() is None
    sequential.done(first)
    assert sequential.pop_ready() == "b"


def test_declaration_order_that_is_not_topological_still_schedules_by_dependencies() -> None:
    from agentplex.engine.scheduler import Scheduler

    # "late" is declared before the node it depends on: no shortcut may hand it out first.
    s = Scheduler({"late": ["early"], "early": []}, strategy="sequential")
    assert s.start() == ["early"]
    assert s.pop_ready() == "early"
    assert s.done("early") == ["late"]
