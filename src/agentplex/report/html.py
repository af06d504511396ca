"""The run report: one self-contained HTML file from a run or batch record.

Inline CSS and SVG, no script and nothing fetched, so it opens anywhere,
offline, and can be mailed. A run's report shows the headline figures, the
DAG drawn by layers with its edges (critical path highlighted), a timeline of
every node (start, end, each retry) and every node's output, tokens and cost.
A batch's report shows its figures, a row and a timeline bar per item, and
the full report of the first items whose ``items/<folder>/run.json`` is
beside the batch record.

A record is untrusted data: it is checked field by field first
(:mod:`agentplex.report.record`: a wrong type, a negative or huge time gives
one line naming the field, and no report), then laid out here as plain
values and rendered by the Jinja2 templates in ``templates/`` with
autoescaping on (:mod:`agentplex.report.templating`), so every string of the
record, wherever it lands (text, an attribute, an SVG title), is only text.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agentplex.exceptions import WorkflowFileError
from agentplex.report.record import FIX, RecordCheck, clip
from agentplex.report.templating import render
from agentplex.result import is_safe_name, write_text

MAX_GRAPH_NODES = 400
"""Above this, the DAG is not drawn (the timeline and table still list every node)."""
MAX_ITEM_REPORTS = 20

STATUS_COLOUR = {
    "succeeded": "#3a8d5c",
    "failed": "#c0392b",
    "skipped": "#c9a227",
    "cancelled": "#8e44ad",
    "invalid": "#c0392b",
    "pending": "#999999",
}
"""The only colours a report uses (with :data:`CRITICAL`): constants, never record values."""
CRITICAL = "#e67e22"
OTHER = "#999999"


def load_record(path: str | Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Read and check a ``run.json`` or ``batch.json``; for a batch, also the item records.

    An item's record is read from ``items/<folder>/run.json`` beside the
    batch record, where ``folder`` is the one the batch recorded (checked
    to be a single safe name, so a tampered record cannot read elsewhere).

    Raises:
        WorkflowFileError: if a file cannot be read, is not a run or batch
            record, or has a field of the wrong type (naming the file and field).
    """
    source = Path(path)
    record = _read_json(source)
    if not isinstance(record, dict) or not ("nodes" in record or "items" in record):
        raise WorkflowFileError(
            str(source),
            "not a run or batch record. Fix: pass the run.json of 'agentplex run --out' "
            "or the batch.json of 'agentplex batch --out'.",
        )
    check = RecordCheck(str(source))
    items: dict[str, dict[str, Any]] = {}
    if "items" not in record:
        check.run(record)
        return record, items
    for item in check.batch(record)["items"][:MAX_ITEM_REPORTS]:
        folder = item["folder"] or (item["key"] if is_safe_name(item["key"]) else None)
        run_file = source.parent / "items" / str(folder) / "run.json"
        if folder is None or not run_file.is_file():
            continue
        run = _read_json(run_file)
        RecordCheck(str(run_file)).run(run)
        items[item["key"]] = run
    return record, items


def _read_json(source: Path) -> Any:
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise WorkflowFileError(
            str(source), f"cannot read the record: {exc.strerror or exc}. Fix: check the path."
        ) from None
    except UnicodeDecodeError as exc:
        problem = f"the record is not UTF-8 text ({exc.reason}). {FIX}"
        raise WorkflowFileError(str(source), problem) from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise WorkflowFileError(str(source), f"the record is not JSON ({exc}). {FIX}") from None
    except RecursionError:
        raise WorkflowFileError(str(source), f"the record is nested too deeply. {FIX}") from None


