from __future__ import annotations

import graphlib
import itertools

import pytest

from agentplex.model import graph

DIAMOND = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}


def test_layers_group_by_depth_in_declaration_order() -> None:
    assert graph.layers(DIAMOND) == [["a"], ["b", "c"], ["d"]]


def test_topological_order_is_declaration_stable() -> None:
    deps = {"x": ["z"], "y": [], "z": []}
    assert graph.topological_order(deps) == ["y", "z", "x"]


def test_topological_order_raises_on_cycle() -> None:
    with pytest.raises(graphlib.CycleError):
        graph.topological_order({"a": ["b"], "b": ["a"]})


def test_find_cycle_lists_each_node_depending_on_the_next() -> None:
    cycle = graph.find_cycle({"a": ["b"], "b": ["c"], "c": ["a"], "d": []})
    assert cycle is not None
    assert cycle[0] == cycle[-1]
    deps = {"a": ["b"], "b": ["c"], "c": ["a"]}
    for node, nxt in itertools.pairwise(cycle):
        assert nxt in deps[node]


def test_find_cycle_is_none_for_a_dag() -> None:
    assert graph.find_cycle(DIAMOND) is None


def test_critical_path_follows_the_longest_weighted_chain() -> None:
    length, path = graph.critical_path(DIAMOND, {"a": 1, "b": 5, "c": 2, "d": 1})
    assert length == 7
    assert path == ["a", "b", "d"]


def test_critical_path_of_empty_graph() -> None:
    assert graph.critical_path({}, {}) == (0.0, [])


def test_descendants() -> None:
    assert graph.descendants(DIAMOND, ["b"]) == {"d"}
    assert graph.descendants(DIAMOND, ["a"]) == {"b", "c", "d"}
