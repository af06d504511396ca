"""A plan is untrusted input: check it, repair what is safe to repair, refuse the rest.

Lenient, as the meta-agent design is: a dependency that is not an earlier
agent's index (out of range, itself, not a number) is dropped with a warning,
and so is a dependency on a later agent that is part of a cycle (the plan
format lists agents in dependency order; small models write cycles often, and
asking again rarely helps them). A dependency on a later agent that makes no
cycle is kept: the plan merely lists agents out of order. Everything else
that makes a plan unusable is an error, worded for the coordinator to fix: an
empty plan, more agents than the budget allows, an unknown role or tool, an
agent asking to run code (a function, an import, a shell command: never
allowed in a plan), or a task missing.
Values quoted in messages are cut short (:func:`quote`), since every message
goes back to the coordinator in a repair prompt.

:func:`check_agent` is the same check for one agent as it streams in, so a
streamed agent is only started if the whole plan could not refuse it later
for a reason of its own.
"""

from __future__ import annotations

import dataclasses
import reprlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentplex.files.plan import CODE_KEYS
from agentplex.model.roles import RoleLibrary, normalize_role

_QUOTE = reprlib.Repr()
_QUOTE.maxstring = _QUOTE.maxother = 80
_QUOTE.maxlist = _QUOTE.maxdict = 8
_QUOTE.maxlevel = 3


def quote(value: Any) -> str:
    """``repr(value)``, bounded in length and depth (plans are untrusted and may be huge)."""
    return _QUOTE.repr(value)


@dataclass(frozen=True, slots=True)
class PlannedAgent:
    """One agent of a checked plan."""

    index: int
    role: str
    task: str
    depends_on: tuple[int, ...]
    tools: tuple[str, ...] = ()
    delegate: bool = False


@dataclass(slots=True)
class CheckedPlan:
    """The agents that can run, what was repaired, and what makes the plan unusable."""

    agents: list[PlannedAgent] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and bool(self.agents)


def check_agent(
    index: int,
    entry: Any,
    count: int | None,
    roles: RoleLibrary,
    tools: Collection[str],
    warnings: list[str],
) -> tuple[PlannedAgent | None, list[str]]:
    """Check agent ``index`` of a plan of ``count`` agents (``None``: still streaming).

    Returns the agent (or None) and its errors; dropped dependencies go to ``warnings``.
    """
    where = f"agent {index}"
    if not isinstance(entry, Mapping):
        return None, [f"{where} must be a JSON object, got {type(entry).__name__}."]
    errors: list[str] = []
    code = [key for key in CODE_KEYS if key in entry]
    if code:
        errors.append(
            f"{where} asks to run code ({code[0]!r}); a plan may only use the listed roles."
        )
    role = entry.get("role")
    if not isinstance(role, str) or not role.strip():
        errors.append(f'{where} needs a "role".')
    elif normalize_role(role) not in roles:
        errors.append(
            f"{where} has unknown role {quote(role)}; use one of: {', '.join(sorted(roles))}."
        )
    task = entry.get("task")
    if not isinstance(task, str) or not task.strip():
        errors.append(f'{where} needs a non-empty "task".')
    asked = entry.get("tools") or []
    if not isinstance(asked, list) or not all(isinstance(t, str) for t in asked):
        errors.append(f'{where}: "tools" must be a list of tool names.')
        asked = []
    unknown = [t for t in asked if t not in tools]
    if unknown:
        known = ", ".join(sorted(tools)) or "none are registered"
        errors.append(f"{where} asks for unknown tool(s) {quote(unknown)}; tools: {known}.")
    if errors:
        return None, errors
    raw = entry.get("depends_on") or []
    deps: list[int] = []
    for dep in raw if isinstance(raw, list) else [raw]:
        if isinstance(dep, bool) or not isinstance(dep, int):
            problem = f"dependency {quote(dep)}, which is not an agent index"
        elif dep == index:
            problem = "a dependency on itself"
        elif dep < 0 or (count is not None and dep >= count):
            problem = f"dependency {dep}, out of range"
        else:
            if dep not in deps:
                deps.append(dep)
            continue
        warnings.append(f"{where} ({role}): dropped {problem}.")
    assert isinstance(role, str)
    assert isinstance(task, str)
    return (
        PlannedAgent(
            index,
            normalize_role(role),
            task.strip(),
            tuple(deps),
            tuple(asked),
            entry.get("delegate") is True,
        ),
        [],
    )


