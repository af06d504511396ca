"""The script every command follows, written once: check, work, keep, print, exit.

1. Check everything before any work starts: flags, the ``--out`` folder, the
   optional packages the flags need (:func:`require_extras`). A problem is
   one line on stderr and exit 2, having run nothing.
2. Work (:func:`work`): the command's coroutine, with an observer that keeps
   the result its final event carries, so on Ctrl-C what finished is kept.
   A typed :class:`~agentplex.exceptions.AgentplexError` becomes one line
   and exit 2 (:func:`errors`); no traceback.
3. Keep and print (:func:`finish`): with ``--json`` one JSON document on
   stdout and nothing else there (messages go to stderr); otherwise the
   human view, then where the result is kept.
4. Exit: 0 ok, 1 the work failed, 2 bad input or configuration, 130
   interrupted (what finished is kept and printed first).

Tables are printed at their full width when stdout is not a terminal, and
wrap in a terminal: data is never cut (:func:`emit`).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from agentplex.cli.flags import LoadFlags
    from agentplex.model.workflow import CompiledWorkflow

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130

EXTRAS: Mapping[str, tuple[str, str]] = {
    "plot": ("matplotlib", "plot"),
    "pptx": ("pptx", "export"),
    "pdf": ("reportlab", "export"),
    "dask": ("distributed", "dask"),
}
"""What a flag needs: a name -> (the module to find, the extra that installs it)."""


def console(*, stderr: bool = False) -> Console:
    """Return a console on stdout (or stderr) that never reads text as markup by accident."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def emit(out: Console, *renderables: RenderableType, end: str = "\n") -> None:
    """Print ``renderables`` whole: at their full width when piped, wrapped in a terminal.

    A console that is not a terminal is 80 columns wide, and rich cuts a table
    to fit it; here it is widened to what the renderable needs instead.
    """
    if out.is_terminal:
        out.print(*renderables, end=end)
        return
    from rich.measure import Measurement

    width = out.width
    for renderable in renderables:
        options = out.options.update_width(1_000_000)
        width = max(width, Measurement.get(out, options, renderable).maximum)
    saved = out.width
    out.width = width
    try:
        out.print(*renderables, end=end)
    finally:
        out.width = saved


def fail(message: str, code: int = EXIT_INVALID) -> NoReturn:
    """Print ``error: message`` as one line on stderr (keys redacted) and exit with ``code``."""
    from agentplex.llm.config import redact

    line = " ".join(redact(message).split())
    sys.stderr.write(f"error: {line}\n")
    _said.append(line)
    raise typer.Exit(code)


_said: list[str] = []
"""Error lines :func:`fail` wrote, for the JSON document of an exit that wrote none."""
_wrote_json: list[bool] = []


def json_for_exit(code: int) -> None:
    """With ``--json``, make sure stdout holds one JSON document when a command exits
    with ``code`` before writing one (a usage error, Ctrl-C while starting up...)."""
    if _wrote_json or code == EXIT_OK:
        return
    status = "interrupted" if code == EXIT_INTERRUPTED else "error"
    message = _said[-1] if _said else "invalid command line; the reason is on stderr"
    write_json({"status": status, "exit_code": code, "error": {"message": message}})


def first_error(group: BaseExceptionGroup[Any]) -> Exception | None:
    """Return the agentplex error inside ``group`` if that is all it holds, else None."""
    from agentplex.exceptions import AgentplexError

    matched, rest = group.split(AgentplexError)
    if matched is None or rest is not None:
        return None
    error: BaseException = matched
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error if isinstance(error, Exception) else None


