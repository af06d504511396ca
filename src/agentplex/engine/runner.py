"""The runner: execute a compiled workflow on asyncio.

Policy.

- *Dispatch.* The scheduler says which nodes are ready; the runner starts as
  many as there are free slots (``max_concurrency``), most urgent first, the
  moment a slot or a node frees up. Dispatch happens in the completion path of
  the node that just ended, so there is no polling loop and no layer barrier
  unless the ``layers`` strategy asks for one.
- *Slots.* A slot is held while a node's body runs. A node waiting to retry
  gives its slot back while it sleeps. A map node holds no slot itself; each
  of its items takes one, so ``max_concurrency`` bounds real work at any
  nesting. Calls made from inside a node (``ctx.ask``, ``fan_out``) do not take
  extra slots.
- *Ownership.* Every node runs as a task of one :class:`asyncio.TaskGroup`,
  so nothing outlives the run.
- *Errors.* A retryable attempt is retried under one of two budgets (see
  :mod:`agentplex.engine.retry`): rate limits (429, Anthropic's 529, any error with
  a Retry-After) use ``rate_limit_retries`` (50) and wait out the Retry-After,
  or back off with full jitter without one; real errors (``RetryableError``,
  5xx, dropped connections, malformed bodies, timeouts, ``retry_on`` types)
  use ``retries`` (4) with exponential backoff and full jitter. Every attempt
  counts in ``attempts``. Under ``fail_fast`` the first node that fails for
  good cancels every running node and nothing new starts; under ``continue``
  only the failed node's dependents are skipped and everything else runs to
  the end. Either way the result records every node.
- *Deadlines.* Every LLM call (agents, agent map items, ``ctx.ask``) has a
  wall-clock deadline around the whole call, streaming included: the
  provider's ``timeout_s``, else the run's ``timeout_s``, else 600 s. A node
  that calls a model is also limited to ``total_timeout_s``, else 30 min,
  across attempts and waits. Python steps get no default limit;
  ``timeout_s``/``total_timeout_s`` apply when set. ``math.inf`` turns a
  limit off.
- *Cancellation.* If the run is cancelled (Ctrl-C), running nodes are
  cancelled, a :class:`RunFinished` event with status ``cancelled`` and every
  finished output is emitted, and the cancellation propagates.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, cast

from agentplex import events as ev
from agentplex.engine import run_record
from agentplex.engine.attempts import Attempts
from agentplex.engine.bodies import NodeBodies
from agentplex.engine.options import RunOptions
from agentplex.engine.retry import describe
from agentplex.engine.scheduler import Scheduler
from agentplex.engine.slots import Slot, SlotPool
from agentplex.exceptions import (
    ConfigError,
    NodeError,
    NodeTimeoutError,
    UnstorableOutputError,
)
from agentplex.llm.config import redact
from agentplex.model.ids import new_run_id
from agentplex.model.validation import resolve_inputs
from agentplex.model.workflow import AgentNode, CompiledWorkflow, FunctionNode, MapNode, Workflow
from agentplex.result import NodeResult, NodeStatus, RunResult, Usage
from agentplex.store import RunStore, StoredNode, open_store
from agentplex.store.recorder import Recorder


class _FailFast(Exception):
    """Raised by a node task to make the TaskGroup cancel its siblings."""


class _Run(Attempts):
    """Mutable bookkeeping of one run; see the module docstring for the policy."""

    def __init__(
        self,
        compiled: CompiledWorkflow,
        inputs: Mapping[str, Any],
        options: RunOptions,
        observers: Iterable[ev.Observer],
        *,
        run_id: str | None,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        rng: random.Random,
        slots: SlotPool | None = None,
        bodies: NodeBodies | None = None,
        priority: float = 0.0,
        arrival: int = 0,
        store: RunStore | None = None,
        source: str | None = None,
        prior: Mapping[str, StoredNode] | None = None,
        batch_id: str | None = None,
        item_key: str | None = None,
    ) -> None:
        options.check()
        self.wf = compiled
        self.nodes = compiled.nodes
        self.inputs = resolve_inputs(compiled, inputs)
        self.options = options
        self.strategy = options.resolved_strategy()
        limit = 1 if self.strategy == "sequential" else options.max_concurrency
        self.slots = slots or SlotPool(limit)
        """Shared with the other items of a batch; the run's own otherwise."""
        self.priority = priority
        self.arrival = arrival
        self.observers = list(observers)
        self.run_id = run_id or new_run_id()
        self.clock = clock
        self.sleep = sleep
        self.rng = rng
        self.owns_bodies = bodies is None
        if bodies is None:
            bodies = NodeBodies(compiled, options, run_id=self.run_id, inputs=self.inputs)
        else:  # a batch item: the batch's providers and executors, this item's inputs
            bodies = bodies.for_item(self.run_id, self.inputs, model=options.model)
        self.bodies = bodies
        self.scheduler = Scheduler(
            compiled.deps, strategy=self.strategy, estimates=compiled.estimates()
        )
        self.map_nodes = {nid for nid, node in self.nodes.items() if isinstance(node, MapNode)}
        self.outputs: dict[str, Any] = {}
        self.status: dict[str, NodeStatus] = {}
        self.started: dict[str, float] = {}
        self.finished: dict[str, float] = {}
        self.attempts: dict[str, int] = {}
        self.attempt_starts: dict[str, list[float]] = {}
        self.errors: dict[str, tuple[str, str]] = {}
        self.usage: dict[str, Usage] = {}
        self.streaming = options.stream and bool(self.observers)
        self.stopping = False
        self.group: asyncio.TaskGroup | None = None
        self.t0 = 0.0
        self.final: RunResult | None = None
        """The result, once built (also when the run was cancelled)."""
        self.ended = asyncio.Event()
        """Set when the last node has ended."""
        self.reused: set[str] = set()
        """Nodes whose stored result (from the run being resumed) stands."""
        self.settled: dict[str, NodeResult] = {}
        """Records of succeeded nodes, built once (for the store and the result)."""
        self.gate: Callable[[str], None] | None = None
        """Called before a node starts; raising fails the node (a planner's token budget)."""
        self.finisher: Callable[[str, Any], Awaitable[Any]] | None = None
        """Turns the answer of a node in ``finishing`` into its output, without a slot
        (a delegating agent's sub-plan runs while it waits)."""
        self.finishing: set[str] = set()
        self.recorder: Recorder | None = None
        if store is not None:
            self.recorder = Recorder(
                store, self, source=source, batch_id=batch_id, item_key=item_key
            )
            self.observers.append(self.recorder)
            if prior:
                self.reuse(self.recorder.reusable(prior))

    def reuse(self, stored: Mapping[str, StoredNode]) -> None:
        """Take these stored results as this run's own: they will not run again."""
        for node_id, node in stored.items():
            record = node.record
            self.outputs[node_id] = node.output
            self.status[node_id] = "succeeded"
            self.attempts[node_id] = int(record.get("attempts") or 1)
            usage = record.get("usage")
            if usage:
                self.usage[node_id] = Usage(
                    usage["input_tokens"], usage["output_tokens"], usage.get("cached_calls", 0)
                )
        self.reused = set(stored)
        self.scheduler.mark_done(self.reused)

    def add_node(self, node: AgentNode, *, parent: str | None = None) -> str:
        """Add an agent node while the run goes (a streamed plan, a sub-plan); start it
        when its dependencies are done. Returns ``ready``, ``waiting`` or ``skipped``.

        Raises:
            ConfigError: an unknown role or dependency, a bad model, or the layers strategy.
        """
        self.wf.grow(node)
        self.bodies.add_agent(node)
        if self.recorder is not None:
            self.recorder.add_key(node.id)
        t = self.now()
        self.emit(
            ev.NodePlanned(self.run_id, t, node.id, node.role, node.task, node.depends_on, parent)
        )
        state = self.scheduler.add(node.id, node.depends_on, node.estimated_duration())
        if state == "skipped":
            self.record_end(node.id, "skipped")
            failed = next(d for d in node.depends_on if self.status.get(d) != "succeeded")
            self.emit(ev.NodeSkipped(self.run_id, t, node.id, failed))
        elif state == "ready":
            self.emit(ev.NodeReady(self.run_id, t, node.id))
            self.wake()
        return state

    # -- events -----------------------------------------------------------------

    def now(self) -> float:
        return self.clock() - self.t0

    def emit(self, event: ev.Event) -> None:
        for observer in self.observers:
            observer(event)

    # -- the run ----------------------------------------------------------------

    async def execute(self) -> RunResult:
        if self.owns_bodies:
            try:
                await self.bodies.prepare()  # bad keys, URLs, extras fail before anything runs
            except BaseException:
                await self.bodies.aclose()
                raise
        if self.recorder is not None:
            try:
                await self.recorder.begin()  # refuses a run another process is writing
            except BaseException:
                await self.close()
                raise
        self.t0 = self.clock()
        self.emit(
            ev.RunStarted(
                self.run_id,
                0.0,
                self.wf,
                self.strategy,
                self.options.max_concurrency,
                dict(self.inputs),
            )
        )
        for node_id in self.scheduler.start():
            self.emit(ev.NodeReady(self.run_id, 0.0, node_id))
        status: Literal["succeeded", "failed", "cancelled"] = "succeeded"
        try:
            try:
                async with asyncio.TaskGroup() as group:
                    self.group = group
                    self.wake()
                    # With a shared slot pool the run may have no task at all
                    # for a while (its ready nodes wait for other items' slots):
                    # the group must stay open until every node has ended.
                    if self.scheduler.is_active():
                        try:
                            await self.ended.wait()
                        except asyncio.CancelledError:
                            # The group is about to cancel its tasks; a cancelled node
                            # hands its slot on, and nothing may start from that.
                            self.stopping = True
                            raise
            except* _FailFast:
                pass
        except BaseException:
            status = "cancelled"
            self.stopping = True
            self._cancel_pending()
            result = self.final = self.result(status)
            await self.close()
            self.emit(ev.RunFinished(self.run_id, result.wall_s, result))
            if self.recorder is not None:
                with contextlib.suppress(BaseException):
                    await self.recorder.finish()
            raise
        await self.close()
        if any(s != "succeeded" for s in self.status.values()) or len(self.status) < len(
            self.nodes
        ):
            status = "failed"
        result = self.final = self.result(status)
        self.emit(ev.RunFinished(self.run_id, result.wall_s, result))
        if self.recorder is not None:
            await self.recorder.finish()
        return result

    async def close(self) -> None:
        if self.owns_bodies:
            await self.bodies.aclose()

    def want(self) -> None:
        self.slots.want(self, self.priority, self.scheduler.next_key(), self.arrival)

    def wake(self) -> None:
        """Ask the slot pool to start this run's ready nodes, in turn with other runs."""
        if self.scheduler.ready_count and not self.stopping:
            self.want()
        self.slots.feed()

    def dispatch(self) -> None:
        """Start ready nodes while slots are free and no other run's are more urgent.

        Called by the slot pool; with a pool of its own, a run simply starts
        as many ready nodes as there are free slots, most urgent first.
        """
        scheduler, pool = self.scheduler, self.slots
        group = self.group
        assert group is not None
        while not self.stopping and scheduler.ready_count:
            if not pool.free() or pool.outranked(self.priority, scheduler.next_key(), self.arrival):
                self.want()
                return
            batch = scheduler.get_ready(1)
            if not batch:
                return  # a layer barrier or sequential: the next node to end wakes the run
            node_id = batch[0]
            holds = node_id not in self.map_nodes
            if holds:
                pool.busy += 1
            group.create_task(self.run_node(node_id, Slot(holds)))

    async def acquire(self, slot: Slot) -> None:
        await self.slots.acquire(slot)

    def release(self, slot: Slot) -> None:
        self.slots.release(slot)

    # -- one node ---------------------------------------------------------------

    async def run_node(self, node_id: str, slot: Slot) -> None:
        try:
            await self._run_node(node_id, slot)
        finally:
            if not self.scheduler.is_active():
                self.ended.set()

    async def _run_node(self, node_id: str, slot: Slot) -> None:
        node = self.nodes[node_id]
        self.started[node_id] = self.now()
        try:
            if self.gate is not None:
                self.gate(node_id)
            if isinstance(
                node, MapNode
            ):  # map nodes are rare; agents and functions are the hot path
                self.attempts[node_id] = 1
                self.attempt_starts[node_id] = [self.now()]
                self.emit(ev.NodeStarted(self.run_id, self.now(), node_id, 1))
                output, usage = await self.run_map(node)
                attempts = 1
            else:
                body = cast(AgentNode | FunctionNode, node)
                on_text = self.text_sink(node_id) if self.streaming else None
                (output, usage), attempts = await self.with_retries(
                    node_id,
                    node,
                    slot,
                    lambda attempt: self.bodies.call(
                        body, node_id, attempt, self.outputs, on_text=on_text
                    ),
                )
                if node_id in self.finishing and self.finisher is not None:
                    self.release(slot)  # waiting on other nodes takes no slot
                    output = await self.finisher(node_id, output)
        except asyncio.CancelledError:
            self.release(slot)
            self.record_end(node_id, "cancelled")
            self.scheduler.cancel(node_id)
            self.emit(ev.NodeCancelled(self.run_id, self.now(), node_id, started=True))
            raise
        except Exception as exc:
            self.release(slot)
            self.fail(node_id, exc)
            return
        self.outputs[node_id] = output
        if usage is not None:
            self.usage[node_id] = usage
        t = self.finished[node_id] = self.clock() - self.t0
        self.status[node_id] = "succeeded"
        if self.recorder is not None:
            self.release(slot)  # other work may use the slot while the result is written
            try:
                await self.recorder.succeeded(node_id)  # durable before any successor starts
            except UnstorableOutputError as exc:  # the output is not data: the node fails
                self.fail(node_id, exc)
                return
        newly_ready = self.scheduler.done(node_id)
        if self.observers:
            duration = t - self.started[node_id]
            self.emit(ev.NodeFinished(self.run_id, t, node_id, output, attempts, duration, usage))
            for ready in newly_ready:
                self.emit(ev.NodeReady(self.run_id, t, ready))
        if self.scheduler.ready_count:
            self.want()
        self.release(slot)  # hands the slot on and dispatches
        self.slots.feed()

    def text_sink(self, node_id: str) -> Callable[[str], None]:
        """Return the callback that turns a streamed piece of ``node_id``'s answer into an event."""

        def on_text(piece: str) -> None:
            self.emit(ev.NodeText(self.run_id, self.now(), node_id, piece))

        return on_text

    def record_end(self, node_id: str, status: NodeStatus) -> float:
        t = self.now()
        self.finished[node_id] = t
        self.status[node_id] = status
        return t

    def fail(self, node_id: str, exc: BaseException) -> None:
        attempts = getattr(exc, "attempts", None) or self.attempts.get(node_id, 1)
        self.attempts[node_id] = attempts
        cause = exc.__cause__ if isinstance(exc, NodeError) and exc.__cause__ else exc
        # A step's own exception may quote a key it read: masked like any output.
        error = redact(describe(exc if isinstance(exc, NodeTimeoutError) else cause))
        error_type = type(cause).__name__
        self.errors[node_id] = (error, error_type)
        t = self.record_end(node_id, "failed")
        self.emit(ev.NodeFailed(self.run_id, t, node_id, error, error_type, attempts))
        for skipped in self.scheduler.fail(node_id):
            self.status[skipped] = "skipped"
            self.errors[skipped] = (f"dependency {node_id!r} failed", "Skipped")
            self.emit(ev.NodeSkipped(self.run_id, t, skipped, because=node_id))
        if self.options.error_policy == "fail_fast":
            self.stopping = True
            self._cancel_pending()
            raise _FailFast(node_id)
        self.wake()

    def _cancel_pending(self) -> None:
        t = self.now()
        for node_id in self.scheduler.cancel_pending():
            self.status[node_id] = "cancelled"
            self.emit(ev.NodeCancelled(self.run_id, t, node_id, started=False))

    # -- the result -------------------------------------------------------------

    def node_result(self, node_id: str) -> NodeResult:
        """The node's record; a succeeded node's never changes, so it is built once."""
        result = self.settled.get(node_id)
        if result is None:
            result = run_record.node_result(self, node_id)
            if result.status == "succeeded":
                self.settled[node_id] = result
        return result

    def result(self, status: Literal["succeeded", "failed", "cancelled"]) -> RunResult:
        return run_record.run_result(self, status)


