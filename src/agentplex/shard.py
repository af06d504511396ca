"""Sharded batches: a batch's items spread over the workers of a Dask cluster.

The driver (the process that called :func:`~agentplex.run_batch` with
``dask=..., shard=True``) splits the valid items into shards, several per
worker so results come back while the batch runs, and submits each shard as
one Dask task. A worker runs its shard with its own asyncio runner: an
ordinary local batch, without a store or a result cache.

**Limits stay global by splitting them.** A worker runs one shard at a time
(one thread per worker is assumed, as ``dask worker --nthreads 1`` gives),
so with W workers each shard gets 1/W of ``max_concurrency``, ``rpm``,
``tpm`` and ``max_inflight``: W workers together never exceed what one
process was allowed. A limit that is not set is learned from 429s per
worker, as locally.

**The driver alone writes.** As each shard finishes, its items are written
to the run store (item runs ``<batch>.<index>``, the same records a local
batch writes, so ``agentplex resume`` finishes a sharded batch as it would a
local one), to ``--out``, and reported as ``ItemStarted``/``ItemFinished``
events; node-level events stay on the workers.

**Faults.** A worker that dies loses only its running shard: Dask runs that
shard again on another worker (up to ``distributed.scheduler.allowed-failures``
times, 3 by default), and nothing is recorded twice because the driver
records a shard only once it has come back whole.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from typing import Any

from agentplex.batch import _Batch, arun_batch
from agentplex.batch_inputs import BatchItem
from agentplex.batch_result import ItemResult
from agentplex.executors.dask import DaskExecutor, import_distributed
from agentplex.options import RunOptions
from agentplex.store.recorder import record_finished
from agentplex.workflow import CompiledWorkflow

SHARDS_PER_WORKER = 4


def split_options(options: RunOptions, workers: int) -> RunOptions:
    """Each worker's share of the batch's limits (see the module docstring)."""

    def share(value: float | None, whole: bool) -> Any:
        if value is None:
            return None
        part = value / workers
        return max(1, math.floor(part)) if whole else part

    return dataclasses.replace(
        options,
        max_concurrency=share(options.max_concurrency, True),
        rpm=share(options.rpm, False),
        tpm=share(options.tpm, False),
        max_inflight=share(options.max_inflight, True),
        cache=False,  # the cache is the driver's; a worker has no shared disk to keep it on
        dask=None,
        executor=None,
    )


def run_shard(
    compiled: CompiledWorkflow, items: list[BatchItem], options: RunOptions
) -> list[ItemResult]:
    """What a worker runs: one shard, as a local batch with its own event loop."""
    fields = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
    result = asyncio.run(arun_batch(compiled, items, **fields))
    return list(result.results.values())


class ShardedBatch(_Batch):
    """A batch whose items run on a Dask cluster; the driver records and reports them."""

    async def run_items(self, runnable: list[BatchItem]) -> None:
        distributed = import_distributed()
        executor = DaskExecutor(address=self.options.dask)
        try:
            client = await executor.client()
            workers = max(1, len(await client.nthreads()))
            options = split_options(self.options, workers)
            valid: list[tuple[int, BatchItem]] = []
            for index, item in enumerate(runnable):
                if item.error is not None:
                    self.invalid(item, item.error)
                else:
                    valid.append((index, item))
            size = max(1, math.ceil(len(valid) / (workers * SHARDS_PER_WORKER)))
            shards = [valid[i : i + size] for i in range(0, len(valid), size)]
            futures: dict[str, tuple[Any, list[tuple[int, BatchItem]]]] = {}
            for shard in shards:
                future = client.submit(
                    run_shard, self.wf, [item for _i, item in shard], options, pure=False
                )
                futures[future.key] = (future, shard)
            completed = distributed.as_completed(
                [f for f, _s in futures.values()], with_results=True
            )
            try:
                async for future, results in completed:
                    self.collect(futures[future.key][1], results)
                    if self.store is not None:
                        await self.store.sync()  # durable before the next shard is looked at
            except BaseException:
                await client.cancel([f for f, _s in futures.values()])
                raise
        finally:
            await executor.aclose()

    def collect(self, shard: list[tuple[int, BatchItem]], results: list[ItemResult]) -> None:
        """Record and report a shard's items, under the driver's batch and item ids."""
        from agentplex import events as ev

        by_key = {result.key: result for result in results}
        for index, item in shard:
            result = by_key[item.key]
            run_id = f"{self.batch_id}.{index}"
            if result.run is not None:
                run = dataclasses.replace(result.run, run_id=run_id)
                result = dataclasses.replace(result, run=run)
                if self.store is not None:
                    model = item.model or self.options.model
                    record_finished(
                        self.store,
                        run,
                        self.wf,
                        model=model,
                        options=self.options,
                        batch_id=self.batch_id,
                        item_key=item.key,
                    )
            self.emit(ev.ItemStarted(self.batch_id, self.now(), item.key, run_id))
            self.finish(result)
