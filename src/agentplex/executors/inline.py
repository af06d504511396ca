"""Run on the event loop itself: for async callables and trivially cheap sync ones."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from agentplex.executors.base import Executor


class InlineExecutor(Executor):
    """Await async callables; call sync ones directly (they block the loop while they run)."""

    name: ClassVar[str] = "inline"

    def _call(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return fn(*args, **kwargs)  # a coroutine, if fn is async: submit() awaits it
