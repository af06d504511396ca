"""The inputs of a batch: one item per line of a text, CSV or JSON-lines file.

- ``.txt``: one value per line for the workflow's one input (blank lines and
  lines starting with ``#`` are skipped);
- ``.csv``: a header row of column names, one item per row (an empty cell
  is an input not given, so it takes the workflow's default);
- ``.jsonl`` / ``.ndjson``: one JSON object per line (or a JSON string, as in
  a text file).

Columns are workflow inputs, except three reserved names: ``key`` (the item's
name in results; derived from its first value otherwise), ``priority`` (a
number; higher runs first) and ``model`` (``provider:model`` for this item's
agents that name none). A column that is neither fails the whole file before
anything runs, since it would be wrong for every row. A bad *row* (a CSV row
with the wrong number of fields, a line that is not JSON, a priority that is
not a number, a duplicate key, a missing required input) becomes a failed
item whose error names the file and line, and the other rows still run.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentplex.exceptions import ConfigError, WorkflowFileError
from agentplex.validation import required_inputs, resolve_inputs
from agentplex.workflow import CompiledWorkflow

RESERVED = ("key", "priority", "model")


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One input set of a batch."""

    key: str
    inputs: Mapping[str, Any] = field(default_factory=dict)
    priority: float = 0.0
    """Higher runs first."""
    model: str | None = None
    """Model of this item's agents that name none (``None``: the batch's)."""
    where: str | None = None
    """``file:line`` the item came from, for messages."""
    error: str | None = None
    """Why the item cannot run (a malformed row); it is reported, not run."""


def read_items(path: str | Path, compiled: CompiledWorkflow) -> list[BatchItem]:
    """Read a batch input file into items (bad rows become items with an ``error``).

    Raises:
        WorkflowFileError: if the file cannot be read or its format is unknown.
        ConfigError: if a column is not an input of the workflow, or a text
            file is used for a workflow without exactly one input.
    """
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise WorkflowFileError(
            str(source), f"cannot read batch inputs: {exc.strerror or exc}"
        ) from None
    suffix = source.suffix.lower()
    rows: list[tuple[int, Mapping[str, Any] | str | None, str | None]]
    if suffix == ".csv":
        rows = _csv_rows(text)
    elif suffix in (".jsonl", ".ndjson"):
        rows = _json_rows(text)
    elif suffix in (".txt", ""):
        rows = [
            (n, line.strip(), None)
            for n, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.lstrip().startswith("#")
        ]
    else:
        raise WorkflowFileError(
            str(source),
            f"unknown batch input format {suffix!r}. Fix: use .txt (one value per line), "
            ".csv (a header row) or .jsonl (one JSON object per line).",
        )
    return make_items(rows, compiled, source=str(source))


def make_items(
    rows: Iterable[tuple[int, Mapping[str, Any] | str | None, str | None]],
    compiled: CompiledWorkflow,
    *,
    source: str | None = None,
) -> list[BatchItem]:
    """Turn ``(line, values or a single value, problem)`` rows into checked items.

    Raises:
        ConfigError: for a column that is neither an input nor reserved, or
            single values for a workflow without exactly one input.
    """
    rows = list(rows)
    single = _single_input(compiled) if any(isinstance(v, str) for _, v, _ in rows) else None
    declared = compiled.inputs
    columns = {k for _, v, _ in rows if isinstance(v, Mapping) for k in v}
    unknown = sorted(
        c for c in columns - set(RESERVED) if declared is not None and c not in declared
    )
    if unknown:
        where = f"{source}: " if source else ""
        raise ConfigError(
            f"{where}column(s) {', '.join(map(repr, unknown))} are not inputs of workflow "
            f"{compiled.name!r} (inputs: {', '.join(declared or {}) or 'none'}; reserved: "
            f"{', '.join(RESERVED)}). Fix: rename the column, or declare it under inputs:."
        )
    width = len(str(len(rows)))
    items: list[BatchItem] = []
    seen: set[str] = set()
    for index, (line, values, problem) in enumerate(rows, 1):
        where = f"{source}:{line}" if source else f"item {index}"
        fallback = f"{index:0{width}d}"
        if problem is not None or values is None:
            items.append(
                BatchItem(_unique(fallback, seen), where=where, error=f"{where}: {problem}")
            )
            continue
        if isinstance(values, str):
            assert single is not None
            values = {single: values}
        items.append(_item(dict(values), compiled, where, fallback, seen))
    return items