def check_plan(
    data: Any,
    roles: RoleLibrary,
    tools: Collection[str] = (),
    *,
    max_agents: int,
    fallback: bool = False,
) -> CheckedPlan:
    """Check a whole plan; see the module docstring.

    With ``fallback`` (the declared-order fallback) an unusable plan still
    runs what it safely can: agents with errors are dropped, and the rest
    run one after another in the order they were declared.
    """
    plan = CheckedPlan()
    raw = data.get("agents") if isinstance(data, Mapping) else None
    if not isinstance(raw, list) or not raw:
        plan.errors.append('the plan has no agents: "agents" must be a non-empty list.')
        return plan
    if len(raw) > max_agents:
        plan.errors.append(
            f"the plan has {len(raw):,} agents; at most {max_agents} are allowed. "
            "Plan fewer, broader agents."
        )
        if not fallback:
            return plan
        raw = raw[:max_agents]
    for index, entry in enumerate(raw):
        agent, errors = check_agent(index, entry, len(raw), roles, tools, plan.warnings)
        plan.errors.extend(errors)
        if agent is not None:
            plan.agents.append(agent)
    if not plan.errors:
        _break_cycles(plan)
    if plan.errors and fallback:
        return _declared_order(plan)
    return plan


def _break_cycles(plan: CheckedPlan) -> None:
    """Drop each dependency on a later agent of the same cycle, with a warning.

    What is left is acyclic: within a strongly connected component only
    dependencies on earlier agents remain, which cannot form a cycle, and the
    components themselves never do. Linear in agents and dependencies.
    """
    component = _components({a.index: a.depends_on for a in plan.agents})
    for position, agent in enumerate(plan.agents):
        own = component[agent.index]
        dropped = [d for d in agent.depends_on if d > agent.index and component[d] == own]
        if not dropped:
            continue
        plan.agents[position] = dataclasses.replace(
            agent, depends_on=tuple(d for d in agent.depends_on if d not in dropped)
        )
        for dep in dropped:
            plan.warnings.append(
                f"agent {agent.index} ({agent.role}): dropped dependency {dep}, a later agent "
                "that depends on it in turn (a cycle); an agent may only depend on earlier ones."
            )


def _components(graph: Mapping[int, Sequence[int]]) -> dict[int, int]:
    """Each node's strongly connected component (Tarjan's algorithm, without recursion)."""
    order: dict[int, int] = {}
    low: dict[int, int] = {}
    component: dict[int, int] = {}
    stack: list[int] = []
    for root in graph:
        if root in order:
            continue
        work = [(root, iter(graph[root]))]
        order[root] = low[root] = len(order)
        stack.append(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in order:
                    order[nxt] = low[nxt] = len(order)
                    stack.append(nxt)
                    work.append((nxt, iter(graph[nxt])))
                    break
                if nxt not in component:  # on the stack: same component as node
                    low[node] = min(low[node], order[nxt])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == order[node]:
                    while True:
                        member = stack.pop()
                        component[member] = node
                        if member == node:
                            break
    return component


def _declared_order(plan: CheckedPlan) -> CheckedPlan:
    """Run what can run, one agent after another in declared order."""
    chained = CheckedPlan(warnings=[*plan.warnings])
    chained.warnings += [f"fallback: {e}" for e in plan.errors]
    chained.warnings.append(
        f"the plan was unusable; running its {len(plan.agents)} valid agent(s) in declared "
        "order (the declared-order fallback)."
    )
    previous: int | None = None
    for agent in plan.agents:
        deps = (previous,) if previous is not None else ()
        chained.agents.append(
            PlannedAgent(agent.index, agent.role, agent.task, deps, agent.tools, False)
        )
        previous = agent.index
    if not chained.agents:
        chained.errors = list(plan.errors)
    return chained
