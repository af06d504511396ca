"""Fan out independent calls inside one node, cancelling the rest when one fails."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")


async def fan_out(
    calls: Iterable[Awaitable[T] | Callable[[], Awaitable[T]]],
    *,
    limit: int | None = None,
) -> list[T]:
    """Run independent calls concurrently and return their results in order.

    Each call is an awaitable (``fetch(url)``) or a zero-argument async
    callable (``lambda: fetch(url)``). All run in one :class:`asyncio.TaskGroup`:
    when one fails the others are cancelled, and the failures are raised as an
    :class:`ExceptionGroup`. ``limit`` caps how many run at once.

    Example::

        pages = await fan_out(fetch(url) for url in urls)

    Raises:
        ExceptionGroup: with every call that failed before the rest were cancelled.
        ValueError: if ``limit`` is not a positive number.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit!r}")
    pending = list(calls)
    results: list[Any] = [None] * len(pending)
    gate = asyncio.Semaphore(limit) if limit is not None else None

    async def one(index: int, call: Awaitable[T] | Callable[[], Awaitable[T]]) -> None:
        if gate is None:
            results[index] = await _awaitable(call)
            return
        async with gate:
            results[index] = await _awaitable(call)

    try:
        async with asyncio.TaskGroup() as group:
            for index, call in enumerate(pending):
                group.create_task(one(index, call))
    finally:
        for call in pending:  # never leave a coroutine un-awaited after a cancellation
            if inspect.iscoroutine(call) and call.cr_frame is not None and not call.cr_running:
                call.close()
    return results


def _awaitable(call: Awaitable[T] | Callable[[], Awaitable[T]]) -> Awaitable[T]:
    if inspect.isawaitable(call):
        return call
    return call()
