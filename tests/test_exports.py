"""Exports: each format opened by its own library; presenter output becomes slides."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

import agentplex as ap
from agentplex.exceptions import ConfigError, MissingExtraError
from agentplex.report.exports import (
    export_batch,
    export_run,
    final_sections,
    parse_formats,
    slides,
)


def content_run() -> ap.RunResult:
    wf = ap.Workflow("content", inputs=["topic"])
    wf.agent("researcher", "Research {topic}", id="research")
    wf.agent("writer", "Write on {topic}", id="write", depends_on=["research"])
    wf.agent("presenter", "Slides on {topic}", id="present", depends_on=["write"])
    wf.agent("critic", "Risks of {topic}", id="risks", depends_on=["research"])
    return ap.run(wf, inputs={"topic": "Rust"})


class Strict(HTMLParser):
    """Checks that every opened tag (but void ones) is closed in order."""

    VOID = frozenset({"meta", "br", "hr", "img", "link", "input"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack.pop() == tag

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_every_format_is_valid_for_its_own_library(tmp_path: Path) -> None:
    result = content_run()
    sections = final_sections(result)
    assert [s.node_id for s in sections] == ["present", "risks"]  # the sinks, in order
    paths = export_run(result, tmp_path, parse_formats("md,html,pptx,pdf"))
    assert [p.name for p in paths] == ["export.md", "export.html", "export.pptx", "export.pdf"]

    markdown = (tmp_path / "export.md").read_text()
    assert markdown.startswith("# content: Rust\n")
    assert "## present (presenter)" in markdown
    assert result.outputs["risks"].strip() in markdown

    parser = Strict()
    parser.feed((tmp_path / "export.html").read_text())
    parser.close()
    assert parser.stack == []
    assert "risks" in "".join(parser.text)

    from pptx import Presentation

    deck = Presentation(str(tmp_path / "export.pptx"))
    titles = [slide.shapes.title.text for slide in deck.slides]
    expected = [t for t, _ in slides(result.outputs["present"])]
    assert titles[0] == "content: Rust"  # the cover
    assert titles[1 : 1 + len(expected)] == expected  # the presenter's slides
    assert titles[-1] == "risks"  # other outputs: one slide each
    assert len(expected) >= 3

    from pypdf import PdfReader

    pdf = PdfReader(str(tmp_path / "export.pdf"))
    text = "".join(page.extract_text() for page in pdf.pages)
    assert "content: Rust" in text
    assert "present (presenter)" in text
    assert pdf.metadata is not None
    assert pdf.metadata.title == "content: Rust"


def test_slides_from_headings_slide_lines_or_plain_text() -> None:
    by_heading = "# Deck\n## Why Rust\n- fast\n- safe\n## Costs\nLearning curve.\n"
    assert slides(by_heading) == [
        ("Deck", []),
        ("Why Rust", ["fast", "safe"]),
        ("Costs", ["Learning curve."]),
    ]
    by_line = "Slide 1: Intro\n- hello\nSlide 2: End\n- bye\n"
    assert slides(by_line) == [("Intro", ["hello"]), ("End", ["bye"])]
    plain = "Just one thought.\n\nAnd another."
    assert slides(plain) == [("Just one thought.", ["And another."])]


def test_batch_exports_run_in_parallel_processes(tmp_path: Path) -> None:
    wf = ap.Workflow("content", inputs=["topic"])
    wf.agent("presenter", "Slides on {topic}", id="present")
    batch = ap.run_batch(wf, ["Rust", "Go", "Zig"])
    runs = [(key, item.run) for key, item in batch.items() if item.run is not None]
    written = export_batch(runs, tmp_path, ["md", "pptx"], workers=2)
    assert sorted(written) == ["1-rust", "2-go", "3-zig"]
    for key, paths in written.items():
        assert [p.name for p in paths] == ["export.md", "export.pptx"]
        assert (tmp_path / "items" / key / "export.pptx").stat().st_size > 10_000


def test_format_errors_and_missing_extras(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown export format"):
        parse_formats("md,docx")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pptx" else real(name, *a)
    )
    with pytest.raises(MissingExtraError, match=r"agentplex\[export\]"):
        export_run(content_run(), tmp_path, ["pptx"])


def test_cli_export_needs_out_and_writes_files(examples: Path, tmp_path: Path) -> None:
    env = {
        "AGENTPLEX_STORE": os.environ.get("AGENTPLEX_STORE", ""),
        "PATH": "/usr/bin:/bin",
        "AGENTPLEX_SIM_SCALE": "0",
        "COLUMNS": "200",
    }
    base = [sys.executable, "-m", "agentplex"]
    wf = str(examples / "content_pipeline.yaml")
    no_out = subprocess.run(  # as in the issue: --export alone writes into ./results
        [*base, "batch", wf, "--inputs", str(examples / "content_jobs.csv"), "--export", "md"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert no_out.returncode == 0, no_out.stderr
    assert len(list((tmp_path / "results").glob("items/*/export.md"))) == 5
    assert "results/batch.json" in no_out.stdout
    bad = subprocess.run(
        [*base, "batch", wf, "--inputs", str(examples / "content_jobs.csv"), "--export", "docx"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert bad.returncode == 2
    assert "unknown export format" in bad.stderr
    out = tmp_path / "o"
    ok = subprocess.run(
        [
            *base,
            "batch",
            wf,
            "--inputs",
            str(examples / "content_jobs.csv"),
            "--out",
            str(out),
            "--export",
            "md,pdf",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert ok.returncode == 0, ok.stderr
    assert len(list(out.glob("items/*/export.pdf"))) == 5
    single = subprocess.run(
        [
            *base,
            "run",
            str(examples / "business_plan.yaml"),
            "--out",
            str(tmp_path / "r"),
            "--export",
            "html",
            "-q",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert single.returncode == 0, single.stderr
    assert (tmp_path / "r" / "export.html").exists()


HOSTILE = (
    "# Notes <script>window.x=1</script>\n"
    "- <img src=x onerror=alert(1)>\n"
    "- R&D &amp; more\n"
    "A paragraph with </p><iframe src=javascript:alert(1)></iframe>.\n"
)


def hostile_run() -> ap.RunResult:
    wf = ap.Workflow("hostile <b>flow</b>", inputs=["topic"])

    def answer(topic: str) -> str:
        return HOSTILE

    wf.function(answer, id="final")
    return ap.run(wf, inputs={"topic": "<svg onload=alert(1)>\nsecond line"})


def test_html_export_shows_model_markup_as_text(tmp_path: Path) -> None:
    export_run(hostile_run(), tmp_path, ["html"])
    html = (tmp_path / "export.html").read_text(encoding="utf-8")
    parser = Strict()
    parser.feed(html)
    parser.close()
    assert parser.stack == []
    tags = set(re.findall(r"<([a-zA-Z][a-zA-Z0-9]*)", html))
    page = {"html", "head", "meta", "title", "style", "body", "section", "small", "p"}
    assert tags == page | {"h1", "h2", "h3", "ul", "li"}  # the template's own, nothing else
    text = "".join(parser.text)
    assert "<img src=x onerror=alert(1)>" in text  # shown, as text
    assert "</p><iframe src=javascript:alert(1)></iframe>" in text


def test_markdown_export_has_no_live_html(tmp_path: Path) -> None:
    export_run(hostile_run(), tmp_path, ["md"])
    markdown = (tmp_path / "export.md").read_text(encoding="utf-8")
    assert "<" not in markdown  # no raw tag survives, so a renderer shows it as text
    assert "&lt;script>window.x=1&lt;/script>" in markdown
    assert "R&D &amp;amp; more" in markdown  # an entity stays as typed once rendered
    title = markdown.splitlines()[0]
    assert title == "# hostile &lt;b>flow&lt;/b>: &lt;svg onload=alert(1)> second line"


def test_batch_exports_stay_inside_the_item_folders(tmp_path: Path) -> None:
    wf = ap.Workflow("content", inputs=["topic"])
    wf.agent("presenter", "Slides on {topic}", id="present")
    keys = ["../../escape", str(tmp_path / "abs"), ".", "A", "a"]
    batch = ap.run_batch(wf, [{"key": k, "topic": "t"} for k in keys], out=tmp_path / "out")
    runs = [(key, item.run) for key, item in batch.items() if item.run is not None]
    folders = {key: item.folder for key, item in batch.items() if item.folder}
    written = export_batch(runs, tmp_path / "out", ["md"], workers=1, folders=folders)
    for key, paths in written.items():
        (path,) = paths
        assert path.parent == tmp_path / "out" / "items" / folders[key], key
        assert (path.parent / "run.json").is_file()  # beside the item's own record
    assert sorted(p.parent.name.lower() for p in (tmp_path / "out").rglob("export.md")) == sorted(
        f.lower() for f in folders.values()
    )
    assert not list(tmp_path.glob("escape*"))
    assert not (tmp_path / "abs").exists()
