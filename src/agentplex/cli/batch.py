"""``agentplex batch``: one workflow over every line of an input file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from agentplex.cli.options import (
    ApiKeyOpt,
    BaseUrlOpt,
    DaskOpt,
    ErrorPolicyChoice,
    ErrorPolicyOpt,
    ExecutorOpt,
    ExportOpt,
    JsonOutOpt,
    MaxConcurrencyOpt,
    MaxInflightOpt,
    ModelOpt,
    NoCacheOpt,
    NoStoreOpt,
    PricesOpt,
    QuietOpt,
    RetriesOpt,
    RpmOpt,
    SeedOpt,
    SimScaleOpt,
    StoreOpt,
    StrategyOpt,
    TimeoutOpt,
    TotalTimeoutOpt,
    TpmOpt,
    TrustOpt,
    UntrustedOpt,
    options_from,
)

if TYPE_CHECKING:
    from rich.console import RenderableType

    from agentplex.batch.result import BatchResult

EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130


def batch(
    workflow: Annotated[Path, typer.Argument(help="Workflow file (YAML or JSON).")],
    inputs: Annotated[
        Path,
        typer.Option(
            "--inputs",
            help="One item per line: .txt (one value), .csv (a column per input; "
            "optional key, priority, model columns) or .jsonl.",
        ),
    ],
    out: Annotated[
        Optional[Path],  # noqa: UP045 - typer needs Optional here
        typer.Option(
            "--out",
            help="Write items/<key>/ as each item finishes, then batch.json and summary.csv.",
        ),
    ] = None,
    max_concurrency: MaxConcurrencyOpt = 64,
    strategy: StrategyOpt = None,
    error_policy: ErrorPolicyOpt = ErrorPolicyChoice.fail_fast,
    model: ModelOpt = "sim:default",
    seed: SeedOpt = 0,
    timeout: TimeoutOpt = None,
    retries: RetriesOpt = 4,
    sim_scale: SimScaleOpt = None,
    base_url: BaseUrlOpt = None,
    api_key: ApiKeyOpt = None,
    rpm: RpmOpt = None,
    tpm: TpmOpt = None,
    max_inflight: MaxInflightOpt = None,
    total_timeout: TotalTimeoutOpt = None,
    prices: PricesOpt = None,
    json_out: JsonOutOpt = False,
    quiet: QuietOpt = False,
    export: ExportOpt = None,
    store: StoreOpt = None,
    no_store: NoStoreOpt = False,
    no_cache: NoCacheOpt = False,
    executor: ExecutorOpt = None,
    dask: DaskOpt = None,
    untrusted: UntrustedOpt = False,
    trust: TrustOpt = False,
    shard: Annotated[
        bool,
        typer.Option(
            "--shard",
            help="Spread the items over the Dask cluster's workers (--dask, or a local "
            "cluster), under one budget of limits lent where the work is.",
        ),
    ] = False,
) -> None:
    """Run a workflow once per input, every item under one set of limits."""
    import asyncio

    from rich.console import Console

    from agentplex.batch.driver import arun_batch
    from agentplex.cli.main import OnCycleChoice, _die, _load
    from agentplex.events import BatchFinished
    from agentplex.exceptions import AgentplexError
    from agentplex.report.batch_progress import BatchProgress
    from agentplex.report.exports import export_batch

    formats, out = _export_formats(export, out, _die)
    compiled = _load(
        workflow, lenient=False, on_cycle=OnCycleChoice.error, untrusted=untrusted, trust=trust
    )
    console = Console(highlight=False)
    log = Console(stderr=True, highlight=False)
    finished: list[BatchResult] = []

    def capture(event: Any) -> None:
        if isinstance(event, BatchFinished):
            finished.append(event.result)

    observers: list[Any] = [capture]
    if not quiet:
        observers.append(BatchProgress(log, live=log.is_terminal))
    interrupted = False
    try:
        options = options_from(locals())
        result = asyncio.run(
            arun_batch(
                compiled,
                inputs,
                observers=observers,
                out=out,
                store=False if no_store else (store or True),
                shard=shard,
                **options,
            )
        )
    except KeyboardInterrupt:
        interrupted = True
        if not finished:
            _die("interrupted before the batch started", EXIT_INTERRUPTED)
        result = finished[0]
    except AgentplexError as exc:
        _die(str(exc))
    except BaseExceptionGroup as group:  # e.g. a full disk, hit by several items at once
        from agentplex.cli.store import _first_error

        error = _first_error(group)
        if error is None:
            raise
        _die(str(error))
    if formats and out is not None:
        runs = [(key, item.run) for key, item in result.items() if item.run is not None]
        folders = {key: item.folder for key, item in result.items() if item.folder}
        try:
            export_batch(runs, out, formats, folders=folders)
        except AgentplexError as exc:
            _die(str(exc))
        if not json_out:
            console.print(f"exported {', '.join(formats)} for {len(runs)} items")
    if json_out:
        sys.stdout.write(result.to_json() + "\n")
    else:
        console.print(render_batch_summary(result))
        if out is not None:
            console.print(
                f"wrote {out / 'batch.json'}, {out / 'summary.csv'} and {out / 'items'}/",
                markup=False,
            )
        if not no_store:
            hint = "" if result.ok else f"; finish it with: agentplex resume {result.batch_id}"
            console.print(f"batch {result.batch_id} is recorded{hint}")
        if interrupted:
            console.print("[yellow]interrupted: finished items are kept[/]")
    if interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    if not result.ok:
        raise typer.Exit(EXIT_FAILED)


DEFAULT_OUT = Path("results")


def _export_formats(
    export: str | None, out: Path | None, die: Any
) -> tuple[tuple[str, ...], Path | None]:
    """Parse --export and check --out before anything runs; exports go to --out (./results).

    ``die(message)`` is called (and must not return) for an unknown format or
    an ``--out`` that cannot be a folder (see :func:`check_out_folder`).
    """
    from agentplex.exceptions import ConfigError
    from agentplex.report.exports import parse_formats

    formats: tuple[str, ...] = ()
    if export is not None:
        try:
            formats = parse_formats(export)
        except ConfigError as exc:
            die(str(exc))
        out = out or DEFAULT_OUT
    if out is not None:
        check_out_folder(out, die)
    return formats, out


def check_out_folder(out: Path, die: Any, *, flag: str = "--out") -> None:
    """Call ``die(message)`` if ``out`` is, or is inside, something that is not a folder.

    For every command that writes a folder (run, batch, ask, plan): checked
    before any work runs, so a typo never costs a run. A folder that does
    not exist yet is fine: it is created.
    """
    if out.exists() and not out.is_dir():
        die(
            f"{flag} {out} is a file, not a folder. Fix: give a folder (it is created if "
            "missing), or move the file away."
        )
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                die(
                    f"{flag} {out}: {parent} is a file, so no folder can be made inside it. "
                    "Fix: give a path whose parents are folders."
                )
            break


def check_report_path(path: Path, die: Any, *, flag: str = "--html") -> None:
    """Call ``die(message)`` if no file can be written at ``path`` (a folder is there)."""
    if path.is_dir():
        example = path / ("bench.png" if flag == "--plot" else "report.html")
        die(f"{flag} {path} is a folder. Fix: name the file, e.g. {flag} {example}")
    check_out_folder(path.parent, die, flag=f"{flag} {path}:")


def render_batch_summary(result: BatchResult) -> RenderableType:
    """The failed items (key, line, error), then the batch's headline figures."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts: list[RenderableType] = []
    failed = result.failed()
    if failed:
        table = Table(title=f"{len(failed)} item(s) did not succeed", title_justify="left")
        for column in ("key", "status", "where", "error"):
            table.add_column(column, overflow="fold")
        for item in failed[:50]:  # Text: a key or an error is never read as rich markup
            table.add_row(
                Text(item.key), Text(item.status), Text(item.where or ""), Text(item.error or "")
            )
        parts.append(table)
        if len(failed) > 50:
            parts.append(Text(f"... and {len(failed) - 50} more (see summary.csv)"))
    counts = ", ".join(f"{n} {status}" for status, n in sorted(result.counts().items()))
    usage = result.usage
    cost = "no cost known" if result.cost_usd is None else f"cost ${result.cost_usd:.4f}"
    parts.append(
        Text(
            f"{len(result)} items: {counts} | wall {result.wall_s:.2f}s | sequential estimate "
            f"{result.sequential_s:.2f}s | speedup {result.speedup:.1f}x | tokens "
            f"{usage.input_tokens:,} in / {usage.output_tokens:,} out | {cost}"
            + (f" | {usage.cached_calls:,} call(s) from the cache" if usage.cached_calls else "")
        )
    )
    return Group(*parts)


