"""The bridge between a run and the store: what is written, and when.

The recorder takes values, never the run: the run's id, workflow, inputs and
options, and each node's :class:`~agentplex.result.NodeResult`. It is an
observer of the run's events (it writes a compact event row for each event
worth one, in chunks: retries, failures, skips, cancellations, planned nodes,
the run's start and end; a node's start and finish are in its record) and is
called by the runner when a node succeeds: it writes the node's result and
returns once that write is durable, and only then does the runner let the
node's successors start. Failed, skipped and cancelled nodes are written as
they end (:meth:`Recorder.ended`), without waiting.

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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from agentplex import events as ev
from agentplex.exceptions import StoreError, UnstorableOutputError
from agentplex.store import RunRecord, RunStore, StoredNode
from agentplex.store.keys import add_key, node_keys

if TYPE_CHECKING:
    from agentplex.model.workflow import CompiledWorkflow
    from agentplex.result import NodeResult, RunResult


class RunOptions(Protocol):
    """What the recorder reads of a run's options (the engine's ``RunOptions``, a dataclass).

    Declared here so the store never imports the engine.
    """

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    @property
    def model(self) -> str:
        """The default model (node keys depend on it)."""
        ...


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
    """Writes one run into a store, from values; see the module docstring.

    It is given the run's id, workflow, inputs and options, and a callback to
    stop the run if the store fails; the runner hands it each node's
    :class:`~agentplex.result.NodeResult` as the node ends.
    """

    def __init__(
        self,
        store: RunStore,
        *,
        run_id: str,
        compiled: CompiledWorkflow,
        inputs: Mapping[str, Any],
        options: RunOptions,
        source: str | None,
        batch_id: str | None = None,
        item_key: str | None = None,
        on_failure: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.wf = compiled
        """The run's workflow (it may grow while the run goes)."""
        self.inputs = inputs
        self.options = options
        self.source = str(Path(source).resolve()) if source else None
        self.batch_id = batch_id
        self.item_key = item_key
        self.on_failure = on_failure
        """Called once if the store stops taking writes: the run starts nothing more."""
        self.keys = node_keys(compiled, inputs, options.model)
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
        add_key(self.keys, self.wf, node_id, self.inputs, self.options.model)

    def reusable(self, prior: Mapping[str, StoredNode]) -> dict[str, StoredNode]:
        """The stored results that still hold: succeeded, with an unchanged key."""
        keys = self.keys
        return {
            node_id: node
            for node_id, node in prior.items()
            if node.status == "succeeded" and keys.get(node_id) == node.key
        }

    async def begin(self, reused: Mapping[str, NodeResult]) -> None:
        """Record the run, and the results carried over from the run being resumed.

        A run of its own is claimed first (off the event loop); a batch's item
        is held through its batch, so its record is just queued.
        """
        now = time.time()
        record = RunRecord(
            run_id=self.run_id,
            workflow=self.wf.name,
            status="running",
            created=now,
            updated=now,
            source=self.source,
            inputs=dict(self.inputs),
            settings={**stored_settings(self.options), "trusted": self.wf.trusted},
            total_nodes=len(self.wf.nodes),
            batch_id=self.batch_id,
            item_key=self.item_key,
        )
        if self.batch_id is None:
            await asyncio.to_thread(self.store.begin_run, record)
        else:
            self.store.begin_run(record, claim=False)
        ids = sorted(reused)
        for node_id in ids:
            last = node_id == ids[-1] and len(ids) >= len(self.wf.nodes)
            self.put(reused[node_id], completes=last)
        self.done = len(ids)

    def put(self, result: NodeResult, *, completes: bool = False) -> None:
        """Queue ``result``'s write (the stored record is ``to_dict()`` without the output)."""
        record = result.to_dict(output=False)  # the output has a column of its own
        self.store.put_node(
            self.run_id,
            StoredNode(
                result.node_id,
                self.keys[result.node_id],
                result.status,
                result.output,
                record,
            ),
            completes=completes,
        )

    async def succeeded(self, result: NodeResult) -> None:
        """Write a succeeded node's result; return once it is durable.

        If the store cannot write (a full disk), the run is stopped instead: no
        node starts after this one, and :meth:`finish` raises the store's error.

        Raises:
            UnstorableOutputError: if the output cannot be stored as data (nothing
                was written); the runner fails the node.
        """
        self.done += 1
        try:
            # The run's last node: the run is marked succeeded in the same commit.
            last = self.done >= len(self.wf.nodes) and not self.grown
            self.put(result, completes=last)
        except UnstorableOutputError:
            self.done -= 1
            raise
        self.flush_events()
        try:
            await self.store.sync()
        except StoreError as exc:
            self.stop(exc)

    def ended(self, result: NodeResult) -> None:
        """Write a node that failed, was skipped or cancelled (queued, not awaited)."""
        self.put(result)

    def stop(self, failure: StoreError) -> None:
        """Stop the run because the store failed: nothing more starts; finish() raises."""
        if self.failure is None:
            self.failure = StoreError(f"run {self.run_id}: {failure}")
            self.on_failure()

    def flush_events(self) -> None:
        if self.rows:
            self.store.put_events(self.run_id, self.rows)
            self.rows = []

    async def finish(self, result: RunResult) -> None:
        """Write the end of the run and wait until everything is durable.

        Raises:
            StoreError: if the store stopped taking writes during the run (a full
                disk); what was committed before stays.
        """
        if self.failure is not None:
            raise self.failure
        self.flush_events()
        summary = result.to_dict(nodes=False)
        self.store.end_run(self.run_id, result.status, summary)
        await self.store.sync()

    # -- the event stream ------------------------------------------------------

    def __call__(self, event: ev.Event) -> None:
        data: dict[str, Any] | None
        # A node's start and finish are not written as rows: its stored record holds
        # them (started_s, finished_s, attempts, attempt_starts), and two rows per
        # node were most of the store's cost per node. Ready, progress, streamed
        # text and requests are not worth a row each either.
        if isinstance(event, ev.NodeRetrying):
            data = {"attempt": event.attempt, "error": event.error, "delay_s": event.delay_s}
        elif isinstance(event, ev.NodeFailed):
            data = {"error": event.error, "error_type": event.error_type}
        elif isinstance(event, ev.NodeSkipped):
            data = {"because": event.because}
        elif isinstance(event, ev.NodeCancelled):
            data = {"started": event.started}
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
            data = {"status": str(event.result.status)}
        else:
            return
        self.row(event, getattr(event, "node_id", None), json.dumps(data))

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
