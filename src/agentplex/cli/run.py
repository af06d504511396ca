"""``agentplex run``: one workflow file, once, with a live view and a summary."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from agentplex.cli.flags import (
    EngineFlags,
    ExportOpt,
    LoadFlags,
    OutDir,
    OutputFlags,
    StoreFlags,
    WorkflowArg,
    takes,
)

if TYPE_CHECKING:
    from agentplex.result import RunResult


@takes(EngineFlags, "engine")
@takes(LoadFlags, "loading", without=("imports",))
@takes(OutputFlags, "output")
@takes(StoreFlags, "stored")
def run(
    workflow: WorkflowArg,
    engine: EngineFlags,
    loading: LoadFlags,
    output: OutputFlags,
    stored: StoreFlags,
    input: Annotated[
        Optional[list[str]],  # noqa: UP045 - typer needs Optional here
        typer.Option("--input", "-i", help="A workflow input, name=value (repeatable)."),
    ] = None,
    stream: Annotated[
        Optional[bool],  # noqa: UP045
        typer.Option(
            "--stream/--no-stream",
            help="Show agents' text as it arrives (default: on in a terminal).",
        ),
    ] = None,
    out: OutDir = None,
    export: ExportOpt = None,
) -> None:
    """Run a workflow and print what ran in parallel, the outputs and the speedup."""
    from agentplex.cli import script
    from agentplex.cli.verbose import Verbose
    from agentplex.engine.runner import arun
    from agentplex.report.terminal import LiveView, render_final_outputs, render_layers

    formats, out = script.export_formats(export, out)
    if engine.needs_dask():
        script.require_extras("dask:--dask / --executor dask")
    compiled = script.load(workflow, loading, json_out=output.json_out)
    inputs = script.parse_inputs(input or [])
    with script.errors(output.json_out):
        options = engine.run_options()
    shown = script.console()
    chatty = not output.json_out and not output.quiet
    live = chatty and shown.is_terminal
    verbose = Verbose(script.console(stderr=True), on=output.verbose)
    observers: list[Any] = [verbose, *([LiveView(shown)] if live else [])]
    if chatty:
        script.emit(shown, render_layers(compiled))
    outcome = script.work(
        lambda watching: arun(
            compiled,
            inputs=inputs,
            observers=watching,
            store=stored.target(),
            **{**options, **verbose.run_options(), "stream": live if stream is None else stream},
        ),
        observers=observers,
        json_out=output.json_out,
    )
    result: RunResult = outcome.result

    def show() -> None:
        parts = [render_final_outputs(compiled, result)] if not output.quiet else []
        script.emit(shown, *parts, verbose.summary(result, nodes=not output.quiet))

    script.finish(
        outcome,
        json_out=output.json_out,
        show=show,
        where=keep_run(result, out, formats, stored=not stored.no_store),
    )


def keep_run(
    result: RunResult, out: Path | None, formats: tuple[str, ...], *, stored: bool
) -> list[str]:
    """Write ``--out`` and the exports; return the lines that say where the run is kept."""
    from agentplex.cli import script
    from agentplex.exceptions import AgentplexError

    lines: list[str] = []
    if out is not None:
        try:
            record = result.write(out)
        except (AgentplexError, OSError) as exc:
            script.fail(f"{exc}; the run itself is in the store" if stored else str(exc))
        lines.append(f"wrote {record} and {len(result.outputs)} outputs in {out / 'outputs'}")
        if formats:
            from agentplex.report.exports import export_run

            with script.errors():
                paths = export_run(result, out, formats)
            lines.append(f"exported {', '.join(str(p) for p in paths)}")
    steps = any(node.kind == "function" for node in result.nodes.values())
    lines += script.recorded("run", result.run_id, ok=result.ok, stored=stored, trust=steps)
    return lines
