"""Exports of a run's final outputs: Markdown, self-contained HTML, PowerPoint, PDF.

The final outputs are those of the *sinks* (nodes nothing depends on), in
declaration order. A presenter's output (a node whose role is ``presenter``)
becomes slides in the PowerPoint file; every other output becomes a titled
section. PowerPoint uses ``python-pptx`` and PDF ``reportlab``, both in the
``export`` extra and imported only when asked for.

A batch exports every item, in parallel: one task per item in a process pool
(building slides and PDF pages is CPU-bound Python), each into the item's
folder under ``items/`` (its key made safe, as the batch wrote it).

Outputs are model text, so untrusted: the HTML export renders them through
the autoescaping Jinja2 template ``report/templates/export.html.j2``; the
Markdown export keeps them as text but escapes ``<`` (and ``&`` where it
would start an entity), so no raw HTML in an output becomes live when the
Markdown is rendered, and titles and headings stay one line each; the PDF
escapes reportlab's markup. A failed write raises one line naming the path.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from agentplex.exceptions import ConfigError, MissingExtraError
from agentplex.result import RunResult, SafeNames, write_error

FORMATS = ("md", "html", "pptx", "pdf")


@dataclass(frozen=True, slots=True)
class Section:
    """One final output: the node, its role (or kind) and its text."""

    node_id: str
    role: str
    text: str


def parse_formats(spec: str | Iterable[str]) -> tuple[str, ...]:
    """Parse ``md,html,pptx`` into formats.

    Raises:
        ConfigError: for an unknown format.
    """
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    formats = tuple(dict.fromkeys(f.strip().lower() for f in items if f.strip()))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ConfigError(
            f"unknown export format(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(FORMATS)}, e.g. --export md,html,pptx."
        )
    return formats


def final_sections(result: RunResult) -> list[Section]:
    """The outputs of the run's sinks that succeeded, in declaration order."""
    needed = {dep for node in result.nodes.values() for dep in node.deps}
    sections = []
    for node_id, node in result.nodes.items():
        if node_id in needed or node.status != "succeeded" or node.output is None:
            continue
        text = node.output if isinstance(node.output, str) else repr(node.output)
        sections.append(Section(node_id, node.role or node.kind, text))
    return sections


def export_sections(
    title: str, sections: Sequence[Section], folder: str | Path, formats: Sequence[str]
) -> list[Path]:
    """Write ``title`` and ``sections`` as ``<folder>/export.<format>`` for each format.

    Raises:
        OutputError: naming the path, if a write fails.
    """
    try:
        return _write_sections(title, sections, folder, formats)
    except OSError as exc:
        raise write_error(exc, Path(folder), "the export") from None


def _write_sections(
    title: str, sections: Sequence[Section], folder: str | Path, formats: Sequence[str]
) -> list[Path]:
    """:func:`export_sections`, raising the plain ``OSError`` (it pickles, for workers)."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    writers = {"md": _markdown, "html": _html, "pptx": _pptx, "pdf": _pdf}
    paths = []
    for fmt in formats:
        path = out / f"export.{fmt}"
        if path.is_symlink():  # never write through a link left in the folder
            raise OSError(errno.ELOOP, "is a symbolic link; remove it", str(path))
        writers[fmt](title, sections, path)
        paths.append(path)
    return paths


def export_run(result: RunResult, folder: str | Path, formats: Sequence[str]) -> list[Path]:
    """Export a run's final outputs into ``folder``."""
    _check_extras(formats)
    title = _title(result)
    return export_sections(title, final_sections(result), folder, formats)


def export_batch(
    results: Iterable[tuple[str, RunResult]],
    folder: str | Path,
    formats: Sequence[str],
    *,
    workers: int | None = None,
    folders: Mapping[str, str] | None = None,
) -> dict[str, list[Path]]:
    """Export each item's final outputs into ``<folder>/items/<item folder>/``, in parallel.

    ``folders`` maps keys to the folders the batch wrote (``ItemResult.folder``);
    a key without one gets its :class:`~agentplex.result.SafeNames` name, so a
    key never chooses a path.

    Raises:
        OutputError: naming the path, if a write fails.
    """
    _check_extras(formats)
    given = dict(folders or {})
    names = SafeNames(given.values())
    jobs = [
        (
            key,
            _title(run, key),
            final_sections(run),
            Path(folder) / "items" / (given.get(key) or names(key)),
        )
        for key, run in results
    ]
    if len(jobs) <= 1 or workers == 1:
        return {key: export_sections(t, s, f, formats) for key, t, s, f in jobs}
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {
            key: (f, pool.submit(_write_sections, t, s, f, tuple(formats))) for key, t, s, f in jobs
        }
        done: dict[str, list[Path]] = {}
        for key, (path, future) in futures.items():
            try:
                done[key] = future.result()
            except OSError as exc:
                raise write_error(exc, path, "the export") from None
        return done


def _title(result: RunResult, key: str | None = None) -> str:
    topic = next((str(v) for v in result.inputs.values() if isinstance(v, str) and v), "")
    name = result.workflow.replace("_", " ")
    return f"{name}: {topic}" if topic else (f"{name}: {key}" if key else name)


def _check_extras(formats: Sequence[str]) -> None:
    import importlib.util

    for fmt, module in (("pptx", "pptx"), ("pdf", "reportlab")):
        if fmt in formats and importlib.util.find_spec(module) is None:
            raise MissingExtraError(module, "export", f"--export {fmt}")


