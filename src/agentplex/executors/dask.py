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


class DaskExecutor(Executor):
    """Runs calls as Dask tasks; see the module docstring."""

    name: ClassVar[str] = "dask"

    def __init__(self, *, max_workers: int | None = None, address: str | None = None) -> None:
        super().__init__(max_workers=max_workers)
        self.address = dask_address(address)
        self._client: Any = None
        self._cluster: Any = None
        self._starting: asyncio.Lock | None = None
        self._waiters: dict[str, asyncio.Future[Any]] = {}
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
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._client is None:
                self._client = await self._connect()
        return self._client

    async def _connect(self) -> Any:
        distributed = import_distributed()
        if self.address is None:
            import dask

            workers = self.max_workers or os.cpu_count() or 2
            # Hand workers their tasks at once rather than one per round trip: the local
            # scheduler shares the machine with busy workers, so each trip is slow.
            with dask.config.set({"distributed.scheduler.worker-saturation": math.inf}):
                self._cluster = await self._local(distributed, workers)
            return await distributed.Client(self._cluster, asynchronous=True)
        try:
            return await asyncio.wait_for(
                distributed.Client(self.address, asynchronous=True, timeout=CONNECT_TIMEOUT_S),
                CONNECT_TIMEOUT_S + 5,
            )
        except (OSError, TimeoutError) as exc:
            raise ConfigError(
                f"cannot reach the Dask scheduler at {self.address} ({exc or type(exc).__name__}). "
                "Fix: start it (dask scheduler), check the address and port, or leave --dask "
                "out to run a local cluster."
            ) from None

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
        client = await self.client()
        future = client.submit(_run, fn, args, kwargs, pure=False)
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters[future.key] = waiter
        if self._completed is None:
            distributed = import_distributed()
            self._completed = distributed.as_completed(with_results=True, raise_errors=False)
        self._completed.add(future)
        if self._consumer is None or self._consumer.done():
            self._consumer = asyncio.create_task(self._consume())
        try:
            return await waiter
        except asyncio.CancelledError:
            self._waiters.pop(future.key, None)
            await asyncio.shield(future.cancel())  # stop the task on the cluster too
            raise

    async def _consume(self) -> None:
        """Hand each finished task's result to its caller; results are fetched in batches.

        (Awaiting each Dask future alone costs a round trip per result, which on a
        busy machine is most of a short task's overhead.)
        """
        completed = self._completed
        assert completed is not None
        while True:
            async for future, result in completed:
                waiter = self._waiters.pop(future.key, None)
                if waiter is None or waiter.done():
                    continue  # cancelled by its caller
                if future.status == "error" and isinstance(result, tuple):
                    _kind, exc, tb = result
                    waiter.set_exception(exc.with_traceback(tb))
                else:
                    waiter.set_result(result)
            if completed.is_empty():  # nothing can be added between this check and the end
                return

    async def aclose(self) -> None:
        await super().aclose()
        if self._consumer is not None:
            self._consumer.cancel()
            await asyncio.gather(self._consumer, return_exceptions=True)
        client, cluster = self._client, self._cluster
        self._client = self._cluster = self._completed = self._consumer = None
        if client is not None:
            await client.close()
        if cluster is not None:
            await cluster.close()
