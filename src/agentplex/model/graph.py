"""Pure DAG algorithms over a dependency mapping.

A graph here is a mapping ``{node: dependencies}`` whose key order is the
declaration order; every dependency is itself a key. Ties are always broken by
declaration order so that every result is deterministic. Nothing in this module
does I/O or knows about workflows; the scheduler and the reports build on it.
"""

from __future__ import annotations

import graphlib
import heapq
from collections.abc import Iterable, Mapping, Sequence

Deps = Mapping[str, Sequence[str]]


def find_cycle(deps: Deps) -> list[str] | None:
    """Return one cycle, or ``None``.

    The cycle is a list in which each node depends on the next and the first
    node is repeated last: ``["a", "b", "a"]`` means a depends on b, b on a.
    """
    sorter = graphlib.TopologicalSorter(deps)
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        # graphlib lists each node before the node that depends on it.
        return list(reversed(exc.args[1]))
    return None


def successors(deps: Deps) -> dict[str, list[str]]:
    """Return ``{node: nodes that depend on it}``, each list in declaration order."""
    succ: dict[str, list[str]] = {node: [] for node in deps}
    for node, node_deps in deps.items():
        for dep in node_deps:
            succ[dep].append(node)
    return succ


def topological_order(deps: Deps) -> list[str]:
    """Return the nodes in dependency order, earliest-declared first among equals.

    Raises:
        graphlib.CycleError: if the graph has a cycle.
    """
    index = {node: i for i, node in enumerate(deps)}
    names = list(deps)
    pending = {node: len(set(node_deps)) for node, node_deps in deps.items()}
    succ = successors(deps)
    heap = [index[node] for node, count in pending.items() if count == 0]
    heapq.heapify(heap)
    order: list[str] = []
    while heap:
        node = names[heapq.heappop(heap)]
        order.append(node)
        for child in dict.fromkeys(succ[node]):
            pending[child] -= 1
            if pending[child] == 0:
                heapq.heappush(heap, index[child])
    if len(order) != len(names):
        raise graphlib.CycleError("graph has a cycle", find_cycle(deps))
    return order


def depths(deps: Deps) -> dict[str, int]:
    """Return each node's depth: 0 without dependencies, else 1 + deepest dependency."""
    depth: dict[str, int] = {}
    for node in topological_order(deps):
        depth[node] = 1 + max((depth[d] for d in deps[node]), default=-1)
    return depth


def layers(deps: Deps) -> list[list[str]]:
    """Group nodes into topological generations (the layers of layered execution)."""
    grouped: list[list[str]] = []
    depth = depths(deps)
    for node in deps:  # declaration order within each layer
        level = depth[node]
        while len(grouped) <= level:
            grouped.append([])
        grouped[level].append(node)
    return grouped


def critical_path(
    deps: Deps, durations: Mapping[str, float], *, order: Sequence[str] | None = None
) -> tuple[float, list[str]]:
    """Return the length and the nodes of the longest chain of dependent durations.

    Nodes missing from ``durations`` count as zero. With several chains of equal
    length the earliest-declared one wins. ``order``, a topological order the
    caller already has, saves computing one.
    """
    finish: dict[str, float] = {}
    via: dict[str, str | None] = {}
    for node in order if order is not None else topological_order(deps):
        best: str | None = None
        for dep in deps[node]:
            if best is None or finish[dep] > finish[best]:
                best = dep
        start = finish[best] if best is not None else 0.0
        finish[node] = start + durations.get(node, 0.0)
        via[node] = best
    if not finish:
        return 0.0, []
    end = max(finish, key=lambda n: finish[n])  # first maximum in topological order
    path = [end]
    while (prev := via[path[-1]]) is not None:
        path.append(prev)
    path.reverse()
    return finish[end], path


def descendants(deps: Deps, roots: Iterable[str]) -> set[str]:
    """Return every node that transitively depends on any of ``roots`` (roots excluded)."""
    succ = successors(deps)
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        for child in succ[stack.pop()]:
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return seen
