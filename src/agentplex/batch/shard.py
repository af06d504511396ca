"""Sharded batches: a batch's items spread over the workers of a Dask cluster.

The driver (the process that called :func:`~agentplex.run_batch` with
``dask=..., shard=True``) splits the valid items into shards, several per
worker so results come back while the batch runs (but each big enough to
fill the slots, see :func:`shard_size`), and submits each shard as one Dask
task. A worker runs its shard with its own asyncio runner: an
ordinary local batch, without a store or a result cache, one shard at a time
per worker process.

**One budget for the cluster.** The batch's limits (``max_concurrency``, and
each provider's ``max_inflight``/``rpm``/``tpm``, from flags or the
workflow's ``providers:``) are the whole cluster's. The driver keeps them
(:class:`~agentplex.cluster.budget.Budget`) and lends each worker a share that
follows its demand; the worker's limiters and slots run at that share
(:class:`~agentplex.cluster.budget.WorkerShares`). Both sides talk through Dask's
own primitives: a worker reports (and forwards events) with
``Worker.log_event`` on the batch's topic, which the driver's client
subscribes to; the driver publishes grants in a ``distributed.Variable``
that workers read about ten times a second.

**Events stream back.** With observers on the driver (the CLI's progress, a
caller's), a worker forwards its items' node lifecycle events (started,
retrying, progress, finished without its output, failed, skipped,
cancelled) with its reports, and the driver re-emits them under its own
item run ids (``<batch>.<index>``), with ``ItemStarted`` when an item really
starts.

**The driver alone writes.** As each shard finishes, its items are written
to the run store (item runs ``<batch>.<index>``, the same records a local
batch writes, so ``agentplex resume`` finishes a sharded batch as it would a
local one), to ``--out``, and reported as ``ItemFinished``.

**Faults and Ctrl-C.** A worker that dies loses only its running shard: Dask
runs that shard again on another worker (up to
``distributed.scheduler.allowed-failures`` times, 3 by default), and nothing
is recorded twice because the driver records a shard only once it has come
back whole. Its share of the budget returns after ``2 * lease_s`` without a
report. On Ctrl-C the driver tells the workers to stop, records the items
their shards had finished (waiting up to ``STOP_WAIT_S``) and cancels the
rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from agentplex import events as ev
from agentplex.batch.driver import _Batch
from agentplex.batch.inputs import BatchItem
from agentplex.batch.result import ItemResult
from agentplex.cluster.budget import SLOTS, Budget, WorkerShares
from agentplex.engine.options import RunOptions
from agentplex.executors.dask import DaskExecutor, import_distributed
from agentplex.llm.limits import share_limits
from agentplex.model.workflow import CompiledWorkflow
from agentplex.store.recorder import record_finished

SHARDS_PER_WORKER = 4
TICK_S = 0.1
"""How often a worker reports and reads its grants, and the driver reallocates."""
FAST_TICK_S = 0.02
"""A worker that wants something it has no share of asks this often."""
LEASE_S = 5.0
"""A worker that has not read its grants for this long starts nothing."""
STOP_WAIT_S = 5.0
"""On Ctrl-C, how long the driver waits for stopped shards' finished items."""


@dataclasses.dataclass(frozen=True, slots=True)
class Link:
    """How a shard reaches its driver: names on the scheduler, pickled into each task."""

    batch_id: str
    events: bool
    """Forward node events (the driver has observers)."""
    lease_s: float = LEASE_S

    @property
    def topic(self) -> str:
        return f"agentplex-{self.batch_id}"

    @property
    def grants(self) -> str:
        return f"agentplex-{self.batch_id}-grants"


def shard_size(items: int, workers: int, max_concurrency: int) -> int:
    """Items per shard: ``SHARDS_PER_WORKER`` shards per worker, so results come back as
    the batch runs, but enough items to fill the slots (a worker runs one shard at a time,
    so a shard of one item would run one item at a time however many slots there are)."""
    spread = math.ceil(items / (workers * SHARDS_PER_WORKER))
    return max(1, spread, min(math.ceil(items / workers), max_concurrency))


