"""The bridge between a run and the store: what is written, and when.

The recorder is an observer of the run's events (it writes a compact event
row for each lifecycle event, in chunks) and is called by the runner when a
node succeeds: it writes the node's result and returns once that write is
durable, and only then does the runner let the node's successors start.
Failed, skipped and cancelled nodes are written as their events arrive.

On resume the recorder also decides which stored results are reusable: a
succeeded node whose content key (:mod:`agentplex.store.keys`) is unchanged.

When the last node of a run succeeds, the store marks the run succeeded in
the same commit as that node's result, so a crash before :meth:`Recorder.finish`
writes the summary never leaves a run whose every node is stored showing as
interrupted (a run that grew while it ran is left to ``finish``: a review may
still add revisions after its last node).

Two things can keep a result from the store. An output the codec cannot hold
(:mod:`agentplex.store.codec`) fails its node: :meth:`Recorder.succeeded` raises
:class:`~agentplex.store.UnstorableOutputError` and the runner records it as
the node's error. A store that cannot write any more (a full disk) stops the
run: no new node starts, the nodes in flight end, and :meth:`Recorder.finish`
raises the store's error; whatever was committed before stays.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentplex import events as ev
from agentplex.exceptions import StoreError, UnstorableOutputError
from agentplex.store import RunRecord, RunStore, StoredNode
from agentplex.store.keys import add_key, node_keys

if TYPE_CHECKING:
    from agentplex.engine.options import RunOptions
    from agentplex.engine.runner import _Run
    from agentplex.model.workflow import CompiledWorkflow
    from agentplex.result import NodeResult, RunResult

_CHUNK = 512
"""Event rows buffered before they are queued for writing."""

_SECRET_OPTIONS = ("api_key", "providers", "prices")


def stored_settings(options: RunOptions) -> dict[str, Any]:
    """The run options worth keeping to resume with: no keys, no provider objects."""
    settings = {
        f.name: getattr(options, f.name)
        for f in dataclasses.fields(options)
        if f.name not in _SECRET_OPTIONS
    }
    return {k: v for k, v in settings.items() if isinstance(v, str | int | float | bool | None)}


class Recorder:
    """Writes one run into a store; see the module docstring."""

    def __init__(
        self,
        store: RunStore,
        run: _Run,
        *,
        source: str | None,
        batch_id: str | None = None,
        item_key: str | None = None,
    ) -> None:
        self.store = store
        self.run = run
        self.source = str(Path(source).resolve()) if source else None
        self.batch_id = batch_id
        self.item_key = item_key
        self.keys = node_keys(run.wf, run.inputs, run.options.model)
        self.rows: list[tuple[int, float, str, str | None, str]] = []
        self.seq = 0
        self.done = 0
        """Succeeded nodes written (reused ones included): all of them completes the run."""
        self.grown = False
        """A node joined while the run ran: it may grow again after its last node (a
        review's revisions), so it is never marked complete before it ends."""
        self.failure: StoreError | None = None
        """Why the store stopped taking writes, once it did."""

    def add_key(self, node_id: str) -> None:
        """Key a node that joined the run while it runs."""
        self.grown = True
        add_key(self.keys, self.run.wf, node_id, self.run.inputs, self.run.options.model)

    def reusable(self, prior: Mapping[str, StoredNode]) -> dict[str, StoredNode]:
        """The stored results that still hold: succeeded, with an unchanged key."""
        keys = self.keys
        return {
            node_id: node
            for node_id, node in prior.items()
            if node.status == "succeeded" and keys.get(node_id) == node.key
        }

    async def begin(self) -> None:
        """Record the run. A run of its own is claimed first (off the event loop);
        a batch's item is held through its batch, so its record is just queued."""
        run = self.run
        now = time.time()
        record = RunRecord(
            run_id=run.run_id,
            workflow=run.wf.name,
            status="running",
            created=now,
            updated=now,
            source=self.source,
            inputs=dict(run.inputs),
            settings={**stored_settings(run.options), "trusted": run.wf.trusted},
            total_nodes=len(run.nodes),
            batch_id=self.batch_id,
            item_key=self.item_key,
        )
        if self.batch_id is None:
            await asyncio.to_thread(self.store.begin_run, record)
        else:
            self.store.begin_run(record, claim=False)
        reused = sorted(run.reused)  # carried over from the run being resumed
        for node_id in reused:
            last = node_id == reused[-1] and len(reused) >= len(run.nodes)
            self.put(run.node_result(node_id), completes=last)
        self.done = len(reused)

    def put(self, result: NodeResult, *, completes: bool = False) -> None:
        self.store.put_node(
            self.run.run_id,
            StoredNode(
                result.node_id,
                self.keys[result.node_id],
                result.status,
                result.output,
                result.to_dict(),
            ),
            completes=completes,
        )

    async def succeeded(self, node_id: str) -> None:
        """Write a succeeded node's result; return once it is durable.

        If the store cannot write (a full disk), the run is stopped instead: no
        node starts after this one, and :meth:`finish` raises the store's error.

        Raises:
            UnstorableOutputError: if the output cannot be stored as data. The
                output is taken back from the run first; the runner fails the node.
        """
        run = self.run
        self.done += 1
        try:
            # The run's last node: the run is marked succeeded in the same commit.
            last = self.done >= len(run.nodes) and not self.grown
            self.put(run.node_result(node_id), completes=last)
        except UnstorableOutputError:
            self.done -= 1
            run.settled.pop(node_id, None)  # the record built for the store said "succeeded"
            run.outputs.pop(node_id, None)
            raise
        self.flush_events()
        try:
            await self.store.sync()
        except StoreError as exc:
            self.stop(exc)

    def stop(self, failure: StoreError) -> None:
        """Stop the run because the store failed: nothing more starts; finish() raises."""
        if self.failure is None:
            self.failure = StoreError(f"run {self.run.run_id}: {failure}")
            self.run.stopping = True
            self.run._cancel_pending()  # the recorder is the run's own

    def flush_events(self) -> None:
        if self.rows:
            self.store.put_events(self.run.run_id, self.rows)
            self.rows = []

    async def finish(self) -> None:
        """Write the end of the run and wait until everything is durable.

        Raises:
            StoreError: if the store stopped taking writes during the run (a full
                disk); what was committed before stays.
        """
        result = self.run.final
        assert result is not None
        if self.failure is not None:
            raise self.failure
        self.flush_events()
        summary = result.to_dict(nodes=False)
        self.store.end_run(self.run.run_id, result.status, summary)
        await self.store.sync()

    # -- the event stream ------------------------------------------------------

    def __call__(self, event: ev.Event) -> None:
        data: dict[str, Any] | None
        node_id = getattr(event, "node_id", None)
        # The two events every node has are written by hand: json.dumps per row adds up.
        if isinstance(event, ev.NodeStarted):
            self.row(event, node_id, f'{{"attempt": {event.attempt}}}')
            return
        if isinstance(event, ev.NodeFinished):
            duration = round(event.duration_s, 6)
            self.row(
                event, node_id, f'{{"attempts": {event.attempts}, "duration_s": {duration!r}}}'
            )
            return
        if isinstance(event, ev.NodeRetrying):
            data = {"attempt": event.attempt, "error": event.error, "delay_s": event.delay_s}
        elif isinstance(event, ev.NodeFailed):
            data = {"error": event.error, "error_type": event.error_type}
            self.put(self.run.node_result(event.node_id))
        elif isinstance(event, ev.NodeSkipped):
            data = {"because": event.because}
            self.put(self.run.node_result(event.node_id))
        elif isinstance(event, ev.NodeCancelled):
            data = {"started": event.started}
            self.put(self.run.node_result(event.node_id))
        elif isinstance(event, ev.NodePlanned):
            data = {
                "role": event.role,
                "task": event.task,
                "depends_on": list(event.depends_on),
                "parent": event.parent,
            }
        elif isinstance(event, ev.RunStarted):
            data = {"strategy": event.strategy, "max_concurrency": event.max_concurrency}
        elif isinstance(event, ev.RunFinished):
            data = {"status": event.result.status}
        else:
            return  # ready, progress and streamed text are not worth a row each
        self.row(event, node_id, json.dumps(data))

    def row(self, event: ev.Event, node_id: str | None, data: str) -> None:
        self.seq += 1
        self.rows.append((self.seq, round(event.t, 6), type(event).__name__, node_id, data))
        if len(self.rows) >= _CHUNK:
            self.flush_events()


def record_finished(
    store: RunStore,
    run: RunResult,
    compiled: CompiledWorkflow,
    *,
    model: str,
    options: RunOptions,
    batch_id: str | None = None,
    item_key: str | None = None,
) -> None:
    """Write a run that ran elsewhere (a shard on a Dask worker) as a local run would be.

    The same run record, node records and content keys, so resume treats it
    as any other run. Queued; the caller's ``store.sync()`` makes it durable.
    """
    now = time.time()
    source = str(Path(compiled.source).resolve()) if compiled.source else None
    store.begin_run(
        RunRecord(
            run_id=run.run_id,
            workflow=compiled.name,
            status="running",
            created=now - run.wall_s,
            updated=now,
            source=source,
            inputs=dict(run.inputs),
            settings={
                **stored_settings(dataclasses.replace(options, model=model)),
                "trusted": compiled.trusted,
            },
            total_nodes=len(run.nodes),
            batch_id=batch_id,
            item_key=item_key,
        ),
        claim=False,
    )
    keys = node_keys(compiled, run.inputs, model)
    for node_id, node in run.nodes.items():
        if node.status == "pending":
            continue
        stored = StoredNode(node_id, keys[node_id], node.status, node.output, node.to_dict())
        try:
            store.put_node(run.run_id, stored)
        except UnstorableOutputError as exc:  # kept as failed: resume runs it again
            record = {**stored.record, "status": "failed", "output": None, "error": str(exc)}
            record["error_type"] = type(exc).__name__
            store.put_node(run.run_id, StoredNode(node_id, stored.key, "failed", None, record))
    store.end_run(run.run_id, run.status, run.to_dict(nodes=False))
