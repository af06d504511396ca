"""Batches: one workflow over many inputs, under one set of limits.

Every item is its own run (its own scheduler, TaskGroup and result) but all
of them share:

- one :class:`~agentplex.engine.slots.SlotPool` of ``max_concurrency`` slots, served
  by item priority, then input order, so items finish roughly in order
  instead of all crawling along together, and a slot never idles while any
  item has a ready node;
- one :class:`~agentplex.engine.bodies.NodeBodies`: one provider pool (one HTTP
  client per provider), one set of executors, and the process-wide rate
  limiters, checked once before the first item starts.

Items are admitted lazily, a bounded number at a time (``max_open``, by
default twice ``max_concurrency``), so a batch of 100,000 inputs holds only
the runs in flight plus the finished items' results. An item's failure is its
own: the others keep running (``error_policy`` applies inside an item). With
``out``, each item's folder (``items/<its key made safe>/``) is written the
moment it finishes, so an interrupted batch keeps everything that finished;
``batch.json`` and ``summary.csv`` are written at the end, including after
Ctrl-C, and list every item: one that never started is ``pending``, one cut
short is ``cancelled``. A write that fails (a full disk, a folder that is not
writable) stops the batch: the items running are cancelled and the error,
naming the path, is raised once the record is written as far as it can be.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from agentplex import events as ev
from agentplex.batch.inputs import BatchItem, item_folders, make_items, read_items
from agentplex.batch.result import BatchResult, ItemResult, item_from_run, write_summary
from agentplex.engine.bodies import NodeBodies
from agentplex.engine.options import RunOptions
from agentplex.engine.runner import Run
from agentplex.engine.slots import SlotPool
from agentplex.exceptions import ConfigError, RunNotFoundError, WorkflowFileError
from agentplex.model.ids import new_run_id
from agentplex.model.workflow import CompiledWorkflow, Workflow
from agentplex.result import write_text
from agentplex.store import RunRecord, RunStore, StoredNode, open_store
from agentplex.store.recorder import stored_settings

BatchInputs = str | Path | Iterable[Mapping[str, Any] | BatchItem | str]


def as_items(inputs: BatchInputs, compiled: CompiledWorkflow) -> list[BatchItem]:
    """Turn a file path or a list of input mappings / values / items into checked items."""
    if isinstance(inputs, str | Path):
        return read_items(inputs, compiled)
    given = list(inputs)
    if given and all(isinstance(i, BatchItem) for i in given):
        return [i for i in given if isinstance(i, BatchItem)]
    rows: list[tuple[int, Mapping[str, Any] | str | None, str | None]] = []
    for n, value in enumerate(given, 1):
        if isinstance(value, BatchItem):
            value = {**value.inputs, "key": value.key, "priority": value.priority}
        if not isinstance(value, Mapping | str):
            rows.append((n, None, f"expected a mapping of inputs, got {type(value).__name__}"))
        else:
            rows.append((n, value, None))
    return make_items(rows, compiled)


class _Batch:
    def __init__(
        self,
        compiled: CompiledWorkflow,
        items: list[BatchItem],
        options: RunOptions,
        observers: Iterable[ev.Observer],
        *,
        out: Path | None,
        keep_results: bool,
        max_open: int | None,
        rng: random.Random,
        store: RunStore | None = None,
        batch_id: str | None = None,
        resuming: bool = False,
    ) -> None:
        self.wf = compiled
        self.items = items
        self.options = options
        self.observers = list(observers)
        self.out = out
        self.keep = keep_results
        self.max_open = max_open or max(8, 2 * options.max_concurrency)
        self.rng = rng
        self.batch_id = batch_id or new_run_id()
        self.store = store
        self.resuming = resuming
        self.slots = SlotPool(options.max_concurrency)
        self.bodies = NodeBodies(compiled, options, run_id=self.batch_id, inputs={})
        self.results: dict[str, ItemResult] = {}
        self.folders = item_folders(items)
        """Each item's folder under ``out/items/``, by key (safe, unique, stable on resume)."""
        self.started: set[str] = set()
        """Keys of the items that started (the rest are ``pending`` if the batch stops)."""
        self.write_failure: WorkflowFileError | None = None
        self.t0 = 0.0

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def emit(self, event: ev.Event) -> None:
        for observer in self.observers:
            observer(event)

    def finish(self, item: ItemResult) -> None:
        """Write the item's folder (if ``out``), report it and keep its result.

        Raises:
            WorkflowFileError: if the folder cannot be written (the result is
                kept, without a folder).
        """
        failure = None
        if self.out is not None and item.run is not None:
            folder = self.folders[item.key]
            try:
                item.run.write(self.out / "items" / folder, key=item.key, root=self.out)
            except WorkflowFileError as exc:
                failure = self.write_failure = self.write_failure or exc
            else:
                item = dataclasses.replace(item, folder=folder)
        self.emit(ev.ItemFinished(self.batch_id, self.now(), item.key, item))
        if not self.keep:
            item = dataclasses.replace(item, run=None)  # written; free the outputs
        self.results[item.key] = item
        if failure is not None:
            raise failure

    def invalid(self, item: BatchItem, error: str) -> None:
        self.finish(
            ItemResult(
                item.key,
                "invalid",
                item.inputs,
                error=error,
                where=item.where,
                priority=item.priority,
            )
        )

    async def execute(self) -> BatchResult:
        runnable: list[BatchItem] = []
        for item in self.items:
            if item.error is None and item.model is not None:
                try:
                    self.bodies._parse(None, item.model)
                except ConfigError as exc:
                    item = dataclasses.replace(item, error=f"{item.where}: {exc}")
            runnable.append(item)
        try:
            await self.bodies.prepare({i.model for i in runnable if i.model and not i.error})
        except BaseException:
            await self.bodies.aclose()
            raise
        if self.store is not None:
            try:
                await asyncio.to_thread(self.begin_record)  # refuses a batch another process runs
            except BaseException:
                await self.bodies.aclose()
                raise
        self.t0 = time.perf_counter()
        self.emit(
            ev.BatchStarted(
                self.batch_id, 0.0, self.wf.name, len(self.items), self.options.max_concurrency
            )
        )
        status: Literal["succeeded", "failed", "cancelled"] = "succeeded"
        try:
            await self.run_items(runnable)
        except BaseException as exc:
            if not self.stopped_by_write(exc):
                status = "cancelled"
                raise
            status = "failed"
        finally:
            await self.bodies.aclose()
            result = self.result(status, [i.key for i in self.items])
            if self.out is not None:
                try:
                    write_summary(self.out / "summary.csv", result.results.values())
                    write_text(
                        self.out / "batch.json",
                        result.to_json() + "\n",
                        what="the batch record",
                        root=self.out,
                    )
                except WorkflowFileError as exc:
                    self.write_failure = self.write_failure or exc
            if self.store is not None:
                summary = result.to_dict()
                for row in summary["items"]:  # the batch record holds the inputs already
                    row.pop("inputs", None)
                self.store.end_run(self.batch_id, result.status, summary)
                with contextlib.suppress(BaseException):
                    await self.store.sync()
            self.emit(ev.BatchFinished(self.batch_id, result.wall_s, result))
        if self.write_failure is not None:
            raise self.write_failure
        return result

    def stopped_by_write(self, exc: BaseException) -> bool:
        """Whether ``exc`` is only the item tasks' failed writes (then the batch just stops)."""
        if self.write_failure is None:
            return False
        if exc is self.write_failure:
            return True
        if not isinstance(exc, BaseExceptionGroup):
            return False
        _writes, rest = exc.split(WorkflowFileError)
        return rest is None

    async def run_items(self, runnable: list[BatchItem]) -> None:
        """Run every item here, at most ``max_open`` at once, by priority then arrival."""
        order = sorted(range(len(runnable)), key=lambda i: (-runnable[i].priority, i))
        gate = asyncio.Semaphore(self.max_open)
        async with asyncio.TaskGroup() as group:
            for arrival, index in enumerate(order):
                item = runnable[index]
                if item.error is not None:
                    self.invalid(item, item.error)
                    continue
                await gate.acquire()
                group.create_task(self.run_item(item, arrival, index, gate))

    def begin_record(self) -> None:
        """Record the batch itself (its items, to resume from) as a run of kind ``batch``."""
        assert self.store is not None
        now = time.time()
        items = [
            {
                "key": i.key,
                "inputs": dict(i.inputs),
                "priority": i.priority,
                "model": i.model,
                "where": i.where,
                "error": i.error,
            }
            for i in self.items
        ]
        self.store.begin_run(
            RunRecord(
                run_id=self.batch_id,
                workflow=self.wf.name,
                status="running",
                created=now,
                updated=now,
                source=str(Path(self.wf.source).resolve()) if self.wf.source else None,
                inputs={"items": items},
                settings={
                    **stored_settings(self.options),
                    "kind": "batch",
                    "trusted": self.wf.trusted,
                },
                total_nodes=len(items),
            )
        )

    async def prior_of(self, run_id: str) -> dict[str, StoredNode] | None:
        """On resume, the item run's stored results (None if it never started)."""
        if self.store is None or not self.resuming:
            return None
        try:
            return await asyncio.to_thread(self.store.get_nodes, run_id)
        except RunNotFoundError:
            return None

    async def run_item(
        self, item: BatchItem, arrival: int, index: int, gate: asyncio.Semaphore
    ) -> None:
        started = self.now()
        run: Run | None = None
        try:
            run_id = f"{self.batch_id}.{index}"  # by input position: stable across resumes
            prior = await self.prior_of(run_id)
            options = self.options
            if item.model is not None:
                options = dataclasses.replace(options, model=item.model)
            run = Run(
                self.wf,
                item.inputs,
                options,
                self.observers,
                run_id=run_id,
                clock=time.perf_counter,
                sleep=asyncio.sleep,
                rng=self.rng,
                slots=self.slots,
                bodies=self.bodies,
                priority=-item.priority,
                arrival=arrival,
                store=self.store,
                source=self.wf.source,
                prior=prior,
                batch_id=self.batch_id,
                item_key=item.key,
            )
            self.started.add(item.key)
            self.emit(ev.ItemStarted(self.batch_id, started, item.key, run.run_id))
            result = await run.execute()
        except ConfigError as exc:  # this row's inputs
            self.invalid(item, f"{item.where}: {exc}" if item.where else str(exc))
            return
        except asyncio.CancelledError:
            if run is not None and run.final is not None:
                with contextlib.suppress(WorkflowFileError):  # kept in write_failure
                    self.finish(self.summarize(item, run.final, started))
            raise
        finally:
            gate.release()
        self.finish(self.summarize(item, result, started))

    def summarize(self, item: BatchItem, result: Any, started: float) -> ItemResult:
        return item_from_run(
            item.key,
            result,
            started_s=started,
            finished_s=self.now(),
            where=item.where,
            priority=item.priority,
            keep=True,
        )

    def result(
        self, status: Literal["succeeded", "failed", "cancelled"], keys: list[str]
    ) -> BatchResult:
        """The batch's result: every item in input order, ``pending`` if it never started."""
        by_key = {item.key: item for item in self.items}
        ordered = {k: self.results.get(k) or self.unfinished(by_key[k]) for k in keys}
        if status == "succeeded" and any(not i.success for i in ordered.values()):
            status = "failed"
        return BatchResult(
            self.batch_id,
            self.wf.name,
            status,
            self.now(),
            self.options.max_concurrency,
            self.options.resolved_strategy(),
            ordered,
        )

    def unfinished(self, item: BatchItem) -> ItemResult:
        """The result of an item the batch ended without: cancelled if it started."""
        if item.error is not None:
            return ItemResult(
                item.key,
                "invalid",
                item.inputs,
                error=item.error,
                where=item.where,
                priority=item.priority,
            )
        started = item.key in self.started
        return ItemResult(
            item.key,
            "cancelled" if started else "pending",
            item.inputs,
            error=f"the batch stopped before the item {'finished' if started else 'started'}",
            where=item.where,
            priority=item.priority,
        )