def worker_options(options: RunOptions) -> RunOptions:
    """A shard's options: the batch's, without what only the driver has."""
    return dataclasses.replace(
        options,
        cache=False,  # the cache is the driver's; a worker has no shared disk to keep it on
        dask=None,
        executor=None,
    )


# -- the worker's side ------------------------------------------------------------------------

_ONE_AT_A_TIME = threading.Lock()
"""Limiters are per process: a worker with several threads still runs one shard at a time."""
_shares: tuple[str, WorkerShares] | None = None
"""This process's shares in the batch it last ran a shard of (what its limiters learned)."""


def run_shard(
    compiled: CompiledWorkflow, items: list[BatchItem], options: RunOptions, link: Link
) -> list[ItemResult]:
    """What a worker runs: one shard, as a local batch with its own event loop."""
    global _shares
    distributed = import_distributed()
    worker = distributed.get_worker()
    variable = distributed.Variable(link.grants, client=distributed.get_client())
    with _ONE_AT_A_TIME:
        if _shares is None or _shares[0] != link.batch_id:
            _shares = (link.batch_id, WorkerShares())
        shard = _Shard(link, worker, variable, _shares[1])
        return asyncio.run(shard.run(compiled, items, options))


class _Shard:
    """One shard on a worker: the local batch, its reports and its grants."""

    def __init__(self, link: Link, worker: Any, variable: Any, shares: WorkerShares) -> None:
        self.link = link
        self.worker = worker
        self.address: str = worker.address
        self.variable = variable
        self.shares = shares
        self.item_keys: dict[str, str] = {}
        """The shard's item run ids -> item keys."""
        self.outbox: list[list[Any]] = []
        self.heard = time.monotonic()
        self.stopped = False

    async def run(
        self, compiled: CompiledWorkflow, items: list[BatchItem], options: RunOptions
    ) -> list[ItemResult]:
        self.take(await asyncio.to_thread(self.read))
        batch = _Batch(
            compiled,
            items,
            options,
            [self.forward] if self.link.events else [],
            out=None,
            keep_results=True,
            max_open=None,
            rng=random.Random(),
        )
        share_limits(self.shares)
        self.shares.attach_slots(batch.slots, options.max_concurrency)
        main = asyncio.create_task(batch.execute())
        ticker = asyncio.create_task(self.tick(main))
        try:
            await main
        except asyncio.CancelledError:
            if not self.stopped:
                raise  # (stopped by the driver: return what finished)
        finally:
            ticker.cancel()
            share_limits(None)
            self.shares.end()
            self.send(bye=True)
        return list(batch.results.values())

    def forward(self, event: ev.Event) -> None:
        """Observer: queue the event for the driver, keyed by item."""
        if isinstance(event, ev.ItemStarted):
            self.item_keys[event.item_run_id] = event.key
            self.outbox.append([event.key, None])
            return
        row = ev.to_wire(event)
        key = self.item_keys.get(event.run_id)
        if row is not None and key is not None:
            self.outbox.append([key, row])

    def send(self, *, bye: bool = False) -> None:
        """Report demand and held shares, with the events since the last report."""
        shares = self.shares
        message = {
            "w": self.address,
            "v": shares.version,
            "r": shares.report(),
            "e": self.outbox,
            "bye": bye,
        }
        self.outbox = []
        self.worker.log_event(self.link.topic, message)

    def read(self) -> Any:
        """The driver's grants (in a thread: a round trip to the scheduler), None if unheard."""
        try:
            return self.variable.get(timeout=self.link.lease_s)
        except Exception:
            return None

    def take(self, state: Any, main: asyncio.Task[Any] | None = None) -> None:
        now = time.monotonic()
        if state is None:
            if now - self.heard > self.link.lease_s:
                self.shares.hold()  # the lease ran out: start nothing until heard again
            return
        self.heard = now
        if state["stop"] and main is not None and not self.stopped:
            self.stopped = True
            main.cancel()
        self.shares.receive(state["v"], state["grants"].get(self.address) or {})

    async def tick(self, main: asyncio.Task[Any]) -> None:
        while True:
            self.send()
            self.take(await asyncio.to_thread(self.read), main)
            await asyncio.sleep(FAST_TICK_S if self.shares.starving() else TICK_S)


