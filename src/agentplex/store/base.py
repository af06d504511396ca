"""What a run store is: the stored records, the :class:`RunStore` interface, and their helpers.

A :class:`RunRecord` is one run (or batch, or batch item) as the store knows
it, a :class:`StoredNode` one node's result; every value read back is checked
(:mod:`agentplex.store.checks`) and decoded through :mod:`agentplex.store.codec`.
The writer of a run is named by :func:`this_owner` and checked with
:func:`owner_alive`, so two processes never write the same run.
"""

from __future__ import annotations

import os
import re
import socket
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from agentplex.exceptions import (
    DecodeError,
    EncodeError,
    RunNotFoundError,
    StoreError,
    UnstorableOutputError,
)
from agentplex.result import RUN_STATUSES, NodeResult, RunResult, Status
from agentplex.store.codec import decode, encode

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+")
"""A store scheme: two characters at least, so ``C:/runs`` stays a path."""

SCHEMA_VERSION = 2
"""2: node outputs are codec JSON (1 kept them as pickles, which are never read now)."""


def output_text(run_id: str, node: StoredNode) -> str:
    """Encode a node's output for the store.

    Raises:
        UnstorableOutputError: naming the node and what to return instead.
    """
    try:
        return encode(node.output, what=f"the output of node {node.node_id!r} (run {run_id})")
    except EncodeError as exc:
        raise UnstorableOutputError(node.node_id, exc) from None


def fresh_start(location: str) -> str:
    """The one-line way to start a new store beside a file that cannot be used."""
    path = Path(location)
    return f"mv {path} {path.with_name(path.stem + '.old' + path.suffix)}"


def damaged(location: str, subject: str, problem: str) -> StoreError:
    """The error for a record that is not what agentplex writes (damaged, or planted)."""
    return StoreError(
        f"the run store {location} holds a damaged record ({subject}: {problem}); the file "
        "was damaged, edited, or written by a newer agentplex, and nothing in it is used. "
        f"Fix: move the file aside to start a fresh store: {fresh_start(location)}"
    )


def decoded_output(location: str, run_id: str, node_id: str, text: Any) -> Any:
    """Decode a stored node output.

    Raises:
        StoreError: if it is not valid data, or is a pickle this process did not opt in to.
    """
    try:
        return decode(text, what="its output")
    except DecodeError as exc:
        if exc.pickled:
            raise StoreError(
                f"the run store {location}: run {run_id!r}, node {node_id!r}: {exc}. Fix: only "
                "if you wrote this store yourself, set AGENTPLEX_STORE_PICKLE=1 to read it; "
                f"otherwise move it aside: {fresh_start(location)}"
            ) from None
        raise damaged(location, f"run {run_id!r}, node {node_id!r}", str(exc)) from None


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run as the store knows it."""

    run_id: str
    workflow: str
    status: str
    """``running``, ``succeeded``, ``failed`` or ``cancelled`` (``running`` after a crash too)."""
    created: float
    updated: float
    source: str | None = None
    """The workflow file, for resume; None for workflows built in Python."""
    inputs: Mapping[str, Any] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)
    """The run options, without secrets."""
    total_nodes: int = 0
    done_nodes: int = 0
    cost_usd: float | None = None
    batch_id: str | None = None
    item_key: str | None = None
    owner: str | None = None
    """``host:pid`` of the process writing the run."""
    summary: Mapping[str, Any] = field(default_factory=dict)
    """The final result record (``RunResult.to_dict()`` without outputs) once ended."""

    @property
    def is_batch(self) -> bool:
        """Whether this record is a batch (its items are runs of their own)."""
        return isinstance(self.settings, Mapping) and self.settings.get("kind") == "batch"

    @property
    def shown_status(self) -> Status:
        """The status for people: a ``running`` run whose writer is gone was interrupted."""
        return Status(shown_status(self))


@dataclass(frozen=True, slots=True)
class StoredNode:
    """A node's latest result as stored, with its content key."""

    node_id: str
    key: str
    status: str
    output: Any = None
    record: Mapping[str, Any] = field(default_factory=dict)
    """``NodeResult.to_dict()`` (timings, attempts, usage, cost, error...)."""

    def result(self) -> NodeResult:
        """Return the node's result, typed (its record read by :meth:`NodeResult.from_dict`).

        Raises:
            DecodeError: naming the field, if the record has one of the wrong type.
        """
        return NodeResult.from_dict(
            {
                **self.record,
                "node_id": self.node_id,
                "status": str(self.status),
                "output": self.output,
            }
        )