def bench(
    workflow: Annotated[Path, typer.Argument(help="Workflow file (YAML or JSON).")],
    inputs: Annotated[
        Path, typer.Option("--inputs", help="Batch input file (.txt, .csv or .jsonl).")
    ],
    designs: Annotated[
        str,
        typer.Option(
            "--designs", help="Comma-separated: sequential, pool4, layers, dataflow (default: all)."
        ),
    ] = "sequential,pool4,layers,dataflow",
    max_concurrency: MaxConcurrencyOpt = 64,
    model: ModelOpt = "sim:default",
    sim_scale: SimScaleOpt = None,
    base_url: BaseUrlOpt = None,
    api_key: ApiKeyOpt = None,
    rpm: RpmOpt = None,
    tpm: TpmOpt = None,
    plot_path: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--plot", help="Also draw the figures into this PNG (needs agentplex[plot])."),
    ] = None,
    json_out: JsonOutOpt = False,
) -> None:
    """Run the same batch sequentially, as a pool of 4, in layers and as dataflow; compare."""
    import json

    from rich.console import Console

    from agentplex.batch.benchmark import benchmark, plot
    from agentplex.cli.main import OnCycleChoice, _die, _load
    from agentplex.exceptions import AgentplexError

    if plot_path is not None:
        check_report_path(plot_path, _die, flag="--plot")
    compiled = _load(workflow, lenient=False, on_cycle=OnCycleChoice.error)
    console = Console(highlight=False)
    log = Console(stderr=True, highlight=False)
    chosen = [d.strip() for d in designs.split(",") if d.strip()]
    options: dict[str, Any] = {"model": model, "sim_scale": sim_scale, "base_url": base_url}
    options.update({"api_key": api_key, "rpm": rpm, "tpm": tpm})

    def announce(event: Any) -> None:
        from agentplex.events import BatchStarted

        if isinstance(event, BatchStarted) and not json_out:
            log.print(f"running {event.total} items, max concurrency {event.max_concurrency}...")

    try:
        result = benchmark(
            compiled,
            inputs,
            designs=chosen,
            max_concurrency=max_concurrency,
            observers=[announce],
            **options,
        )
        if plot_path is not None:
            plot(result, plot_path)
    except KeyboardInterrupt:
        _die("interrupted", EXIT_INTERRUPTED)
    except AgentplexError as exc:
        _die(str(exc))
    except OSError as exc:  # the plot could not be written
        _die(
            f"{plot_path}: cannot write the plot: {exc.strerror or exc}. "
            "Fix: choose another --plot path."
        )
    if json_out:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
        return
    console.print(render_benchmark(result))
    if plot_path is not None:
        console.print(f"wrote {plot_path}")