async def arun_batch(
    workflow: Workflow | CompiledWorkflow,
    inputs: BatchInputs,
    *,
    observers: Iterable[ev.Observer] = (),
    out: str | Path | None = None,
    keep_results: bool = True,
    max_open: int | None = None,
    rng: random.Random | None = None,
    store: RunStore | str | Path | bool | None = None,
    batch_id: str | None = None,
    resuming: bool = False,
    shard: bool = False,
    **options: Any,
) -> BatchResult:
    """Run ``workflow`` once per input, all items sharing one set of limits.

    ``inputs`` is a batch input file (``.txt``, ``.csv``, ``.jsonl``) or a list
    of input mappings (with optional ``key``, ``priority`` and ``model``), of
    single values (for a one-input workflow) or of :class:`BatchItem`.
    Keyword options are the fields of :class:`RunOptions`; ``max_concurrency``
    bounds nodes running across the whole batch. ``out`` writes each item's
    folder as it finishes, then ``batch.json`` and ``summary.csv``.
    ``keep_results=False`` drops each item's node outputs from memory once
    written (for very large batches). ``store`` records the batch and every
    item's run (as for :func:`~agentplex.engine.runner.arun`) so
    :func:`agentplex.batch.resume` can finish it item by item; ``batch_id`` and
    ``resuming`` are how resume re-enters a stored batch. ``shard=True`` spreads
    the items over the workers of the Dask cluster at ``dask=`` (a local one
    if none is given), under one budget of limits; see :mod:`agentplex.batch.shard`.

    A failed item never stops the others; the result says which failed and
    why. Bad rows become ``invalid`` items naming their line.

    Raises:
        InvalidWorkflowError: if the workflow does not validate.
        ConfigError: for a bad option, an unknown input column, or a provider
            that cannot be used (before anything runs).
        WorkflowFileError: if the input file cannot be read or is not UTF-8
            text, or if writing to ``out`` fails (the batch stops).
        asyncio.CancelledError: if cancelled; ``out`` still gets every
            finished item and the batch record, which lists every item.
    """
    compiled = workflow if isinstance(workflow, CompiledWorkflow) else workflow.compile()
    run_options = RunOptions.from_keywords(options)
    run_options.check()
    items = as_items(inputs, compiled)
    opened = None
    if store is True or isinstance(store, str | Path):
        opened = open_store(None if store is True else store)
    cls = _Batch
    if shard:
        from agentplex.batch.shard import ShardedBatch

        cls = ShardedBatch
    batch = cls(
        compiled,
        items,
        run_options,
        observers,
        out=Path(out) if out is not None else None,
        keep_results=keep_results or out is None,  # without a folder, memory is the record
        max_open=max_open,
        rng=rng or random.Random(),
        store=opened or (store if isinstance(store, RunStore) else None),
        batch_id=batch_id,
        resuming=resuming,
    )
    try:
        return await batch.execute()
    finally:
        if opened is not None:
            opened.close()


def run_batch(
    workflow: Workflow | CompiledWorkflow, inputs: BatchInputs, **kwargs: Any
) -> BatchResult:
    """Run a batch from synchronous code; see :func:`arun_batch`.

    Raises:
        RuntimeError: if called from inside a running event loop.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(arun_batch(workflow, inputs, **kwargs))
    raise RuntimeError(
        "agentplex.run_batch() cannot be called from a running event loop; "
        "use 'await agentplex.arun_batch(...)'"
    )
