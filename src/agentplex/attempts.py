"""How one node's work is attempted: timeouts, retries with backoff, and map items.

:class:`Attempts` is the part of the runner's ``_Run`` that runs a body once
it has a slot: ``with_retries`` applies the node's per-attempt and total
timeouts and its retry policy (backoff with full jitter, Retry-After as a
floor, the slot handed back while waiting), and ``run_map`` fans a map node's
body out over its items, each item under the same policy in its own slot.
The policy itself is in :mod:`agentplex.runner`'s docstring.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from agentplex import events as ev
from agentplex.agents import as_items
from agentplex.exceptions import NodeError, NodeTimeoutError
from agentplex.llm.base import Usage
from agentplex.retry import backoff_delay, describe, is_retryable
from agentplex.slots import Slot
from agentplex.workflow import MapNode, Node

if TYPE_CHECKING:
    from agentplex.bodies import NodeBodies
    from agentplex.options import RunOptions

T = TypeVar("T")


class Attempts:
    """Mixed into the runner's ``_Run``; the attributes below are the run's."""

    options: RunOptions
    run_id: str
    bodies: NodeBodies
    outputs: dict[str, Any]
    attempts: dict[str, int]
    attempt_starts: dict[str, list[float]]
    observers: list[ev.Observer]
    clock: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]]
    rng: random.Random

    def now(self) -> float:
        raise NotImplementedError

    def emit(self, event: ev.Event) -> None:
        raise NotImplementedError

    async def acquire(self, slot: Slot) -> None:
        raise NotImplementedError

    def release(self, slot: Slot) -> None:
        raise NotImplementedError

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

        Map items (``is_item``) do not announce their attempts as node starts.
        """
        retries = spec.retries if spec.retries is not None else self.options.retries
        per_attempt = spec.timeout_s if spec.timeout_s is not None else self.options.timeout_s
        total = self.options.total_timeout_s
        deadline = None if total is None else self.clock() + total
        attempt = 0
        while True:
            attempt += 1
            timeout = per_attempt
            if deadline is not None:
                left = deadline - self.clock()
                if left <= 0:
                    raise NodeTimeoutError(node_id, total or 0.0, attempts=attempt - 1, total=True)
                timeout = left if timeout is None else min(timeout, left)
            if not slot.held:
                await self.acquire(slot)
            if not is_item:
                self.attempts[node_id] = attempt
                self.attempt_starts.setdefault(node_id, []).append(self.now())
                if self.observers:  # events cost nothing when nobody listens
                    self.emit(ev.NodeStarted(self.run_id, self.now(), node_id, attempt))
            try:
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
                if (
                    attempt > retries
                    or not is_retryable(exc, spec.retry_on)
                    or getattr(exc, "total", False)
                ):
                    if not isinstance(exc, NodeError):
                        raise NodeError(node_id, describe(exc), attempts=attempt) from exc
                    exc.attempts = attempt
                    raise
                delay = self.backoff(attempt, exc)
                if deadline is not None:
                    delay = min(delay, max(0.0, deadline - self.clock()))
                self.emit(
                    ev.NodeRetrying(self.run_id, self.now(), node_id, attempt, describe(exc), delay)
                )
                self.release(slot)
                await self.sleep(delay)

    def backoff(self, attempt: int, exc: BaseException) -> float:
        options = self.options
        return backoff_delay(
            attempt,
            exc,
            base_s=options.backoff_base_s,
            max_s=options.backoff_max_s,
            retry_after_max_s=options.retry_after_max_s,
            rng=self.rng,
        )

    async def run_map(self, node: MapNode) -> tuple[list[Any], Usage | None]:
        try:
            items = as_items(self.outputs[node.over])
        except TypeError as exc:
            raise NodeError(node.id, f"cannot map over {node.over!r}: {exc}") from exc
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
                self.release(slot)
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
