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

Garbage collection. While any run is going, the cyclic collector's youngest
generation waits for :data:`RUN_GC_GEN0` new containers instead of Python's
700 (:func:`relaxed_gc`; the old threshold is back when the last run ends).
A run keeps a few objects per node in flight across event-loop turns (tasks,
results queued for the store); at 700 they are promoted to the oldest
generation before they die, and each promotion batch triggers another full
collection of the whole heap: on 100,000 nodes with the SQLite store, 17 full
collections and a third of the run's time, growing with the run's size.
Reference counting still frees everything that is not a cycle at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, cast

from agentplex import events as ev
from agentplex.engine import run_record
from agentplex.engine.attempts import Attempts
from agentplex.engine.bodies import NodeBodies
from agentplex.engine.options import RunOptions
from agentplex.engine.retry import describe
from agentplex.engine.run_record import NodeResults
from agentplex.engine.scheduler import Scheduler
from agentplex.engine.slots import Slot, SlotPool
from agentplex.engine.state import Finisher, Gate, NodeState, Outputs, RunControl
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
from agentplex.result import MAX_TRACEBACK, NodeResult, RunResult, Status, Usage
from agentplex.store import RunStore, StoredNode, open_store
from agentplex.store.recorder import Recorder

RUN_GC_GEN0 = 50_000
"""The collector's generation-0 threshold while a run goes (see the module docstring)."""

_gc_lock = threading.Lock()
_gc_runs = 0
_gc_saved: tuple[int, int, int] | None = None


@contextlib.contextmanager
def relaxed_gc() -> Iterator[None]:
    """Raise the collector's generation-0 threshold to :data:`RUN_GC_GEN0` while inside.

    Nested and concurrent runs (a batch's items, runs in other threads) share
    one count; the threshold found before the first is restored after the
    last, unless someone changed it meanwhile. A threshold already higher,
    or 0 (collection off), is left alone.
    """
    global _gc_runs, _gc_saved
    with _gc_lock:
        if _gc_runs == 0:
            found = gc.get_threshold()
            if 0 < found[0] < RUN_GC_GEN0:
                _gc_saved = found
                gc.set_threshold(RUN_GC_GEN0, found[1], found[2])
        _gc_runs += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_runs -= 1
            if _gc_runs == 0 and _gc_saved is not None:
                if gc.get_threshold()[0] == RUN_GC_GEN0:
                    gc.set_threshold(*_gc_saved)
                _gc_saved = None


class _FailFast(Exception):
    """Raised by a node task to make the TaskGroup cancel its siblings."""


RunEnd = Literal[Status.SUCCEEDED, Status.FAILED, Status.CANCELLED]


