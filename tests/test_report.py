"""The HTML run report, rendered by a real headless Chromium (Debian's; `.ci/run` installs it)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import agentplex as ap
from agentplex.report.html import layers_of, render_html, write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        if os.environ.get("AGENTPLEX_REQUIRE_BROWSER"):
            pytest.fail("AGENTPLEX_REQUIRE_BROWSER is set but chromium is not installed")
        pytest.skip("no chromium here (apt-get install chromium); CI installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


def open_page(browser: Any, path: Path, shot: Path) -> tuple[Any, list[str]]:
    """Open ``path``; collect console errors, failed requests and page errors; screenshot."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri())
    page.screenshot(path=str(shot), full_page=True)
    assert requests == [path.as_uri()], f"the report fetched something: {requests}"
    return page, problems


def in_thread(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` off this thread: Playwright's sync API keeps an event loop running on it."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args, **kwargs).result()


def flaky_run(out: Path) -> ap.RunResult:
    wf = ap.Workflow("report_demo")
    calls = {"n": 0}

    def wobbly(research: str) -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise ap.exceptions.RetryableError("try again")
        return research.upper()[:40]

    def broken(research: str) -> str:
        raise ValueError("no luck")

    wf.agent("researcher", "Research the market", id="research")
    wf.agent("researcher", "Research the rivals", id="rivals")
    wf.function(wobbly, id="wobbly", depends_on=["research"], retries=3)
    wf.function(broken, id="broken", depends_on=["research"])
    wf.agent("writer", "Write it up", id="write", depends_on=["wobbly", "rivals"])
    wf.agent("critic", "Criticize the broken part", id="after_broken", depends_on=["broken"])
    result: ap.RunResult = in_thread(
        ap.run, wf, error_policy="continue", backoff_base_s=0.01, backoff_max_s=0.02
    )
    result.write(out)
    return result


def test_run_report_renders_every_node_without_errors(browser: Any, tmp_path: Path) -> None:
    result = flaky_run(tmp_path / "run")
    report = write_report(tmp_path / "run" / "run.json", tmp_path / "report.html")
    html = report.read_text()
    assert not re.search(r"<(script|link|img)\b", html)  # self-contained: nothing to load
    page, problems = open_page(browser, report, tmp_path / "run.png")
    assert problems == []
    drawn = page.eval_on_selector_all("svg.dag g.node", "els => els.map(e => e.dataset.node)")
    assert sorted(drawn) == sorted(result.nodes)
    bars = page.eval_on_selector_all("svg.timeline g.bar", "els => els.map(e => e.dataset.node)")
    started = [n for n, r in result.nodes.items() if r.started_s is not None]
    assert sorted(bars) == sorted(started)
    rows = page.eval_on_selector_all("table tr[data-node]", "els => els.length")
    assert rows == len(result.nodes)
    text = page.inner_text("body")
    assert "Critical path: " + " → ".join(result.critical_path) in text
    assert "skipped" in text  # after_broken
    assert "no luck" in text
    assert "×3" in text  # wobbly's three attempts
    edges = page.eval_on_selector_all("svg.dag path.edge", "els => els.length")
    assert edges == sum(len(r.deps) for r in result.nodes.values())
    page.close()
    assert (tmp_path / "run.png").stat().st_size > 10_000


def test_batch_report_lists_every_item_and_embeds_item_runs(browser: Any, tmp_path: Path) -> None:
    wf = ap.Workflow("pipe", inputs=["topic"])
    wf.agent("researcher", "Research {topic}", id="research")
    wf.agent("writer", "Write on {topic}", id="write", depends_on=["research"])
    out = tmp_path / "batch"
    inputs: list[Any] = [{"topic": f"t{i}"} for i in range(5)] + [{"key": "no-topic"}]
    result = in_thread(ap.run_batch, wf, inputs, out=out)
    assert result.counts() == {"succeeded": 5, "invalid": 1}
    report = write_report(out / "batch.json", tmp_path / "batch.html")
    page, problems = open_page(browser, report, tmp_path / "batch.png")
    assert problems == []
    keys = page.eval_on_selector_all("table tr[data-item]", "els => els.map(e => e.dataset.item)")
    assert keys == list(result)
    embedded = page.eval_on_selector_all("details.item-run", "els => els.length")
    assert embedded == 5  # the invalid row has no run
    assert "1 invalid, 5 succeeded" in page.inner_text("body")
    page.close()


def test_layers_follow_the_longest_chain() -> None:
    nodes = {
        "a": {"deps": []},
        "b": {"deps": ["a"]},
        "c": {"deps": []},
        "d": {"deps": ["b", "c"]},
    }
    assert layers_of(nodes) == [["a", "c"], ["b"], ["d"]]


def test_untrusted_text_is_escaped() -> None:
    record = {
        "workflow": "<script>alert(1)</script>",
        "nodes": {"x": {"deps": [], "status": "succeeded", "output": "<img src=x onerror=1>"}},
    }
    html = render_html(record)
    assert "<script>alert" not in html
    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=1&gt;" in html


def test_cli_report_and_a_clear_error_for_a_wrong_file(tmp_path: Path, examples: Path) -> None:
    env = {
        "AGENTPLEX_STORE": os.environ.get("AGENTPLEX_STORE", ""),
        "PATH": "/usr/bin:/bin",
        "AGENTPLEX_SIM_SCALE": "0",
    }
    run = [sys.executable, "-m", "agentplex"]
    subprocess.run(
        [*run, "run", str(examples / "business_plan.yaml"), "--out", str(tmp_path / "o"), "-q"],
        check=True,
        capture_output=True,
        env=env,
    )
    ok = subprocess.run(
        [*run, "report", str(tmp_path / "o" / "run.json"), "--html", str(tmp_path / "r.html")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert ok.returncode == 0, ok.stderr
    assert "business_plan" in (tmp_path / "r.html").read_text()
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"hello": 1}))
    bad = subprocess.run([*run, "report", str(wrong)], capture_output=True, text=True, env=env)
    assert bad.returncode == 2
    assert "not a run or batch record" in bad.stderr
    assert "Fix" in bad.stderr
