"""``agentplex runs``, ``show`` and ``resume``: the run store from the command line."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from agentplex.cli.options import ApiKeyOpt, BaseUrlOpt, DaskOpt, JsonOutOpt, StoreOpt, TrustOpt

RunIdArg = Annotated[str, typer.Argument(help="A run id, as 'agentplex runs' lists them.")]


def _when(t: float) -> str:
    """A stored time for people (a damaged one shows as '?', never a traceback)."""
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
    except (OverflowError, ValueError, OSError):
        return "?"


def _first_error(group: BaseExceptionGroup[Any]) -> Exception | None:
    """The agentplex error inside ``group`` if that is all it holds, else None."""
    from agentplex.exceptions import AgentplexError

    matched, rest = group.split(AgentplexError)
    if matched is None or rest is not None:
        return None
    error: BaseException = matched
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error if isinstance(error, Exception) else None


def _store(store: Any) -> Any:
    from agentplex.cli.main import _die
    from agentplex.exceptions import AgentplexError
    from agentplex.store import open_store

    try:
        return open_store(store)
    except AgentplexError as exc:
        _die(str(exc))


def runs(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many runs.")] = 20,
    store: StoreOpt = None,
    json_out: JsonOutOpt = False,
) -> None:
    """List recent runs, newest first: id, workflow, status, progress, cost."""
    from rich.console import Console
    from rich.table import Table

    from agentplex.cli.main import _die
    from agentplex.exceptions import AgentplexError
    from agentplex.store import shown_status

    run_store = _store(store)
    try:
        records = run_store.list_runs(limit)
    except AgentplexError as exc:
        _die(str(exc))
    if json_out:
        rows = [
            {
                "run_id": r.run_id,
                "workflow": r.workflow,
                "status": shown_status(r),
                "created": r.created,
                "done_nodes": r.done_nodes,
                "total_nodes": r.total_nodes,
                "cost_usd": r.cost_usd,
                "batch_id": r.batch_id,
                "item_key": r.item_key,
                "source": r.source,
            }
            for r in records
        ]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(title=f"runs in {run_store.location}", title_justify="left")
    table.add_column("run id", no_wrap=True)
    for column in ("workflow", "status", "progress", "cost", "started"):
        table.add_column(column)
    for r in records:
        status = shown_status(r)
        table.add_row(
            r.run_id,
            r.workflow,
            status,
            f"{r.done_nodes}/{r.total_nodes}"
            + (" items" if r.settings.get("kind") == "batch" else " nodes"),
            "" if r.cost_usd is None else f"${r.cost_usd:.4f}",
            _when(r.created),
        )
    Console(highlight=False).print(table)


def show(run_id: RunIdArg, store: StoreOpt = None, json_out: JsonOutOpt = False) -> None:
    """Show a stored run (its nodes, statuses, timings and errors) or batch (its items)."""
    from rich.console import Console

    from agentplex.cli.main import _die
    from agentplex.exceptions import AgentplexError
    from agentplex.store import batch_items, shown_status

    run_store = _store(store)
    batch = False
    try:
        record = run_store.get_run(run_id)
        batch = record.settings.get("kind") == "batch"
        items = batch_items(run_store, record) if batch else []
        nodes = {} if batch else run_store.get_nodes(run_id)
    except AgentplexError as exc:
        _die(str(exc))
    status = shown_status(record)
    if json_out:
        data: dict[str, Any] = {
            "run_id": record.run_id,
            "kind": "batch" if batch else "run",
            "workflow": record.workflow,
            "status": status,
            "source": record.source,
            "settings": dict(record.settings),
            "summary": dict(record.summary),
        }
        if batch:
            data["items"] = items
        else:
            data["inputs"] = dict(record.inputs)
            data["nodes"] = {k: dict(n.record) for k, n in nodes.items()}
        sys.stdout.write(json.dumps(data, indent=2, default=repr) + "\n")
        return
    console = Console(highlight=False)
    unit = "items" if batch else "nodes"
    console.print(
        f"{'batch' if batch else 'run'} {record.run_id}: {record.workflow}, {status}, "
        f"{record.done_nodes}/{record.total_nodes} {unit} succeeded"
        + (f", from {record.source}" if record.source else "")
    )
    if batch:
        console.print(_items_table(items))
    else:
        console.print(_nodes_table(nodes))
        missing = record.total_nodes - len(nodes)
        if missing > 0:
            console.print(f"{missing} node(s) never started")
    if record.status != "succeeded":
        console.print(f"finish it with: agentplex resume {record.run_id}")


def _items_table(rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table()
    for column in ("item", "status", "nodes", "wall", "cost", "run id / error"):
        table.add_column(column, overflow="fold")
    for row in rows:
        total = row.get("total_nodes")
        nodes = "" if total is None else f"{row.get('done_nodes', 0)}/{total}"
        wall = "" if row.get("wall_s") is None else f"{row['wall_s']:.2f}s"
        cost = "" if row.get("cost_usd") is None else f"${row['cost_usd']:.4f}"
        table.add_row(
            str(row["key"]),
            str(row["status"]),
            nodes,
            wall,
            cost,
            str(row.get("error") or row.get("run_id") or ""),
        )
    return table


def _nodes_table(nodes: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table()
    for column in ("node", "status", "attempts", "duration", "tokens", "error"):
        table.add_column(column, overflow="fold")
    for node_id, node in nodes.items():
        data = node.record
        usage = data.get("usage") or {}
        table.add_row(
            node_id,
            node.status + (" (reused)" if data.get("reused") else ""),
            str(data.get("attempts", "")),
            f"{data.get('duration_s') or 0:.2f}s",
            f"{usage.get('input_tokens', 0)}/{usage.get('output_tokens', 0)}" if usage else "",
            str(data.get("error") or ""),
        )
    return table


def resume(
    run_id: RunIdArg,
    store: StoreOpt = None,
    max_concurrency: Annotated[
        Optional[int],  # noqa: UP045 - typer needs Optional here
        typer.Option("--max-concurrency", "-c", min=1, help="Override."),
    ] = None,
    json_out: JsonOutOpt = False,
    out: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--out", help="Write run.json and every node's output here."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the summary.")] = False,
    base_url: BaseUrlOpt = None,
    api_key: ApiKeyOpt = None,
    dask: DaskOpt = None,
    trust: TrustOpt = False,
) -> None:
    """Finish a stored run: keep what succeeded, run only the rest.

    A stored run never chooses where requests go, nor raises its file's trust:
    pass --base-url or --dask again if the run used them, and --trust for a plan file.
    """
    import asyncio

    from rich.console import Console

    from agentplex.batch.resume import aresume
    from agentplex.cli.main import EXIT_FAILED, EXIT_INTERRUPTED, _die
    from agentplex.exceptions import AgentplexError
    from agentplex.report.terminal import render_summary

    run_store = _store(store)
    given: dict[str, Any] = {
        "max_concurrency": max_concurrency,
        "base_url": base_url,
        "api_key": api_key,
        "dask": dask,
    }
    overrides: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    try:
        result = asyncio.run(aresume(run_id, store=run_store, trust=trust, **overrides))
    except KeyboardInterrupt:
        _die("interrupted; what finished is recorded, resume again to go on", EXIT_INTERRUPTED)
    except AgentplexError as exc:
        _die(str(exc))
    except BaseExceptionGroup as group:  # an error raised inside the run's task group
        error = _first_error(group)
        if error is None:
            raise
        _die(str(error))
    finally:
        run_store.close()
    from agentplex.batch.result import BatchResult

    if isinstance(result, BatchResult):
        from agentplex.cli.batch import render_batch_summary

        if out is not None:
            result.write(out)
        if json_out:
            sys.stdout.write(result.to_json() + "\n")
        else:
            Console(highlight=False).print(render_batch_summary(result))
        if not result.ok:
            raise typer.Exit(EXIT_FAILED)
        return
    reused = sum(1 for n in result.nodes.values() if n.reused)
    if out is not None:
        result.write(out)
    if json_out:
        sys.stdout.write(result.to_json() + "\n")
    else:
        console = Console(highlight=False)
        console.print(render_summary(result, nodes=not quiet))
        console.print(f"resumed {run_id}: {reused} node(s) kept, {len(result.nodes) - reused} run")
    if not result.ok:
        raise typer.Exit(EXIT_FAILED)


def cache(
    action: Annotated[str, typer.Argument(help="info (default), prune or clear.")] = "info",
    max_mb: Annotated[
        float | None, typer.Option("--max-mb", help="prune: keep at most this many MB.")
    ] = None,
    max_age_days: Annotated[
        float | None, typer.Option("--max-age-days", help="prune: drop entries older than this.")
    ] = None,
    json_out: JsonOutOpt = False,
) -> None:
    """Show, prune or clear the result cache (answers reused across runs)."""
    from agentplex.cli.main import _die
    from agentplex.exceptions import AgentplexError
    from agentplex.store.cache import ResultCache

    if action not in ("info", "prune", "clear"):
        _die(
            f"unknown cache action {action!r}. "
            "Fix: use 'agentplex cache info', 'cache prune' or 'cache clear'."
        )
    try:
        results = ResultCache()
        if action == "prune":
            dropped = results.prune(max_mb=max_mb, max_age_days=max_age_days)
        elif action == "clear":
            dropped = results.clear()
        data = results.info()
        results.close()
    except AgentplexError as exc:
        _die(str(exc))
    if action != "info":
        data["dropped"] = dropped
    if json_out:
        sys.stdout.write(json.dumps(data) + "\n")
        return
    if action != "info":
        print(f"dropped {dropped} cached result(s) from {data['path']}")
    state = "" if data["enabled"] else " (off: AGENTPLEX_CACHE=off)"
    print(
        f"{data['entries']} cached result(s), {data['bytes'] / 1e6:.1f} MB in {data['path']}{state}; "
        f"limits {data['max_mb']:g} MB, {data['max_age_days']:g} days"
    )
