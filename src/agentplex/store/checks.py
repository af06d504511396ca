"""The shapes of stored records, checked on every read.

A store file may be damaged or planted, so nothing read from it is used before
its fields are known to have the types agentplex writes: a run's columns, its
settings and summary, a batch's items and per-item rows, a node's record.
Fields agentplex does not know are left alone (a newer agentplex may add
some); known fields of the wrong type are a problem. Each check returns the
first problem as a phrase (``"field 'wall_s' is 'abc', not a number"``), or
``None``; the store turns it into a :class:`~agentplex.exceptions.StoreError` that
names the file and the run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

RUN_STATUSES = frozenset({"running", "succeeded", "failed", "cancelled"})
NODE_STATUSES = frozenset({"pending", "succeeded", "failed", "skipped", "cancelled"})


class Kind:
    """A field's expected type: a predicate and how to name it in a message."""

    __slots__ = ("name", "test")

    def __init__(self, name: str, test: Callable[[Any], bool]) -> None:
        self.name = name
        self.test = test

    def __or__(self, other: Kind) -> Kind:
        return Kind(f"{self.name} or {other.name}", lambda v: self.test(v) or other.test(v))


def _is_number(value: Any) -> bool:
    return type(value) is int or type(value) is float


NONE = Kind("null", lambda v: v is None)
STR = Kind("a string", lambda v: type(v) is str)
INT = Kind("a whole number", lambda v: type(v) is int)
COUNT = Kind("a whole number >= 0", lambda v: type(v) is int and v >= 0)
NUMBER = Kind("a number", _is_number)
BOOL = Kind("true or false", lambda v: type(v) is bool)
OBJECT = Kind("an object", lambda v: type(v) is dict)
SCALAR = Kind(
    "a string, number, boolean or null", lambda v: v is None or type(v) in (str, int, float, bool)
)
STRS = Kind("a list of strings", lambda v: type(v) is list and all(type(s) is str for s in v))
NUMBERS = Kind("a list of numbers", lambda v: type(v) is list and all(_is_number(n) for n in v))
COUNTS = Kind(
    "an object of whole numbers",
    lambda v: type(v) is dict and all(type(n) is int for n in v.values()),
)
OBJECTS = Kind("a list of objects", lambda v: type(v) is list and all(type(o) is dict for o in v))


def one_of(values: frozenset[str]) -> Kind:
    return Kind("one of " + ", ".join(sorted(values)), lambda v: v in values)


Table = Mapping[str, Kind]

USAGE: Table = {
    "input_tokens": COUNT,
    "output_tokens": COUNT,
    "cached_calls": COUNT,
    "cache_read_tokens": COUNT,
    "cache_write_tokens": COUNT,
    "estimated": BOOL,
}
TOKENS: Table = {"input": COUNT, "output": COUNT}

NODE_RECORD: Table = {
    "node_id": STR,
    "kind": STR | NONE,
    "role": STR | NONE,
    "model": STR | NONE,
    "status": one_of(NODE_STATUSES),
    "started_s": NUMBER | NONE,
    "finished_s": NUMBER | NONE,
    "duration_s": NUMBER | NONE,
    "attempts": COUNT,
    "error": STR | NONE,
    "error_type": STR | NONE,
    "usage": OBJECT | NONE,
    "cost_usd": NUMBER | NONE,
    "deps": STRS,
    "attempt_starts": NUMBERS,
    "reused": BOOL,
    "finish_reason": STR | NONE,
    "truncated": BOOL,
}
"""``NodeResult.to_dict()`` without its output."""

BATCH_ROW: Table = {
    "key": STR,
    "folder": STR | NONE,
    "success": BOOL,
    "status": STR,
    "where": STR | NONE,
    "priority": NUMBER | NONE,
    "inputs": OBJECT,
    "run_id": STR | NONE,
    "started_s": NUMBER | NONE,
    "finished_s": NUMBER | NONE,
    "wall_s": NUMBER | NONE,
    "tokens": OBJECT,
    "cost_usd": NUMBER | NONE,
    "error": STR | NONE,
    "done_nodes": COUNT,
    "total_nodes": COUNT | NONE,
}
"""``ItemResult.to_dict()``, as a batch's summary keeps it."""

BATCH_ITEM: Table = {
    "key": STR,
    "inputs": OBJECT,
    "priority": NUMBER,
    "model": STR | NONE,
    "where": STR | NONE,
    "error": STR | NONE,
}
"""One item of a batch record's ``inputs["items"]``."""

