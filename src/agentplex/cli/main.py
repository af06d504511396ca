"""The ``agentplex`` command line: a thin layer over the public API.

Exit codes: 0 the run succeeded (or the file is valid); 1 the run failed;
2 bad input (an invalid workflow, option or file); 130 interrupted (Ctrl-C).
Heavy modules are imported inside the commands so ``agentplex --help`` stays fast.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, Optional

import typer

from agentplex.cli.options import (
    ApiKeyOpt,
    BaseUrlOpt,
    DaskOpt,
    ErrorPolicyChoice,
    ErrorPolicyOpt,
    ExecutorOpt,
    ExportOpt,
    ImportOpt,
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
    from rich.console import Console

    from agentplex.model.workflow import CompiledWorkflow
    from agentplex.result import RunResult

app = typer.Typer(
    name="agentplex",
    help="Run multi-agent LLM workflows with real parallelism.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130


class OnCycleChoice(StrEnum):
    error = "error"
    declared_order = "declared-order"


class GraphFormat(StrEnum):
    text = "text"
    mermaid = "mermaid"
    dot = "dot"


WorkflowArg = Annotated[
    Path, typer.Argument(help="Workflow file: YAML or JSON, named nodes or a meta-agent plan.")
]
LenientOpt = Annotated[
    bool,
    typer.Option(
        "--lenient", help="Drop invalid dependencies with a warning (for LLM-written plans)."
    ),
]
OnCycleOpt = Annotated[
    OnCycleChoice,
    typer.Option(
        "--on-cycle", help="On a dependency cycle: fail, or drop dependencies on later nodes."
    ),
]


def _stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _die(message: str, code: int = EXIT_INVALID) -> NoReturn:
    from rich.markup import escape

    from agentplex.llm.config import redact

    _stderr().print(
        f"[bold red]error:[/] {escape(redact(message))}",
        markup=True,
        highlight=False,
        soft_wrap=True,
    )
    raise typer.Exit(code)


def _load(
    path: Path,
    *,
    lenient: bool,
    on_cycle: OnCycleChoice,
    untrusted: bool = False,
    trust: bool = False,
    imports: bool = True,
) -> CompiledWorkflow:
    """Load and compile a workflow file, turning every problem into a clean exit 2.

    Trust: ``--untrusted`` distrusts any file, ``--trust`` trusts a plan file;
    neither trusts a named-node file and distrusts a plan file.
    """
    from agentplex.exceptions import AgentplexError, InvalidWorkflowError
    from agentplex.files.loader import load_workflow

    if untrusted and trust:
        _die("--trust and --untrusted contradict each other. Fix: pass one of them.")
    trusted = False if untrusted else (True if trust else None)
    try:
        wf = load_workflow(path, trusted=trusted, lenient=lenient)
        mode = on_cycle.value.replace("-", "_")
        return wf.compile(lenient=lenient, on_cycle=mode, imports=imports)  # type: ignore[arg-type]
    except InvalidWorkflowError as exc:
        console = _stderr()
        console.print(
            f"[bold red]error:[/] {exc.errors[0].path or path} is not a valid workflow:",
            markup=True,
        )
        for error in exc.errors:
            console.print(f"  - {error}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INVALID) from None
    except AgentplexError as exc:
        _die(str(exc))
    except KeyboardInterrupt:
        _die(f"interrupted while reading {path}; nothing ran", EXIT_INTERRUPTED)


def _parse_inputs(pairs: list[str]) -> dict[str, str]:
    inputs: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            _die(
                f"--input {pair!r} is not of the form name=value. Fix: e.g. --input query='a bakery'"
            )
        inputs[key.strip()] = value
    return inputs


@app.command()
def run(
    workflow: WorkflowArg,
    input: Annotated[
        Optional[list[str]],  # noqa: UP045 - typer needs Optional here
        typer.Option("--input", "-i", help="A workflow input, name=value (repeatable)."),
    ] = None,
    max_concurrency: MaxConcurrencyOpt = 16,
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
    stream: Annotated[
        Optional[bool],  # noqa: UP045
        typer.Option(
            "--stream/--no-stream",
            help="Show agents' text as it arrives (default: on in a terminal).",
        ),
    ] = None,
    prices: PricesOpt = None,
    json_out: JsonOutOpt = False,
    out: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--out", help="Write run.json and every node's output into this folder."),
    ] = None,
    quiet: QuietOpt = False,
    lenient: LenientOpt = False,
    on_cycle: OnCycleOpt = OnCycleChoice.error,
    untrusted: UntrustedOpt = False,
    trust: TrustOpt = False,
    export: ExportOpt = None,
    store: StoreOpt = None,
    no_store: NoStoreOpt = False,
    no_cache: NoCacheOpt = False,
    executor: ExecutorOpt = None,
    dask: DaskOpt = None,
) -> None:
    """Run a workflow and print what ran in parallel, the outputs and the speedup."""
    import asyncio

    from rich.console import Console

    from agentplex.cli.batch import _export_formats
    from agentplex.engine.runner import arun
    from agentplex.exceptions import AgentplexError
    from agentplex.report.terminal import LiveView, render_layers, render_summary

    formats, out = _export_formats(export, out, _die)
    compiled = _load(workflow, lenient=lenient, on_cycle=on_cycle, untrusted=untrusted, trust=trust)
    console = Console(highlight=False)
    show = not json_out
    observers: list[Any] = []
    finished: list[RunResult] = []

    def capture(event: Any) -> None:
        from agentplex.events import RunFinished

        if isinstance(event, RunFinished):
            finished.append(event.result)

    observers.append(capture)
    live = show and not quiet and console.is_terminal
    if show and not quiet:
        console.print(render_layers(compiled))
        if live:
            observers.append(LiveView(console))
    interrupted = False
    try:
        options = options_from(locals())
        options["stream"] = live if stream is None else stream
        result = asyncio.run(
            arun(
                compiled,
                inputs=_parse_inputs(input or []),
                observers=observers,
                store=False if no_store else (store or True),
                **options,
            )
        )
    except KeyboardInterrupt:
        interrupted = True
        if not finished:
            _die("interrupted before the run started", EXIT_INTERRUPTED)
        result = finished[0]
    except AgentplexError as exc:
        _die(str(exc))
    if out is not None:
        try:
            record = result.write(out)
        except (AgentplexError, OSError) as exc:
            _die(f"{exc}; the run itself is in the store" if not no_store else str(exc))
        if show:
            console.print(f"wrote {record} and {len(result.outputs)} outputs in {out / 'outputs'}")
        if formats:
            from agentplex.report.exports import export_run

            try:
                paths = export_run(result, out, formats)
            except AgentplexError as exc:
                _die(str(exc))
            if show:
                console.print(f"exported {', '.join(str(p) for p in paths)}")
    if json_out:
        sys.stdout.write(result.to_json() + "\n")
    else:
        if not quiet:
            _print_final_outputs(console, compiled, result)
        console.print(render_summary(result, nodes=not quiet))
        if not no_store:
            hint = "" if result.ok else f"; finish it with: agentplex resume {result.run_id}"
            console.print(f"run {result.run_id} is recorded{hint}")
        if interrupted:
            console.print("[yellow]interrupted: finished nodes are kept above[/]")
    if interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    if not result.ok:
        raise typer.Exit(EXIT_FAILED)


def _print_final_outputs(console: Console, compiled: CompiledWorkflow, result: RunResult) -> None:
    """Print the outputs of the sinks (nodes nothing depends on)."""
    from rich.panel import Panel
    from rich.text import Text

    from agentplex.model.graph import successors

    succ = successors(compiled.deps)
    for node_id, children in succ.items():
        node = result.nodes[node_id]
        if children or node.status != "succeeded":
            continue
        text = node.output if isinstance(node.output, str) else repr(node.output)
        # An output is the model's text: shown as text, never read as rich markup.
        console.print(
            Panel(Text(text), title=Text(f"output of {node_id}"), title_align="left", expand=False)
        )


@app.command()
def graph(
    workflow: WorkflowArg,
    format: Annotated[
        GraphFormat, typer.Option("--format", "-f", help="text (layers), mermaid or dot.")
    ] = GraphFormat.text,
    lenient: LenientOpt = False,
    on_cycle: OnCycleOpt = OnCycleChoice.error,
    trust: TrustOpt = False,
    imports: ImportOpt = False,
) -> None:
    """Show a workflow's DAG: its layers as text, or Mermaid / Graphviz source.

    The modules that function: steps name are not imported (so no code in them
    runs) unless --import is given.
    """
    from rich.console import Console

    from agentplex.report.terminal import dot, mermaid, render_layers

    compiled = _load(workflow, lenient=lenient, on_cycle=on_cycle, trust=trust, imports=imports)
    if format is GraphFormat.mermaid:
        sys.stdout.write(mermaid(compiled) + "\n")
    elif format is GraphFormat.dot:
        sys.stdout.write(dot(compiled) + "\n")
    else:
        Console(highlight=False).print(render_layers(compiled), end="")


@app.command()
def validate(
    workflow: WorkflowArg,
    lenient: LenientOpt = False,
    on_cycle: OnCycleOpt = OnCycleChoice.error,
    untrusted: UntrustedOpt = False,
    trust: TrustOpt = False,
    imports: ImportOpt = False,
) -> None:
    """Check a workflow file; list every problem with its line, node and fix.

    The modules that function: steps name are checked for their form but not
    imported (so no code in them runs) unless --import is given.
    """
    compiled = _load(
        workflow,
        lenient=lenient,
        on_cycle=on_cycle,
        untrusted=untrusted,
        trust=trust,
        imports=imports,
    )
    console = _stderr()
    for warning in compiled.warnings:
        console.print(f"[yellow]warning:[/] {warning}", markup=True, highlight=False)
    layers = compiled.layers()
    functions = sum(1 for n in compiled.nodes.values() if _runs_code(n))
    note = ""
    if functions and not imports:
        note = f" ({functions} function step(s) not imported; add --import to check them)"
    typer.echo(
        f"{workflow}: valid - {len(compiled)} nodes in {len(layers)} layers, "
        f"up to {max(len(layer) for layer in layers)} in parallel{note}"
    )


def _runs_code(node: Any) -> bool:
    from agentplex.model.workflow import FunctionNode, MapNode

    body = node.body if isinstance(node, MapNode) else node
    return isinstance(body, FunctionNode) and body.target is not None


@app.command()
def roles(
    workflow: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--workflow", "-w", help="Also list the roles this workflow file defines."),
    ] = None,
) -> None:
    """List the agent roles available to workflows."""
    from rich.console import Console
    from rich.table import Table

    from agentplex.model.roles import BUILTIN_ROLES, RoleLibrary

    library = RoleLibrary()
    if workflow is not None:
        library = _load(workflow, lenient=False, on_cycle=OnCycleChoice.error, imports=False).roles
    table = Table("role", "description", "origin")
    for name in sorted(library):
        role = library[name]
        origin = "built-in" if BUILTIN_ROLES.get(name) == role else "workflow"
        table.add_row(name, role.description, origin)
    Console(highlight=False).print(table)


from agentplex.cli.server import sim_server  # noqa: E402 - registers the sim-server command

app.command("sim-server")(sim_server)

from agentplex.cli.batch import batch, bench, report  # noqa: E402 - registers these

app.command("batch")(batch)
app.command("bench")(bench)
app.command("report")(report)

from agentplex.cli.store import cache, resume, runs, show  # noqa: E402 - the store commands

app.command("runs")(runs)
app.command("show")(show)
app.command("resume")(resume)
app.command("cache")(cache)

from agentplex.cli.plan import ask, plan  # noqa: E402 - the planning commands

app.command("plan")(plan)
app.command("ask")(ask)


def main() -> None:
    """Entry point of the ``agentplex`` console script."""
    try:
        app()
    except KeyboardInterrupt:  # before a command could take over (while starting up)
        sys.stderr.write("interrupted before anything ran\n")
        sys.exit(EXIT_INTERRUPTED)