def _item(
    values: dict[str, Any], compiled: CompiledWorkflow, where: str, fallback: str, seen: set[str]
) -> BatchItem:
    key_value = values.pop("key", None)
    priority_value = values.pop("priority", None)
    model = values.pop("model", None) or None
    values = {k: v for k, v in values.items() if v is not None}
    key = str(key_value).strip() if key_value not in (None, "") else None
    if key is None:
        first = next((str(v) for v in values.values() if str(v).strip()), "")
        key = f"{fallback}-{slug(first)}" if slug(first) else fallback
    if key in seen:
        problem = f"duplicate key {key!r}. Fix: make the key column unique."
        return BatchItem(_unique(key, seen), values, where=where, error=f"{where}: {problem}")
    seen.add(key)
    try:
        priority = float(priority_value) if priority_value not in (None, "") else 0.0
    except (TypeError, ValueError):
        problem = f"priority {priority_value!r} is not a number."
        return BatchItem(key, values, where=where, error=f"{where}: {problem}")
    declared = compiled.inputs or {}
    missing = [
        name
        for name in required_inputs(compiled)
        if name not in values and (name not in declared or declared[name].required)
    ]
    if missing:
        problem = (
            f"no value for input {missing[0]!r}"
            + (f" (nor {', '.join(map(repr, missing[1:]))})" if len(missing) > 1 else "")
            + f". Fix: fill the {missing[0]!r} column of this row."
        )
        return BatchItem(key, values, priority, where=where, error=f"{where}: {problem}")
    try:
        resolve_inputs(compiled, values)
    except ConfigError as exc:
        return BatchItem(key, values, priority, where=where, error=f"{where}: {exc}")
    return BatchItem(key, values, priority, str(model) if model else None, where)


def _unique(key: str, seen: set[str]) -> str:
    candidate, n = key, 1
    while candidate in seen:
        n += 1
        candidate = f"{key}~{n}"
    seen.add(candidate)
    return candidate


def slug(text: str, limit: int = 40) -> str:
    """Return a file-name-safe, lower-case form of ``text`` (at most ``limit`` chars)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-")


def _single_input(compiled: CompiledWorkflow) -> str:
    declared = list(compiled.inputs or {})
    required = [n for n, spec in (compiled.inputs or {}).items() if spec.required]
    if len(required) == 1:
        return required[0]
    if len(declared) == 1:
        return declared[0]
    raise ConfigError(
        f"a text file gives one value per line, but workflow {compiled.name!r} has "
        f"{len(declared)} inputs ({', '.join(declared) or 'none declared'}). "
        "Fix: use a CSV file with a column per input, or JSON lines."
    )


def _csv_rows(text: str) -> list[tuple[int, Mapping[str, Any] | str | None, str | None]]:
    reader = csv.reader(text.splitlines())
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return []
    if not all(header) or len(set(header)) != len(header):
        raise ConfigError(
            f"the CSV header {header!r} has an empty or repeated column name. "
            "Fix: give every column a unique name."
        )
    rows: list[tuple[int, Mapping[str, Any] | str | None, str | None]] = []
    for fields in reader:
        line = reader.line_num
        if not any(f.strip() for f in fields):
            continue
        if len(fields) != len(header):
            problem = (
                f"{len(fields)} fields where the header has {len(header)} "
                f"({', '.join(header)}). Fix: quote values that contain commas."
            )
            rows.append((line, None, problem))
            continue
        given = {k: v for k, v in zip(header, fields, strict=True) if v.strip()}  # empty: not given
        rows.append((line, given, None))
    return rows


def _json_rows(text: str) -> list[tuple[int, Mapping[str, Any] | str | None, str | None]]:
    rows: list[tuple[int, Mapping[str, Any] | str | None, str | None]] = []
    for line, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            rows.append((line, None, f"not valid JSON ({exc.msg} at column {exc.colno})."))
            continue
        if isinstance(value, dict | str):
            rows.append((line, value, None))
        else:
            rows.append((line, None, "expected a JSON object of inputs (or a string)."))
    return rows
