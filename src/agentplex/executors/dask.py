"""The Dask executor: function and map nodes as tasks on a Dask cluster.

Without an address, the first call starts a local cluster on 127.0.0.1 (one
single-threaded worker process per core, no dashboard) and the executor
stops it on close. With one (``tcp://scheduler:8786``, from ``--dask``,
``dask=`` or ``$AGENTPLEX_DASK``) it connects to that scheduler, and checks
it is reachable before the run starts (:meth:`DaskExecutor.check`).

Results and exceptions come back as Dask returns them: the original
exception type and message, with the worker's traceback. Cancelling the
awaiting node cancels the task on the cluster. Async callables run to
completion in the worker (each in its own event loop). Workers need the
functions' modules importable (installed, or on their ``PYTHONPATH``), as
for the process pool. ``distributed`` is an optional dependency:
``pip install 'agentplex[dask]'``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import os
from collections.abc import Callable
from typing import Any, ClassVar

from agentplex.exceptions import ConfigError, MissingExtraError
from agentplex.executors.base import Executor

CONNECT_TIMEOUT_S = 10.0


def import_distributed() -> Any:
    """Import ``distributed`` or say how to install it."""
    try:
        import distributed
    except ImportError:
        raise MissingExtraError("distributed", "dask", "the Dask executor") from None
    return distributed


def dask_address(address: str | None = None) -> str | None:
    """The scheduler to use: ``address``, else ``$AGENTPLEX_DASK``, else None (a local cluster)."""
    return address or os.environ.get("AGENTPLEX_DASK") or None


def _run(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """What a worker runs: the call, with an async callable driven to completion."""
    result = fn(*args, **kwargs)
    if inspect.isawaitable(result):
        return asyncio.run(_await(result))
    return result


async def _await(awaitable: Any) -> Any:
    return await awaitable


class RemoteTraceback(Exception):
    """The worker's traceback of an exception raised in a batched call (its ``__cause__``)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)

    def __str__(self) -> str:
        return str(self.args[0])


def _run_many(calls: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]]) -> list:  # type: ignore[type-arg]
    """Several calls in one task: each call's result, or its exception with its traceback."""
    import traceback

    outcomes: list[tuple[Any, ...]] = []
    for fn, args, kwargs in calls:
        try:
            outcomes.append(("ok", _run(fn, args, kwargs)))
        except Exception as exc:
            # __cause__ does not survive pickling: the text travels beside the exception
            outcomes.append(("error", exc, "".join(traceback.format_exception(exc))))
    return outcomes


