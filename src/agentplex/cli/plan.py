"""``agentplex plan`` and ``agentplex ask``: from a question to a parallel plan (and its answer)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from agentplex.cli.options import (
    ApiKeyOpt,
    BaseUrlOpt,
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
    TimeoutOpt,
    TotalTimeoutOpt,
    TpmOpt,
    options_from,
)

QuestionArg = Annotated[str, typer.Argument(help="The question for the coordinator to plan.")]
MaxAgentsOpt = Annotated[
    int, typer.Option("--max-agents", min=1, help="Agents the plan may have, at every level.")
]
AttemptsOpt = Annotated[
    int,
    typer.Option("--plan-attempts", min=1, help="Tries to get a usable plan (1 + repairs)."),
]
FallbackOpt = Annotated[
    bool,
    typer.Option(
        "--fallback", help="If the plan stays unusable, run its valid agents in declared order."
    ),
]


def plan(
    question: QuestionArg,
    save: Annotated[
        Optional[Path],  # noqa: UP045 - typer needs Optional here
        typer.Option("--save", help="Write the plan as JSON (run it with 'agentplex run')."),
    ] = None,
    model: ModelOpt = "sim:default",
    max_agents: MaxAgentsOpt = 20,
    plan_attempts: AttemptsOpt = 3,
    fallback: FallbackOpt = False,
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
    out: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--out", help="Write plan.json and the planning record (plan_record.json)."),
    ] = None,
    no_cache: NoCacheOpt = False,
) -> None:
    """Ask the coordinator for a plan and show it, with its layers; nothing runs."""
    import asyncio

    from rich.console import Console
    from rich.markup import escape

    from agentplex.cli.batch import check_out_folder
    from agentplex.cli.main import EXIT_FAILED, _die
    from agentplex.exceptions import AgentplexError
    from agentplex.planning.ask import aplan

    for path, flag in ((out, "--out"), (save.parent if save else None, "--save")):
        if path is not None:
            check_out_folder(path, _die, flag=flag)
    try:
        options = options_from(locals(), max_concurrency=4)
        result = asyncio.run(
            aplan(
                question,
                max_agents=max_agents,
                plan_attempts=plan_attempts,
                fallback=fallback,
                **options,
            )
        )
    except AgentplexError as exc:
        _die(str(exc))
    if result.plan is None:
        error = result.run.nodes["coordinator"].error or "no plan"
        if json_out:
            sys.stdout.write(result.to_json() + "\n")
        else:
            Console(highlight=False, stderr=True).print(f"[red]error:[/] {escape(error)}")
        raise typer.Exit(EXIT_FAILED)
    saved = _plan_file(result.plan)
    text = json.dumps(saved, indent=2, ensure_ascii=False) + "\n"
    writes = [(save, text)] if save is not None else []
    if out is not None:
        writes += [(out / "plan.json", text), (out / "plan_record.json", result.to_json() + "\n")]
    _write_all(writes, _die)
    if json_out:
        sys.stdout.write(result.to_json() + "\n")
        return
    console = Console(highlight=False)
    _show_plan(console, question, saved, result)
    if save is not None:
        console.print(f"wrote {save}; run it with: agentplex run {save}")


def _write_all(writes: list[tuple[Path, str]], die: Any) -> None:
    """Write each ``(path, text)``, creating folders; a failed write is one line (``die``)."""
    for path, text in writes:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            die(f"cannot write {path}: {exc.strerror or exc}. Fix: check the path and free space.")


def _plan_file(accepted: Any) -> dict[str, Any]:
    """The accepted plan in the meta-agent format, as ``agentplex run`` reads it."""
    return {
        "description": accepted.get("description", ""),
        "agents": [{k: v for k, v in agent.items() if k != "node"} for agent in accepted["agents"]],
    }


def _show_plan(console: Any, question: str, saved: dict[str, Any], result: Any) -> None:
    from rich.table import Table

    from agentplex.files.plan import workflow_from_plan
    from agentplex.report.terminal import render_layers

    table = Table(title=f"plan for: {question}", title_justify="left")
    for column in ("#", "node", "role", "task", "depends on"):
        table.add_column(column, overflow="fold")
    for index, agent in enumerate(result.plan["agents"]):
        table.add_row(
            str(index),
            agent["node"],
            agent["role"] + (" (delegates)" if agent.get("delegate") else ""),
            agent["task"],
            ", ".join(str(d) for d in agent["depends_on"]),
        )
    console.print(table)
    compiled = workflow_from_plan(saved, name="plan", trusted=False).compile()
    console.print(render_layers(compiled))
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    attempts = result.planning["attempts_made"]
    if attempts > 1:
        console.print(f"the plan took {attempts} attempts; the coordinator repaired:")
        for attempt in result.attempts[:-1]:
            for error in attempt["errors"]:
                console.print(f"  - {error}")


def ask(
    question: QuestionArg,
    model: ModelOpt = "sim:default",
    max_agents: MaxAgentsOpt = 20,
    max_depth: Annotated[
        int, typer.Option("--max-depth", min=0, help="How deep agents may delegate (0: never).")
    ] = 1,
    max_tokens: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--max-tokens", min=1, help="Tokens the whole run may use."),
    ] = None,
    plan_attempts: AttemptsOpt = 3,
    fallback: FallbackOpt = False,
    review: Annotated[
        int,
        typer.Option(
            "--review", min=0, help="Let the coordinator send up to N results back for revision."
        ),
    ] = 0,
    stream_plan: Annotated[
        bool,
        typer.Option(
            "--stream-plan/--no-stream-plan",
            help="Start planned agents while the plan is still being written.",
        ),
    ] = True,
    max_concurrency: MaxConcurrencyOpt = 16,
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
    out: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--out", help="Write ask.json, run.json and every node's output here."),
    ] = None,
    quiet: QuietOpt = False,
    store: StoreOpt = None,
    no_store: NoStoreOpt = False,
    no_cache: NoCacheOpt = False,
) -> None:
    """Plan a question with the coordinator and run the plan as it arrives; print the answer."""
    import asyncio

    from rich.console import Console
    from rich.markup import escape
    from rich.panel import Panel
    from rich.text import Text

    from agentplex.cli.batch import check_out_folder
    from agentplex.cli.main import EXIT_FAILED, EXIT_INTERRUPTED, _die
    from agentplex.exceptions import AgentplexError
    from agentplex.planning.ask import aask
    from agentplex.report.terminal import LiveView, render_summary

    if out is not None:
        check_out_folder(out, _die)
    console = Console(highlight=False)
    live = not json_out and not quiet and console.is_terminal
    observers: list[Any] = [LiveView(console)] if live else []
    try:
        options = options_from(locals())
        result = asyncio.run(
            aask(
                question,
                max_agents=max_agents,
                max_depth=max_depth,
                max_tokens=max_tokens,
                plan_attempts=plan_attempts,
                fallback=fallback,
                review=review,
                stream=stream_plan,
                observers=observers,
                store=False if no_store else (store or True),
                **options,
            )
        )
    except KeyboardInterrupt:
        _die(
            "interrupted; finished nodes are in the run store ('agentplex runs')", EXIT_INTERRUPTED
        )
    except AgentplexError as exc:
        _die(str(exc))
    if out is not None:
        try:
            result.run.write(out)
        except (AgentplexError, OSError) as exc:
            _die(str(exc))
        _write_all([(out / "ask.json", result.to_json() + "\n")], _die)
    if json_out:
        sys.stdout.write(result.to_json() + "\n")
    else:
        if result.answer and not quiet:  # model text: shown as text, never as markup
            console.print(Panel(Text(result.answer), title="answer", title_align="left"))
        for warning in result.warnings:
            console.print(f"[yellow]warning:[/] {escape(warning)}")
        figures = result.planning
        first = figures.get("first_node_s")
        console.print(
            f"planned {figures['agents_planned']} agent(s) in {figures['attempts_made']} "
            f"attempt(s); coordinator {figures['coordinator_s']:.2f}s"
            + (f", first agent started at {first:.2f}s" if first is not None else "")
        )
        console.print(render_summary(result.run, nodes=not quiet))
        if out is not None:
            console.print(f"wrote {out / 'ask.json'} and {out / 'run.json'}")
    if not result.ok:
        raise typer.Exit(EXIT_FAILED)
