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
not a finite number, a duplicate key, a missing required input) becomes a
failed item whose error names the file and line, and the other rows still run.

A file that is not UTF-8 text (a byte that is not UTF-8, a NUL byte) fails
as a whole, naming its first bad line: such a file is not what the user
meant to give, and guessing its rows would run the wrong items.

Batch rows are untrusted: a key is only a name. Any key of at most
:data:`MAX_KEY` characters without control characters is accepted as it is
and kept in results, ``batch.json`` and each item's ``run.json``; the item's
folder under ``items/`` is its :func:`~agentplex.result.safe_name`
(:func:`item_folders`), so ``../..``, ``/etc`` or ``.`` write inside
``items/`` like any other key. A longer key, one with a control character
(NUL, escape, newline...) or one that is not text makes only its row invalid.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentplex.exceptions import ConfigError, WorkflowFileError
from agentplex.model.validation import required_inputs, resolve_inputs
from agentplex.model.workflow import CompiledWorkflow
from agentplex.result import SafeNames

RESERVED = ("key", "priority", "model")
MAX_KEY = 256
"""Longest key (in characters) a row may give; longer ones make the row invalid."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
Row = tuple[int, Mapping[str, Any] | str | None, str | None]


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
        WorkflowFileError: if the file cannot be read, is not UTF-8 text (naming
            the first bad line), or its format is unknown.
        ConfigError: if a column is not an input of the workflow, or a text
            file is used for a workflow without exactly one input.
    """
    source = Path(path)
    suffix = source.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".ndjson", ".txt", ""):
        raise WorkflowFileError(
            str(source),
            f"unknown batch input format {suffix!r}. Fix: use .txt (one value per line), "
            ".csv (a header row) or .jsonl (one JSON object per line).",
        )
    text = _read_text(source)
    rows: list[Row]
    if suffix == ".csv":
        rows = _csv_rows(text, str(source))
    elif suffix in (".jsonl", ".ndjson"):
        rows = _json_rows(text)
    else:
        rows = [
            (n, line.strip(), None)
            for n, line in enumerate(_lines(text), 1)
            if line.strip() and not line.lstrip().startswith("#")
        ]
    return make_items(rows, compiled, source=str(source))


