"""A stored record is data: a tampered one never runs a script, breaks a report or a CSV.

Reports are opened in a real headless Chromium (Debian's, as in
``tests/test_report.py``); a payload that ran would set ``window.__pwned``,
change ``document.title`` or add an element.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

import agentplex as ap
from agentplex.batch.result import ItemResult, write_summary
from agentplex.exceptions import AgentplexError
from agentplex.report.html import record_from_store, render_html, write_report
from agentplex.store import MemoryStore, RunRecord, StoredNode
from tests.cli import cli
from tests.test_report import browser, in_thread, open_page

__all__ = ["browser"]  # the fixture, imported for its use here

PAYLOADS = [
    "<script>window.__pwned='script';document.title='pwned'</script>",
    '"><img src=x onerror="window.__pwned=\'img\'">',
    "'><svg onload=\"window.__pwned='svg'\"></svg>",
    "</style><script>window.__pwned='style'</script>",
    "</title><script>window.__pwned='title'</script>",
    "</text></svg><script>window.__pwned='svgtext'</script>",
    "<a href=\"javascript:window.__pwned='link'\">click</a>",
    "<svg><foreignObject><iframe srcdoc=\"<script>parent.__pwned='fo'</script>\">"
    "</iframe></foreignObject></svg>",
    "<![CDATA[ x ]]><script>window.__pwned='cdata'</script>",
    "<!-- x --><script>window.__pwned='comment'</script>",
    "javascript:window.__pwned='url'",
    "red;background:url(javascript:alert(1))",
]
LIVE = "script, img, iframe, a, foreignObject, object, embed, [onerror], [onload], [href]"


def real_run(out: Path) -> dict[str, Any]:
    wf = ap.Workflow("w", inputs=["topic"])
    wf.agent("researcher", "Research {topic}", id="a")
    wf.agent("writer", "Write on {topic}", id="b", depends_on=["a"])
    result = in_thread(ap.run, wf, inputs={"topic": "x"})
    result.write(out)
    return dict(json.loads((out / "run.json").read_text(encoding="utf-8")))


def poisoned_run(record: dict[str, Any]) -> dict[str, Any]:
    """Every text field of a real record replaced by a payload; the types stay right."""
    ids = {old: PAYLOADS[i % len(PAYLOADS)] + f" #{i}" for i, old in enumerate(record["nodes"])}
    record.update(workflow=PAYLOADS[0], run_id=PAYLOADS[1], strategy=PAYLOADS[2])
    record["critical_path"] = [ids[n] for n in record["critical_path"]]
    record["counts"] = {PAYLOADS[3]: 2}
    nodes = {}
    for i, (old, node) in enumerate(record["nodes"].items()):
        node.update(
            node_id=ids[old],
            role=PAYLOADS[(i + 4) % len(PAYLOADS)],
            model=PAYLOADS[(i + 5) % len(PAYLOADS)],
            status=PAYLOADS[(i + 6) % len(PAYLOADS)],
            error=PAYLOADS[(i + 7) % len(PAYLOADS)],
            output={"text": PAYLOADS[(i + 8) % len(PAYLOADS)], "more": PAYLOADS},
            deps=[ids[d] for d in node["deps"]],
        )
        nodes[ids[old]] = node
    record["nodes"] = nodes
    return record


def assert_inert(page: Any, title: str, svgs: int) -> None:
    page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true })")
    assert page.evaluate("window.__pwned === undefined && window.parent.__pwned === undefined")
    assert page.evaluate("document.title") == title
    assert page.evaluate(f"document.querySelectorAll({LIVE!r}).length") == 0
    assert page.evaluate("document.querySelectorAll('svg').length") == svgs
    assert page.evaluate("document.querySelectorAll('style').length") == 1


def test_a_tampered_record_runs_no_script_in_the_browser(browser: Any, tmp_path: Path) -> None:
    record = poisoned_run(real_run(tmp_path / "run"))
    (tmp_path / "run" / "run.json").write_text(json.dumps(record), encoding="utf-8")
    report = write_report(tmp_path / "run" / "run.json", tmp_path / "report.html")
    page, problems = open_page(browser, report, tmp_path / "report.png")
    assert problems == []
    assert_inert(page, f"Run report: {PAYLOADS[0]}", svgs=2)
    text = page.inner_text("body")
    for payload in PAYLOADS:  # shown, as text
        assert payload in text, payload
    page.close()

    # Markup where a number belongs: refused before any HTML exists (and if a
    # report were written anyway, nothing in it may run).
    number_fields = real_run(tmp_path / "run2")
    number_fields["max_concurrency"] = "<img src=x onerror=\"window.__pwned='mc'\">"
    number_fields["nodes"]["a"]["started_s"] = None
    number_fields["nodes"]["a"]["attempts"] = "<img src=x onerror=\"window.__pwned='n'\">"
    path = tmp_path / "run2" / "run.json"
    path.write_text(json.dumps(number_fields), encoding="utf-8")
    refused: AgentplexError | None = None
    try:
        written = write_report(path, tmp_path / "report2.html")
    except AgentplexError as exc:
        refused = exc
    else:
        page, _problems = open_page(browser, written, tmp_path / "report2.png")
        assert page.evaluate("window.__pwned === undefined"), "a script in the report ran"
        page.close()
    assert refused is not None
    assert "max_concurrency" in str(refused)
    assert not (tmp_path / "report2.html").exists()


def test_a_tampered_batch_record_runs_no_script_in_the_browser(
    browser: Any, tmp_path: Path
) -> None:
    wf = ap.Workflow("pipe", inputs=["topic"])
    wf.agent("researcher", "Research {topic}", id="research")
    out = tmp_path / "batch"
    in_thread(ap.run_batch, wf, [{"topic": f"t{i}"} for i in range(3)], out=out)
    record = json.loads((out / "batch.json").read_text(encoding="utf-8"))
    record.update(workflow=PAYLOADS[0], batch_id=PAYLOADS[1], strategy=PAYLOADS[2])
    record["counts"] = {PAYLOADS[3]: 3}
    for i, item in enumerate(record["items"]):
        item.update(
            key=PAYLOADS[4 + i], error=PAYLOADS[7 + i], where=PAYLOADS[10], status=PAYLOADS[11]
        )
    (out / "batch.json").write_text(json.dumps(record), encoding="utf-8")
    item_run = next((out / "items").glob("*/run.json"))
    (item_run).write_text(json.dumps(poisoned_run(json.loads(item_run.read_text()))), "utf-8")
    report = write_report(out / "batch.json", tmp_path / "batch.html")
    page, problems = open_page(browser, report, tmp_path / "batch.png")
    assert problems == []
    assert_inert(page, f"Batch report: {PAYLOADS[0]}", svgs=1 + 3 * 2)
    text = page.inner_text("body")
    for payload in PAYLOADS[:10]:
        assert payload in text, payload
    page.close()


# -- wrong types: one clear line, exit 2 --------------------------------------------------


def tamper(record: dict[str, Any], where: str, value: Any) -> dict[str, Any]:
    """Set the dotted field ``where`` (``nodes.a.started_s``) to ``value`` (or drop it)."""
    copy = json.loads(json.dumps(record))
    *path, last = where.split(".")
    target = copy
    for part in path:
        target = target[int(part)] if isinstance(target, list) else target[part]
    index: Any = int(last) if isinstance(target, list) else last
    if value is DROP:
        del target[index]
    else:
        target[index] = value
    return dict(copy)


DROP = object()


def test_a_record_with_wrong_types_gives_one_clear_line(tmp_path: Path) -> None:
    run = real_run(tmp_path / "run")
    cases: list[tuple[str, Any, str]] = [
        ("wall_s", "fast", "wall_s"),
        ("wall_s", 1e300, "wall_s"),
        ("wall_s", -3, "wall_s"),
        ("nodes", [], "nodes"),
        ("nodes.a", "x", "nodes"),
        ("nodes.a.usage", [1, 2], "usage"),
        ("nodes.a.usage.input_tokens", "many", "input_tokens"),
        ("nodes.a.started_s", -5, "started_s"),
        ("nodes.a.finished_s", "later", "finished_s"),
        ("nodes.a.attempts", 10**30, "attempts"),
        ("nodes.a.attempt_starts", [0.1, "x"], "attempt_starts"),
        ("nodes.b.deps", "a", "deps"),
        ("critical_path", {"a": 1}, "critical_path"),
        ("usage", "lots", "usage"),
        ("speedup", [], "speedup"),
        ("max_concurrency", 1.5, "max_concurrency"),
        ("nodes.a.status", 7, "status"),
        ("nodes.a.error", {"x": 1}, "error"),
        ("nodes.a.cost_usd", "free", "cost_usd"),
    ]
    for index, (where, value, field) in enumerate(cases):
        path = tmp_path / f"t{index}.json"
        path.write_text(json.dumps(tamper(run, where, value)), encoding="utf-8")
        html = tmp_path / f"t{index}.html"
        with pytest.raises(AgentplexError) as caught:
            write_report(path, html)
        message = str(caught.value)
        assert "\n" not in message
        for needle in (str(path), field, "Fix:"):
            assert needle in message, message
        assert not html.exists(), where
    # The command line turns it into one line on stderr and exit 2, no traceback.
    env = {"AGENTPLEX_STORE": str(tmp_path / "store")}
    for index in (0, 3, 7):
        path = tmp_path / f"t{index}.json"
        proc = cli("report", path, "--html", html, env=env)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert str(path) in lines[0], lines[0]
        assert not html.exists()


def test_a_tampered_batch_record_gives_one_clear_line(tmp_path: Path) -> None:
    wf = ap.Workflow("pipe", inputs=["topic"])
    wf.agent("researcher", "Research {topic}", id="research")
    out = tmp_path / "batch"
    in_thread(ap.run_batch, wf, [{"topic": "a"}, {"topic": "b"}], out=out)
    batch = json.loads((out / "batch.json").read_text(encoding="utf-8"))
    cases = [
        ("items", {"a": 1}, "items"),
        ("items.0", "x", "items"),
        ("items.0.tokens", "many", "tokens"),
        ("items.0.key", 5, "key"),
        ("items.1.key", DROP, "key"),
        ("items.0.folder", "../../elsewhere", "folder"),
        ("items.1.started_s", "soon", "started_s"),
        ("counts", [1], "counts"),
    ]
    for index, (where, value, field) in enumerate(cases):
        path = out / f"b{index}.json"
        path.write_text(json.dumps(tamper(batch, where, value)), encoding="utf-8")
        with pytest.raises(AgentplexError) as caught:
            write_report(path, tmp_path / f"b{index}.html")
        message = str(caught.value)
        for needle in (str(path), field, "Fix:"):
            assert needle in message, message
        assert "\n" not in message
    broken_item = next((out / "items").glob("*/run.json"))
    broken_item.write_text("{not json", encoding="utf-8")
    with pytest.raises(AgentplexError, match=r"run\.json"):
        write_report(out / "batch.json", tmp_path / "c.html")


def test_a_tampered_store_record_gives_a_typed_error() -> None:
    store = MemoryStore()
    good = {"node_id": "a", "kind": "agent", "status": "succeeded", "deps": [], "attempts": 1}
    for run_id, summary, node in [
        ("r1", {"wall_s": "slow"}, good),
        ("r2", {}, {**good, "started_s": -1.0}),
        ("r3", {}, {**good, "usage": "lots"}),
        ("r4", {"critical_path": "a"}, good),
    ]:
        store.begin_run(
            RunRecord(run_id, "w", "running", created=0.0, updated=0.0, summary=summary)
        )
        store.put_node(run_id, StoredNode("a", "k", "succeeded", output="x", record=node))
        with pytest.raises(AgentplexError, match=run_id):
            render_html(*record_from_store(store, run_id))


# -- CSV cells a spreadsheet would run --------------------------------------------------


FORMULAS = ["=1+2", "+SUM(A1)", "-2+3", "@cmd", '=HYPERLINK("http://x","y")']


def test_summary_csv_neutralises_formula_cells(tmp_path: Path) -> None:
    wf = ap.Workflow("pipe", inputs=["topic"])
    wf.agent("researcher", "Research {topic}", id="research")
    rows = [{"key": k, "topic": "t"} for k in FORMULAS] + [{"key": "plain", "topic": "t"}]
    in_thread(ap.run_batch, wf, rows, out=tmp_path / "out")
    with (tmp_path / "out" / "summary.csv").open(newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert [r["key"] for r in table] == [f"'{k}" for k in FORMULAS] + ["plain"]
    for row in table:
        for value in row.values():
            assert not value or value[0] not in "=+-@\t\r", row
        float(row["wall_s"])  # figures we wrote stay numbers
        int(row["input_tokens"])

    items = [
        ItemResult("\tk", "failed", error="\r=cmd|' /C calc'!A0"),
        ItemResult("k2", "failed", error="-1"),
    ]
    write_summary(tmp_path / "direct.csv", items)
    with (tmp_path / "direct.csv").open(newline="", encoding="utf-8") as handle:
        direct = list(csv.DictReader(handle))
    assert direct[0]["key"] == "'\tk"
    assert direct[0]["error"] == "'\r=cmd|' /C calc'!A0"
    assert direct[1]["error"] == "'-1"