@contextmanager
def errors(json_out: bool = False, *, path: Path | None = None) -> Iterator[None]:
    """Turn a typed error into its lines on stderr and exit 2; anything else is a bug and raises.

    An invalid workflow lists every problem, one a line; every other error is
    one line. With ``json_out`` stdout also gets ``{"error": {...}}``.
    """
    from agentplex.exceptions import AgentplexError, InvalidWorkflowError

    try:
        yield
    except InvalidWorkflowError as exc:
        first = exc.errors[0]
        where = getattr(first, "path", None) or path or "the file"
        lines = [f"{where} is not a valid workflow:", *(f"  - {e}" for e in exc.errors)]
        _error_json(json_out, exc, [str(e) for e in exc.errors])
        from agentplex.llm.config import redact

        sys.stderr.write("error: " + "\n".join(redact(line) for line in lines) + "\n")
        raise typer.Exit(EXIT_INVALID) from None
    except AgentplexError as exc:
        _error_json(json_out, exc)
        fail(str(exc))
    except BaseExceptionGroup as group:  # e.g. a full disk, hit by several items at once
        error = first_error(group)
        if error is None:
            raise
        _error_json(json_out, error)
        fail(str(error))


def _error_json(json_out: bool, exc: Exception, problems: list[str] | None = None) -> None:
    if not json_out:
        return
    from agentplex.llm.config import redact

    error: dict[str, Any] = {"type": type(exc).__name__, "message": redact(str(exc))}
    if problems is not None:
        error["problems"] = [redact(p) for p in problems]
    write_json({"status": "error", "exit_code": EXIT_INVALID, "error": error})


def write_json(data: Any) -> None:
    """Write ``data`` (a mapping, or something with ``to_json()``) as the one JSON on stdout."""
    text = data.to_json() if hasattr(data, "to_json") else json.dumps(data, indent=2, default=repr)
    sys.stdout.write(text + "\n")
    _wrote_json.append(True)


def require_extras(*needs: str) -> None:
    """Exit 2 with the ``pip install`` line if an optional package a flag needs is missing.

    ``needs`` are pairs of ``EXTRAS`` names and the flag that needs them, as
    ``"plot:--plot"``; called before any work starts.
    """
    import importlib.util

    from agentplex.exceptions import MissingExtraError

    for need in needs:
        what, _, flag = need.partition(":")
        module, extra = EXTRAS[what]
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a broken or half-removed install
            found = False
        if not found:
            fail(str(MissingExtraError(module, extra, flag or what)))


def check_out_folder(out: Path, *, flag: str = "--out") -> None:
    """Exit 2 if ``out`` is, or is inside, something that is not a folder.

    For every command that writes a folder: checked before any work runs, so
    a typo never costs a run. A folder that does not exist yet is fine.
    """
    if out.exists() and not out.is_dir():
        fail(
            f"{flag} {out} is a file, not a folder. Fix: give a folder (it is created if "
            "missing), or move the file away."
        )
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                fail(
                    f"{flag} {out}: {parent} is a file, so no folder can be made inside it. "
                    "Fix: give a path whose parents are folders."
                )
            break


def check_file_path(path: Path, *, flag: str) -> None:
    """Exit 2 if no file can be written at ``path`` (a folder is there, or its parent is a file)."""
    if path.is_dir():
        example = path / ("bench.png" if flag == "--plot" else "report.html")
        fail(f"{flag} {path} is a folder. Fix: name the file, e.g. {flag} {example}")
    check_out_folder(path.parent, flag=f"{flag} {path}:")


def export_formats(export: str | None, out: Path | None) -> tuple[tuple[str, ...], Path | None]:
    """Parse ``--export`` and check ``--out`` and the extras before anything runs.

    Exports go to ``--out`` (default ./results).
    """
    from agentplex.exceptions import ConfigError
    from agentplex.report.exports import parse_formats

    formats: tuple[str, ...] = ()
    if export is not None:
        try:
            formats = parse_formats(export)
        except ConfigError as exc:
            fail(str(exc))
        require_extras(*(f"{f}:--export {f}" for f in formats if f in EXTRAS))
        out = out or Path("results")
    if out is not None:
        check_out_folder(out)
    return formats, out


def parse_inputs(pairs: Iterable[str]) -> dict[str, str]:
    """Return ``--input name=value`` pairs as a mapping (exit 2 on a malformed one)."""
    inputs: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            fail(
                f"--input {pair!r} is not of the form name=value. Fix: e.g. --input query='a bakery'"
            )
        inputs[key.strip()] = value
    return inputs


