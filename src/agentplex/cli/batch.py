"""``agentplex batch`` and ``bench``: one workflow over every line of an input file."""

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
    from agentplex.batch.result import BatchResult

InputsOpt = Annotated[
    Path,
    typer.Option(
        "--inputs",
        help="One item per line: .txt (one value), .csv (a column per input; "
        "optional key, priority, model columns) or .jsonl.",
    ),
]


@takes(EngineFlags, "engine", defaults={"max_concurrency": 64})
@takes(LoadFlags, "loading", without=("imports",))
@takes(OutputFlags, "output")
@takes(StoreFlags, "stored")
def batch(
    workflow: WorkflowArg,
    inputs: InputsOpt,
    engine: EngineFlags,
    loading: LoadFlags,
    output: OutputFlags,
    stored: StoreFlags,
    out: OutDir = None,
    export: ExportOpt = None,
    shard: Annotated[
        bool,
        typer.Option(
            "--shard",
            help="Spread the items over the Dask cluster's workers (--dask, or a local "
            "cluster), under one budget of limits lent where the work is.",
        ),
    ] = False,
) -> None:
    """Run a workflow once per input, every item under one set of limits.

    With --out, each item's folder (items/<key>/) is written as the item
    finishes, then batch.json and summary.csv.
    """
    from agentplex.batch.driver import arun_batch
    from agentplex.cli import script
    from agentplex.cli.verbose import Verbose
    from agentplex.report.batch_progress import BatchProgress, render_batch_summary

    formats, out = script.export_formats(export, out)
    if shard or engine.needs_dask():
        script.require_extras("dask:--shard / --dask / --executor dask")
    compiled = script.load(workflow, loading, json_out=output.json_out)
    with script.errors(output.json_out):
        options = engine.run_options()
    log = script.console(stderr=True)
    verbose = Verbose(log, on=output.verbose)
    observers: list[Any] = [verbose]
    if not output.quiet:
        observers.append(BatchProgress(log, live=log.is_terminal))
    outcome = script.work(
        lambda watching: arun_batch(
            compiled,
            inputs,
            observers=watching,
            out=out,
            store=stored.target(),
            shard=shard,
            **{**options, **verbose.run_options()},
        ),
        observers=observers,
        batch=True,
        json_out=output.json_out,
        what="batch",
    )
    result: BatchResult = outcome.result
    script.finish(
        outcome,
        json_out=output.json_out,
        show=lambda: script.emit(script.console(), render_batch_summary(result)),
        where=keep_batch(result, out, formats, stored=not stored.no_store),
    )


def keep_batch(
    result: BatchResult, out: Path | None, formats: tuple[str, ...], *, stored: bool
) -> list[str]:
    """Export the items' outputs; return the lines that say where the batch is kept."""
    from agentplex.cli import script

    lines: list[str] = []
    if out is not None:
        if formats:
            from agentplex.report.exports import export_batch

            runs = [(key, item.run) for key, item in result.items() if item.run is not None]
            folders = {key: item.folder for key, item in result.items() if item.folder}
            with script.errors():
                export_batch(runs, out, formats, folders=folders)
            lines.append(f"exported {', '.join(formats)} for {len(runs)} items")
        lines.append(f"wrote {out / 'batch.json'}, {out / 'summary.csv'} and {out / 'items'}/")
    lines += script.recorded("batch", result.batch_id, ok=result.ok, stored=stored)
    return lines


PLOT_FORMATS = (".png", ".svg", ".pdf", ".jpg", ".jpeg")
"""What ``--plot`` writes: formats matplotlib's default backend always has."""


@takes(EngineFlags, "engine", without=("strategy", "no_cache"), defaults={"max_concurrency": 64})
@takes(OutputFlags, "output", only=("json_out", "verbose"))
def bench(
    workflow: WorkflowArg,
    inputs: InputsOpt,
    engine: EngineFlags,
    output: OutputFlags,
    designs: Annotated[
        str,
        typer.Option(
            "--designs", help="Comma-separated: sequential, pool4, layers, dataflow (default: all)."
        ),
    ] = "sequential,pool4,layers,dataflow",
    plot_path: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--plot", help="Also draw the figures into this PNG (needs agentplex[plot])."),
    ] = None,
) -> None:
    """Run the same batch sequentially, as a pool of 4, in layers and as dataflow; compare."""
    from agentplex.batch.benchmark import benchmark
    from agentplex.cli import script
    from agentplex.cli.flags import LoadFlags
    from agentplex.cli.verbose import Verbose
    from agentplex.report.terminal import render_benchmark

    if plot_path is not None:
        script.check_file_path(plot_path, flag="--plot")
        if plot_path.suffix.lower() not in PLOT_FORMATS:
            script.fail(
                f"--plot {plot_path}: {plot_path.suffix or 'no extension'} is not an image "
                f"format the plot can be written in. Fix: end the name in one of "
                f"{', '.join(PLOT_FORMATS)}, e.g. --plot bench.png"
            )
        script.require_extras("plot:agentplex bench --plot")
    if engine.needs_dask():
        script.require_extras("dask:--dask / --executor dask")
    compiled = script.load(workflow, LoadFlags(), json_out=output.json_out)
    with script.errors(output.json_out):
        options = engine.run_options()
    options.pop("strategy")  # each design has its own
    limit = options.pop("max_concurrency")
    log = script.console(stderr=True)

    def announce(event: Any) -> None:
        from agentplex.events import BatchStarted

        if isinstance(event, BatchStarted) and not output.json_out:
            log.print(f"running {event.total} items, max concurrency {event.max_concurrency}...")

    verbose = Verbose(log, on=output.verbose)
    options.update(verbose.run_options())
    chosen = [d.strip() for d in designs.split(",") if d.strip()]
    try:
        with script.errors(output.json_out):
            result = benchmark(
                compiled,
                inputs,
                designs=chosen,
                max_concurrency=limit,
                observers=[announce, verbose],
                **options,
            )
    except KeyboardInterrupt:  # a benchmark is only worth its whole table
        script.fail("interrupted; a benchmark keeps nothing until every design ran", 130)
    script.finish(
        script.Outcome(result, False),
        json_out=output.json_out,
        show=lambda: script.emit(script.console(), render_benchmark(result)),
        where=[f"wrote {draw(result, plot_path)}"] if plot_path is not None else [],
        data=result.to_dict(),
        ok=all(row.failed == 0 for row in result.designs),
    )


def draw(result: Any, path: Path) -> Path:
    """Draw the benchmark's figures into ``path``; a failed write is one line, exit 2."""
    from agentplex.batch.benchmark import plot
    from agentplex.cli import script

    try:
        with script.errors():
            path.parent.mkdir(parents=True, exist_ok=True)  # as --out and --html do
            return plot(result, path)
    except OSError as exc:
        script.fail(
            f"{path}: cannot write the plot: {exc.strerror or exc}. Fix: choose another --plot path."
        )