class Run:
    """One run of a compiled workflow; see the module docstring for the policy.

    The public surface: the constructor, :meth:`execute`, :attr:`run_id`,
    :attr:`final` and the :class:`~agentplex.engine.state.RunControl` methods
    (what a planner may do to the run while it goes). :func:`arun` builds one
    for a single run; a batch (:mod:`agentplex.batch.driver`) builds one per
    item, passing the batch's shared ``slots`` and ``bodies``. Everything
    else is the engine's own.

    Each node has one :class:`~agentplex.engine.state.NodeState` record in
    :attr:`records`; :attr:`attempts` (composed, given what it needs) runs a
    node's attempts; :attr:`recorder` writes the run to a store, from values.
    """

    def __init__(
        self,
        compiled: CompiledWorkflow,
        inputs: Mapping[str, Any],
        options: RunOptions,
        observers: Iterable[ev.Observer],
        *,
        run_id: str | None = None,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        slots: SlotPool | None = None,
        bodies: NodeBodies | None = None,
        priority: float = 0.0,
        arrival: int = 0,
        store: RunStore | None = None,
        source: str | None = None,
        prior: Mapping[str, StoredNode] | None = None,
        batch_id: str | None = None,
        item_key: str | None = None,
        tools: Mapping[str, Callable[[str], Any]] | None = None,
    ) -> None:
        """Prepare a run of ``compiled`` (nothing starts before :meth:`execute`).

        ``slots`` and ``bodies`` are a batch's, shared by its items (default:
        the run's own); ``priority`` and ``arrival`` order this run's nodes
        against other runs' in a shared slot pool. ``store`` records the run
        (``source``, ``batch_id`` and ``item_key`` go into its record) and
        ``prior`` holds the stored results of the run being resumed. ``tools``
        are what agents may name (a planned run's registry).

        Raises:
            ConfigError: a bad option, a missing input or a bad model string.
        """
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
        """Everything :meth:`emit` calls: the given observers, then the recorder."""
        self.watchers = list(self.observers)
        """The observers that want every event. Per-node lifecycle events (ready,
        started, finished, streamed text) are built only when there is one: the
        recorder keeps none of them, so a run with a store alone builds none."""
        self.run_id = run_id or new_run_id()
        self.clock = clock
        self.owns_bodies = bodies is None
        if bodies is None:
            bodies = NodeBodies(compiled, options, run_id=self.run_id, inputs=self.inputs)
        else:  # a batch item: the batch's providers and executors, this item's inputs
            bodies = bodies.for_item(self.run_id, self.inputs, model=options.model)
        if tools is not None:
            bodies.tools = tools
        if options.record_requests:
            bodies.on_request = self._request
        self.bodies = bodies
        self.scheduler = Scheduler(
            compiled.deps, strategy=self.strategy, estimates=compiled.estimates()
        )
        self.map_nodes = {nid for nid, node in self.nodes.items() if isinstance(node, MapNode)}
        self.records: dict[str, NodeState] = {nid: NodeState() for nid in self.nodes}
        """One record per node: what it has done so far."""
        self.outputs = Outputs(self.records)
        self.attempts = Attempts(
            options,
            run_id=self.run_id,
            bodies=bodies,
            records=self.records,
            slots=self.slots,
            clock=clock,
            now=self.now,
            sleep=sleep,
            rng=rng or random.Random(),
            emit=self.emit,
            events=self.watchers,
        )
        self.reused: set[str] = set()
        """Nodes whose stored result (from the run being resumed) stands."""
        self.results = NodeResults(
            compiled, model_of=bodies.model_of, cost=bodies.cost, reused=self.reused
        )
        self.streaming = options.stream and bool(self.watchers)
        self.stopping = False
        self.group: asyncio.TaskGroup | None = None
        self.t0 = 0.0
        self.final: RunResult | None = None
        """The result, once built (also when the run was cancelled)."""
        self.ended = asyncio.Event()
        """Set when the last node has ended."""
        self._gates: list[Gate] = []
        self._finishers: dict[str, Finisher] = {}
        self.recorder: Recorder | None = None
        if store is not None:
            self.recorder = Recorder(
                store,
                run_id=self.run_id,
                compiled=compiled,
                inputs=self.inputs,
                options=options,
                source=source,
                batch_id=batch_id,
                item_key=item_key,
                on_failure=self._store_failed,
            )
            self.observers.append(self.recorder)
            if prior:
                self.reuse(self.recorder.reusable(prior))

    def reuse(self, stored: Mapping[str, StoredNode]) -> None:
        """Take these stored results as this run's own: they will not run again."""
        for node_id, node in stored.items():
            stored_record = node.record
            record = self.records[node_id]
            record.output = node.output
            record.status = Status.SUCCEEDED
            record.attempts = int(stored_record.get("attempts") or 1)
            usage = stored_record.get("usage")
            if usage:
                record.usage = Usage.from_dict(usage)
        self.reused.update(stored)
        self.scheduler.mark_done(self.reused)

    # -- what a planner may do (RunControl) ---------------------------------------

    @property
    def workflow(self) -> CompiledWorkflow:
        """The workflow as it stands (it grows with every added node)."""
        return self.wf

    def add_node(self, node: AgentNode, *, parent: str | None = None) -> str:
        """Add an agent node while the run goes (a streamed plan, a sub-plan); start it
        when its dependencies are done. Returns ``ready``, ``waiting`` or ``skipped``.

        Raises:
            ConfigError: an unknown role or dependency, a bad model, or the layers strategy.
        """
        self.wf.grow(node)
        self.bodies.add_agent(node)
        record = self.records[node.id] = NodeState()
        if self.recorder is not None:
            self.recorder.add_key(node.id)
        t = self.now()
        self.emit(
            ev.NodePlanned(self.run_id, t, node.id, node.role, node.task, node.depends_on, parent)
        )
        state = self.scheduler.add(node.id, node.depends_on, node.estimated_duration())
        if state == "skipped":
            failed = next(
                d for d in node.depends_on if self.records[d].status is not Status.SUCCEEDED
            )
            self._end(node.id, record, Status.SKIPPED, t)
            self.emit(ev.NodeSkipped(self.run_id, t, node.id, failed))
        elif state == "ready":
            if self.watchers:
                self.emit(ev.NodeReady(self.run_id, t, node.id))
            self.wake()
        return state

    def gate(self, check: Gate) -> None:
        """Call ``check(node_id)`` before every node starts; raising fails that node."""
        self._gates.append(check)

    def finish_later(self, node_id: str, finisher: Finisher) -> None:
        """When ``node_id``'s body has answered, its slot goes back and its output is
        what ``finisher(node_id, answer)`` returns."""
        self._finishers[node_id] = finisher

    def node(self, node_id: str) -> NodeResult:
        """How ``node_id`` stands (``pending`` until it ended)."""
        return self.results(node_id, self.records[node_id])

    def tokens_used(self) -> int:
        """Tokens the run's nodes have used so far."""
        ended = sum(r.usage.total_tokens for r in self.records.values() if r.usage is not None)
        return ended + sum(u.total_tokens for u in self.bodies.spent.values())

    def provider_kind(self) -> str | None:
        """The kind of provider the run's default model calls, or None if it is unknown."""
        try:
            return self.bodies.providers.resolve(self.bodies.default_model.provider).kind
        except ConfigError:
            return None  # reported by the run's preflight

    def observe(self, observer: ev.Observer) -> None:
        """Receive every event of the run from now on."""
        self.observers.append(observer)
        self.watchers.append(observer)

    # -- events -----------------------------------------------------------------

    def now(self) -> float:
        return self.clock() - self.t0

    def emit(self, event: ev.Event) -> None:
        for observer in self.observers:
            observer(event)

    def _request(
        self, node_id: str, attempt: int, model: str, messages: tuple[tuple[str, str], ...]
    ) -> None:
        self.emit(ev.NodeRequest(self.run_id, self.now(), node_id, attempt, model, messages))

    # -- the run ----------------------------------------------------------------

    async def execute(self) -> RunResult:
        """Run every node and return the result (see :func:`arun` for what it raises)."""
        with relaxed_gc():
            return await self._execute()

    async def _execute(self) -> RunResult:
        if self.owns_bodies:
            try:
                await self.bodies.prepare()  # bad keys, URLs, extras fail before anything runs
            except BaseException:
                await self.bodies.aclose()
                raise
        if self.recorder is not None:
            try:
                await self.recorder.begin(  # refuses a run another process is writing
                    {nid: self.node(nid) for nid in sorted(self.reused)}
                )
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
        ready = self.scheduler.start()
        if self.watchers:
            for node_id in ready:
                self.emit(ev.NodeReady(self.run_id, 0.0, node_id))
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
            self.stopping = True
            self._cancel_pending()
            result = self.final = self.result(Status.CANCELLED)
            await self.close()
            self.emit(ev.RunFinished(self.run_id, result.wall_s, result))
            if self.recorder is not None:
                with contextlib.suppress(BaseException):
                    await self.recorder.finish(result)
            raise
        await self.close()
        status: RunEnd = Status.SUCCEEDED
        if any(r.status is not Status.SUCCEEDED for r in self.records.values()):
            status = Status.FAILED
        result = self.final = self.result(status)
        self.emit(ev.RunFinished(self.run_id, result.wall_s, result))
        if self.recorder is not None:
            await self.recorder.finish(result)
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
        map_nodes, run_node = self.map_nodes, self.run_node
        while not self.stopping and scheduler.ready_count:
            if not pool.free() or pool.outranked(self.priority, scheduler.next_key(), self.arrival):
                self.want()
                return
            node_id = scheduler.pop_ready()
            if node_id is None:
                return  # a layer barrier or sequential: the next node to end wakes the run
            holds = node_id not in map_nodes
            if holds:
                pool.busy += 1
            group.create_task(run_node(node_id, Slot(holds)))

    def start_in(self, slot: Slot) -> None:
        """Start the most urgent ready node in ``slot``, which a node of this run just freed.

        The slot changes hands without a release (see :meth:`SlotPool.keeps`), so
        a run that keeps its slots busy does not queue itself for each node.
        """
        scheduler, pool = self.scheduler, self.slots
        group = self.group
        assert group is not None
        node_id = scheduler.pop_ready()
        if node_id is None:  # a layer barrier or sequential
            pool.release(slot)
            pool.feed()
            return
        if node_id in self.map_nodes:  # holds no slot: this one goes back
            pool.release(slot)
            group.create_task(self.run_node(node_id, Slot(False)))
        else:
            slot.held = False
            group.create_task(self.run_node(node_id, Slot(True)))
        if scheduler.ready_count:
            if pool.free():
                self.dispatch()
            else:  # queued for the next free slot (of any run's), as dispatch would
                pool.want(self, self.priority, scheduler.next_key(), self.arrival)

    # -- one node ---------------------------------------------------------------

    async def run_node(self, node_id: str, slot: Slot) -> None:
        """Run one node to its end, then start what its end made ready."""
        try:
            node = self.nodes[node_id]
            record = self.records[node_id]
            pool = self.slots
            record.started = self.now()
            try:
                for check in self._gates:
                    check(node_id)
                if isinstance(node, MapNode):  # rare; agents and functions are the hot path
                    record.attempts = 1
                    self.emit(ev.NodeStarted(self.run_id, self.now(), node_id, 1))
                    output, usage = await self.attempts.run_map(node)
                    attempts = 1
                else:
                    body = cast("AgentNode | FunctionNode", node)
                    on_text = self.text_sink(node_id) if self.streaming else None
                    call, outputs = self.bodies.call, self.outputs
                    (output, usage), attempts = await self.attempts.with_retries(
                        node_id,
                        node,
                        slot,
                        lambda attempt: call(body, node_id, attempt, outputs, on_text=on_text),
                    )
                    finisher = self._finishers.get(node_id) if self._finishers else None
                    if finisher is not None:
                        pool.release(slot)  # waiting on other nodes takes no slot
                        output = await finisher(node_id, output)
            except asyncio.CancelledError:
                pool.release(slot)
                self._take_spent(node_id, record)
                self.scheduler.cancel(node_id)
                self._end(node_id, record, Status.CANCELLED, self.now())
                self.emit(ev.NodeCancelled(self.run_id, self.now(), node_id, started=True))
                raise
            except Exception as exc:
                pool.release(slot)
                self.fail(node_id, exc)
                return
            record.output = output
            bodies = self.bodies
            if bodies.spent:  # answers it paid for and dropped: failed attempts, repairs
                dropped = bodies.spent.pop(node_id, None)
                if dropped is not None:
                    usage = dropped if usage is None else usage + dropped
            record.usage = usage
            if bodies.finish_reasons:
                record.finish_reason = bodies.finish_reasons.pop(node_id, None)
            if bodies.redraws:
                bodies.redraws.pop(node_id, None)
            t = record.finished = self.clock() - self.t0
            record.status = Status.SUCCEEDED
            if self.recorder is not None:
                pool.release(slot)  # other work may use the slot while the result is written
                try:  # durable before any successor starts
                    await self.recorder.succeeded(self.results(node_id, record))
                except UnstorableOutputError as exc:  # the output is not data: the node fails
                    record.result = record.output = None
                    self.fail(node_id, exc)
                    return
            scheduler = self.scheduler
            newly_ready = scheduler.done(node_id)
            if self.watchers:
                duration = t - record.started
                self.emit(
                    ev.NodeFinished(self.run_id, t, node_id, output, attempts, duration, usage)
                )
                for ready in newly_ready:
                    self.emit(ev.NodeReady(self.run_id, t, ready))
            if (
                scheduler.ready_count
                and not self.stopping
                and pool.keeps(slot, self, self.priority, scheduler.next_key(), self.arrival)
            ):
                self.start_in(slot)
                return
            if scheduler.ready_count:
                self.want()
            pool.release(slot)  # hands the slot on and dispatches, most urgent run first
            pool.feed()
        finally:
            if not self.scheduler.is_active():
                self.ended.set()

    def text_sink(self, node_id: str) -> Callable[[str], None]:
        """Return the callback that turns a streamed piece of ``node_id``'s answer into an event."""

        def on_text(piece: str) -> None:
            self.emit(ev.NodeText(self.run_id, self.now(), node_id, piece))

        return on_text

    def _end(self, node_id: str, record: NodeState, status: Status, t: float) -> None:
        """``node_id`` ended without succeeding: record it, and write it (without waiting)."""
        record.finished = t
        record.status = status
        if self.recorder is not None:
            self.recorder.ended(self.results(node_id, record))

    def _take_spent(self, node_id: str, record: NodeState) -> None:
        """A node that ends without an output keeps what its calls cost, and why the
        model stopped its last answer."""
        record.usage = self.bodies.spent.pop(node_id, None) or record.usage
        self.bodies.redraws.pop(node_id, None)
        record.finish_reason = self.bodies.finish_reasons.pop(node_id, record.finish_reason)

    def fail(self, node_id: str, exc: BaseException) -> None:
        record = self.records[node_id]
        self._take_spent(node_id, record)
        attempts = getattr(exc, "attempts", None) or record.attempts or 1
        record.attempts = attempts
        cause = exc.__cause__ if isinstance(exc, NodeError) and exc.__cause__ else exc
        # A step's own exception may quote a key it read: masked like any output.
        error = redact(describe(exc if isinstance(exc, NodeTimeoutError) else cause))
        error_type = type(cause).__name__
        trace = self._traceback(node_id, exc, cause)
        record.fail(error, error_type, trace)
        t = self.now()
        self._end(node_id, record, Status.FAILED, t)
        self.emit(ev.NodeFailed(self.run_id, t, node_id, error, error_type, attempts, trace))
        for skipped in self.scheduler.fail(node_id):
            other = self.records[skipped]
            other.fail(f"dependency {node_id!r} failed", "Skipped")
            other.status = Status.SKIPPED
            if self.recorder is not None:
                self.recorder.ended(self.results(skipped, other))
            self.emit(ev.NodeSkipped(self.run_id, t, skipped, because=node_id))
        if self.options.error_policy == "fail_fast":
            self.stopping = True
            self._cancel_pending()
            raise _FailFast(node_id)
        self.wake()

    def _traceback(self, node_id: str, exc: BaseException, cause: BaseException) -> str:
        """The redacted traceback of a Python step's own exception ("" for other failures)."""
        node = self.nodes[node_id]
        body = node.body if isinstance(node, MapNode) else node
        # Only what the step itself raised (wrapped by its attempts): not a gate's refusal,
        # a timeout or an output the store cannot hold.
        if (
            not isinstance(body, FunctionNode)
            or not isinstance(exc, NodeError)
            or isinstance(exc, NodeTimeoutError)
        ):
            return ""
        text = redact("".join(traceback.format_exception(cause)))
        return text if len(text) <= MAX_TRACEBACK else "..." + text[-MAX_TRACEBACK:]

    def _cancel_pending(self) -> None:
        t = self.now()
        for node_id in self.scheduler.cancel_pending():
            record = self.records[node_id]
            record.status = Status.CANCELLED
            if self.recorder is not None:
                self.recorder.ended(self.results(node_id, record))
            self.emit(ev.NodeCancelled(self.run_id, t, node_id, started=False))

    def _store_failed(self) -> None:
        """The store stopped taking writes: nothing more starts."""
        self.stopping = True
        self._cancel_pending()

    # -- the result -------------------------------------------------------------

    def result(self, status: RunEnd) -> RunResult:
        results = self.results
        return run_record.run_result(
            self.run_id,
            self.wf,
            status,
            nodes={nid: results(nid, record) for nid, record in self.records.items()},
            strategy=self.strategy,
            max_concurrency=self.options.max_concurrency,
            wall_s=self.now(),
            critical_path=self.scheduler.critical_path,
            inputs=self.inputs,
        )


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
    control: Callable[[RunControl], None] | None = None,
    tools: Mapping[str, Callable[[str], Any]] | None = None,
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
    ``control`` is called with the run's :class:`~agentplex.engine.state.RunControl`
    before it starts (the planner uses it to add nodes while the run goes).
    ``tools`` are the tools agents may name (``tool(task) -> text``).

    A failed run returns a result with ``status == "failed"``; call
    ``result.raise_for_status()`` to turn that into an exception.

    Raises:
        InvalidWorkflowError: if the workflow does not validate.
        ConfigError: for a bad option, model string or missing input (before anything runs).
        asyncio.CancelledError: if the run is cancelled; observers still get
            a ``RunFinished`` event holding every finished output.
    """
    compiled = workflow if isinstance(workflow, CompiledWorkflow) else workflow.compile()
    run_options = RunOptions.from_keywords(options)
    opened = None
    if store is True or isinstance(store, str | Path):
        opened = open_store(None if store is True else store)
    run_store = opened or (store if isinstance(store, RunStore) else None)
    try:
        with relaxed_gc():  # from the run's construction on: it builds a record per node
            state = Run(
                compiled,
                inputs or {},
                run_options,
                observers,
                run_id=run_id,
                clock=clock,
                sleep=sleep,
                rng=rng,
                store=run_store,
                source=compiled.source,
                prior=prior,
                tools=tools,
            )
            if control is not None:
                control(state)
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