SUMMARY: Table = {
    "run_id": STR,
    "batch_id": STR,
    "workflow": STR,
    "status": STR,
    "strategy": STR,
    "max_concurrency": COUNT | NONE,
    "wall_s": NUMBER | NONE,
    "sequential_s": NUMBER | NONE,
    "critical_path_s": NUMBER | NONE,
    "critical_path": STRS,
    "speedup": NUMBER | NONE,
    "efficiency": NUMBER | NONE,
    "counts": COUNTS,
    "usage": OBJECT,
    "usage_by_model": OBJECT,
    "cost_usd": NUMBER | NONE,
    "unpriced_models": STRS,
    "inputs": OBJECT,
    "warnings": STRS,
    "tokens": OBJECT,
    "items": OBJECTS,
}
"""``RunResult.to_dict(nodes=False)`` or ``BatchResult.to_dict()``."""


RUN_COLUMNS = (
    "run_id",
    "workflow",
    "status",
    "created",
    "updated",
    "source",
    "inputs",
    "settings",
    "total_nodes",
    "done_nodes",
    "cost_usd",
    "batch_id",
    "item_key",
    "owner",
    "summary",
)
"""The columns of a row of ``runs``, in the order the store selects them."""

RUN_ROW: Table = {
    "run_id": STR,
    "workflow": STR,
    "status": one_of(RUN_STATUSES),
    "created": NUMBER,
    "updated": NUMBER,
    "source": STR | NONE,
    "total_nodes": COUNT,
    "cost_usd": NUMBER | NONE,
    "batch_id": STR | NONE,
    "item_key": STR | NONE,
    "owner": STR | NONE,
}
"""The plain columns of a row of ``runs`` (its JSON columns are checked as objects)."""

NODE_ROW: Table = {
    "node_id": STR,
    "key": STR,
    "status": one_of(NODE_STATUSES),
}
"""The plain columns of a row of ``nodes``."""

EVENT_ROW: Table = {
    "seq": INT,
    "t": NUMBER,
    "kind": STR,
    "node_id": STR | NONE,
}
"""A row of ``events``."""


def problem_in(data: Mapping[str, Any], table: Table) -> str | None:
    """The first known field of ``data`` whose value has the wrong type, as a phrase."""
    for name, kind in table.items():
        if name in data and not kind.test(data[name]):
            return f"field {name!r} is {_shown(data[name])}, not {kind.name}"
    return None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _nested(data: Mapping[str, Any], name: str, table: Table) -> str | None:
    inner = data.get(name)
    if isinstance(inner, dict):
        problem = problem_in(inner, table)
        if problem is not None:
            return f"{name}: {problem}"
    return None


def node_problem(record: Mapping[str, Any]) -> str | None:
    """What is wrong with a stored node record, if anything."""
    return problem_in(record, NODE_RECORD) or _nested(record, "usage", USAGE)


def batch_row_problem(row: Mapping[str, Any]) -> str | None:
    """What is wrong with one per-item row of a batch's summary, if anything."""
    return problem_in(row, BATCH_ROW) or _nested(row, "tokens", TOKENS)


def summary_problem(summary: Mapping[str, Any]) -> str | None:
    """What is wrong with a run's or batch's stored summary, if anything."""
    problem = (
        problem_in(summary, SUMMARY)
        or _nested(summary, "usage", USAGE)
        or _nested(summary, "tokens", TOKENS)
    )
    if problem is not None:
        return f"summary: {problem}"
    for index, row in enumerate(summary.get("items") or []):
        problem = batch_row_problem(row)
        if problem is not None:
            return f"summary item {index}: {problem}"
    return None


def settings_problem(settings: Mapping[str, Any]) -> str | None:
    """Settings hold only option names and plain values (that is all the recorder writes)."""
    for name, value in settings.items():
        if not SCALAR.test(value):
            return f"settings: field {name!r} is {_shown(value)}, not {SCALAR.name}"
    return None


def batch_inputs_problem(inputs: Mapping[str, Any]) -> str | None:
    """What is wrong with a batch record's ``inputs`` (its ``items``), if anything."""
    items = inputs.get("items")
    if not isinstance(items, list) or not OBJECTS.test(items):
        return f"inputs: field 'items' is {_shown(items)}, not {OBJECTS.name}"
    for index, item in enumerate(items):
        problem = problem_in(item, BATCH_ITEM)
        if problem is None and "key" not in item:
            problem = "field 'key' is missing"
        if problem is not None:
            return f"inputs: item {index}: {problem}"
    return None
