"""The executor contract: where a function node's body runs.

``await executor.submit(fn, *args, **kwargs)`` runs ``fn`` and returns its
result or raises its exception; ``aclose()`` releases workers; and
``statistics()`` reports counters. The runner never branches on which
executor it has. Sync and async callables are both accepted everywhere.

Writing one: subclass :class:`Executor`, give it a ``name`` and implement
``_call`` (start the call and return its result, or an awaitable of it); the
base class counts, refuses work once closed and awaits what ``_call``
returns. Register a factory with :func:`agentplex.register_executor`; a
factory is called as ``factory(max_workers=..., address=...)`` (``address``:
where remote workers are, e.g. the run's Dask scheduler, or None; local
executors ignore it), so the class itself is a factory as long as its
``__init__`` takes those keywords (the base class's does). Then
``wf.function(fn, executor="name")`` runs ``fn`` there. The contract every
executor passes is ``tests/test_executors.py``.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class ExecutorStatistics:
    """Counters every executor keeps."""

    submitted: int
    succeeded: int
    failed: int
    in_flight: int
    max_workers: int | None


class Executor(ABC):
    """Base class of the executors: implement ``_call``; see the module docstring."""

    name: ClassVar[str]

    def __init__(self, *, max_workers: int | None = None, address: str | None = None) -> None:
        self.max_workers = max_workers
        self.address = address
        """Where remote workers are (a scheduler's address); None: local, or not used."""
        self._submitted = 0
        self._succeeded = 0
        self._failed = 0
        self._in_flight = 0
        self._closed = False

    async def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` here and return its result.

        Raises:
            RuntimeError: if the executor is closed.
            Exception: whatever ``fn`` raised.
        """
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed; create a new one")
        self._submitted += 1
        self._in_flight += 1
        try:
            result = self._call(fn, args, kwargs)
            if inspect.isawaitable(result):
                result = await result
        except BaseException:
            self._failed += 1
            raise
        finally:
            self._in_flight -= 1
        self._succeeded += 1
        return result

    @abstractmethod
    def _call(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Start the call here; return its result, or an awaitable of it.

        Synchronous on purpose: the inline executor then costs one plain call,
        and the pools return their future without another coroutine layer.
        """

    async def aclose(self) -> None:
        """Stop accepting work and release workers (waits for running calls)."""
        self._closed = True

    def statistics(self) -> ExecutorStatistics:
        return ExecutorStatistics(
            self._submitted, self._succeeded, self._failed, self._in_flight, self.max_workers
        )
