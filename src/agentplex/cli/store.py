"""``agentplex runs``, ``show``, ``resume``, ``report`` and ``cache``: what is kept on disk."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from agentplex.cli.flags import EngineFlags, LoadFlags, OutDir, OutputFlags, StoreFlags, takes

RESUME_OVERRIDES = ("max_concurrency", "base_url", "api_key", "dask")
"""What resume may be told again: a stored run never chooses its endpoints or key."""
if TYPE_CHECKING:
    from agentplex.batch.result import BatchResult
    from agentplex.result import RunResult

RunIdArg = Annotated[
    str, typer.Argument(help="A run id, as 'agentplex runs' lists them, or 'last' for the newest.")
]
LAST = "last"
"""Stands for the newest run or batch in the store, wherever a command takes a run id."""


def _when(t: float) -> str:
    """Return a stored time for people (a damaged one shows as '?', never a traceback)."""
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
    except (OverflowError, ValueError, OSError):
        return "?"


def _open(store: Path | None, json_out: bool) -> Any:
    """Open the run store to read it (``resume`` too: a run to finish must be in it).

    A store file that does not exist yet is not created: it reads as an empty
    store named after that file, so ``runs`` lists nothing, ``show`` finds no
    run, and no ``.agentplex/`` folder appears where none was.
    """
    from agentplex.cli import script
    from agentplex.store import MemoryStore, default_store_path, open_store

    where = store if store is not None else default_store_path()
    if "://" not in str(where):
        path = where if where.suffix else where / "runs.sqlite"
        if not path.exists():
            empty = MemoryStore()
            empty.location = str(path)
            return empty
    with script.errors(json_out):
        return open_store(store)


def _resolve(run_store: Any, run_id: str, json_out: bool) -> str:
    """Return ``run_id``, or the newest run's id for ``last``."""
    from agentplex.cli import script
    from agentplex.exceptions import RunNotFoundError

    if run_id != LAST:
        return run_id
    with script.errors(json_out):
        newest = run_store.list_runs(1)
        if not newest:
            raise RunNotFoundError(
                "the store has no runs yet, so there is no 'last' run. Fix: run something "
                "first (agentplex run FILE), or pass --store with the store you meant."
            )
    return str(newest[0].run_id)


@takes(StoreFlags, "stored", only=("store",))
@takes(OutputFlags, "output", only=("json_out",))
def runs(
    stored: StoreFlags,
    output: OutputFlags,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many runs.")] = 20,
) -> None:
    """List recent runs, newest first: id, workflow, status, progress, cost."""
    from rich.table import Table
    from rich.text import Text

    from agentplex.cli import script

    run_store = _open(stored.store, output.json_out)
    with script.errors(output.json_out):
        records = run_store.list_runs(limit)
    rows = [
        {
            "run_id": r.run_id,
            "workflow": r.workflow,
            "status": r.shown_status,
            "created": r.created,
            "done_nodes": r.done_nodes,
            "total_nodes": r.total_nodes,
            "cost_usd": r.cost_usd,
            "batch_id": r.batch_id,
            "item_key": r.item_key,
            "source": r.source,
            "kind": "batch" if r.is_batch else "run",
        }
        for r in records
    ]
    if output.json_out:
        script.write_json([{k: v for k, v in row.items() if k != "kind"} for row in rows])
        return
    if not rows:
        script.console().print(f"no runs yet in {run_store.location}", markup=False)
        return
    table = Table(title=Text(f"runs in {run_store.location}"), title_justify="left")
    for column in ("run id", "workflow", "status", "progress", "cost", "started"):
        table.add_column(column, overflow="fold")
    for row in rows:
        unit = " items" if row["kind"] == "batch" else " nodes"
        cost = row["cost_usd"]
        table.add_row(
            *(Text(str(row[k])) for k in ("run_id", "workflow", "status")),
            f"{row['done_nodes']}/{row['total_nodes']}{unit}",
            "" if cost is None else f"${cost:.4f}",
            _when(row["created"]),
        )
    script.emit(script.console(), table)