def render_benchmark(result: Any) -> RenderableType:
    """The designs as a table: wall time, speedup, calls, tokens, 429s."""
    from rich.table import Table

    from agentplex.batch.benchmark import DESIGNS

    caption = "; ".join(f"{name}: {what}" for name, what in DESIGNS.items())
    table = Table(
        title=f"{result.workflow}: {result.designs[0].items} items",
        title_justify="left",
        caption=caption,
        caption_justify="left",
    )
    for column in ("design", "wall", "speedup", "concurrency", "calls", "tokens", "429s", "failed"):
        table.add_column(column, justify="left" if column == "design" else "right")
    for row in result.designs:
        table.add_row(
            row.design,
            f"{row.wall_s:.2f}s",
            "-" if row.speedup is None else f"{row.speedup:.1f}x",
            str(row.max_concurrency),
            f"{row.calls:,}",
            f"{row.input_tokens + row.output_tokens:,}",
            str(row.rate_limited),
            str(row.failed),
        )
    return table


def report(
    record: Annotated[
        str,
        typer.Argument(
            help="A run id from the store, a run.json (agentplex run --out) or a batch.json."
        ),
    ],
    html: Annotated[
        Path, typer.Option("--html", help="Write the self-contained HTML report here.")
    ] = Path("report.html"),
    store: StoreOpt = None,
) -> None:
    """Turn a stored run, a run record or a batch record into one self-contained HTML report."""
    from rich.console import Console

    from agentplex.cli.main import _die
    from agentplex.exceptions import AgentplexError
    from agentplex.report.html import record_from_store, render_html, save_report, write_report
    from agentplex.store import open_store

    check_report_path(html, _die)
    try:
        if Path(record).is_file():
            out = write_report(record, html)
        else:
            run_store = open_store(store)
            try:
                data, items = record_from_store(run_store, record)
            finally:
                run_store.close()
            out = save_report(render_html(data, items, where=f"run {record} in the store"), html)
    except AgentplexError as exc:
        _die(str(exc))
    Console(highlight=False).print(f"wrote {out}", markup=False)
