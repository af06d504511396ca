from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentplex.engine.scheduler import STRATEGIES, Scheduler
from agentplex.exceptions import ConfigError

DIAMOND = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}


def drain(s: Scheduler, limit: int | None = None) -> list[list[str]]:
    s.start()
    rounds = []
    while s.is_active():
        batch = s.get_ready(limit)
        assert batch, "an active scheduler with nothing running must have ready work"
        rounds.append(batch)
        for node in batch:
            s.done(node)
    return rounds


def test_dataflow_node_is_ready_when_its_own_deps_are_done() -> None:
    s = Scheduler({"slow": [], "fast": [], "after_fast": ["fast"]})
    assert s.start() == ["slow", "fast"]
    assert s.get_ready() == ["fast", "slow"]  # fast unblocks more remaining work
    assert s.done("fast") == ["after_fast"]  # does not wait for "slow"


def test_layers_wait_for_the_whole_previous_layer() -> None:
    s = Scheduler({"slow": [], "fast": [], "after_fast": ["fast"]}, strategy="layers")
    s.start()
    s.get_ready()
    assert s.done("fast") == []
    assert s.done("slow") == ["after_fast"]


def test_sequential_hands_out_one_node_at_a_time_in_order() -> None:
    s = Scheduler(DIAMOND, strategy="sequential")
    assert drain(s, limit=10) == [["a"], ["b"], ["c"], ["d"]]


def test_ready_nodes_come_out_longest_remaining_path_first() -> None:
    deps = {"short": [], "long": [], "long2": ["long"], "long3": ["long2"]}
    s = Scheduler(deps, estimates={"short": 1, "long": 1, "long2": 1, "long3": 1})
    s.start()
    assert s.get_ready(1) == ["long"]


def test_ties_break_by_declaration_order() -> None:
    s = Scheduler({"x": [], "y": [], "z": []})
    s.start()
    assert s.get_ready() == ["x", "y", "z"]


def test_fail_skips_every_descendant() -> None:
    s = Scheduler({"a": [], "b": ["a"], "c": ["b"], "other": []})
    s.start()
    s.get_ready()
    assert sorted(s.fail("a")) == ["b", "c"]
    assert s.state("c") == "skipped"
    s.done("other")
    assert not s.is_active()


def test_cancel_pending_cancels_only_unstarted_nodes() -> None:
    s = Scheduler(DIAMOND)
    s.start()
    s.get_ready()
    assert s.cancel_pending() == ["b", "c", "d"]
    assert s.state("a") == "running"


def test_ending_a_node_that_is_not_running_is_refused() -> None:
    s = Scheduler(DIAMOND)
    s.start()
    with pytest.raises(RuntimeError, match="not running"):
        s.done("b")


def test_start_twice_is_refused() -> None:
    s = Scheduler(DIAMOND)
    s.start()
    with pytest.raises(RuntimeError, match="already"):
        s.start()


def test_get_ready_before_start_is_refused() -> None:
    with pytest.raises(RuntimeError, match="start"):
        Scheduler(DIAMOND).get_ready()


def test_unknown_strategy_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="dataflow, layers, sequential"):
        Scheduler(DIAMOND, strategy="fastest")  # type: ignore[arg-type]


def test_mark_done_resumes_from_finished_nodes() -> None:
    s = Scheduler(DIAMOND)
    s.mark_done(["a", "b"])
    assert s.start() == ["c"]


def test_statistics_count_states() -> None:
    s = Scheduler(DIAMOND)
    s.start()
    s.get_ready()
    stats = s.statistics()
    assert (stats.running, stats.waiting) == (1, 3)


@st.composite
def dags(draw: st.DrawFn) -> dict[str, list[str]]:
    n = draw(st.integers(min_value=1, max_value=30))
    deps: dict[str, list[str]] = {}
    for i in range(n):
        earlier = [f"n{j}" for j in range(i)]
        chosen = draw(st.lists(st.sampled_from(earlier), max_size=4)) if earlier else []
        deps[f"n{i}"] = chosen
    # Shuffle declaration order so edges also point forward.
    order = draw(st.permutations(list(deps)))
    return {k: deps[k] for k in order}