# -- the driver's side ------------------------------------------------------------------------


class _Coordinator:
    """The driver's budget and event relay for one sharded batch."""

    def __init__(
        self,
        client: Any,
        link: Link,
        options: RunOptions,
        on_events: Callable[[list[list[Any]]], None],
    ) -> None:
        distributed = import_distributed()
        self.client = client
        self.link = link
        self.on_events = on_events
        self.budget = Budget(lease_s=link.lease_s)
        self.budget.add(SLOTS, (options.max_concurrency, None, None))
        self.variable = distributed.Variable(link.grants, client=client)
        self.published: Any = None
        self.stop = False
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.publish()  # before any shard reads it
        self.client.subscribe_topic(self.link.topic, self.on_message)
        self.task = asyncio.create_task(self.run())

    def on_message(self, event: tuple[float, dict[str, Any]]) -> None:
        try:
            self.handle(event[1])
        except Exception:  # a bad message must not take the client's connection down
            logging.getLogger(__name__).exception("agentplex: a worker's report was not usable")

    def handle(self, message: dict[str, Any]) -> None:
        if message["e"]:
            self.on_events(message["e"])
        worker = message["w"]
        if message["bye"]:
            self.budget.leave(worker, message["v"])
            self.wake.set()
            return
        self.budget.report(worker, message["r"], message["v"])
        if self.budget.starved(worker):
            self.wake.set()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), TICK_S)
            self.wake.clear()
            await self.publish()

    async def publish(self) -> None:
        state = {"stop": self.stop, **self.budget.allocate()}
        if state != self.published:
            self.published = state
            await self.variable.set(state)

    async def halt(self) -> None:
        """Tell every worker to stop its shard."""
        self.stop = True
        await self.publish()

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        with contextlib.suppress(Exception):
            self.client.unsubscribe_topic(self.link.topic)
        with contextlib.suppress(Exception):
            await self.variable.delete()


