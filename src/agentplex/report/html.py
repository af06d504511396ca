"""The run report: one self-contained HTML file from a run or batch record.

Inline CSS and SVG, no script and nothing fetched, so it opens anywhere,
offline, and can be mailed. A run's report shows the headline figures, the
DAG drawn by layers with its edges (critical path highlighted), a timeline of
every node (start, end, each retry) and every node's output, tokens and cost.
A batch's report shows its figures, a row and a timeline bar per item, and
the full report of the first items whose ``items/<key>/run.json`` is beside
the batch record.
"""

from __future__ import annotations

import itertools
import json
from html import escape
from pathlib import Path
from typing import Any

from agentplex.exceptions import WorkflowFileError

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
CRITICAL = "#e67e22"

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;
max-width:1200px;color:#222;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.sub{color:#666;margin-bottom:14px}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:110px}
.card b{display:block;font-size:18px}.card span{color:#666;font-size:12px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid #eee;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f6f6}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.status{font-weight:600}
details{margin:6px 0;border:1px solid #eee;border-radius:6px;padding:4px 10px}
summary{cursor:pointer;font-weight:600}
pre{white-space:pre-wrap;word-wrap:break-word;background:#fafafa;padding:8px;border-radius:4px;
max-height:420px;overflow:auto;font-size:12.5px}
svg text{font:12px system-ui,sans-serif}
.scroll{overflow-x:auto}
.legend span{display:inline-block;margin-right:14px;font-size:12px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
"""


def load_record(path: str | Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Read a ``run.json`` or ``batch.json``; for a batch, also the item records beside it.

    Raises:
        WorkflowFileError: if the file cannot be read or is not a run or batch record.
    """
    source = Path(path)
    try:
        record = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WorkflowFileError(str(source), f"cannot read the record: {exc}") from None
    if not isinstance(record, dict) or not ("nodes" in record or "items" in record):
        raise WorkflowFileError(
            str(source),
            "not a run or batch record. Fix: pass the run.json of 'agentplex run --out' "
            "or the batch.json of 'agentplex batch --out'.",
        )
    items: dict[str, dict[str, Any]] = {}
    for item in record.get("items", [])[:MAX_ITEM_REPORTS]:
        run_file = source.parent / "items" / str(item["key"]) / "run.json"
        if run_file.is_file():
            items[str(item["key"])] = json.loads(run_file.read_text(encoding="utf-8"))
    return record, items


def record_from_store(store: Any, run_id: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A run or batch record (as ``run.json``/``batch.json`` have it) rebuilt from the store,
    also for a crashed run; for a batch, also its first item runs' records."""
    from agentplex.store import batch_items, shown_status

    run = store.get_run(run_id)
    record: dict[str, Any] = {"workflow": run.workflow, **dict(run.summary)}
    record["status"] = shown_status(run)
    if run.settings.get("kind") == "batch":
        record["batch_id"] = run.run_id
        record.setdefault("strategy", run.settings.get("strategy") or "dataflow")
        record.setdefault("max_concurrency", run.settings.get("max_concurrency"))
        record["items"] = items = batch_items(store, run)
        if "counts" not in record:  # interrupted: no summary yet; add up what the items have
            counts: dict[str, int] = {}
            for item in items:
                counts[item["status"]] = counts.get(item["status"], 0) + 1
            costs = [item["cost_usd"] for item in items if item["cost_usd"] is not None]
            record["counts"] = counts
            record["tokens"] = {
                side: sum(item["tokens"][side] for item in items) for side in ("input", "output")
            }
            record["cost_usd"] = sum(costs) if costs else None
        started = [item for item in items if item.get("run_id")][:MAX_ITEM_REPORTS]
        return record, {
            str(item["key"]): record_from_store(store, item["run_id"])[0] for item in started
        }
    record["run_id"] = run.run_id
    record["nodes"] = {node_id: dict(n.record) for node_id, n in store.get_nodes(run_id).items()}
    return record, {}


def render_html(record: dict[str, Any], items: dict[str, dict[str, Any]] | None = None) -> str:
    """Return the report of a run record (or of a batch record and its item records)."""
    if "items" in record:
        title = f"Batch report: {record.get('workflow', '')}"
        body = _batch(record, items or {})
    else:
        title = f"Run report: {record.get('workflow', '')}"
        body = _run(record, heading=True)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width,initial-scale=1'><title>{escape(title)}"
        f"</title><style>{CSS}</style></head><body>{body}</body></html>\n"
    )


def write_report(record_path: str | Path, html_path: str | Path) -> Path:
    """Read a record and write its report; return the report's path."""
    record, items = load_record(record_path)
    out = Path(html_path)
    out.write_text(render_html(record, items), encoding="utf-8")
    return out


# -- a run ---------------------------------------------------------------------


def _run(run: dict[str, Any], *, heading: bool) -> str:
    nodes: dict[str, dict[str, Any]] = run.get("nodes", {})
    critical = [str(n) for n in run.get("critical_path", [])]
    parts = []
    if heading:
        parts.append(
            f"<h1>{escape(str(run.get('workflow', 'run')))}</h1><div class='sub'>run "
            f"{escape(str(run.get('run_id', '')))} · strategy {escape(str(run.get('strategy')))} · "
            f"max concurrency {run.get('max_concurrency')}</div>"
        )
    usage = run.get("usage") or {}
    parts.append(
        _cards(
            [
                ("status", str(run.get("status"))),
                ("wall time", _s(run.get("wall_s"))),
                ("sequential estimate", _s(run.get("sequential_s"))),
                ("speedup", f"{run.get('speedup') or 0:.2f}x"),
                ("critical path", _s(run.get("critical_path_s"))),
                ("efficiency", f"{(run.get('efficiency') or 0) * 100:.0f}%"),
                (
                    "tokens in / out",
                    f"{usage.get('input_tokens', 0):,} / {usage.get('output_tokens', 0):,}",
                ),
                ("cost", _cost(run.get("cost_usd"))),
            ]
        )
    )
    if critical:
        parts.append(f"<p>Critical path: {' → '.join(escape(n) for n in critical)}</p>")
    parts.append("<h2>Graph</h2>" + _legend())
    if len(nodes) <= MAX_GRAPH_NODES:
        parts.append(f"<div class='scroll'>{dag_svg(nodes, critical)}</div>")
    else:
        parts.append(f"<p>{len(nodes)} nodes: too many to draw; see the timeline and table.</p>")
    parts.append("<h2>Timeline</h2>")
    parts.append(
        f"<div class='scroll'>{timeline_svg(nodes, set(critical), run.get('wall_s'))}</div>"
    )
    parts.append("<h2>Nodes</h2>" + _node_table(nodes))
    parts.append("<h2>Outputs</h2>" + _outputs(nodes))
    return "".join(parts)


def layers_of(nodes: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Group nodes by depth (longest chain of dependencies), in declaration order."""
    depth: dict[str, int] = {}
    for node_id in nodes:  # records list nodes in a topological (declaration) order
        deps = [d for d in nodes[node_id].get("deps", []) if d in nodes]
        depth[node_id] = 1 + max((depth.get(d, 0) for d in deps), default=-1)
    layers: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for node_id, d in depth.items():
        layers[d].append(node_id)
    return layers


def dag_svg(nodes: dict[str, dict[str, Any]], critical: list[str]) -> str:
    """The DAG by layers, left to right, with edges; the critical path in orange."""
    box_w, box_h, gap_x, gap_y, pad = 170, 40, 70, 14, 10
    layers = layers_of(nodes)
    pos: dict[str, tuple[int, int]] = {}
    for col, layer in enumerate(layers):
        for row, node_id in enumerate(layer):
            pos[node_id] = (pad + col * (box_w + gap_x), pad + row * (box_h + gap_y))
    width = pad * 2 + max(1, len(layers)) * (box_w + gap_x) - gap_x
    height = pad * 2 + max((len(layer) for layer in layers), default=1) * (box_h + gap_y) - gap_y
    on_path = set(critical)
    critical_edges = set(itertools.pairwise(critical))
    edges, boxes = [], []
    for node_id, node in nodes.items():
        x, y = pos[node_id]
        for dep in node.get("deps", []):
            if dep not in pos:
                continue
            dx, dy = pos[dep]
            x1, y1, x2, y2 = dx + box_w, dy + box_h // 2, x, y + box_h // 2
            hot = (dep, node_id) in critical_edges
            edges.append(
                f"<path class='edge' data-from='{escape(dep)}' data-to='{escape(node_id)}' "
                f"d='M{x1},{y1} C{x1 + gap_x // 2},{y1} {x2 - gap_x // 2},{y2} {x2},{y2}' "
                f"fill='none' stroke='{CRITICAL if hot else '#aaa'}' "
                f"stroke-width='{2.5 if hot else 1.2}' marker-end='url(#arrow)'/>"
            )
        colour = STATUS_COLOUR.get(str(node.get("status")), "#999")
        label = escape(_short(node_id, 22))
        role = escape(_short(str(node.get("role") or node.get("kind") or ""), 24))
        stroke = CRITICAL if node_id in on_path else colour
        boxes.append(
            f"<g class='node' data-node='{escape(node_id)}'><title>{escape(node_id)}: "
            f"{escape(str(node.get('status')))}</title><rect x='{x}' y='{y}' width='{box_w}' "
            f"height='{box_h}' rx='6' fill='{colour}1a' stroke='{stroke}' "
            f"stroke-width='{3 if node_id in on_path else 1.5}'/>"
            f"<text x='{x + 8}' y='{y + 16}' font-weight='600'>{label}</text>"
            f"<text x='{x + 8}' y='{y + 31}' fill='#666'>{role}</text></g>"
        )
    marker = (
        "<defs><marker id='arrow' viewBox='0 0 10 10' refX='9' refY='5' markerWidth='7' "
        "markerHeight='7' orient='auto'><path d='M0,0 L10,5 L0,10 z' fill='#888'/></marker></defs>"
    )
    return (
        f"<svg class='dag' xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}'>{marker}{''.join(edges)}{''.join(boxes)}</svg>"
    )


def timeline_svg(nodes: dict[str, dict[str, Any]], critical: set[str], wall: float | None) -> str:
    """A bar per node from start to end, retries marked, the critical path in orange."""
    rows = [(nid, n) for nid, n in nodes.items() if n.get("started_s") is not None]
    rows.sort(key=lambda r: (r[1]["started_s"], r[0]))
    label_w, chart_w, row_h, top = 180, 860, 18, 24
    end = max([float(wall or 0)] + [float(n.get("finished_s") or 0) for _, n in rows]) or 1.0
    scale = chart_w / end
    height = top + row_h * max(1, len(rows)) + 10
    parts = [_axis(end, scale, label_w, top, height)]
    for index, (node_id, node) in enumerate(rows):
        y = top + index * row_h
        start = float(node["started_s"])
        finish = float(node.get("finished_s") or start)
        colour = (
            CRITICAL if node_id in critical else STATUS_COLOUR.get(str(node.get("status")), "#999")
        )
        retries = [float(t) for t in node.get("attempt_starts", [])[1:]]
        ticks = "".join(
            f"<line x1='{label_w + t * scale:.1f}' x2='{label_w + t * scale:.1f}' y1='{y + 1}' "
            f"y2='{y + row_h - 3}' stroke='#222' stroke-width='2'><title>retry at {t:.2f}s"
            f"</title></line>"
            for t in retries
        )
        attempts = int(node.get("attempts") or 1)
        note = f" ×{attempts}" if attempts > 1 else ""
        parts.append(
            f"<g class='bar' data-node='{escape(node_id)}'><text x='{label_w - 6}' "
            f"y='{y + 12}' text-anchor='end'>{escape(_short(node_id, 26))}</text>"
            f"<rect x='{label_w + start * scale:.1f}' y='{y + 2}' "
            f"width='{max(1.5, (finish - start) * scale):.1f}' height='{row_h - 5}' rx='2' "
            f"fill='{colour}'><title>{escape(node_id)}: {start:.2f}s → {finish:.2f}s, "
            f"{attempts} attempt(s){escape(note)}</title></rect>{ticks}"
            f"<text x='{label_w + finish * scale + 4:.1f}' y='{y + 12}' fill='#666'>"
            f"{finish - start:.2f}s{escape(note)}</text></g>"
        )
    width = label_w + chart_w + 80
    return (
        f"<svg class='timeline' xmlns='http://www.w3.org/2000/svg' width='{width}' "
        f"height='{height}'>{''.join(parts)}</svg>"
    )


def _axis(end: float, scale: float, left: int, top: int, height: int) -> str:
    step = _nice_step(end / 8)
    ticks, t = [], 0.0
    while t <= end + 1e-9:
        x = left + t * scale
        ticks.append(
            f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{top - 4}' y2='{height}' stroke='#eee'/>"
            f"<text x='{x:.1f}' y='{top - 8}' text-anchor='middle' fill='#888'>{t:g}s</text>"
        )
        t = round(t + step, 10)
    return "".join(ticks)


def _nice_step(raw: float) -> float:
    for unit in (0.001, 0.01, 0.1, 1, 10, 100, 1000, 10000):
        for factor in (1, 2, 5):
            if unit * factor >= raw:
                return unit * factor
    return 100000.0


def _node_table(nodes: dict[str, dict[str, Any]]) -> str:
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "node",
            "role / kind",
            "model",
            "status",
            "attempts",
            "duration",
            "tokens",
            "cost",
            "error",
        )
    )
    rows = []
    for node_id, n in nodes.items():
        usage = n.get("usage") or {}
        tokens = (
            f"{usage.get('input_tokens', 0):,} / {usage.get('output_tokens', 0):,}" if usage else ""
        )
        colour = STATUS_COLOUR.get(str(n.get("status")), "#999")
        rows.append(
            f"<tr data-node='{escape(node_id)}'><td>{escape(node_id)}</td>"
            f"<td>{escape(str(n.get('role') or n.get('kind') or ''))}</td>"
            f"<td>{escape(str(n.get('model') or ''))}</td>"
            f"<td class='status' style='color:{colour}'>{escape(str(n.get('status')))}</td>"
            f"<td class='num'>{n.get('attempts', 0)}</td><td class='num'>{_s(n.get('duration_s'))}</td>"
            f"<td class='num'>{tokens}</td><td class='num'>{_cost(n.get('cost_usd'), blank=True)}</td>"
            f"<td>{escape(str(n.get('error') or ''))}</td></tr>"
        )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _outputs(nodes: dict[str, dict[str, Any]]) -> str:
    parts = []
    for node_id, n in list(nodes.items())[:MAX_GRAPH_NODES]:
        output = n.get("output")
        if output is None:
            continue
        text = (
            output if isinstance(output, str) else json.dumps(output, indent=2, ensure_ascii=False)
        )
        parts.append(
            f"<details data-node='{escape(node_id)}'><summary>{escape(node_id)}</summary>"
            f"<pre>{escape(text)}</pre></details>"
        )
    return "".join(parts) or "<p>No outputs.</p>"


# -- a batch -------------------------------------------------------------------


def _batch(batch: dict[str, Any], item_runs: dict[str, dict[str, Any]]) -> str:
    items: list[dict[str, Any]] = batch.get("items", [])
    counts = batch.get("counts", {})
    tokens = batch.get("tokens") or {}
    parts = [
        f"<h1>{escape(str(batch.get('workflow', 'batch')))}: {len(items)} items</h1>"
        f"<div class='sub'>batch {escape(str(batch.get('batch_id', '')))} · strategy "
        f"{escape(str(batch.get('strategy')))} · max concurrency {batch.get('max_concurrency')}</div>",
        _cards(
            [
                ("status", str(batch.get("status"))),
                ("items", ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))),
                ("wall time", _s(batch.get("wall_s"))),
                ("sequential estimate", _s(batch.get("sequential_s"))),
                ("speedup", f"{batch.get('speedup') or 0:.1f}x"),
                ("tokens in / out", f"{tokens.get('input', 0):,} / {tokens.get('output', 0):,}"),
                ("cost", _cost(batch.get("cost_usd"))),
            ]
        ),
        "<h2>Items over time</h2>",
    ]
    as_nodes = {
        str(i["key"]): {
            "started_s": i.get("started_s"),
            "finished_s": i.get("finished_s"),
            "status": i.get("status"),
            "attempts": 1,
        }
        for i in items
    }
    parts.append(f"<div class='scroll'>{timeline_svg(as_nodes, set(), batch.get('wall_s'))}</div>")
    head = "".join(f"<th>{h}</th>" for h in ("key", "status", "wall", "tokens", "cost", "error"))
    rows = []
    for i in items:
        colour = STATUS_COLOUR.get(str(i.get("status")), "#999")
        t = i.get("tokens") or {}
        rows.append(
            f"<tr data-item='{escape(str(i['key']))}'><td>{escape(str(i['key']))}</td>"
            f"<td class='status' style='color:{colour}'>{escape(str(i.get('status')))}</td>"
            f"<td class='num'>{_s(i.get('wall_s'))}</td>"
            f"<td class='num'>{t.get('input', 0):,} / {t.get('output', 0):,}</td>"
            f"<td class='num'>{_cost(i.get('cost_usd'), blank=True)}</td>"
            f"<td>{escape(str(i.get('error') or ''))}</td></tr>"
        )
    parts.append(
        f"<h2>Items</h2><table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )
    if item_runs:
        parts.append(f"<h2>Item runs (first {len(item_runs)})</h2>")
        for key, run in item_runs.items():
            parts.append(
                f"<details class='item-run' data-item='{escape(key)}'><summary>{escape(key)} · "
                f"{escape(str(run.get('status')))} · {_s(run.get('wall_s'))}</summary>"
                f"{_run(run, heading=False)}</details>"
            )
    return "".join(parts)


# -- helpers -------------------------------------------------------------------


def _cards(cards: list[tuple[str, str]]) -> str:
    inner = "".join(
        f"<div class='card'><b>{escape(v)}</b><span>{escape(k)}</span></div>" for k, v in cards
    )
    return f"<div class='cards'>{inner}</div>"


def _legend() -> str:
    entries = [(k, v) for k, v in STATUS_COLOUR.items() if k not in ("pending", "invalid")]
    entries.append(("critical path", CRITICAL))
    inner = "".join(f"<span><i style='background:{c}'></i>{escape(k)}</span>" for k, c in entries)
    return f"<div class='legend'>{inner}</div>"


def _s(value: Any) -> str:
    return "" if value is None else f"{float(value):.2f}s"


def _cost(value: Any, *, blank: bool = False) -> str:
    if value is None:
        return "" if blank else "unknown"
    return f"${float(value):.4f}"


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
