"""What a batch leaves behind: one :class:`ItemResult` per input, and the whole.

:class:`BatchResult` is a read-only mapping from item key to item result, so
``for key, item in results.items()`` works; it also carries the batch-level
figures (wall time, sequential estimate, speedup, tokens, cost) and writes
the result folder: ``batch.json`` (the record), ``summary.csv`` (a row per
item) and ``items/<folder>/`` (each item's ``run.json`` and node outputs),
where ``<folder>`` is the item's key made safe
(:func:`~agentplex.batch.inputs.item_folders`); ``batch.json`` and each
``run.json`` keep the key itself.

:meth:`BatchResult.to_dict`/:meth:`BatchResult.from_dict` (and the same pair
on :class:`ItemResult`) are the batch's part of the one result schema, the
shape of ``batch.json``; the batch figures (counts, tokens, cost, sequential
time, speedup) are computed in one place, :class:`BatchResult`, whoever
reads them. :func:`load_result` turns a stored run or batch, finished or not,
into the same typed results.

``summary.csv`` is meant for spreadsheets, which run a cell that starts with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return as a formula. Every
text cell (key, status, error) that starts with one of those gets a leading
``'`` (OWASP's advice for CSV injection), so ``=HYPERLINK(...)`` shows as
text. Figures agentplex formats itself (times, tokens, cost) are written as
plain numbers: they never start with such a character.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from agentplex.exceptions import DecodeError
from agentplex.result import (
    RunResult,
    SafeNames,
    Status,
    Usage,
    no_link_below,
    write_error,
    write_text,
)

if TYPE_CHECKING:
    from agentplex.store import RunStore

ItemStatus = Literal[
    "succeeded",
    "failed",
    "cancelled",
    "invalid",
    "pending",
    "running",
    "interrupted",
    "not started",
]
"""A :class:`~agentplex.result.Status`: ``invalid``: the row could not become a run (a
malformed line, a bad input); ``pending``: the batch ended (Ctrl-C) before the item
started. Read back from the store: ``running``/``interrupted`` (its run never ended)
and ``not started`` (the batch was interrupted before it)."""
ITEM_STATUSES = frozenset(Status(s) for s in get_args(ItemStatus))
BatchStatus = Literal["succeeded", "failed", "cancelled", "running", "interrupted"]
"""``running``/``interrupted`` only for a batch read back from the store before it ended."""


@dataclass(frozen=True, slots=True)
class ItemResult:
    """The outcome of one batch item."""

    key: str
    status: ItemStatus
    inputs: Mapping[str, Any] = field(default_factory=dict)
    started_s: float | None = None
    """Seconds after the batch started."""
    finished_s: float | None = None
    error: str | None = None
    """Why it failed: the first failed node and its error, or the row's problem."""
    run: RunResult | None = None
    """The item's full run result (``None`` for invalid rows or when not kept)."""
    where: str | None = None
    """``file:line`` of the row."""
    priority: float = 0.0
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = None
    sequential_s: float = 0.0
    """Sum of the item's node durations."""
    folder: str | None = None
    """Its folder under ``items/`` once written (the key made safe)."""
    run_id: str | None = None
    """The item's run in the store, when ``run`` is not kept (read back from a record)."""
    done_nodes: int | None = None
    """Nodes that had succeeded, as the store knew them (None: not read from a store)."""
    total_nodes: int | None = None
    """Nodes of the item's run, as the store knew them (None: unknown or not started)."""

    @property
    def success(self) -> bool:
        return self.status == "succeeded"

    @property
    def wall_s(self) -> float:
        if self.started_s is None or self.finished_s is None:
            return 0.0
        return self.finished_s - self.started_s

    @property
    def outputs(self) -> dict[str, Any]:
        return self.run.outputs if self.run is not None else {}

    def to_dict(self) -> dict[str, Any]:
        """Return the item's row of ``batch.json`` (``done_nodes``/``total_nodes`` when known)."""
        record = {
            "key": self.key,
            "folder": self.folder,
            "success": self.success,
            "status": str(self.status),
            "where": self.where,
            "priority": self.priority,
            "inputs": dict(self.inputs),
            "run_id": self.run.run_id if self.run else self.run_id,
            "started_s": _round(self.started_s),
            "finished_s": _round(self.finished_s),
            "wall_s": self._rounded_wall_s(),
            "sequential_s": _round(self.sequential_s),
            "tokens": {"input": self.usage.input_tokens, "output": self.usage.output_tokens},
            "cost_usd": None if self.cost_usd is None else round(self.cost_usd, 8),
            "error": self.error,
        }
        if self.done_nodes is not None:
            record["done_nodes"] = self.done_nodes
            record["total_nodes"] = self.total_nodes
        return record

    def _rounded_wall_s(self) -> float:
        # From the rounded ends, so a row read back writes the same wall_s again.
        started, finished = _round(self.started_s), _round(self.finished_s)
        return 0.0 if started is None or finished is None else round(finished - started, 6)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, run: RunResult | None = None) -> ItemResult:
        """Read a :meth:`to_dict` row back (``wall_s`` and ``success`` are derived, not read).

        Raises:
            DecodeError: naming the item and the field, if a field has the wrong type.
        """
        f = _Row(data, "an item")
        key = f.get("key", str)
        f.what = f"item {key!r}"
        status = f.get("status", str)
        if status not in ITEM_STATUSES:
            names = ", ".join(sorted(ITEM_STATUSES))
            raise DecodeError(f.what, f"has field 'status' = {status!r}, not one of {names}")
        tokens = f.get("tokens", Mapping, {}) or {}
        return cls(
            key=key,
            status=Status(status),  # type: ignore[arg-type]
            inputs=dict(f.get("inputs", Mapping, {}) or {}),
            started_s=f.number("started_s"),
            finished_s=f.number("finished_s"),
            error=f.get("error", str, None),
            run=run,
            where=f.get("where", str, None),
            priority=f.number("priority") or 0.0,
            usage=Usage(
                _Row(tokens, f"{f.what}, field 'tokens'").count("input"),
                _Row(tokens, f"{f.what}, field 'tokens'").count("output"),
            ),
            cost_usd=f.number("cost_usd"),
            sequential_s=f.number("sequential_s") or 0.0,
            folder=f.get("folder", str, None),
            run_id=f.get("run_id", str, None),
            done_nodes=f.get("done_nodes", int, None),
            total_nodes=f.get("total_nodes", int, None),
        )


