"""Thread and process pools: for blocking callables and CPU-bound ones.

Both wrap :mod:`concurrent.futures`. Cancelling a submitted call stops
waiting for it at once; a call already running in a worker finishes in the
background (Python cannot interrupt a thread or a busy process safely), and
``aclose()`` waits for it. An exception raised in a worker process keeps its
remote traceback as ``__cause__``.

The process pool uses the ``forkserver`` start method where available: it is
safe in a process that already runs threads, unlike ``fork``, and starts
workers much faster than ``spawn``. Callables must be importable (defined at
module level) and their arguments picklable. A function its module holds
under a wrapper that keeps it as ``__wrapped__`` (what ``@wf.step`` leaves
there) is sent by name and unwrapped in the worker.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import functools
import importlib
import inspect
import multiprocessing
import os
import sys
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


class _Unwrapped:
    """A module-level function its module holds only inside a wrapper, sent by name."""

    __slots__ = ("module", "qualname")

    def __init__(self, module: str, qualname: str) -> None:
        self.module = module
        self.qualname = qualname

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Unwrapped, (self.module, self.qualname))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        found: Any = importlib.import_module(self.module)
        for part in self.qualname.split("."):
            found = getattr(found, part)
        return found.__wrapped__(*args, **kwargs)


def _picklable(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Return ``fn``, or a by-name reference if pickle could not find it under its name.

    Pickle sends a function as ``module.qualname`` and refuses when that name
    holds another object; when it holds a wrapper of ``fn`` (``__wrapped__``),
    the worker can unwrap it there instead.
    """
    module = sys.modules.get(getattr(fn, "__module__", None) or "")
    qualname = getattr(fn, "__qualname__", None)
    if module is None or not isinstance(qualname, str) or "<" in qualname:
        return fn
    found: Any = module
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if found is fn or getattr(found, "__wrapped__", None) is not fn:
        return fn
    return _Unwrapped(module.__name__, qualname)


class _PoolExecutor(Executor):
    def __init__(self, *, max_workers: int | None = None, address: str | None = None) -> None:
        super().__init__(max_workers=max_workers or self.default_workers(), address=address)
        self._pool: cf.Executor | None = None

    @staticmethod
    def default_workers() -> int:
        return os.cpu_count() or 1

    def _make_pool(self) -> cf.Executor:
        raise NotImplementedError

    def _ship(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Return what to hand the pool for ``fn`` (threads take it as it is)."""
        return fn

    def _call(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self._pool is None:
            self._pool = self._make_pool()
        loop = asyncio.get_running_loop()
        call = functools.partial(_call_in_worker, self._ship(fn), args, kwargs)
        return loop.run_in_executor(self._pool, call)

    async def aclose(self) -> None:
        await super().aclose()
        pool, self._pool = self._pool, None
        if pool is not None:
            await self._shutdown(pool)

    async def _shutdown(self, pool: cf.Executor) -> None:
        await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)


THREAD_PREFIX = "agentplex-step"
"""Names the threads of the thread executor; the CLI does not wait for them at exit."""


class ThreadExecutor(_PoolExecutor):
    """Run blocking callables (SDK calls, file I/O) in a thread pool."""

    name: ClassVar[str] = "thread"

    @staticmethod
    def default_workers() -> int:
        return min(32, (os.cpu_count() or 1) + 4)

    def _make_pool(self) -> cf.Executor:
        return cf.ThreadPoolExecutor(self.max_workers, thread_name_prefix=THREAD_PREFIX)

    async def _shutdown(self, pool: cf.Executor) -> None:
        # A thread cannot be stopped: a step still running when its run ends (it was
        # cancelled, or a sibling failed) is left to finish on its own, not waited for.
        pool.shutdown(wait=False, cancel_futures=True)


class ProcessExecutor(_PoolExecutor):
    """Run CPU-bound callables in a process pool, one worker per core by default."""

    name: ClassVar[str] = "process"

    def _ship(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        return _picklable(fn)

    def _make_pool(self) -> cf.Executor:
        methods = multiprocessing.get_all_start_methods()
        method = "forkserver" if "forkserver" in methods else "spawn"
        return cf.ProcessPoolExecutor(
            self.max_workers, mp_context=multiprocessing.get_context(method)
        )