def _read_text(source: Path) -> str:
    """The file as text; a NUL byte or a byte that is not UTF-8 fails, naming its line."""
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise WorkflowFileError(
            str(source),
            f"cannot read batch inputs: {exc.strerror or exc}. Fix: check the --inputs path.",
        ) from None
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    fix = "Fix: save the batch inputs as UTF-8 text (for example: iconv -t utf-8)."
    nul = data.find(b"\x00")
    if nul >= 0:
        line, column = _position(data, nul)
        raise WorkflowFileError(
            str(source),
            f"a NUL byte at column {column}: this is not a text file. {fix}",
            line=line,
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _position(data, exc.start)
        raise WorkflowFileError(
            str(source),
            f"byte 0x{data[exc.start]:02x} at column {column} is not UTF-8. {fix}",
            line=line,
        ) from None


def _position(data: bytes, offset: int) -> tuple[int, int]:
    """1-based line and byte column of ``offset`` in ``data``."""
    return data.count(b"\n", 0, offset) + 1, offset - (data.rfind(b"\n", 0, offset) + 1) + 1


def _lines(text: str) -> list[str]:
    """Lines split at ``\\n`` only (with an optional ``\\r``), as editors number them."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def item_folders(items: Iterable[BatchItem]) -> dict[str, str]:
    """Each item's folder name under ``items/``, by key: safe and unique, in input order."""
    names = SafeNames()
    return {item.key: names(item.key) for item in items}


def make_items(
    rows: Iterable[Row],
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
    prefix = f"{source}: " if source else ""
    single = (
        _single_input(compiled, prefix) if any(isinstance(v, str) for _, v, _ in rows) else None
    )
    declared = compiled.inputs
    columns = {k for _, v, _ in rows if isinstance(v, Mapping) for k in v}
    unknown = sorted(
        c for c in columns - set(RESERVED) if declared is not None and c not in declared
    )
    if unknown:
        shown = ", ".join(repr(c[:60]) for c in unknown[:10])
        if len(unknown) > 10:
            shown += f" (and {len(unknown) - 10} more)"
        raise ConfigError(
            f"{prefix}column(s) {shown} are not inputs of workflow "
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
    key, problem = _key(key_value)
    if problem is not None:
        return BatchItem(_unique(fallback, seen), values, where=where, error=f"{where}: {problem}")
    if key is None:
        first = next((str(v) for v in values.values() if str(v).strip()), "")
        key = f"{fallback}-{slug(first)}" if slug(first) else fallback
    if key in seen:
        problem = f"duplicate key {key!r}. Fix: make the key column unique."
        return BatchItem(_unique(key, seen), values, where=where, error=f"{where}: {problem}")
    seen.add(key)
    priority = _priority(priority_value)
    if priority is None:
        problem = (
            f"priority {_clip(priority_value)} is not a number. "
            "Fix: give a finite number (higher runs first), or leave it empty."
        )
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


def _key(value: Any) -> tuple[str | None, str | None]:
    """``(key or None to derive one, problem)`` for a row's ``key`` value."""
    if value is None or value == "":
        return None, None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None, (
            f"key {_clip(value)} is a {type(value).__name__}, not text. "
            "Fix: give the key as a string."
        )
    key = str(value).strip()
    if not key:
        return None, None
    if len(key) > MAX_KEY:
        return None, (
            f"key {_clip(key)} is {len(key)} characters long. "
            f"Fix: use a key of at most {MAX_KEY} characters."
        )
    if _CONTROL.search(key):
        return None, (
            f"key {_clip(key)} holds a control character. "
            "Fix: use a key of printable characters only."
        )
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return None, f"key {_clip(key)} is not valid Unicode text. Fix: use a plain text key."
    return key, None


def _priority(value: Any) -> float | None:
    """The row's priority, or ``None`` if it is not a finite number."""
    if value is None or value == "":
        return 0.0
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _clip(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters for a one-line message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


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


def _single_input(compiled: CompiledWorkflow, prefix: str = "") -> str:
    declared = list(compiled.inputs or {})
    required = [n for n, spec in (compiled.inputs or {}).items() if spec.required]
    if len(required) == 1:
        return required[0]
    if len(declared) == 1:
        return declared[0]
    raise ConfigError(
        f"{prefix}a text file gives one value per line, but workflow {compiled.name!r} has "
        f"{len(declared)} inputs ({', '.join(declared) or 'none declared'}). "
        "Fix: use a CSV file with a column per input, or JSON lines."
    )


def _csv_rows(text: str, source: str) -> list[Row]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return []
    except csv.Error as exc:
        raise ConfigError(
            f"{source}:1: the CSV header cannot be read ({exc}). "
            "Fix: make the first line the column names, separated by commas."
        ) from None
    if not all(header) or len(set(header)) != len(header):
        raise ConfigError(
            f"{source}:1: the CSV header {_clip(header, 120)} has an empty or repeated column "
            "name. Fix: give every column a unique name."
        )
    rows: list[Row] = []
    while True:
        start = reader.line_num
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problem = f"not a valid CSV row ({exc}). Fix: quote long or multi-line values."
            rows.append((start + 1, None, problem))
            if reader.line_num == start:  # nothing consumed: stop rather than loop
                break
            continue
        line = start + 1  # where the row begins (a quoted value may span lines)
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


def _json_rows(text: str) -> list[Row]:
    rows: list[Row] = []
    for line, raw in enumerate(_lines(text), 1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            rows.append((line, None, f"not valid JSON ({exc.msg} at column {exc.colno})."))
            continue
        except RecursionError:
            rows.append((line, None, "JSON nested too deeply. Fix: flatten the row's values."))
            continue
        except ValueError as exc:  # e.g. an integer past Python's digit limit
            rows.append((line, None, f"not usable JSON ({exc})."))
            continue
        if not isinstance(value, dict | str):
            rows.append((line, None, "expected a JSON object of inputs (or a string)."))
            continue
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            problem = "holds a lone surrogate (\\ud800-\\udfff), not text. Fix: remove it."
            rows.append((line, None, problem))
            continue
        except RecursionError:
            rows.append((line, None, "JSON nested too deeply. Fix: flatten the row's values."))
            continue
        rows.append((line, value, None))
    return rows
