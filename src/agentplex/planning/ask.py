"""``ask`` and ``plan``: a question in, a parallel plan (and its answer) out.

    result = ap.ask("Compare Python, Rust and Go for backend development")
    print(result.answer)           # the plan's final results
    print(result.plan["agents"])   # what the coordinator planned, with node ids
    result.run                     # the RunResult: every node, timings, speedup, cost

The run is an ordinary agentplex run (same options, observers, store), whose
first node, ``coordinator``, plans and grows it; see
:mod:`agentplex.planning.controller` for the policy.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agentplex import events as ev
from agentplex.exceptions import ConfigError
from agentplex.model.roles import Role, RoleLibrary
from agentplex.model.workflow import Workflow
from agentplex.planning.controller import (
    COORDINATOR,
    Planner,
    PlanSettings,
    question_node,
)
from agentplex.result import RunResult, Usage


@dataclass(frozen=True, slots=True)
class AskResult:
    """A planned run: the question, the plan, the answer and the run itself."""

    question: str
    answer: str
    plan: Mapping[str, Any] | None
    """The accepted plan (meta-agent format, each agent with its ``node``); None if none was."""
    run: RunResult
    attempts: tuple[Mapping[str, Any], ...] = ()
    """Each coordinator answer: its ``errors`` (an accepted plan's are empty), its
    ``usage`` (None for a call that failed) and its ``finish_reason``."""
    warnings: tuple[str, ...] = ()
    """Repairs and bounds reached while planning (dropped dependencies, depth...)."""
    planning: Mapping[str, Any] = field(default_factory=dict)
    """Figures: attempts, planned agents, streaming, when the first planned node was added,
    and ``plan_usage``, the tokens of the coordinator's answers (refused ones included;
    a call that failed is counted, estimated, in the coordinator node's usage only)."""

    @property
    def ok(self) -> bool:
        return self.run.ok

    def to_dict(self) -> dict[str, Any]:
        """The run's JSON record plus ``question``, ``answer``, ``plan`` and ``planning``."""
        record = self.run.to_dict()
        record["warnings"] = [*record.get("warnings", []), *self.warnings]
        record.update(
            question=self.question,
            answer=self.answer,
            plan=self.plan,
            planning={**self.planning, "attempts": [dict(a) for a in self.attempts]},
        )
        return record

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False, default=repr)


async def aask(
    question: str,
    *,
    max_agents: int = 20,
    max_depth: int = 1,
    token_budget: int | None = None,
    plan_attempts: int = 3,
    fallback: bool = False,
    review: int = 0,
    stream: bool = True,
    roles: Iterable[Role] = (),
    tools: Mapping[str, Callable[[str], Any]] | None = None,
    observers: Iterable[ev.Observer] = (),
    dry: bool = False,
    **options: Any,
) -> AskResult:
    """Plan ``question`` with the coordinator and run the plan as it arrives.

    ``max_agents`` bounds the agents planned at every level, ``max_depth`` how
    deep delegation nests (0: none), ``token_budget`` the tokens the whole run
    may use, every plan attempt's included (the output cap of each agent's
    calls is the run option ``max_output_tokens``); ``plan_attempts`` is how
    often an unusable plan goes back to the coordinator, and ``fallback`` runs
    the valid agents of a still-unusable plan in declared order instead of
    failing. ``review`` lets the coordinator send at most that many results
    back for one revision. ``stream`` starts planned agents while the plan is
    still being written. ``tools`` are what planned agents may name in
    ``"tools"``: each is called with the agent's task (side by side, before the
    model) and its result joins the prompt; a plan naming any other tool is
    refused. ``roles`` add to the built-in roles. ``dry`` plans only. Other
    keywords are run options (``model``, ``max_concurrency``, ``store``...).

    Raises:
        ConfigError: for a bad bound or option (before anything runs), and for
            ``max_tokens``, the old name of ``token_budget``.
    """
    from agentplex.engine.runner import arun

    if "max_tokens" in options:
        raise ConfigError(
            "ask() has no max_tokens: the run's token budget is token_budget=N, and the "
            "output cap of each model call is max_output_tokens=N. Fix: rename it."
        )
    if not question.strip():
        raise ConfigError("the question is empty. Fix: ask something, e.g. 'Compare A, B and C'.")
    settings = PlanSettings(
        max_agents=max_agents,
        max_depth=max_depth,
        token_budget=token_budget,
        attempts=plan_attempts,
        fallback=fallback,
        review=review,
        stream=stream and not dry,
    )
    settings.check()
    if options.get("strategy") == "layers":
        raise ConfigError(
            "a planned run grows while it runs, so it cannot use the layers strategy. "
            "Fix: use --strategy dataflow (the default) or sequential."
        )
    role_list = list(roles)
    planner = Planner(question, settings, RoleLibrary(role_list), tools=tools, dry=dry)
    wf = Workflow("plan" if dry else "ask", description=question[:200], roles=role_list)
    wf.function(question_node(planner), id=COORDINATOR)
    compiled = wf.compile()
    result = await arun(
        compiled, observers=observers, control=planner.attach, tools=planner.tools, **options
    )
    answer = "" if dry or not result.ok else planner.answer(result.outputs, compiled.deps)
    accepted = (
        result.nodes[COORDINATOR].output
        if result.nodes[COORDINATOR].status == "succeeded"
        else None
    )
    return AskResult(
        question=question,
        answer=answer,
        plan=accepted,
        run=result,
        attempts=tuple(a.to_dict() for a in planner.attempts),
        warnings=tuple(planner.warnings),
        planning={
            "attempts_made": len(planner.attempts),
            "agents_planned": planner.planned,
            "streamed": settings.stream,
            "plan_usage": sum(
                (a.usage for a in planner.attempts if a.usage is not None), Usage()
            ).to_dict(),
            "first_node_s": planner.first_dispatch,
            "coordinator_s": result.nodes[COORDINATOR].duration_s,
            "max_agents": max_agents,
            "max_depth": max_depth,
            "sub_plans": {k: list(v) for k, v in planner.sub_plans.items()},
            "revised": dict(planner.revised),
        },
    )


def ask(question: str, **kwargs: Any) -> AskResult:
    """Plan and run ``question`` from synchronous code; see :func:`aask`."""
    return asyncio.run(aask(question, **kwargs))


async def aplan(question: str, **kwargs: Any) -> AskResult:
    """Plan ``question`` without running it (``result.plan``); see :func:`aask`."""
    return await aask(question, dry=True, **kwargs)


def plan(question: str, **kwargs: Any) -> AskResult:
    """Plan ``question`` from synchronous code, without running it."""
    return asyncio.run(aplan(question, **kwargs))