class ShardedBatch(_Batch):
    """A batch whose items run on a Dask cluster; the driver records and reports them."""

    async def run_items(self, runnable: list[BatchItem]) -> None:
        distributed = import_distributed()
        executor = DaskExecutor(address=self.options.dask)
        try:
            client = await executor.client()
            workers = max(1, len(await client.nthreads()))
            valid: list[tuple[int, BatchItem]] = []
            for index, item in enumerate(runnable):
                if item.error is not None:
                    self.invalid(item, item.error)
                else:
                    valid.append((index, item))
            self.run_ids = {item.key: f"{self.batch_id}.{index}" for index, item in valid}
            self.started: set[str] = set()
            self.open: dict[str, set[str]] = {}
            link = Link(self.batch_id, events=bool(self.observers))
            coordinator = _Coordinator(client, link, self.options, self.streamed)
            await coordinator.start()
            options = worker_options(self.options)
            size = shard_size(len(valid), workers, self.options.max_concurrency)
            shards = [valid[i : i + size] for i in range(0, len(valid), size)]
            futures: dict[str, tuple[Any, list[tuple[int, BatchItem]]]] = {}
            for shard in shards:
                future = client.submit(
                    run_shard, self.wf, [item for _i, item in shard], options, link, pure=False
                )
                futures[future.key] = (future, shard)
            completed = distributed.as_completed(
                [f for f, _s in futures.values()], with_results=True
            )
            try:
                async for future, results in completed:
                    _f, shard = futures.pop(future.key)
                    await self.collect_shard(shard, results)
            except BaseException:
                await asyncio.shield(self.stop(coordinator, futures))
                raise
            finally:
                await coordinator.close()
        finally:
            await executor.aclose()

    async def stop(self, coordinator: _Coordinator, futures: dict[str, Any]) -> None:
        """Stop the shards still running, keep the items they finished, cancel the rest."""
        distributed = import_distributed()
        await coordinator.halt()
        stopping = distributed.as_completed(
            [f for f, _s in futures.values()], with_results=True, raise_errors=False
        )

        async def drain() -> None:
            async for future, results in stopping:
                _f, shard = futures.pop(future.key)
                if future.status == "finished":
                    await self.collect_shard(shard, results)

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(drain(), STOP_WAIT_S)
        await coordinator.client.cancel([f for f, _s in futures.values()])

    async def collect_shard(
        self, shard: list[tuple[int, BatchItem]], results: list[ItemResult]
    ) -> None:
        """Record and report a shard's items, under the driver's batch and item ids."""
        by_key = {result.key: result for result in results}
        for _index, item in shard:
            result = by_key.get(item.key)
            if result is None:
                continue  # a stopped shard had not finished it
            run_id = self.run_ids[item.key]
            if result.run is not None:
                run = dataclasses.replace(result.run, run_id=run_id)
                result = dataclasses.replace(result, run=run)
                if self.store is not None:
                    record_finished(
                        self.store,
                        run,
                        self.wf,
                        model=item.model or self.options.model,
                        options=self.options,
                        batch_id=self.batch_id,
                        item_key=item.key,
                    )
            self.close_item(item.key, result)
            self.finish(result)
        if self.store is not None:
            await self.store.sync()  # durable before the next shard is looked at

    # -- events from the workers ------------------------------------------------------------

    def streamed(self, rows: list[list[Any]]) -> None:
        """Re-emit the events a worker forwarded, under the driver's item run ids.

        A shard that ran twice (its first worker died) sends some lifecycles
        twice, and an item's last events may arrive after its result: the
        driver keeps each node's lifecycle whole (started once, then ended
        once) and drops events of items already finished.
        """
        for key, row in rows:
            run_id = self.run_ids.get(key)
            if run_id is None or key in self.results:
                continue
            if row is None:
                self.item_started(key)
                continue
            name, node_id = row[0], row[2]
            running = self.open.setdefault(key, set())
            if name == "NodeStarted":
                if node_id in running:
                    continue
                running.add(node_id)
            elif name in ("NodeRetrying", "NodeFinished", "NodeFailed") or (
                name == "NodeCancelled" and row[3]
            ):
                if node_id not in running:
                    continue
                running.discard(node_id)
            self.emit(ev.from_wire(row, run_id))

    def item_started(self, key: str) -> None:
        if key not in self.started:
            self.started.add(key)
            self.emit(ev.ItemStarted(self.batch_id, self.now(), key, self.run_ids[key]))

    def close_item(self, key: str, result: ItemResult) -> None:
        """Before an item's result: its start, and the end of every node still running."""
        self.item_started(key)
        running = self.open.pop(key, set())
        if not running:
            return
        run_id = self.run_ids[key]
        nodes = result.run.nodes if result.run is not None else {}
        t = result.run.wall_s if result.run is not None else 0.0
        for node_id in sorted(running):
            node = nodes.get(node_id)
            if node is not None and node.status == "succeeded":
                self.emit(
                    ev.NodeFinished(
                        run_id,
                        t,
                        node_id,
                        node.output,
                        node.attempts,
                        node.duration_s,
                        node.usage,
                    )
                )
            elif node is not None and node.status == "failed":
                self.emit(
                    ev.NodeFailed(
                        run_id, t, node_id, node.error or "", node.error_type or "", node.attempts
                    )
                )
            else:
                self.emit(ev.NodeCancelled(run_id, t, node_id, True))
