"""The planner inside a run: plan, stream into execution, repair, delegate, review.

An ``ask`` run starts with one node, ``coordinator``. Its body asks the
coordinator model for a plan, with the plan's JSON Schema and an output cap.
With streaming, every agent object is checked
(:func:`~agentplex.planning.check.check_agent`) the moment it is complete
(:class:`~agentplex.planning.parse.AgentStream`, whatever the layout) and, if
its dependencies are already planned, added to the running workflow, where it
starts as soon as those dependencies are done, while the coordinator is still
writing. When the answer is complete the whole plan is checked; the agents
not started yet are added (all of them, without streaming). An unusable plan
goes back to the coordinator with the exact errors, up to ``attempts`` times;
agents already running are kept and the corrected plan is matched to them by
content (role and task). An answer cut off at the output cap is unusable too
(unless the plan in it was already complete), and is repaired the same way.
After the last attempt the run fails with the errors, or, with ``fallback``,
the valid agents run in declared order.

Bounds, reported when hit, never silently truncated:

- ``max_agents`` counts every planned agent at every level;
- ``max_depth`` is how deep delegation nests: an agent marked ``delegate``
  below it may answer with a sub-plan, which runs as nodes ``<agent>/<id>``
  under the same slots and limits while the agent waits without a slot; the
  sub-plan's final outputs become the agent's output;
- ``token_budget`` is checked before every node starts: once the run has
  used that many tokens (input and output, every plan attempt's included), no
  further node starts (it fails with :class:`BudgetExceededError`). It is not
  the output cap of a call: the coordinator's is set by the planner
  (:func:`~agentplex.planning.prompts.plan_output_cap`), the agents' by
  ``max_output_tokens``.

With ``review`` N > 0 a ``review`` node (the coordinator again) reads the
plan's final results (the agents nothing depends on, which make the answer)
once they are done and may send at most N back; each is revised once
(``<agent>_revised``, with the critique and its first answer as context) and
replaces the original in the answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from typing import TYPE_CHECKING, Any

from agentplex import events as ev
from agentplex.engine.context import NodeContext
from agentplex.exceptions import AgentplexError, BudgetExceededError, PlanningError, PlanParseError
from agentplex.model.ids import plan_node_id
from agentplex.model.roles import Role, RoleLibrary
from agentplex.model.workflow import AgentNode
from agentplex.planning import prompts
from agentplex.planning.check import CheckedPlan, PlannedAgent, check_agent, check_plan
from agentplex.planning.parse import AgentStream, find_json, find_plan
from agentplex.result import Usage

if TYPE_CHECKING:
    from agentplex.engine.state import RunControl

COORDINATOR = "coordinator"
REVIEW = "review"


@dataclass(frozen=True, slots=True)
class PlanSettings:
    """How planning is bounded and run; see the module docstring."""

    max_agents: int = 20
    max_depth: int = 1
    token_budget: int | None = None
    attempts: int = 3
    fallback: bool = False
    review: int = 0
    stream: bool = True

    def check(self) -> None:
        from agentplex.exceptions import ConfigError

        if self.max_agents < 1:
            raise ConfigError(f"max_agents must be >= 1, got {self.max_agents}.")
        if self.max_depth < 0:
            raise ConfigError(f"max_depth must be >= 0, got {self.max_depth}.")
        if self.attempts < 1:
            raise ConfigError(f"plan attempts must be >= 1, got {self.attempts}.")
        if self.review < 0:
            raise ConfigError(f"review must be >= 0, got {self.review}.")
        if self.token_budget is not None and self.token_budget < 1:
            raise ConfigError(f"token_budget must be >= 1, got {self.token_budget}.")


@dataclass(slots=True)
class Attempt:
    """One answer of the coordinator and what was wrong with it."""

    text: str
    errors: list[str] = field(default_factory=list)
    usage: Usage | None = None
    """The call's tokens (None: the call failed; the run counts what it may have cost)."""
    finish_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form ``AskResult.attempts`` holds."""
        return {
            "errors": list(self.errors),
            "usage": None if self.usage is None else self.usage.to_dict(),
            "finish_reason": self.finish_reason,
        }


class Planner:
    """Plans inside a run and grows it; see the module docstring."""

    def __init__(
        self,
        question: str,
        settings: PlanSettings,
        roles: RoleLibrary,
        *,
        tools: Mapping[str, Callable[[str], Any]] | None = None,
        dry: bool = False,
    ) -> None:
        self.question = question
        self.tools = dict(tools or {})
        self.dry = dry
        """Plan only (``agentplex plan``): nothing is added to the run."""
        self.settings = settings
        self.roles = roles
        self.offered: list[Role] = [roles[name] for name in roles if name != COORDINATOR]
        self.run: RunControl | None = None
        """The run being planned, through what a planner may do to it."""
        self.attempts: list[Attempt] = []
        self.warnings: list[str] = []
        self.plan: CheckedPlan | None = None
        self.description = ""
        self.top: dict[int, str] = {}
        """Agent index of the current plan -> node id."""
        self.top_nodes: list[str] = []
        """Top-level plan nodes, in the order they were planned."""
        self.by_content: dict[tuple[str, str], str] = {}
        self.planned = 0
        self.depth: dict[str, int] = {}
        self.sub_plans: dict[str, list[str]] = {}
        self.waiters: dict[str, asyncio.Future[str]] = {}
        self.revised: dict[str, str] = {}
        self.review_node: str | None = None
        self.review_format: dict[str, Any] = {}
        """The provider's JSON mode for the review, where it has one (plans have a schema)."""
        self.first_dispatch: float | None = None
        """Seconds into the run when the first planned node was added (for benchmarks)."""

    # -- wiring ----------------------------------------------------------------------------

    def attach(self, run: RunControl) -> None:
        """Plan inside ``run``: gate its nodes (the token budget) and watch its events.

        The run must have been given :attr:`tools` (``arun(..., tools=planner.tools)``).
        """
        self.run = run
        run.gate(self.gate)
        run.observe(self)
        self.review_format = self._json_mode(run)

    @staticmethod
    def _json_mode(run: RunControl) -> dict[str, Any]:
        """The provider's JSON mode for reviews, where it has one.

        OpenAI-compatible endpoints (OpenAI, vLLM, Ollama, llama.cpp, LM Studio)
        take ``response_format: json_object``; Anthropic has no such mode, so
        there the prompt's "JSON only" and a tolerant parser do the work.
        """
        kind = run.provider_kind()  # None: unknown, reported by the run's preflight
        return {"response_format": {"type": "json_object"}} if kind in ("openai", "ollama") else {}

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.NodeFinished | ev.NodeFailed | ev.NodeSkipped | ev.NodeCancelled):
            waiter = self.waiters.pop(event.node_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(type(event).__name__)
            if event.node_id == self.review_node and isinstance(event, ev.NodeFinished):
                self.revise(str(event.output))

    # -- the coordinator node --------------------------------------------------------------

    async def coordinate(self, ctx: NodeContext) -> dict[str, Any]:
        """The ``coordinator`` node: plan (streaming into the run), repair, return the plan.

        Every call asks for the plan with its JSON Schema and under its output cap
        (:func:`~agentplex.planning.prompts.plan_output_cap`), so a looping model
        stops; an answer cut off there is repaired like an unusable one. Each
        call's tokens are the coordinator node's, refused attempts included.

        Raises:
            PlanningError: if the plan is still unusable after the last attempt.
        """
        settings = self.settings
        schema = prompts.plan_schema(
            [role.name for role in self.offered],
            sorted(self.tools),
            max_agents=settings.max_agents,
            can_delegate=settings.max_depth > 0,
        )
        cap = prompts.plan_output_cap(settings.max_agents)
        repair: str | None = None
        data: Any = None
        self.top = {}  # a retried coordinator starts a new answer; running agents match by content
        for _ in range(settings.attempts):
            stream = AgentStream() if settings.stream else None
            held: dict[int, dict[str, Any]] = {}

            def on_text(
                piece: str,
                stream: AgentStream | None = stream,
                held: dict[int, dict[str, Any]] = held,
            ) -> None:
                assert stream is not None
                for index, entry in stream.feed(piece):
                    self.offer(index, entry, held)

            prompt = prompts.plan_prompt(
                self.question,
                self.offered,
                sorted(self.tools),
                max_agents=settings.max_agents,
                can_delegate=settings.max_depth > 0,
                repair=repair,
            )
            attempt = Attempt("")
            self.attempts.append(attempt)
            try:
                completion = await ctx.complete(
                    COORDINATOR,
                    prompt,
                    on_text=on_text if stream else None,
                    schema=schema,
                    schema_name=prompts.PLAN_SCHEMA_NAME,
                    max_output_tokens=cap,
                )
            except asyncio.CancelledError:  # the node's time limit, or the run stopping
                attempt.errors.append("the call was cancelled before the plan was complete.")
                raise
            except Exception as exc:  # the node fails (or is retried) with it
                attempt.errors.append(f"the call failed: {exc}")
                raise
            if stream is not None:
                stream.close()
            text = attempt.text = completion.text
            attempt.usage = completion.usage
            attempt.finish_reason = completion.finish_reason
            data, checked = self.read(attempt, completion.truncated, cap)
            if checked is not None and checked.ok:
                if completion.truncated:
                    self.warnings.append(
                        f"the coordinator's answer was cut off at its output cap of {cap:,} "
                        "tokens after a complete plan; what followed the plan was ignored."
                    )
                self.accept(checked, data)
                return self.record()
            repair = prompts.repair_section(attempt.errors, text, sorted(self.top))
            self.top = {}  # the next plan's indices are its own; running nodes match by content
        if settings.fallback and data is not None:
            checked = check_plan(
                data, self.roles, self.tools, max_agents=settings.max_agents, fallback=True
            )
            if checked.ok:
                self.accept(checked, data)
                return self.record()
        made = len(self.attempts)
        raise PlanningError(
            f"the coordinator's plan was still unusable after {made} attempt(s); what was wrong "
            "with the last: "
            + " ".join(self.attempts[-1].errors)
            + " Fix: allow more attempts (--plan-attempts), use a stronger --model, or pass "
            "--fallback to run the plan's valid agents in declared order."
        )

    def read(self, attempt: Attempt, truncated: bool, cap: int) -> tuple[Any, CheckedPlan | None]:
        """Find and check the plan in ``attempt``'s answer; its errors go on ``attempt``.

        Returns the plan's JSON (None if there is none) and its check (None likewise).
        """
        try:
            data = find_plan(attempt.text)
        except PlanParseError as exc:
            if not truncated:
                attempt.errors.append(str(exc))
                return None, None
            attempt.errors.append(
                f"the answer was cut off at the output cap of {cap:,} tokens (finish_reason "
                f"{attempt.finish_reason!r}) before the plan was complete. Send a shorter plan: "
                f"at most {self.settings.max_agents} agents, each task one or two sentences, "
                "each agent written once."
            )
            return None, None
        checked = check_plan(data, self.roles, self.tools, max_agents=self.settings.max_agents)
        attempt.errors.extend(checked.errors)
        return data, checked

    def offer(self, index: int, entry: dict[str, Any], held: dict[int, dict[str, Any]]) -> None:
        """A streamed agent: start it now if it is valid and its dependencies are planned."""
        if index >= self.settings.max_agents or self.planned >= self.settings.max_agents:
            return  # over budget: the whole plan will say so (or will free the budget)
        agent, errors = check_agent(index, entry, None, self.roles, self.tools, [])
        if agent is None or errors:
            return  # the whole plan will report it
        if any(dep not in self.top for dep in agent.depends_on):
            held[index] = entry  # a dependency not planned yet: wait for the whole plan
            return
        self.dispatch(agent, self.top, parent=None, depth=0)

    def accept(self, checked: CheckedPlan, data: Mapping[str, Any]) -> None:
        """The whole plan is good: add every agent not started yet, dependencies first."""
        self.plan = checked
        # A schema-constrained plan has no description: the question says what it is for.
        self.description = str(data.get("description") or " ".join(self.question.split())[:200])
        self.warnings.extend(checked.warnings)
        # Agents streamed from a refused plan that the accepted one does not have: they
        # ran (or run) but are not part of the plan, its answer or its agent budget.
        wanted = {(f"|{a.role}", a.task) for a in checked.agents}
        orphans = [
            n for key, n in self.by_content.items() if key[0][0] == "|" and key not in wanted
        ]
        if orphans:
            self.planned -= len(orphans)
            self.warnings.append(
                f"{len(orphans)} agent(s) streamed from a refused plan ran but are not in the "
                f"accepted plan: {', '.join(orphans[:5])}{'...' if len(orphans) > 5 else ''}."
            )
        by_index = {a.index: a for a in checked.agents}
        order = TopologicalSorter({a.index: a.depends_on for a in checked.agents}).static_order()
        for index in order:
            if index not in self.top:
                self.dispatch(by_index[index], self.top, parent=None, depth=0)
        self.top_nodes = [self.top[a.index] for a in checked.agents]
        if self.settings.review and not self.dry:
            self.add_review()

    def record(self) -> dict[str, Any]:
        """The accepted plan in the meta-agent format, with each agent's node id."""
        assert self.plan is not None
        return {
            "description": self.description,
            "agents": [
                {
                    "role": a.role,
                    "task": a.task,
                    "depends_on": list(a.depends_on),
                    **({"tools": list(a.tools)} if a.tools else {}),
                    "node": self.top[a.index],
                    **({"delegate": True} if a.delegate else {}),
                }
                for a in self.plan.agents
            ],
        }

    # -- growing the run -------------------------------------------------------------------

    def dispatch(
        self, agent: PlannedAgent, ids: dict[int, str], *, parent: str | None, depth: int
    ) -> str:
        """Add ``agent`` to the run (or find it running already) and return its node id."""
        run = self.run
        assert run is not None
        key = (f"{parent or ''}|{agent.role}", agent.task)
        existing = self.by_content.get(key)
        if existing is not None:  # the same agent from an earlier attempt: keep it
            if existing in ids.values():  # or from this very plan, which repeats itself
                self.warnings.append(
                    f"agent {agent.index} ({agent.role}) of {parent or 'the plan'} repeats an "
                    f"earlier agent (the same role and task): it is {existing}, run once."
                )
            ids[agent.index] = existing
            return existing
        if self.planned >= self.settings.max_agents:
            raise BudgetExceededError(
                f"max_agents={self.settings.max_agents} reached: agent {agent.index} "
                f"({agent.role}) was not planned. Fix: raise --max-agents."
            )
        base = plan_node_id(agent.index, agent.role)
        node_id = f"{parent}/{base}" if parent else base
        n = 2
        while node_id in run.workflow.nodes or node_id in self.depth:
            node_id = f"{parent}/{base}_{n}" if parent else f"{base}_{n}"
            n += 1
        deps = tuple(ids[d] for d in agent.depends_on)
        if parent is not None and not agent.depends_on:
            deps = tuple(run.workflow.deps[parent])  # a sub-plan's roots see what its agent saw
        task = agent.task
        delegating = False
        if agent.delegate:
            if depth < self.settings.max_depth:
                remaining = self.settings.max_agents - self.planned - 1
                task += prompts.delegation_note(self.offered, remaining)
                delegating = True
            else:
                self.warnings.append(
                    f"{node_id} asked to delegate, but max_depth={self.settings.max_depth} "
                    "is reached: it answers directly. Fix: raise --max-depth."
                )
        node = AgentNode(
            id=node_id,
            role=agent.role,
            task=task,
            depends_on=deps,
            literal_task=True,
            tools=agent.tools,
        )
        self.planned += 1
        ids[agent.index] = node_id
        self.by_content[key] = node_id
        self.depth[node_id] = depth
        if self.dry:
            self.top_nodes.append(node_id)
            return node_id
        if delegating:
            run.finish_later(node_id, self.finish)
        if parent is None:
            self.top_nodes.append(node_id)
            if self.first_dispatch is None:
                self.first_dispatch = run.now()
        run.add_node(node, parent=parent)
        return node_id

    def gate(self, node_id: str) -> None:
        """Before any node starts: the token budget."""
        limit = self.settings.token_budget
        if limit is None or self.run is None:
            return
        used = self.run.tokens_used()
        if used >= limit:
            raise BudgetExceededError(
                f"the token budget token_budget={limit:,} is used up ({used:,} tokens so far, "
                f"plan attempts included); {node_id!r} was not started. "
                "Fix: raise --token-budget."
            )

    # -- delegation ------------------------------------------------------------------------

    async def finish(self, node_id: str, answer: Any) -> Any:
        """A delegating agent answered: a sub-plan runs now and its result is the output."""
        try:
            data = find_plan(str(answer))
        except PlanParseError:
            return answer  # it answered directly
        remaining = self.settings.max_agents - self.planned
        checked = check_plan(data, self.roles, self.tools, max_agents=max(remaining, 0))
        if not checked.ok:
            over = remaining <= 0 or any("are allowed" in e for e in checked.errors)
            bound = f" Fix: raise --max-agents (now {self.settings.max_agents})." if over else ""
            raise BudgetExceededError(
                f"{node_id}'s sub-plan was refused: " + " ".join(checked.errors) + bound
            )
        for warning in checked.warnings:
            self.warnings.append(f"{node_id}'s sub-plan: {warning}")
        depth = self.depth[node_id] + 1
        ids: dict[int, str] = {}
        order = TopologicalSorter({a.index: a.depends_on for a in checked.agents}).static_order()
        by_index = {a.index: a for a in checked.agents}
        loop = asyncio.get_running_loop()
        members: list[str] = []
        for index in order:
            sub = self.dispatch(by_index[index], ids, parent=node_id, depth=depth)
            members.append(sub)
            if self.run is not None and self.run.node(sub).status == "pending":
                self.waiters[sub] = loop.create_future()
        self.sub_plans[node_id] = members
        waiting = [self.waiters[m] for m in members if m in self.waiters]
        if waiting:
            await asyncio.gather(*waiting)
        run = self.run
        assert run is not None
        ended = {m: run.node(m) for m in members}
        failed = [m for m, n in ended.items() if n.status != "succeeded"]
        if failed:
            first = ended[failed[0]]
            error = first.error or ("" if first.status == "pending" else str(first.status))
            raise AgentplexError(f"{node_id}'s sub-plan failed at {failed[0]}: {error}")
        deps = run.workflow.deps
        sinks = _sinks(members, {m: deps[m] for m in members})
        return _combine({s: ended[s].output for s in sinks})

    # -- review ----------------------------------------------------------------------------

    def add_review(self) -> None:
        run = self.run
        assert run is not None
        final = _sinks(self.top_nodes, run.workflow.deps)  # the results the answer is made of
        node = AgentNode(
            id=REVIEW,
            role=COORDINATOR,
            task=prompts.review_prompt(self.question, self.settings.review),
            depends_on=tuple(final),
            literal_task=True,
            options=self.review_format,
        )
        self.review_node = REVIEW
        run.add_node(node)

    def revise(self, answer: str) -> None:
        """The review asked for revisions: each named agent runs once more, with the critique."""
        run = self.run
        assert run is not None
        try:
            data = find_json(answer, "revise")
        except PlanParseError as exc:
            self.warnings.append(f"the review was not understood ({exc}); nothing revised.")
            return
        raw = data.get("revise")
        asked: list[Any] = raw if isinstance(raw, list) else []
        for item in asked[: self.settings.review]:
            target = item.get("agent") if isinstance(item, Mapping) else None
            if target not in run.workflow.deps[REVIEW] or target in self.revised:
                self.warnings.append(
                    f"the review asked to revise {target!r}, not one of the final results."
                )
                continue
            original = run.workflow.nodes[target]
            assert isinstance(original, AgentNode)
            critique = str(item.get("critique") or "improve it")
            node = AgentNode(
                id=f"{target}_revised",
                role=original.role,
                task=prompts.revision_task(original.task, critique),
                depends_on=(target,),
                literal_task=True,
            )
            self.revised[target] = node.id
            run.add_node(node, parent=REVIEW)
        if len(asked) > self.settings.review:
            self.warnings.append(
                f"the review asked for {len(asked)} revisions; only {self.settings.review} "
                "are allowed (--review), the first were made."
            )

    # -- the answer ------------------------------------------------------------------------

    def answer(self, outputs: Mapping[str, Any], deps: Mapping[str, Sequence[str]]) -> str:
        """The final answer: the plan's last results (revised where the review asked)."""
        sinks = _sinks(self.top_nodes, deps)
        chosen = {s: outputs.get(self.revised.get(s, s)) for s in sinks}
        return _combine({k: v for k, v in chosen.items() if v is not None})


def _sinks(members: Sequence[str], deps: Mapping[str, Sequence[str]]) -> list[str]:
    used = {d for m in members for d in deps.get(m, ())}
    return [m for m in members if m not in used]


def _combine(outputs: Mapping[str, Any]) -> str:
    if len(outputs) == 1:
        return str(next(iter(outputs.values())))
    return "\n\n".join(f"### {node}\n{output}" for node, output in outputs.items())


def question_node(planner: Planner) -> Callable[..., Any]:
    """The ``coordinator`` node's function (bound to ``planner``)."""

    async def coordinator(ctx: NodeContext) -> dict[str, Any]:
        return await planner.coordinate(ctx)

    return coordinator