@takes(StoreFlags, "stored", only=("store",))
@takes(OutputFlags, "output", only=("json_out",))
def show(run_id: RunIdArg, stored: StoreFlags, output: OutputFlags) -> None:
    """Show a stored run (its nodes, statuses, timings and errors) or batch (its items)."""
    from agentplex.batch.result import BatchResult, load_result
    from agentplex.cli import script

    run_store = _open(stored.store, output.json_out)
    run_id = _resolve(run_store, run_id, output.json_out)
    with script.errors(output.json_out):
        record = run_store.get_run(run_id)
        result = load_result(run_store, run_id)
    batch = isinstance(result, BatchResult)
    if output.json_out:
        script.write_json(
            {
                "kind": "batch" if batch else "run",
                "source": record.source,
                "settings": dict(record.settings),
                **result.to_dict(),
            }
        )
        return
    out = script.console()
    unit = "items" if batch else "nodes"
    out.print(
        f"{'batch' if batch else 'run'} {record.run_id}: {record.workflow}, {result.status}, "
        f"{record.done_nodes}/{record.total_nodes} {unit} succeeded"
        + (f", from {record.source}" if record.source else ""),
        markup=False,
    )
    if isinstance(result, BatchResult):
        script.emit(out, _items_table(result))
    else:
        script.emit(out, _nodes_table(result))
        missing = sum(1 for node in result.nodes.values() if node.status == "pending")
        if missing:
            out.print(f"{missing} node(s) never started")
    if result.status != "succeeded":
        out.print(f"finish it with: agentplex resume {record.run_id}", markup=False)


def _items_table(result: BatchResult) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table()
    for column in ("item", "status", "nodes", "wall", "cost", "run id / error"):
        table.add_column(column, overflow="fold")
    for key, item in result.items():
        total = item.total_nodes
        table.add_row(
            Text(key),
            Text(str(item.status)),
            "" if total is None else f"{item.done_nodes or 0}/{total}",
            "" if item.started_s is None else f"{item.wall_s:.2f}s",
            "" if item.cost_usd is None else f"${item.cost_usd:.4f}",
            Text(str(item.error or item.run_id or "")),
        )
    return table


def _nodes_table(result: RunResult) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table()
    for column in ("node", "status", "attempts", "duration", "tokens", "error"):
        table.add_column(column, overflow="fold")
    for node_id, node in result.nodes.items():
        if node.status == "pending":
            continue  # counted below the table as never started
        usage = node.usage
        table.add_row(
            Text(node_id),
            Text(str(node.status) + (" (reused)" if node.reused else "")),
            str(node.attempts),
            f"{node.duration_s or 0:.2f}s",
            f"{usage.input_tokens}/{usage.output_tokens}" if usage else "",
            Text(node.error or ""),
        )
    return table


@takes(StoreFlags, "stored", only=("store",))
@takes(EngineFlags, "engine", only=("base_url", "api_key", "dask"))
@takes(LoadFlags, "loading", only=("trust",))
@takes(OutputFlags, "output")
def resume(
    run_id: RunIdArg,
    stored: StoreFlags,
    engine: EngineFlags,
    loading: LoadFlags,
    output: OutputFlags,
    max_concurrency: Annotated[
        Optional[int],  # noqa: UP045 - typer needs Optional here
        typer.Option("--max-concurrency", "-c", min=1, help="Override the stored limit."),
    ] = None,
    out: OutDir = None,
) -> None:
    """Finish a stored run: keep what succeeded, run only the rest.

    A stored run never chooses where requests go, nor raises its file's trust:
    pass --base-url or --dask again if the run used them, and --trust for a plan file.
    """
    from agentplex.batch.resume import aresume
    from agentplex.cli import script
    from agentplex.cli.verbose import Verbose

    if out is not None:
        script.check_out_folder(out)
    if engine.dask is not None:
        script.require_extras("dask:--dask")
    given = {**dataclasses.asdict(engine), "max_concurrency": max_concurrency}
    overrides = {k: v for k, v in given.items() if v is not None and k in RESUME_OVERRIDES}
    run_store = _open(stored.store, output.json_out)
    run_id = _resolve(run_store, run_id, output.json_out)
    verbose = Verbose(script.console(stderr=True), on=output.verbose)
    try:
        outcome = script.work(
            lambda watching: aresume(
                run_id,
                store=run_store,
                trust=loading.trust,
                observers=watching,
                **{**overrides, **verbose.run_options()},
            ),
            observers=[verbose],
            batch=None,
            json_out=output.json_out,
            what="resumed run",
        )
    finally:
        run_store.close()
    if out is not None:
        with script.errors(output.json_out):
            outcome.result.write(out)
    view, kept = _resumed(outcome.result, run_id, verbose, quiet=output.quiet)
    script.finish(
        outcome,
        json_out=output.json_out,
        show=lambda: script.emit(script.console(), view),
        where=[kept],
    )