# -- text structure --------------------------------------------------------------

_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(.*)$")


def blocks(text: str) -> list[tuple[str, str]]:
    """Split Markdown-ish text into ``(kind, text)``: heading, bullet or paragraph."""
    out: list[tuple[str, str]] = []
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            out.append(("paragraph", " ".join(paragraph)))
            paragraph.clear()

    for line in text.splitlines():
        if not line.strip():
            flush()
        elif heading := _HEADING.match(line):
            flush()
            out.append(("heading", heading.group(2).strip()))
        elif bullet := _BULLET.match(line):
            flush()
            out.append(("bullet", bullet.group(1).strip()))
        else:
            paragraph.append(line.strip())
    flush()
    return out


def slides(text: str) -> list[tuple[str, list[str]]]:
    """Turn a presenter's output into ``(title, bullets)`` slides.

    Headings start slides; failing two of those, lines like ``Slide 2: title``
    (bulleted or not) do; failing both, the text is one slide.
    """
    parts = blocks(text)
    slide_line = re.compile(r"^slide\s*\d*\s*[:.-]\s*(.*)$", re.IGNORECASE)
    headings = [p for p in parts if p[0] == "heading"]
    marked = [p for p in parts if slide_line.match(p[1])]
    deck: list[tuple[str, list[str]]] = []
    if len(headings) >= 2 or (headings and not marked):
        for kind, value in parts:
            if kind == "heading":
                deck.append((value, []))
            elif deck:
                deck[-1][1].append(value)
    elif marked:
        for _kind, value in parts:
            match = slide_line.match(value)
            if match:
                deck.append((match.group(1).strip() or value, []))
            elif deck:
                deck[-1][1].append(value)
    else:
        bullets = [value for _kind, value in parts]
        deck.append((bullets[0] if bullets else "", bullets[1:]))
    return [(title, bullets[:8]) for title, bullets in deck]


# -- writers ---------------------------------------------------------------------


def _markdown(title: str, sections: Sequence[Section], path: Path) -> None:
    parts = [f"# {_md_line(title)}\n"]
    for s in sections:
        parts.append(
            f"\n## {_md_line(s.node_id)} ({_md_line(s.role)})\n\n{_md_text(s.text.strip())}\n"
        )
    path.write_text("".join(parts), encoding="utf-8", errors="backslashreplace")


_ENTITY = re.compile(r"&(?=#?\w+;)")


def _md_text(text: str) -> str:
    """Markdown text with no live HTML: ``<`` becomes ``&lt;``, an entity's ``&`` ``&amp;``."""
    return _ENTITY.sub("&amp;", text).replace("<", "&lt;")


def _md_line(text: str) -> str:
    """:func:`_md_text` on one line (a title or heading cannot start a new block)."""
    return _md_text(" ".join(text.split()))


def _html(title: str, sections: Sequence[Section], path: Path) -> None:
    from agentplex.report.templating import render

    views = []
    for s in sections:
        parts: list[tuple[str, Any]] = []
        for kind, value in blocks(s.text):
            if kind == "bullet":
                if not parts or parts[-1][0] != "ul":
                    parts.append(("ul", []))
                parts[-1][1].append(value)
            else:
                parts.append((kind, value))
        views.append({"node_id": s.node_id, "role": s.role, "parts": parts})
    html = render("export.html.j2", title=title, sections=views)
    path.write_text(html, encoding="utf-8", errors="backslashreplace")


def _pptx(title: str, sections: Sequence[Section], path: Path) -> None:
    from pptx import Presentation

    deck: Any = Presentation()
    cover = deck.slides.add_slide(deck.slide_layouts[0])
    cover.shapes.title.text = title
    cover.placeholders[1].text = "made with agentplex"
    for s in sections:
        pages = slides(s.text) if s.role == "presenter" else [(s.node_id, _summary(s.text))]
        for heading, bullets in pages:
            slide = deck.slides.add_slide(deck.slide_layouts[1])
            slide.shapes.title.text = heading[:120]
            frame = slide.placeholders[1].text_frame
            frame.text = bullets[0][:300] if bullets else ""
            for bullet in bullets[1:]:
                frame.add_paragraph().text = bullet[:300]
    deck.save(str(path))


def _summary(text: str) -> list[str]:
    return [value for _kind, value in blocks(text)][:8]


def _pdf(title: str, sections: Sequence[Section], path: Path) -> None:
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import ListFlowable, ListItem, Paragraph, SimpleDocTemplate, Spacer

    styles = getSampleStyleSheet()
    story: list[Any] = [Paragraph(escape(title), styles["Title"])]
    for s in sections:
        story.append(Paragraph(f"{escape(s.node_id)} ({escape(s.role)})", styles["Heading2"]))
        bullets: list[Any] = []
        for kind, value in blocks(s.text):
            if kind == "bullet":
                bullets.append(ListItem(Paragraph(escape(value), styles["BodyText"])))
                continue
            if bullets:
                story.append(ListFlowable(bullets, bulletType="bullet"))
                bullets = []
            style = styles["Heading3"] if kind == "heading" else styles["BodyText"]
            story.append(Paragraph(escape(value), style))
        if bullets:
            story.append(ListFlowable(bullets, bulletType="bullet"))
        story.append(Spacer(1, 12))
    SimpleDocTemplate(str(path), pagesize=A4, title=title, author="agentplex").build(story)