def _stat(pid: int) -> tuple[str, str] | None:
    """Process ``pid``'s state letter and start time (clock ticks since boot), if readable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # the name may hold spaces and parentheses
    return (fields[0], fields[19]) if len(fields) >= 20 else None


_OWNERS: dict[int, str] = {}


def this_owner() -> str:
    """This process as a run's writer: ``host:pid``, and ``@start`` where the OS tells it."""
    pid = os.getpid()
    owner = _OWNERS.get(pid)
    if owner is None:
        stat = _stat(pid)
        owner = f"{socket.gethostname()}:{pid}" + (f"@{stat[1]}" if stat else "")
        _OWNERS[pid] = owner
    return owner


def owner_alive(owner: str | None) -> bool:
    """Whether ``owner`` (``host:pid[@start]``) is a live process on this host.

    Pids are reused (soon, on a busy machine), so a process with the writer's
    pid but another start time is not the writer; nor is a zombie.
    """
    if not isinstance(owner, str) or not owner or owner == this_owner():
        return False
    where, _, started = owner.partition("@")
    host, _, pid = where.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == 0:
        return False
    try:
        os.kill(int(pid), 0)
    except PermissionError:
        pass  # alive, another user's
    except (ProcessLookupError, OverflowError):
        return False
    stat = _stat(int(pid))
    if stat is None:
        return True  # no /proc to ask: the pid is alive, and that is all we know
    state, start = stat
    return state not in ("Z", "X") and (not started or start == started)