def load(path: Path, flags: LoadFlags, *, json_out: bool = False) -> CompiledWorkflow:
    """Load and compile a workflow file; every problem is a clean exit 2.

    Trust: ``--untrusted`` distrusts any file, ``--trust`` trusts a plan file;
    neither trusts a named-node file and distrusts a plan file.
    """
    from agentplex.files.loader import load_workflow

    if flags.untrusted and flags.trust:
        fail("--trust and --untrusted contradict each other. Fix: pass one of them.")
    trusted = False if flags.untrusted else (True if flags.trust else None)
    mode: Any = flags.on_cycle.value.replace("-", "_")
    with errors(json_out, path=path):
        try:
            wf = load_workflow(path, trusted=trusted, lenient=flags.lenient)
            return wf.compile(lenient=flags.lenient, on_cycle=mode, imports=flags.imports)
        except KeyboardInterrupt:
            fail(f"interrupted while reading {path}; nothing ran", EXIT_INTERRUPTED)


class Capture:
    """An observer keeping the result of the final event: what a Ctrl-C leaves behind."""

    def __init__(self, *, batch: bool | None) -> None:
        self.batch = batch
        """True: keep the batch's result; False: the run's; None: whichever ends the work."""
        self.run: Any = None
        self.batch_result: Any = None

    def __call__(self, event: Any) -> None:
        from agentplex.events import BatchFinished, RunFinished

        if isinstance(event, RunFinished) and self.run is None:
            self.run = event.result
        elif isinstance(event, BatchFinished):
            self.batch_result = event.result

    @property
    def result(self) -> Any:
        if self.batch is True:
            return self.batch_result
        if self.batch is False:
            return self.run
        return self.batch_result if self.batch_result is not None else self.run


@dataclass(frozen=True)
class Outcome:
    """What the work left: its result, and whether Ctrl-C cut it short."""

    result: Any
    interrupted: bool


def work(
    start: Callable[[list[Any]], Coroutine[Any, Any, Any]],
    *,
    observers: Iterable[Any] = (),
    batch: bool | None = False,
    json_out: bool = False,
    what: str = "run",
) -> Outcome:
    """Run ``start(observers)`` to its end, or to Ctrl-C keeping what finished.

    A Ctrl-C before the work produced a result exits 130 at once.
    """
    capture = Capture(batch=batch)
    with errors(json_out):
        try:
            return Outcome(asyncio.run(start([capture, *observers])), False)
        except KeyboardInterrupt:
            if capture.result is None:
                fail(
                    f"interrupted before the {what} started; nothing was recorded", EXIT_INTERRUPTED
                )
            return Outcome(capture.result, True)


def finish(
    outcome: Outcome,
    *,
    json_out: bool,
    show: Callable[[], None],
    where: Iterable[str] = (),
    data: Any = None,
    ok: bool | None = None,
) -> NoReturn:
    """Print the outcome (``data`` or its result as JSON, else ``show()``), then exit with its code.

    ``where`` says where the result is kept (the store, the ``--out`` folder):
    printed after the view, and on stderr with ``--json``. ``ok`` (default:
    the result's own) says whether the work succeeded.
    """
    result = outcome.result
    places = list(where)
    if json_out:
        write_json(result if data is None else data)
        for line in places:
            sys.stderr.write(line + "\n")
    else:
        show()
        out = console()
        for line in places:
            out.print(line, markup=False, soft_wrap=True)
    if outcome.interrupted:
        message = "interrupted: what finished is kept, the rest did not run"
        (console(stderr=True) if json_out else console()).print(
            message, style="yellow", markup=False
        )
        raise typer.Exit(EXIT_INTERRUPTED)
    raise typer.Exit(EXIT_OK if (result.ok if ok is None else ok) else EXIT_FAILED)


def recorded(
    kind: str, ident: str, *, ok: bool, stored: bool, resumable: bool = True, trust: bool = False
) -> Iterator[str]:
    """Yield where a run or batch is recorded, and how to finish it.

    ``resumable`` is False for planned runs (``ask``), which resume cannot
    reload; ``trust`` says the workflow names Python code, so resume needs
    ``--trust`` to read its file again.
    """
    if stored:
        flag = " --trust" if trust else ""
        hint = "" if ok or not resumable else f"; finish it with: agentplex resume {ident}{flag}"
        yield f"{kind} {ident} is recorded{hint}"
