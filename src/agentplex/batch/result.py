"""What a batch leaves behind: one :class:`ItemResult` per input, and the whole.

:class:`BatchResult` is a read-only mapping from item key to item result, so
``for key, item in results.items()`` works; it also carries the batch-level
figures (wall time, sequential estimate, speedup, tokens, cost) and writes
the result folder: ``batch.json`` (the record), ``summary.csv`` (a row per
item) and ``items/<folder>/`` (each item's ``run.json`` and node outputs),
where ``<folder>`` is the item's key made safe
(:func:`~agentplex.batch.inputs.item_folders`); ``batch.json`` and each
``run.json`` keep the key itself.

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
from typing import Any, Literal

from agentplex.result import RunResult, SafeNames, Usage, no_link_below, write_error, write_text

ItemStatus = Literal["succeeded", "failed", "cancelled", "invalid", "pending"]
"""``invalid``: the row could not become a run (a malformed line, a bad input);
``pending``: the batch ended (Ctrl-C) before the item started."""


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
        return {
            "key": self.key,
            "folder": self.folder,
            "success": self.success,
            "status": self.status,
            "where": self.where,
            "priority": self.priority,
            "inputs": dict(self.inputs),
            "run_id": self.run.run_id if self.run else None,
            "started_s": _round(self.started_s),
            "finished_s": _round(self.finished_s),
            "wall_s": _round(self.wall_s),
            "tokens": {"input": self.usage.input_tokens, "output": self.usage.output_tokens},
            "cost_usd": None if self.cost_usd is None else round(self.cost_usd, 8),
            "error": self.error,
        }


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
    status: Literal["succeeded", "failed", "cancelled"]
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
        counts: dict[str, int] = {}
        for item in self.results.values():
            counts[item.status] = counts.get(item.status, 0) + 1
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
        usage = self.usage
        return {
            "batch_id": self.batch_id,
            "workflow": self.workflow,
            "status": self.status,
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

    def to_json(self, *, indent: int | None = 2) -> str:
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


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