def _resumed(result: Any, run_id: str, verbose: Any, *, quiet: bool) -> tuple[Any, str]:
    """Return the view of a resumed run or batch, and the line saying what was kept."""
    from agentplex.batch.result import BatchResult
    from agentplex.report.batch_progress import render_batch_summary

    if isinstance(result, BatchResult):
        return render_batch_summary(result), f"resumed {run_id}"
    reused = sum(1 for n in result.nodes.values() if n.reused)
    kept = f"resumed {run_id}: {reused} node(s) kept, {len(result.nodes) - reused} run"
    return verbose.summary(result, nodes=not quiet), kept


@takes(StoreFlags, "stored", only=("store",))
@takes(OutputFlags, "output", only=("json_out",))
def report(
    record: Annotated[
        str,
        typer.Argument(
            help="A run id from the store ('last': the newest), a run.json (agentplex run "
            "--out) or a batch.json."
        ),
    ],
    stored: StoreFlags,
    output: OutputFlags,
    html: Annotated[
        Path, typer.Option("--html", help="Write the self-contained HTML report here.")
    ] = Path("report.html"),
) -> None:
    """Turn a stored run, a run record or a batch record into one self-contained HTML report."""
    from agentplex.cli import script
    from agentplex.report.html import record_from_store, render_html, save_report, write_report

    script.check_file_path(html, flag="--html")
    with script.errors(output.json_out):
        if Path(record).is_file():
            written = write_report(record, html)
        else:
            run_store = _open(stored.store, output.json_out)
            try:
                record = _resolve(run_store, record, output.json_out)
                data, items = record_from_store(run_store, record)
            finally:
                run_store.close()
            page = render_html(data, items, where=f"run {record} in the store")
            written = save_report(page, html)
    if output.json_out:
        script.write_json({"report": str(written), "record": record})
    else:
        script.console().print(f"wrote {written}", markup=False)


@takes(OutputFlags, "output", only=("json_out",))
def cache(
    output: OutputFlags,
    action: Annotated[str, typer.Argument(help="info (default), prune or clear.")] = "info",
    max_mb: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option("--max-mb", help="prune: keep at most this many MB."),
    ] = None,
    max_age_days: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option("--max-age-days", help="prune: drop entries older than this."),
    ] = None,
) -> None:
    """Show, prune or clear the result cache (answers reused across runs)."""
    from agentplex.cli import script
    from agentplex.store.cache import ResultCache

    if action not in ("info", "prune", "clear"):
        script.fail(
            f"unknown cache action {action!r}. "
            "Fix: use 'agentplex cache info', 'cache prune' or 'cache clear'."
        )
    with script.errors(output.json_out):
        results = ResultCache()
        try:
            if action == "prune":
                dropped = results.prune(max_mb=max_mb, max_age_days=max_age_days)
            elif action == "clear":
                dropped = results.clear()
            data = results.info()
        finally:
            results.close()
    if action != "info":
        data["dropped"] = dropped
    if output.json_out:
        script.write_json(data)
        return
    if action != "info":
        typer.echo(f"dropped {dropped} cached result(s) from {data['path']}")
    state = "" if data["enabled"] else " (off: AGENTPLEX_CACHE=off)"
    typer.echo(
        f"{data['entries']} cached result(s), {data['bytes'] / 1e6:.1f} MB in {data['path']}"
        f"{state}; limits {data['max_mb']:g} MB, {data['max_age_days']:g} days"
    )