class RunStore(ABC):
    """Where runs are recorded; see the module docstring for the guarantees.

    Writing one: subclass and implement the abstract methods. Writes may be
    queued, as long as :meth:`sync` returns only once they are durable; a
    node's output is kept as :meth:`encode_output` makes it (the codec refuses
    what cannot be stored, before anything is recorded) and given back through
    :meth:`decode_output`. :class:`MemoryStore` is the shortest complete example.
    Register a factory for a scheme with :func:`register_store` and
    ``open_store("scheme://...")`` (and ``--store scheme://...``) builds it.
    The contract every store passes is ``tests/test_store.py``.
    """

    location: str = "memory"

    # -- writes (queued) -------------------------------------------------------

    @abstractmethod
    def begin_run(self, record: RunRecord, *, claim: bool = True) -> None:
        """Record (or re-open, to resume) a run and claim it for this process.

        ``claim=True`` checks, before returning, that no other live process is
        writing the run (a blocking read: call it off the event loop).
        ``claim=False`` is for runs the caller already holds (the items of a
        batch it has claimed): the record is queued like any other write.

        Raises:
            StoreError: if another live process is writing the run.
        """

    @abstractmethod
    def put_node(self, run_id: str, node: StoredNode, *, completes: bool = False) -> None:
        """Record a node's result (replacing an earlier one); its output is encoded at once.

        ``completes=True`` says every node of the run has now succeeded: the run's
        status becomes ``succeeded`` in the same commit as this node (its summary
        follows with :meth:`end_run`), so a crash in between never leaves a run
        whose every node is stored looking interrupted.

        Raises:
            UnstorableOutputError: if the output cannot be stored as data (see
                :mod:`agentplex.store.codec`); nothing is recorded then.
        """

    @abstractmethod
    def put_events(self, run_id: str, rows: list[tuple[int, float, str, str | None, str]]) -> None:
        """Append ``(seq, t, kind, node_id, json data)`` event rows."""

    @abstractmethod
    def end_run(self, run_id: str, status: str, summary: Mapping[str, Any]) -> None:
        """Record how the run ended, and release it."""

    async def sync(self) -> None:  # noqa: B027 - memory stores are always durable
        """Return once everything written so far is durable."""

    def close(self) -> None:  # noqa: B027
        """Flush and release the store."""

    # -- reads ---------------------------------------------------------------

    @abstractmethod
    def get_run(self, run_id: str) -> RunRecord:
        """Return the run.

        Raises:
            RunNotFoundError: naming the store and how to list its runs.
        """

    @abstractmethod
    def list_runs(self, limit: int = 20) -> list[RunRecord]:
        """Return runs and batches, newest first (a batch's item runs are not listed)."""

    @abstractmethod
    def get_items(self, batch_id: str) -> list[RunRecord]:
        """Return the item runs of a batch that have started, in item order."""

    @abstractmethod
    def get_nodes(self, run_id: str) -> dict[str, StoredNode]:
        """Return every stored node result of the run.

        Raises:
            RunNotFoundError: if there is no such run.
            StoreError: if a stored output or record is damaged, or is a pickle
                this process did not opt in to reading.
        """

    @abstractmethod
    def get_events(self, run_id: str) -> list[dict[str, Any]]:
        """Return the run's events in order, as ``{seq, t, kind, node_id, data}``."""

    # -- typed reads (every store gets them from the reads above) ----------------

    def load_run(self, run_id: str) -> RunResult:
        """Return a stored run (not a batch) as a typed result, also one that never ended.

        An ended run is its stored summary and node records. A run still
        ``running`` (or interrupted: its writer died) has no summary yet: its
        status is ``running`` or ``interrupted``, its wall time the time it
        was written for, and its nodes those stored so far. A batch is read
        with :func:`agentplex.batch.result.load_result`.

        Raises:
            RunNotFoundError: if there is no such run.
            StoreError: naming the store, the run and the field, if a stored
                record is damaged.
        """
        record = self.get_run(run_id)
        nodes = self.get_nodes(run_id)
        summary = record.summary if isinstance(record.summary, Mapping) else {}
        settings = record.settings if isinstance(record.settings, Mapping) else {}
        shown = record.shown_status
        ended = shown in RUN_STATUSES
        data = {
            "strategy": settings.get("strategy") or "dataflow",
            "max_concurrency": settings.get("max_concurrency") or 1,
            "wall_s": max(0.0, float(record.updated) - float(record.created)),
            "inputs": dict(record.inputs) if isinstance(record.inputs, Mapping) else {},
            **summary,
            "run_id": record.run_id,
            "workflow": record.workflow,
            # The schema's run statuses are those of ended runs; the shown one goes back below.
            "status": str(shown) if ended else str(Status.CANCELLED),
            "nodes": {},
        }
        try:
            result = RunResult.from_dict(data)
            typed = {node_id: node.result() for node_id, node in nodes.items()}
        except DecodeError as exc:
            raise damaged(self.location, f"run {run_id!r}", str(exc)) from None
        return replace(result, status=shown, nodes=typed)

    # -- helpers for implementations ------------------------------------------

    def encode_output(self, run_id: str, node: StoredNode) -> str:
        """Return ``node``'s output as the text a store keeps (JSON with tagged types).

        Raises:
            UnstorableOutputError: naming the node and what to return instead.
        """
        return output_text(run_id, node)

    @staticmethod
    def writer() -> str:
        """This process as a run's writer (``host:pid@start``), for :attr:`RunRecord.owner`."""
        return this_owner()

    def refuse_if_busy(self, held: RunRecord | None) -> None:
        """Refuse to claim ``held`` (the stored record of a run) while another process writes it.

        Raises:
            StoreError: naming the writing process, if it is alive.
        """
        if held is not None and owner_alive(held.owner):
            raise busy(held.run_id, held.owner)

    def decode_output(self, run_id: str, node_id: str, text: Any) -> Any:
        """Return the value :meth:`encode_output` made ``text`` from.

        Raises:
            StoreError: naming this store and the fix, if ``text`` is damaged.
        """
        return decoded_output(self.location, run_id, node_id, text)

    def not_found(self, run_id: str) -> RunNotFoundError:
        """The error for a run this store does not hold, with how to list its runs."""
        return RunNotFoundError(
            f"no run {run_id!r} in the store at {self.location}. "
            "Fix: 'agentplex runs' lists the runs it holds (or pass --store PATH)."
        )