def record_from_store(store: Any, run_id: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A run or batch record (as ``run.json``/``batch.json`` have it) from the store's typed
    result (:func:`~agentplex.batch.result.load_result`), also for a crashed run; for a
    batch, also its first item runs' records.

    Raises:
        StoreError: if the run is not in the store, or its record has a field
            of the wrong type (naming the run and the field).
    """
    from agentplex.batch.result import BatchResult, load_result
    from agentplex.exceptions import StoreError

    where = f"run {run_id} in the store"

    def checked(name: str) -> RecordCheck:
        return RecordCheck(name, lambda w, problem: StoreError(f"{w}: {problem}"))

    result = load_result(store, run_id, item_runs=MAX_ITEM_REPORTS)
    if isinstance(result, BatchResult):
        record = result.to_dict()
        checked(where).batch(record)
        runs = {key: item.run.to_dict() for key, item in result.items() if item.run is not None}
        for key, run in runs.items():
            checked(f"{where} (item {clip(key, 40)})").run(run)
        return record, runs
    record = result.to_dict()
    checked(where).run(record)
    return record, {}


def render_html(
    record: Mapping[str, Any],
    items: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    where: str = "the record",
) -> str:
    """Return the report of a run record (or of a batch record and its item records).

    Raises:
        WorkflowFileError: naming ``where`` and the field, if a field of the
            record has the wrong type or an impossible value.
    """
    check = RecordCheck(where)
    if isinstance(record, Mapping) and "items" in record:
        batch = check.batch(record)
        runs = {
            key: RecordCheck(f"{where} (item {clip(key, 40)})").run(run)
            for key, run in (items or {}).items()
        }
        view = _batch_view(batch, runs)
        return render("report.html.j2", title=f"Batch report: {batch['workflow']}", batch=view)
    run = check.run(record)
    return render(
        "report.html.j2",
        title=f"Run report: {run['workflow']}",
        batch=None,
        run=_run_view(run, heading=True),
    )


def write_report(record_path: str | Path, html_path: str | Path) -> Path:
    """Read a record and write its report; return the report's path.

    Raises:
        WorkflowFileError: if the record cannot be read or checked (nothing is
            written then), or the report cannot be written.
    """
    record, items = load_record(record_path)
    return save_report(render_html(record, items, where=str(record_path)), html_path)


def save_report(html: str, html_path: str | Path) -> Path:
    """Write a rendered report (creating its folder); return its path.

    Raises:
        OutputError: naming the path, if the write fails.
    """
    out = Path(html_path)
    write_text(out, html, what="the report")
    return out


# -- a run ---------------------------------------------------------------------


def _run_view(run: dict[str, Any], *, heading: bool) -> dict[str, Any]:
    nodes: dict[str, dict[str, Any]] = run["nodes"]
    critical = run["critical_path"]
    usage = run["usage"] or {}
    return {
        "heading": heading,
        "workflow": run["workflow"],
        "run_id": run["run_id"],
        "strategy": run["strategy"] or "unknown",
        "max_concurrency": _int(run["max_concurrency"]),
        "cards": [
            ("status", run["status"] or "unknown"),
            ("wall time", _s(run["wall_s"])),
            ("sequential estimate", _s(run["sequential_s"])),
            ("speedup", _speedup(run["speedup"], run["status"], 2)),
            ("critical path", _s(run["critical_path_s"])),
            ("efficiency", f"{(run['efficiency'] or 0) * 100:.0f}%"),
            (
                "tokens in / out",
                f"{usage.get('input_tokens', 0):,} / {usage.get('output_tokens', 0):,}",
            ),
            ("cost", _cost(run["cost_usd"])),
        ],
        "critical": critical,
        "legend": _legend(),
        "dag": dag_layout(nodes, critical) if len(nodes) <= MAX_GRAPH_NODES else None,
        "node_count": len(nodes),
        "timeline": timeline_layout(
            [
                (nid, n["started_s"], n["finished_s"], n["status"], n["attempts"] or 1)
                for nid, n in nodes.items()
            ],
            {nid: n["attempt_starts"] for nid, n in nodes.items()},
            set(critical),
            run["wall_s"],
        ),
        "rows": [_node_row(nid, n) for nid, n in nodes.items()],
        "outputs": [
            {"id": nid, "text": n["output"]}
            for nid, n in list(nodes.items())[:MAX_GRAPH_NODES]
            if n["output"] is not None
        ],
    }


def _node_row(node_id: str, n: dict[str, Any]) -> dict[str, Any]:
    usage = n["usage"]
    return {
        "id": node_id,
        "role": n["role"] or n["kind"] or "",
        "model": n["model"] or "",
        "colour": _colour(n["status"]),
        "status": n["status"],
        "attempts": _int(n["attempts"]) or "0",
        "duration": _s(n["duration_s"]),
        "tokens": f"{usage['input_tokens']:,} / {usage['output_tokens']:,}" if usage else "",
        "cost": _cost(n["cost_usd"], blank=True),
        "error": n["error"] or "",
    }


def layers_of(nodes: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    """Group nodes by depth (longest chain of dependencies), in declaration order."""
    depth: dict[str, int] = {}
    for node_id in nodes:  # records list nodes in a topological (declaration) order
        deps = [d for d in nodes[node_id].get("deps", []) if d in nodes]
        depth[node_id] = 1 + max((depth.get(d, 0) for d in deps), default=-1)
    layers: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for node_id, d in depth.items():
        layers[d].append(node_id)
    return layers


def dag_layout(nodes: dict[str, dict[str, Any]], critical: list[str]) -> dict[str, Any]:
    """The DAG by layers, left to right, with edges; the critical path in orange."""
    box_w, box_h, gap_x, gap_y, pad = 170, 40, 70, 14, 10
    layers = layers_of(nodes)
    pos: dict[str, tuple[int, int]] = {}
    for col, layer in enumerate(layers):
        for row, node_id in enumerate(layer):
            pos[node_id] = (pad + col * (box_w + gap_x), pad + row * (box_h + gap_y))
    on_path = set(critical)
    critical_edges = set(itertools.pairwise(critical))
    edges, boxes = [], []
    for node_id, node in nodes.items():
        x, y = pos[node_id]
        for dep in node["deps"]:
            if dep not in pos:
                continue
            dx, dy = pos[dep]
            x1, y1, x2, y2 = dx + box_w, dy + box_h // 2, x, y + box_h // 2
            hot = (dep, node_id) in critical_edges
            edges.append(
                {
                    "source": dep,
                    "target": node_id,
                    "d": f"M{x1},{y1} C{x1 + gap_x // 2},{y1} {x2 - gap_x // 2},{y2} {x2},{y2}",
                    "stroke": CRITICAL if hot else "#aaaaaa",
                    "width": 2.5 if hot else 1.2,
                }
            )
        colour = _colour(node["status"])
        boxes.append(
            {
                "id": node_id,
                "status": node["status"],
                "x": x,
                "y": y,
                "w": box_w,
                "h": box_h,
                "fill": colour + "1a",
                "stroke": CRITICAL if node_id in on_path else colour,
                "stroke_width": 3 if node_id in on_path else 1.5,
                "label": _short(node_id, 22),
                "role": _short(node["role"] or node["kind"] or "", 24),
            }
        )
    return {
        "width": pad * 2 + max(1, len(layers)) * (box_w + gap_x) - gap_x,
        "height": pad * 2
        + max((len(layer) for layer in layers), default=1) * (box_h + gap_y)
        - gap_y,
        "edges": edges,
        "boxes": boxes,
    }


Bar = tuple[str, float | None, float | None, str, int]
"""``(id, started_s, finished_s, status, attempts)`` of one timeline row."""


def timeline_layout(
    rows: list[Bar],
    retries: Mapping[str, list[float]],
    critical: set[str],
    wall: float | None,
) -> dict[str, Any]:
    """A bar per started row from start to end, retries marked, the critical path in orange."""
    started = sorted((r for r in rows if r[1] is not None), key=lambda r: (r[1] or 0.0, r[0]))
    label_w, chart_w, row_h, top = 180, 860, 18, 24
    end = max([wall or 0.0] + [r[2] or 0.0 for r in started] + [r[1] or 0.0 for r in started])
    end = end or 1.0
    scale = chart_w / end
    height = top + row_h * max(1, len(started)) + 10
    bars = []
    for index, (node_id, start_s, finish_s, status, attempts) in enumerate(started):
        y = top + index * row_h
        start = start_s or 0.0
        finish = finish_s if finish_s is not None else start
        note = f" ×{attempts}" if attempts > 1 else ""
        bars.append(
            {
                "id": node_id,
                "label": _short(node_id, 26),
                "label_x": label_w - 6,
                "text_y": y + 12,
                "x": f"{label_w + start * scale:.1f}",
                "y": y + 2,
                "w": f"{max(1.5, (finish - start) * scale):.1f}",
                "h": row_h - 5,
                "fill": CRITICAL if node_id in critical else _colour(status),
                "title": f"{node_id}: {start:.2f}s → {finish:.2f}s, {attempts} attempt(s){note}",
                "retries": [
                    {
                        "x": f"{label_w + min(t, end) * scale:.1f}",
                        "y1": y + 1,
                        "y2": y + row_h - 3,
                        "label": f"{t:.2f}s",
                    }
                    for t in retries.get(node_id, [])[1:]
                ],
                "after_x": f"{label_w + finish * scale + 4:.1f}",
                "after": f"{finish - start:.2f}s{note}",
            }
        )
    return {
        "width": label_w + chart_w + 80,
        "height": height,
        "ticks": _ticks(end, scale, label_w, top, height),
        "bars": bars,
    }


def _ticks(end: float, scale: float, left: int, top: int, height: int) -> list[dict[str, Any]]:
    step = _nice_step(end / 8)
    ticks, n = [], 0
    while n * step <= end + 1e-9:
        t = round(n * step, 10)
        x = f"{left + t * scale:.1f}"
        ticks.append({"x": x, "y1": top - 4, "y2": height, "ty": top - 8, "label": f"{t:g}s"})
        n += 1
    return ticks


def _nice_step(raw: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten that is at least ``raw`` (0.001 at least)."""
    raw = max(raw, 0.001)
    unit = 10.0 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if unit * factor >= raw * (1 - 1e-12):
            return unit * factor
    return unit * 10  # pragma: no cover - factor 10 always suffices


# -- a batch -------------------------------------------------------------------


def _batch_view(batch: dict[str, Any], runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    items: list[dict[str, Any]] = batch["items"]
    tokens = batch["tokens"] or {}
    rows = []
    for i in items:
        t = i["tokens"] or {}
        rows.append(
            {
                "key": i["key"],
                "colour": _colour(i["status"]),
                "status": i["status"],
                "wall": _s(i["wall_s"]),
                "tokens": f"{t.get('input', 0):,} / {t.get('output', 0):,}",
                "cost": _cost(i["cost_usd"], blank=True),
                "error": i["error"] or "",
            }
        )
    return {
        "workflow": batch["workflow"],
        "total": len(items),
        "batch_id": batch["batch_id"],
        "strategy": batch["strategy"] or "unknown",
        "max_concurrency": _int(batch["max_concurrency"]),
        "cards": [
            ("status", batch["status"] or "unknown"),
            ("items", ", ".join(f"{v} {k}" for k, v in sorted(batch["counts"].items()))),
            ("wall time", _s(batch["wall_s"])),
            ("sequential estimate", _s(batch["sequential_s"])),
            ("speedup", _speedup(batch["speedup"], batch["status"], 1)),
            ("tokens in / out", f"{tokens.get('input', 0):,} / {tokens.get('output', 0):,}"),
            ("cost", _cost(batch["cost_usd"])),
        ],
        "timeline": timeline_layout(
            [(i["key"], i["started_s"], i["finished_s"], i["status"], 1) for i in items],
            {},
            set(),
            batch["wall_s"],
        ),
        "rows": rows,
        "runs": [
            {
                "key": key,
                "status": run["status"] or "unknown",
                "wall": _s(run["wall_s"]),
                "view": _run_view(run, heading=False),
            }
            for key, run in runs.items()
        ],
    }


# -- helpers -------------------------------------------------------------------


def _legend() -> list[tuple[str, str]]:
    entries = [(k, v) for k, v in STATUS_COLOUR.items() if k not in ("pending", "invalid")]
    return [*entries, ("critical path", CRITICAL)]


def _colour(status: str) -> str:
    return STATUS_COLOUR.get(status, OTHER)


def _int(value: int | None) -> str:
    return "" if value is None else str(value)


def _s(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}s"


def _speedup(speedup: float | None, status: str | None, digits: int) -> str:
    """A speedup figure, claimed only for work that finished."""
    if status != "succeeded":
        return f"none ({status or 'unknown'})"
    return f"{speedup or 0:.{digits}f}x"


def _cost(value: float | None, *, blank: bool = False) -> str:
    if value is None:
        return "" if blank else "unknown"
    return f"${value:.4f}"


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