async def arun(
    workflow: Workflow | CompiledWorkflow,
    *,
    inputs: Mapping[str, Any] | None = None,
    observers: Iterable[ev.Observer] = (),
    run_id: str | None = None,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: random.Random | None = None,
    store: RunStore | str | Path | bool | None = None,
    prior: Mapping[str, StoredNode] | None = None,
    attach: Callable[[_Run], None] | None = None,
    **options: Any,
) -> RunResult:
    """Run ``workflow`` on the running event loop and return its result.

    Keyword options are the fields of :class:`RunOptions` (``max_concurrency``,
    ``strategy``, ``error_policy``, ``model``, ``seed``, ``timeout_s``,
    ``retries``...). ``observers`` are called with every :mod:`event <agentplex.events>`.
    ``clock``, ``sleep`` and ``rng`` are injectable for tests.

    ``store`` records the run durably (``True``: the default SQLite store,
    ``.agentplex/runs.sqlite`` or ``$AGENTPLEX_STORE``; a path; or a
    :class:`~agentplex.store.RunStore`), so :func:`agentplex.batch.resume` can finish
    it after a crash. ``prior`` holds stored results to reuse (resume passes it).
    ``attach`` is called with the run's state before it starts (the planner
    uses it to add nodes while the run goes).

    A failed run returns a result with ``status == "failed"``; call
    ``result.raise_for_status()`` to turn that into an exception.

    Raises:
        InvalidWorkflowError: if the workflow does not validate.
        ConfigError: for a bad option, model string or missing input (before anything runs).
        asyncio.CancelledError: if the run is cancelled; observers still get
            a ``RunFinished`` event holding every finished output.
    """
    compiled = workflow if isinstance(workflow, CompiledWorkflow) else workflow.compile()
    try:
        run_options = RunOptions(**options)
    except TypeError as exc:
        known = ", ".join(RunOptions.__dataclass_fields__)
        raise ConfigError(f"{exc}; run options are: {known}.") from None
    opened = None
    if store is True or isinstance(store, str | Path):
        opened = open_store(None if store is True else store)
    run_store = opened or (store if isinstance(store, RunStore) else None)
    try:
        state = _Run(
            compiled,
            inputs or {},
            run_options,
            observers,
            run_id=run_id,
            clock=clock,
            sleep=sleep,
            rng=rng or random.Random(),
            store=run_store,
            source=compiled.source,
            prior=prior,
        )
        if attach is not None:
            attach(state)
        return await state.execute()
    finally:
        if opened is not None:
            opened.close()


def run(workflow: Workflow | CompiledWorkflow, **kwargs: Any) -> RunResult:
    """Run ``workflow`` to completion from synchronous code; see :func:`arun`.

    Raises:
        RuntimeError: if called from inside a running event loop (use ``await arun(...)``).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(arun(workflow, **kwargs))
    raise RuntimeError(
        "agentplex.run() cannot be called from a running event loop; use 'await agentplex.arun(...)'"
    )