@settings(max_examples=150, deadline=None)
@given(dags(), st.sampled_from(STRATEGIES), st.integers(min_value=1, max_value=5), st.randoms())
def test_every_node_runs_once_after_its_deps_within_the_limit(deps, strategy, limit, rnd) -> None:
    s = Scheduler(deps, strategy=strategy)
    s.start()
    running: list[str] = []
    finished: list[str] = []
    while s.is_active():
        running += s.get_ready(limit - len(running))
        assert 0 < len(running) <= limit
        if strategy == "sequential":
            assert len(running) == 1
        node = running.pop(rnd.randrange(len(running)))  # completions in any order
        for dep in deps[node]:
            assert dep in finished
        finished.append(node)
        s.done(node)
    assert sorted(finished) == sorted(deps)


@settings(max_examples=100, deadline=None)
@given(dags(), st.sampled_from(STRATEGIES), st.data())
def test_a_failure_skips_exactly_its_descendants(deps, strategy, data) -> None:
    from agentplex.model.graph import descendants

    s = Scheduler(deps, strategy=strategy)
    s.start()
    victim = data.draw(st.sampled_from(list(deps)))
    ended: dict[str, str] = {}
    while s.is_active():
        batch = s.get_ready()
        assert batch
        for node in batch:
            if node == victim:
                for skipped in s.fail(node):
                    ended[skipped] = "skipped"
                ended[node] = "failed"
            else:
                s.done(node)
                ended[node] = "succeeded"
    assert {n for n, st_ in ended.items() if st_ == "skipped"} == descendants(deps, [victim])
    assert len(ended) == len(deps)


@settings(max_examples=150, deadline=None)
@given(dags(), st.data())
def test_integer_critical_path_agrees_with_the_graph_module(deps, data) -> None:
    from agentplex.model.graph import critical_path

    durations = {
        node: data.draw(st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.5]))
        for node in deps
        if data.draw(st.booleans())
    }
    fast_length, fast_path = Scheduler(deps).critical_path(durations)
    length, _path = critical_path(deps, durations)
    assert fast_length == pytest.approx(length)
    # the path is a chain of dependencies whose durations add up to the length
    for node, nxt in itertools.pairwise(fast_path):
        assert node in deps[nxt]
    assert sum(durations.get(n, 0.0) for n in fast_path) == pytest.approx(fast_length)


# -- a graph that grows while it runs (streamed plans, delegation) ---------------------


def test_nodes_added_while_running_start_when_their_deps_are_done() -> None:
    s = Scheduler({"plan": []})
    assert s.start() == ["plan"]
    assert s.get_ready() == ["plan"]
    assert s.add("a", []) == "ready"  # no deps: ready at once, the planner still running
    assert s.add("b", ["a"]) == "waiting"
    assert s.get_ready() == ["a"]
    assert s.done("a") == ["b"]
    assert s.add("c", ["a"]) == "ready"  # its dep already succeeded
    assert sorted(s.get_ready()) == ["b", "c"]
    for node in ("b", "c", "plan"):
        s.done(node)
    assert not s.is_active()
    assert s.critical_path({"plan": 1.0, "a": 2.0, "b": 3.0, "c": 1.0}) == (5.0, ["a", "b"])


def test_a_node_added_after_its_dep_failed_is_skipped() -> None:
    s = Scheduler({"plan": [], "a": []})
    s.start()
    s.get_ready()
    s.fail("a")
    assert s.add("b", ["a"]) == "skipped"
    assert s.state("b") == "skipped"
    s.done("plan")
    assert not s.is_active()


def test_adding_refuses_unknown_deps_duplicates_and_layers() -> None:
    s = Scheduler({"a": []})
    s.start()
    with pytest.raises(ValueError, match="unknown"):
        s.add("b", ["zzz"])
    with pytest.raises(ValueError, match="already"):
        s.add("a", [])
    layered = Scheduler({"a": []}, strategy="layers")
    layered.start()
    with pytest.raises(ConfigError, match="layers"):
        layered.add("b", [])
