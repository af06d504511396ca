"""Run on the event loop itself: for async callables and trivially cheap sync ones."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar

from agentplex.executors.base import Executor


class InlineExecutor(Executor):
    """Await async callables; call sync ones directly (they block the loop while they run)."""

    name: ClassVar[str] = "inline"

    async def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        # The base class's submit, with _run inlined: this path runs once per node.
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed; create a new one")
        self._submitted += 1
        self._in_flight += 1
        try:
            result = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        except BaseException:
            self._failed += 1
            raise
        finally:
            self._in_flight -= 1
        self._succeeded += 1
        return result

    async def _run(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        result = fn(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result
