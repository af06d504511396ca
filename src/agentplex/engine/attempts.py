"""How one node's work is attempted: timeouts, retries with backoff, and map items.

:class:`Attempts` runs a body once it has a slot; the run owns one and gives
it what it needs (options, clocks, the slot pool, the event sink, the
bodies). ``with_retries`` applies the node's per-attempt and total
timeouts (:func:`time_limits`) and its retry policy (two budgets, one for real
errors and one for rate limits; backoff with full jitter or the Retry-After;
the slot handed back while waiting, see :mod:`agentplex.engine.retry`), and
``run_map`` fans a map node's body out over its items, at most the node's
``max_items`` of them, each item under the same policy in its own slot. The
policy itself is in :mod:`agentplex.engine.runner`'s docstring.

Deadlines. A node's per-attempt limit is its ``timeout_s``, else the run's;
its total limit is the run's ``total_timeout_s``, else
:data:`~agentplex.engine.options.DEFAULT_TOTAL_TIMEOUT_S` for nodes that call a model
(agents, and each item of a map with an agent body) and none for user
functions, which may run long on purpose. ``math.inf`` means no limit.

Timers cost a few microseconds each, so a node gets none unless it needs one.
Every LLM call (agents and ``ctx.ask`` alike) has its provider's deadline
(:class:`~agentplex.llm.base.Provider`): one loop timer per call. A node whose
only limit is the default total (an agent with no ``timeout_s``) enforces it
through that same timer, by setting :data:`~agentplex.llm.base.CALL_DEADLINE`
for its attempts, and by checking between attempts. Only a limit the user set
(a ``timeout_s``, a ``total_timeout_s``) wraps each attempt in an
``asyncio.timeout``, which bounds the whole body, user code included. A
function node with neither costs nothing.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from agentplex import events as ev
from agentplex.engine.prompts import as_items
from agentplex.engine.retry import backoff_delay, describe, is_rate_limited, is_retryable
from agentplex.engine.slots import Slot, SlotPool
from agentplex.engine.state import NodeState, Outputs
from agentplex.exceptions import NodeError, NodeTimeoutError
from agentplex.llm.base import CALL_DEADLINE
from agentplex.model.workflow import AgentNode, MapNode, Node
from agentplex.result import Usage

if TYPE_CHECKING:
    from agentplex.engine.bodies import NodeBodies
    from agentplex.engine.options import RunOptions

T = TypeVar("T")


def time_limits(spec: Node, options: RunOptions) -> tuple[float | None, float | None]:
    """Return the per-attempt and total time limits (seconds; None: none) of ``spec``'s attempts."""
    per_attempt = spec.timeout_s
    if per_attempt is None:
        per_attempt = options.timeout_s
    if per_attempt == math.inf:
        per_attempt = None
    total = options.total_timeout_s
    if total is None:
        body = spec.body if isinstance(spec, MapNode) else spec
        if isinstance(body, AgentNode):  # it calls a model; user functions get no default
            from agentplex.engine.options import DEFAULT_TOTAL_TIMEOUT_S

            total = DEFAULT_TOTAL_TIMEOUT_S
    elif total == math.inf:
        total = None
    return per_attempt, total