def final_size(summary: Mapping[str, Any]) -> int | None:
    """How many nodes a run ended with (a plan run grows), from its summary's counts."""
    counts = summary.get("counts")
    if not isinstance(counts, Mapping) or "items" in summary:
        return None
    return sum(int(n) for n in counts.values()) or None


def item_order(record: RunRecord) -> tuple[int, str]:
    """Sort key of a batch's item runs (``{batch_id}.{index}``) by index."""
    index = record.run_id.rpartition(".")[2]
    return (int(index) if index.isdigit() else 0, record.run_id)


def shown_status(record: RunRecord) -> str:
    """The run's status for people: a ``running`` run whose writer is gone was interrupted."""
    if (
        record.status == "running"
        and record.owner != this_owner()
        and not owner_alive(record.owner)
    ):
        return "interrupted"
    return record.status


def batch_items(store: RunStore, batch: RunRecord) -> list[dict[str, Any]]:
    """Every item of a stored batch, started or not, in input order, as ``batch.json`` rows.

    A batch that ended stored these rows itself (exact timings); for one that
    was interrupted they are rebuilt from its item runs, timed by the wall clock.

    Raises:
        StoreError: if the batch's rows name an item run the store does not hold.
    """
    started = {r.run_id: r for r in store.get_items(batch.run_id)}
    ended = batch.summary.get("items")
    if ended is not None:
        kept = [dict(stored) for stored in ended]
        for stored in kept:
            item_run = started.get(stored.get("run_id") or "")
            if item_run is None and stored.get("run_id") is not None:
                raise damaged(
                    store.location,
                    f"batch {batch.run_id!r}",
                    f"its item {stored.get('key')!r} names run {stored['run_id']!r}, "
                    "which the store does not hold",
                )
            stored["done_nodes"] = 0 if item_run is None else item_run.done_nodes
            stored["total_nodes"] = None if item_run is None else item_run.total_nodes
        return kept
    rows: list[dict[str, Any]] = []
    for index, item in enumerate(batch.inputs.get("items", [])):
        run = started.get(f"{batch.run_id}.{index}")
        row: dict[str, Any] = {
            "key": item.get("key"),
            "status": "invalid" if item.get("error") else "not started",
            "success": False,
            "where": item.get("where"),
            "priority": item.get("priority"),
            "run_id": None,
            "started_s": None,
            "finished_s": None,
            "wall_s": None,
            "tokens": {"input": 0, "output": 0},
            "cost_usd": None,
            "error": item.get("error"),
            "done_nodes": 0,
            "total_nodes": None,
        }
        if run is not None:
            usage = run.summary.get("usage") or {}
            ended_run = run.status != "running"
            row.update(
                status=shown_status(run),
                success=run.status == "succeeded",
                run_id=run.run_id,
                started_s=round(run.created - batch.created, 6),
                finished_s=round(run.updated - batch.created, 6) if ended_run else None,
                wall_s=run.summary.get("wall_s"),
                tokens={
                    "input": usage.get("input_tokens", 0),
                    "output": usage.get("output_tokens", 0),
                },
                cost_usd=run.cost_usd,
                done_nodes=run.done_nodes,
                total_nodes=run.total_nodes,
            )
        rows.append(row)
    return rows


def busy(run_id: str, owner: str | None) -> StoreError:
    process = (owner or "").partition("@")[0]
    return StoreError(
        f"run {run_id!r} is being written by process {process}. Fix: wait for it to end, "
        "or stop it; two processes never write the same run."
    )