def item_from_run(
    key: str,
    run: RunResult,
    *,
    started_s: float,
    finished_s: float,
    where: str | None,
    priority: float,
    keep: bool,
    folder: str | None = None,
) -> ItemResult:
    """Summarize one item's run (keeping the full result if ``keep``)."""
    error = None
    if not run.ok:
        failed = [n for n in run.nodes.values() if n.status == "failed"]
        if failed:
            error = f"{failed[0].node_id}: {failed[0].error}"
            if len(failed) > 1:
                error += f" (and {len(failed) - 1} more failed)"
        else:
            error = f"the run was {run.status}"
    status: ItemStatus = (
        "succeeded" if run.ok else ("cancelled" if run.status == "cancelled" else "failed")
    )
    return ItemResult(
        key,
        status,
        dict(run.inputs),
        started_s,
        finished_s,
        error,
        run if keep else None,
        where,
        priority,
        run.usage,
        run.cost_usd,
        run.sequential_s,
        folder,
    )


@dataclass(frozen=True, slots=True, repr=False)
class BatchResult(Mapping[str, ItemResult]):
    """Every item's result by key, and the batch's figures."""

    batch_id: str
    workflow: str
    status: BatchStatus
    """``succeeded`` only if every item succeeded."""
    wall_s: float
    max_concurrency: int
    strategy: str
    results: Mapping[str, ItemResult]

    def __repr__(self) -> str:
        return (
            f"BatchResult(batch_id={self.batch_id!r}, workflow={self.workflow!r}, "
            f"status={self.status!r}, items={len(self)}, counts={self.counts()}, "
            f"wall_s={self.wall_s:.3f})"
        )

    def __getitem__(self, key: str) -> ItemResult:
        return self.results[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    def counts(self) -> dict[str, int]:
        """Return how many items ended in each status."""
        counts: dict[str, int] = {}
        for item in self.results.values():
            status = str(item.status)
            counts[status] = counts.get(status, 0) + 1
        return counts

    def failed(self) -> list[ItemResult]:
        """Items that did not succeed (failed, invalid or cancelled), in input order."""
        return [item for item in self.results.values() if not item.success]

    @property
    def usage(self) -> Usage:
        return sum((item.usage for item in self.results.values()), Usage())

    @property
    def cost_usd(self) -> float | None:
        costs = [i.cost_usd for i in self.results.values() if i.cost_usd is not None]
        return sum(costs) if costs else None

    @property
    def sequential_s(self) -> float:
        """Sum of every node duration of every item: one call after another."""
        return sum(item.sequential_s for item in self.results.values())

    @property
    def speedup(self) -> float:
        return self.sequential_s / self.wall_s if self.wall_s > 0 else 1.0

    def to_dict(self) -> dict[str, Any]:
        """Return ``batch.json``: the batch's figures (computed here, nowhere else) and items."""
        usage = self.usage
        return {
            "batch_id": self.batch_id,
            "workflow": self.workflow,
            "status": str(self.status),
            "strategy": self.strategy,
            "max_concurrency": self.max_concurrency,
            "wall_s": _round(self.wall_s),
            "sequential_s": _round(self.sequential_s),
            "speedup": round(self.speedup, 3),
            "counts": self.counts(),
            "tokens": {"input": usage.input_tokens, "output": usage.output_tokens},
            "cost_usd": None if self.cost_usd is None else round(self.cost_usd, 8),
            "items": [item.to_dict() for item in self.results.values()],
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, runs: Mapping[str, RunResult] | None = None
    ) -> BatchResult:
        """Read a :meth:`to_dict` record back; ``runs`` are item results by key, to attach.

        The figures (``counts``, ``tokens``, ``cost_usd``, ``sequential_s``,
        ``speedup``) are not read: the result computes them from its items.

        Raises:
            DecodeError: naming the batch or item and the field, if one has the wrong type.
        """
        f = _Row(data, "a batch")
        batch_id = f.get("batch_id", str)
        f.what = f"batch {batch_id!r}"
        status = f.get("status", str)
        allowed = get_args(BatchStatus)
        if status not in allowed:
            raise DecodeError(
                f.what, f"has field 'status' = {status!r}, not one of {', '.join(allowed)}"
            )
        rows = f.get("items", list, [])
        items: dict[str, ItemResult] = {}
        for row in rows:
            key = row.get("key") if isinstance(row, Mapping) else None
            item = ItemResult.from_dict(row, run=(runs or {}).get(key) if key else None)
            items[item.key] = item
        return cls(
            batch_id=batch_id,
            workflow=f.get("workflow", str),
            status=Status(status),  # type: ignore[arg-type]
            wall_s=f.number("wall_s") or 0.0,
            max_concurrency=f.get("max_concurrency", int, None) or 1,
            strategy=f.get("strategy", str, None) or "dataflow",
            results=items,
        )

    def to_json(self, *, indent: int | None = 2) -> str:
        """Return :meth:`to_dict` as JSON text (``batch.json``)."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def write(self, folder: str | Path) -> Path:
        """Write ``batch.json``, ``summary.csv`` and each kept item's folder; return the record.

        Raises:
            OutputError: naming the path, if a write fails.
        """
        out = Path(folder)
        names = SafeNames(item.folder for item in self.results.values() if item.folder)
        written: dict[str, ItemResult] = {}
        for key, item in self.results.items():
            if item.run is not None:
                name = item.folder or names(key)
                item.run.write(out / "items" / name, key=key, root=out)
                item = dataclasses.replace(item, folder=name)
            written[key] = item
        result = dataclasses.replace(self, results=written)
        write_summary(out / "summary.csv", written.values())
        record = out / "batch.json"
        write_text(record, result.to_json() + "\n", what="the batch record", root=out)
        return record


SUMMARY_COLUMNS = ("key", "status", "wall_s", "input_tokens", "output_tokens", "cost_usd", "error")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""A spreadsheet runs a cell starting with one of these as a formula (OWASP)."""


def cell(text: str) -> str:
    """Return ``text`` as a CSV cell no spreadsheet runs: a formula start gets a leading ``'``."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def write_summary(path: Path, items: Iterable[ItemResult]) -> None:
    """Write one CSV row per item: key, status, wall time, tokens, cost, error.

    Text cells are neutralised with :func:`cell`; the figures are numbers.

    Raises:
        OutputError: naming the path, if the write fails.
    """
    no_link_below(path.parent, path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8", errors="backslashreplace") as handle:
            writer = csv.writer(handle)
            writer.writerow(SUMMARY_COLUMNS)
            for item in items:
                writer.writerow(
                    [
                        cell(item.key),
                        cell(item.status),
                        f"{item.wall_s:.3f}",
                        item.usage.input_tokens,
                        item.usage.output_tokens,
                        "" if item.cost_usd is None else f"{item.cost_usd:.6f}",
                        cell(item.error or ""),
                    ]
                )
    except OSError as exc:
        raise write_error(exc, path, "the batch summary") from None


def load_result(store: RunStore, run_id: str, *, item_runs: int = 0) -> RunResult | BatchResult:
    """Return a stored run (a :class:`RunResult`) or batch (a :class:`BatchResult`), typed.

    The one way from the store to a result, for the report, ``show``, ``runs``
    and exports. A batch that ended is its stored record; one that did not
    (interrupted, or still running) is rebuilt from its item runs, with
    ``running``/``interrupted`` as its status and every item that never
    started as ``not started``. ``item_runs`` attaches the full result of the
    first that many items that started (``ItemResult.run``).

    Raises:
        RunNotFoundError: if there is no such run.
        StoreError: naming the store, the run and the field, if a stored record
            is damaged.
    """
    from agentplex.store import batch_items, damaged

    record = store.get_run(run_id)
    if not record.is_batch:
        return store.load_run(run_id)
    try:
        rows = batch_items(store, record)
    except (AttributeError, TypeError, KeyError, ValueError) as exc:
        raise damaged(store.location, f"batch {run_id!r}", f"its item rows: {exc}") from None
    runs: dict[str, RunResult] = {}
    for row in rows:
        if len(runs) >= item_runs:
            break
        if isinstance(row, Mapping) and row.get("run_id") and isinstance(row.get("key"), str):
            run = store.load_run(row["run_id"])
            runs[row["key"]] = run
    settings = record.settings if isinstance(record.settings, Mapping) else {}
    summary = record.summary if isinstance(record.summary, Mapping) else {}
    data = {
        "strategy": settings.get("strategy"),
        "max_concurrency": settings.get("max_concurrency"),
        "wall_s": max(0.0, float(record.updated) - float(record.created)),
        **summary,
        "batch_id": record.run_id,
        "workflow": record.workflow,
        "status": str(record.shown_status),
        "items": rows,
    }
    try:
        return BatchResult.from_dict(data, runs=runs)
    except DecodeError as exc:
        raise damaged(store.location, f"batch {run_id!r}", str(exc)) from None


class _Row:
    """Typed reads of one record's fields; a field of the wrong type is a DecodeError."""

    __slots__ = ("data", "what")

    def __init__(self, data: Any, what: str) -> None:
        if not isinstance(data, Mapping):
            raise DecodeError(what, f"is {type(data).__name__}, not an object")
        self.data: Mapping[str, Any] = data
        self.what = what

    def get(self, name: str, kind: Any, default: Any = ...) -> Any:
        value = self.data.get(name)
        if value is None:
            if default is ...:
                raise DecodeError(self.what, f"has no field {name!r}; every record has one")
            return default
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise DecodeError(
                self.what, f"has field {name!r} = {_shown(value)}, not {_KINDS.get(kind, kind)}"
            )
        return value

    def number(self, name: str) -> float | None:
        value = self.data.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise DecodeError(self.what, f"has field {name!r} = {_shown(value)}, not a number")
        return float(value)

    def count(self, name: str) -> int:
        value = self.data.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise DecodeError(
                self.what, f"has field {name!r} = {_shown(value)}, not a whole number >= 0"
            )
        return value


_KINDS: dict[Any, str] = {
    str: "a string",
    int: "a whole number",
    list: "a list",
    Mapping: "an object",
}


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
