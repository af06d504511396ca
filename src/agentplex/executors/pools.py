"""Thread and process pools: for blocking callables and CPU-bound ones.

Both wrap :mod:`concurrent.futures`. Cancelling a submitted call stops
waiting for it at once; a call already running in a worker finishes in the
background (Python cannot interrupt a thread or a busy process safely), and
``aclose()`` waits for it. An exception raised in a worker process keeps its
remote traceback as ``__cause__``.

The process pool uses the ``forkserver`` start method where available: it is
safe in a process that already runs threads, unlike ``fork``, and starts
workers much faster than ``spawn``. Callables must be importable (defined at
module level) and their arguments picklable.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import functools
import inspect
import multiprocessing
import os
from collections.abc import Callable
from typing import Any, ClassVar

from agentplex.executors.base import Executor


def _call_in_worker(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Call ``fn`` in a worker, running it to completion if it is async."""
    result = fn(*args, **kwargs)
    if inspect.isawaitable(result):

        async def wait() -> Any:
            return await result

        result = asyncio.run(wait())
    return result


class _PoolExecutor(Executor):
    def __init__(self, *, max_workers: int | None = None) -> None:
        super().__init__(max_workers=max_workers or self.default_workers())
        self._pool: cf.Executor | None = None

    @staticmethod
    def default_workers() -> int:
        return os.cpu_count() or 1

    def _make_pool(self) -> cf.Executor:
        raise NotImplementedError

    def _call(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self._pool is None:
            self._pool = self._make_pool()
        loop = asyncio.get_running_loop()
        call = functools.partial(_call_in_worker, fn, args, kwargs)
        return loop.run_in_executor(self._pool, call)

    async def aclose(self) -> None:
        await super().aclose()
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)


class ThreadExecutor(_PoolExecutor):
    """Run blocking callables (SDK calls, file I/O) in a thread pool."""

    name: ClassVar[str] = "thread"

    @staticmethod
    def default_workers() -> int:
        return min(32, (os.cpu_count() or 1) + 4)

    def _make_pool(self) -> cf.Executor:
        return cf.ThreadPoolExecutor(self.max_workers, thread_name_prefix="agentplex")


class ProcessExecutor(_PoolExecutor):
    """Run CPU-bound callables in a process pool, one worker per core by default."""

    name: ClassVar[str] = "process"

    def _make_pool(self) -> cf.Executor:
        methods = multiprocessing.get_all_start_methods()
        method = "forkserver" if "forkserver" in methods else "spawn"
        return cf.ProcessPoolExecutor(
            self.max_workers, mp_context=multiprocessing.get_context(method)
        )
