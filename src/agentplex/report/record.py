"""Read a run or batch record that may have been tampered with, field by field.

A report reads ``run.json`` / ``batch.json`` files and store records, which
anyone may have edited. :class:`RecordCheck` turns one into a clean record
whose every field has the type the report expects (missing fields take
defaults), or raises, for the first wrong field, one line that names the
record, the field, the value and the fix: a string where a number belongs,
a list where an object belongs, a time that is negative or past
:data:`MAX_SECONDS`, a count past :data:`MAX_COUNT`, a folder that is not
one safe name. Strings stay as they are: the templates escape them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from agentplex.exceptions import AgentplexError, WorkflowFileError
from agentplex.result import is_safe_name

MAX_SECONDS = 1e8
"""Longest time a record may hold (about three years)."""
MAX_COUNT = 10**15
"""Largest token count a record may hold."""
MAX_COST = 1e12
MAX_ATTEMPTS = 10**6
FIX = (
    "Fix: the record was edited or is damaged; write it again (agentplex run/batch "
    "--out, or agentplex report RUN_ID from the store) or restore the original."
)


def clip(value: Any, limit: int = 60) -> str:
    """``repr(value)`` on one line, cut to about ``limit`` characters."""
    try:
        text = repr(value)
    except RecursionError:
        text = f"<a deeply nested {type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 4] + "...'"


class RecordCheck:
    """Typed reads from one record; the first wrong field raises a one-line error."""

    def __init__(
        self, where: str, error: Callable[[str, str], AgentplexError] | None = None
    ) -> None:
        self.where = where
        """What the record is: its file, or ``run <id> in the store``."""
        self.error = error or (lambda where, problem: WorkflowFileError(where, problem))

    def fail(self, field: str, value: Any, expected: str) -> NoReturn:
        """Raise the error for ``field``, which holds ``value`` instead of ``expected``."""
        raise self.error(self.where, f"field {field} is {clip(value)}, not {expected}. {FIX}")

    # -- fields --------------------------------------------------------------------

    def mapping(self, obj: Mapping[str, Any], key: str, field: str) -> dict[str, Any]:
        """An object (``{}`` if missing or null)."""
        value = obj.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(field, value, "an object")
        return dict(value)

    def text(self, obj: Mapping[str, Any], key: str, field: str) -> str | None:
        value = obj.get(key)
        if value is not None and not isinstance(value, str):
            self.fail(field, value, "text")
        return value

    def texts(self, obj: Mapping[str, Any], key: str, field: str) -> list[str]:
        """A list of strings (``[]`` if missing)."""
        value = obj.get(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(field, value, "a list of text")
        return list(value)

    def number(
        self,
        obj: Mapping[str, Any],
        key: str,
        field: str,
        *,
        low: float = 0.0,
        high: float = MAX_SECONDS,
        what: str = "a time in seconds",
    ) -> float | None:
        value = obj.get(key)
        if value is None:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not low <= value <= high
        ):
            self.fail(field, value, f"{what} from {low:g} to {high:g}")
        return float(value)

    def count(
        self, obj: Mapping[str, Any], key: str, field: str, *, high: int = MAX_COUNT
    ) -> int | None:
        value = obj.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
            self.fail(field, value, f"a whole number from 0 to {high:g}")
        return value

    def times(self, obj: Mapping[str, Any], key: str, field: str) -> list[float]:
        value = obj.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(field, value, "a list of times")
        return [self.number({"t": t}, "t", f"{field}[{i}]") or 0.0 for i, t in enumerate(value)]

    def usage(self, obj: Mapping[str, Any], key: str, field: str, names: tuple[str, str]) -> Any:
        """Token counts ``{names[0]: int, names[1]: int}``, or ``None`` if missing."""
        if obj.get(key) is None:
            return None
        usage = self.mapping(obj, key, field)
        return {name: self.count(usage, name, f"{field}.{name}") or 0 for name in names}

    def counts(self, obj: Mapping[str, Any], key: str, field: str) -> dict[str, int]:
        counts = self.mapping(obj, key, field)
        return {str(k): self.count(counts, k, f"{field}[{clip(k, 30)}]") or 0 for k in counts}

    def span(self, obj: Mapping[str, Any], field: str) -> tuple[float | None, float | None]:
        """``(started_s, finished_s)``, the end never before the start."""
        start = self.number(obj, "started_s", f"{field}.started_s")
        end = self.number(obj, "finished_s", f"{field}.finished_s")
        if start is not None and end is not None and end < start:
            self.fail(f"{field}.finished_s", end, f"a time after started_s ({start:g})")
        return start, end

    # -- records ---------------------------------------------------------------------

    def run(self, record: Any) -> dict[str, Any]:
        """A run record (``run.json``, or one rebuilt from the store), checked."""
        if not isinstance(record, Mapping):
            self.fail("(the whole record)", record, "an object")
        raw_nodes = record.get("nodes")
        if not isinstance(raw_nodes, Mapping):
            self.fail("nodes", raw_nodes, "an object of node records")
        checked = {
            "workflow": self.text(record, "workflow", "workflow") or "run",
            "run_id": self.text(record, "run_id", "run_id") or "",
            "status": self.text(record, "status", "status"),
            "strategy": self.text(record, "strategy", "strategy"),
            "max_concurrency": self.count(record, "max_concurrency", "max_concurrency", high=10**9),
            "wall_s": self.number(record, "wall_s", "wall_s"),
            "sequential_s": self.number(record, "sequential_s", "sequential_s"),
            "critical_path_s": self.number(record, "critical_path_s", "critical_path_s"),
            "speedup": self.number(record, "speedup", "speedup", high=1e9, what="a number"),
            "efficiency": self.number(
                record, "efficiency", "efficiency", high=1e9, what="a number"
            ),
            "critical_path": self.texts(record, "critical_path", "critical_path"),
            "usage": self.usage(record, "usage", "usage", ("input_tokens", "output_tokens")),
            "cost_usd": self.cost(record, "cost_usd", "cost_usd"),
            "counts": self.counts(record, "counts", "counts"),
        }
        checked["nodes"] = {
            str(nid): self.node(node, f"nodes[{clip(nid, 40)}]") for nid, node in raw_nodes.items()
        }
        return checked

    def node(self, node: Any, field: str) -> dict[str, Any]:
        if not isinstance(node, Mapping):
            self.fail(field, node, "an object (a node record)")
        start, end = self.span(node, field)
        output = node.get("output")
        if output is not None and not isinstance(output, str):
            try:
                output = json.dumps(output, indent=2, ensure_ascii=False)
            except (TypeError, ValueError, RecursionError):
                self.fail(f"{field}.output", output, "JSON that can be shown")
        return {
            "status": self.text(node, "status", f"{field}.status") or "",
            "kind": self.text(node, "kind", f"{field}.kind"),
            "role": self.text(node, "role", f"{field}.role"),
            "model": self.text(node, "model", f"{field}.model"),
            "error": self.text(node, "error", f"{field}.error"),
            "started_s": start,
            "finished_s": end,
            "duration_s": self.number(node, "duration_s", f"{field}.duration_s"),
            "attempts": self.count(node, "attempts", f"{field}.attempts", high=MAX_ATTEMPTS),
            "attempt_starts": self.times(node, "attempt_starts", f"{field}.attempt_starts"),
            "usage": self.usage(node, "usage", f"{field}.usage", ("input_tokens", "output_tokens")),
            "cost_usd": self.cost(node, "cost_usd", f"{field}.cost_usd"),
            "deps": self.texts(node, "deps", f"{field}.deps"),
            "output": output,
        }

    def cost(self, obj: Mapping[str, Any], key: str, field: str) -> float | None:
        return self.number(obj, key, field, high=MAX_COST, what="a cost in dollars")

    def batch(self, record: Any) -> dict[str, Any]:
        """A batch record (``batch.json``, or one rebuilt from the store), checked."""
        if not isinstance(record, Mapping):
            self.fail("(the whole record)", record, "an object")
        raw_items = record.get("items")
        if not isinstance(raw_items, list):
            self.fail("items", raw_items, "a list of item records")
        return {
            "workflow": self.text(record, "workflow", "workflow") or "batch",
            "batch_id": self.text(record, "batch_id", "batch_id") or "",
            "status": self.text(record, "status", "status"),
            "strategy": self.text(record, "strategy", "strategy"),
            "max_concurrency": self.count(record, "max_concurrency", "max_concurrency", high=10**9),
            "wall_s": self.number(record, "wall_s", "wall_s"),
            "sequential_s": self.number(record, "sequential_s", "sequential_s"),
            "speedup": self.number(record, "speedup", "speedup", high=1e9, what="a number"),
            "counts": self.counts(record, "counts", "counts"),
            "tokens": self.usage(record, "tokens", "tokens", ("input", "output")),
            "cost_usd": self.cost(record, "cost_usd", "cost_usd"),
            "items": [self.item(item, f"items[{i}]") for i, item in enumerate(raw_items)],
        }

    def item(self, item: Any, field: str) -> dict[str, Any]:
        if not isinstance(item, Mapping):
            self.fail(field, item, "an object (an item record)")
        key = item.get("key")
        if not isinstance(key, str):
            self.fail(f"{field}.key", key, "text")
        folder = item.get("folder")
        if folder is not None and not is_safe_name(folder):
            self.fail(f"{field}.folder", folder, "one folder name inside items/")
        start, end = self.span(item, field)
        return {
            "key": key,
            "folder": folder,
            "status": self.text(item, "status", f"{field}.status") or "",
            "run_id": self.text(item, "run_id", f"{field}.run_id"),
            "error": self.text(item, "error", f"{field}.error"),
            "started_s": start,
            "finished_s": end,
            "wall_s": self.number(item, "wall_s", f"{field}.wall_s"),
            "tokens": self.usage(item, "tokens", f"{field}.tokens", ("input", "output")),
            "cost_usd": self.cost(item, "cost_usd", f"{field}.cost_usd"),
        }