class Attempts:
    """Attempts of one run's nodes: timeouts, retries and map items (see the module docstring)."""

    __slots__ = (
        "bodies",
        "clock",
        "emit",
        "events",
        "now",
        "options",
        "outputs",
        "records",
        "rng",
        "run_id",
        "sleep",
        "slots",
    )

    def __init__(
        self,
        options: RunOptions,
        *,
        run_id: str,
        bodies: NodeBodies,
        records: Mapping[str, NodeState],
        slots: SlotPool,
        clock: Callable[[], float],
        now: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        rng: random.Random,
        emit: Callable[[ev.Event], None],
        events: Sequence[ev.Observer],
    ) -> None:
        self.options = options
        self.run_id = run_id
        self.bodies = bodies
        self.records = records
        """Node records by id: a node's attempts are counted in its record."""
        self.outputs = Outputs(records)
        self.slots = slots
        self.clock = clock
        self.now = now
        """Seconds since the run started."""
        self.sleep = sleep
        self.rng = rng
        self.emit = emit
        self.events = events
        """The run's observers: attempts announce themselves only when someone listens."""

    async def with_retries(
        self,
        node_id: str,
        spec: Node,
        slot: Slot,
        attempt_fn: Callable[[int], Awaitable[T]],
        *,
        is_item: bool = False,
    ) -> tuple[T, int]:
        """Run ``attempt_fn`` under the node's timeout and retry policy, holding a slot.

        Real errors use up ``retries``, rate limits ``rate_limit_retries``
        (see :mod:`agentplex.engine.retry`). Map items (``is_item``) do not announce
        their attempts as node starts.
        """
        options = self.options
        retries = spec.retries if spec.retries is not None else options.retries
        per_attempt, total = time_limits(spec, options)
        deadline = None if total is None else self.clock() + total
        # The default total of a node that calls a model rides on its calls' timers.
        ends = None
        if deadline is not None and per_attempt is None and options.total_timeout_s is None:
            task = asyncio.current_task()
            assert task is not None
            ends = (task, asyncio.get_running_loop().time() + (deadline - self.clock()))
        attempt = failures = limited = 0
        while True:
            attempt += 1
            timeout = per_attempt
            if deadline is not None:
                left = deadline - self.clock()
                if left <= 0:
                    raise NodeTimeoutError(node_id, total or 0.0, attempts=attempt - 1, total=True)
                if ends is None:
                    timeout = left if timeout is None else min(timeout, left)
            if not slot.held:
                await self.slots.acquire(slot)
            if not is_item:
                t = self.now()
                self.records[node_id].attempt_started(attempt, t)
                if self.events:  # events cost nothing when nobody listens
                    self.emit(ev.NodeStarted(self.run_id, t, node_id, attempt))
            try:
                if ends is not None:
                    token = CALL_DEADLINE.set(ends)
                    try:
                        return await attempt_fn(attempt), attempt
                    finally:
                        CALL_DEADLINE.reset(token)
                if timeout is None:
                    return await attempt_fn(attempt), attempt
                try:
                    async with asyncio.timeout(timeout) as scope:
                        return await attempt_fn(attempt), attempt
                except TimeoutError as exc:
                    if scope.expired():
                        whole = timeout != per_attempt or per_attempt is None
                        limit = (total or 0.0) if whole else timeout
                        raise NodeTimeoutError(
                            node_id, limit, attempts=attempt, total=whole
                        ) from exc
                    raise
            except Exception as exc:
                retryable = is_retryable(exc, spec.retry_on) and not getattr(exc, "total", False)
                if retryable and deadline is not None and self.clock() >= deadline:
                    raise NodeTimeoutError(  # no time left for another attempt
                        node_id, total or 0.0, attempts=attempt, total=True
                    ) from exc
                if retryable and is_rate_limited(exc):
                    limited += 1
                    count, left_over = limited, limited <= options.rate_limit_retries
                else:
                    failures += 1
                    count, left_over = failures, failures <= retries
                if not (retryable and left_over):
                    if not isinstance(exc, NodeError):
                        raise NodeError(node_id, describe(exc), attempts=attempt) from exc
                    exc.attempts = attempt
                    raise
                delay = self.backoff(count, exc)
                if deadline is not None:
                    delay = min(delay, max(0.0, deadline - self.clock()))
                self.emit(
                    ev.NodeRetrying(self.run_id, self.now(), node_id, attempt, describe(exc), delay)
                )
                self.slots.release(slot)
                await self.sleep(delay)

    def backoff(self, count: int, exc: BaseException) -> float:
        """The wait after the ``count``-th retryable error of ``exc``'s kind."""
        options = self.options
        return backoff_delay(
            count,
            exc,
            base_s=options.backoff_base_s,
            max_s=options.backoff_max_s,
            retry_after_max_s=options.retry_after_max_s,
            rng=self.rng,
        )

    async def run_map(self, node: MapNode) -> tuple[list[Any], Usage | None]:
        """Run ``node``'s body over each item of its list, each in a slot of its own."""
        try:
            items = as_items(self.outputs[node.over])
        except TypeError as exc:
            raise NodeError(node.id, f"cannot map over {node.over!r}: {exc}") from exc
        if len(items) > node.max_items:
            raise NodeError(
                node.id,
                f"{node.over!r} gave {len(items):,} items to map over, more than the node's "
                f"limit of {node.max_items:,}; none was started. Fix: if that many is meant, "
                f"set max_items: {len(items)} on node {node.id!r} (max_items={len(items)} "
                f"in Python); otherwise make {node.over!r} return fewer.",
            )
        results: list[Any] = [None] * len(items)
        usages: list[Usage] = []
        done = 0
        body = node.body
        retry_spec = body if body.retries is not None else node

        async def one(index: int, item: Any) -> None:
            nonlocal done
            slot = Slot(False)
            try:
                (output, usage), _ = await self.with_retries(
                    node.id,
                    _with_timeout(retry_spec, body.timeout_s),
                    slot,
                    lambda attempt: self.bodies.call(
                        body,
                        node.id,
                        attempt,
                        self.outputs,
                        {"item": item, "index": index},
                        (node.over,),
                    ),
                    is_item=True,
                )
            finally:
                self.slots.release(slot)
            results[index] = output
            if usage is not None:
                usages.append(usage)
            done += 1
            self.emit(ev.NodeProgress(self.run_id, self.now(), node.id, done, len(items)))

        try:
            async with asyncio.TaskGroup() as group:
                for index, item in enumerate(items):
                    group.create_task(one(index, item))
        except BaseExceptionGroup as group_error:
            first = group_error.exceptions[0]
            raise first from None
        return results, (sum(usages, Usage()) if usages else None)


def _with_timeout(spec: Node, timeout_s: float | None) -> Node:
    import dataclasses

    if timeout_s is None or spec.timeout_s == timeout_s:
        return spec
    return dataclasses.replace(spec, timeout_s=timeout_s)