class DaskExecutor(Executor):
    """Runs calls as Dask tasks; see the module docstring."""

    name: ClassVar[str] = "dask"

    def __init__(self, *, max_workers: int | None = None, address: str | None = None) -> None:
        super().__init__(max_workers=max_workers, address=dask_address(address))
        self._client: Any = None
        self._cluster: Any = None
        self._starting: asyncio.Future[Any] | None = None
        self._waiters: dict[str, list[asyncio.Future[Any]]] = {}
        self._futures: dict[str, Any] = {}
        self._single: set[str] = set()
        """Tasks of one call (``_run``): their result is the call's own."""
        self._chunk_of: dict[asyncio.Future[Any], str] = {}
        self._pending: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], Any]] = []
        self._flush_scheduled = False
        self._workers = 1
        self._completed: Any = None
        self._consumer: asyncio.Task[None] | None = None

    async def client(self) -> Any:
        """The connected client, connecting (or starting a local cluster) on first use.

        Raises:
            ConfigError: if the scheduler cannot be reached.
            MissingExtraError: if ``distributed`` is not installed.
        """
        if self._client is not None:
            return self._client
        if self._starting is None:  # one connection; every caller waiting wakes in one turn
            self._starting = asyncio.ensure_future(self._connect())
        try:
            client = await asyncio.shield(self._starting)
        except BaseException:
            if self._starting.done():
                self._starting = None  # a failed connection is tried again by the next call
            raise
        self._client = client
        return client

    async def _connect(self) -> Any:
        distributed = import_distributed()
        if self.address is None:
            import dask

            workers = self.max_workers or os.cpu_count() or 2
            # Hand workers their tasks at once rather than one per round trip: the local
            # scheduler shares the machine with busy workers, so each trip is slow.
            with dask.config.set({"distributed.scheduler.worker-saturation": math.inf}):
                self._cluster = await self._local(distributed, workers)
            client = await distributed.Client(self._cluster, asynchronous=True)
            self._workers = workers
            return client
        try:
            client = await asyncio.wait_for(
                distributed.Client(self.address, asynchronous=True, timeout=CONNECT_TIMEOUT_S),
                CONNECT_TIMEOUT_S + 5,
            )
        except (OSError, TimeoutError) as exc:
            raise ConfigError(
                f"cannot reach the Dask scheduler at {self.address} ({exc or type(exc).__name__}). "
                "Fix: start it (dask scheduler), check the address and port, or leave --dask "
                "out to run a local cluster."
            ) from None
        self._workers = max(1, sum((await client.nthreads()).values()))
        return client

    @staticmethod
    async def _local(distributed: Any, workers: int) -> Any:
        return await distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",  # loopback only
            silence_logs=logging.ERROR,
            asynchronous=True,
        )

    async def check(self) -> None:
        """Connect now, so an unreachable scheduler fails before the run starts."""
        await self.client()

    def _call(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return self._submit(fn, args, kwargs)

    async def _submit(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        await self.client()
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Any] = loop.create_future()
        self._pending.append((fn, args, kwargs, waiter))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        try:
            return await waiter
        except asyncio.CancelledError:
            key = self._chunk_of.pop(waiter, None)
            chunk = self._waiters.get(key) if key is not None else None
            if key is not None and chunk is not None and all(w.done() for w in chunk):
                self._waiters.pop(key, None)
                await asyncio.shield(self._futures.pop(key).cancel())  # on the cluster too
            raise

    def _flush(self) -> None:
        """Send the calls made since the last flush, a few per Dask task.

        Calls made in the same turn of the event loop (a map node's items,
        mostly) share tasks: two chunks per worker, so every worker stays busy
        while each task's fixed cost (several ms on a loaded machine) is paid
        once per chunk instead of once per call.
        """
        self._flush_scheduled = False
        calls, self._pending = self._pending, []
        calls = [c for c in calls if not c[3].done()]
        if not calls or self._client is None:
            return
        if self._completed is None:
            distributed = import_distributed()
            self._completed = distributed.as_completed(with_results=True, raise_errors=False)
        size = max(1, len(calls) // (2 * self._workers))
        for start in range(0, len(calls), size):
            chunk = calls[start : start + size]
            if len(chunk) == 1:
                fn, args, kwargs, _waiter = chunk[0]
                future = self._client.submit(_run, fn, args, kwargs, pure=False)
                self._single.add(future.key)
            else:
                batch = [(fn, args, kwargs) for fn, args, kwargs, _w in chunk]
                future = self._client.submit(_run_many, batch, pure=False)
            waiters = [c[3] for c in chunk]
            self._waiters[future.key] = waiters
            self._futures[future.key] = future
            for waiter in waiters:
                self._chunk_of[waiter] = future.key
            self._completed.add(future)
        if self._consumer is None or self._consumer.done():
            self._consumer = asyncio.create_task(self._consume())

    async def _consume(self) -> None:
        """Hand each finished task's results to their callers, fetched in batches.

        (Awaiting each Dask future alone costs a round trip per result, which on a
        busy machine is most of a short task's overhead.)
        """
        completed = self._completed
        assert completed is not None
        while True:
            async for future, result in completed:
                self._futures.pop(future.key, None)
                waiters = self._waiters.pop(future.key, [])
                for waiter in waiters:
                    self._chunk_of.pop(waiter, None)
                if future.status == "error" and isinstance(result, tuple):
                    _kind, exc, tb = result
                    outcomes = [("error", exc.with_traceback(tb))] * len(waiters)
                elif future.key in self._single:
                    self._single.discard(future.key)
                    outcomes = [("ok", result)]
                else:
                    outcomes = result
                for waiter, outcome in zip(waiters, outcomes, strict=True):
                    if waiter.done():
                        continue  # cancelled by its caller
                    if outcome[0] == "ok":
                        waiter.set_result(outcome[1])
                        continue
                    error = outcome[1]
                    if len(outcome) > 2:
                        error.__cause__ = RemoteTraceback(outcome[2])
                    waiter.set_exception(error)
            if completed.is_empty():  # nothing can be added between this check and the end
                return

    async def aclose(self) -> None:
        await super().aclose()
        if self._consumer is not None:
            self._consumer.cancel()
            await asyncio.gather(self._consumer, return_exceptions=True)
        client, cluster = self._client, self._cluster
        self._client = self._cluster = self._completed = self._consumer = self._starting = None
        if client is not None:
            await client.close()
        if cluster is not None:
            await cluster.close()
