"""``agentplex plan`` and ``agentplex ask``: from a question to a parallel plan (and its answer)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from agentplex.cli.flags import EngineFlags, OutDir, OutputFlags, StoreFlags, takes

if TYPE_CHECKING:
    from rich.console import RenderableType

    from agentplex.planning.ask import AskResult

QuestionArg = Annotated[str, typer.Argument(help="The question for the coordinator to plan.")]
NOT_PLANNED = ("strategy", "error_policy", "executor", "dask")
"""Engine flags a planned run does not take: it grows while it runs, and runs no Python steps."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class PlanFlags:
    """How the coordinator plans (``plan`` and ``ask``)."""

    max_agents: Annotated[
        int, typer.Option("--max-agents", min=1, help="Agents the plan may have, at every level.")
    ] = 20
    plan_attempts: Annotated[
        int,
        typer.Option("--plan-attempts", min=1, help="Tries to get a usable plan (1 + repairs)."),
    ] = 3
    fallback: Annotated[
        bool,
        typer.Option(
            "--fallback", help="If the plan stays unusable, run its valid agents in declared order."
        ),
    ] = False


@takes(PlanFlags, "planning")
@takes(
    EngineFlags,
    "engine",
    without=(*NOT_PLANNED, "max_concurrency"),
    defaults={"max_concurrency": 4},
)
@takes(OutputFlags, "output", only=("json_out", "verbose"))
def plan(
    question: QuestionArg,
    planning: PlanFlags,
    engine: EngineFlags,
    output: OutputFlags,
    save: Annotated[
        Optional[Path],  # noqa: UP045 - typer needs Optional here
        typer.Option("--save", help="Write the plan as JSON (run it with 'agentplex run')."),
    ] = None,
    out: OutDir = None,
) -> None:
    """Ask the coordinator for a plan and show it, with its layers; nothing runs.

    With --out, plan.json and the planning record (plan_record.json) are written there.
    """
    from agentplex.cli import script
    from agentplex.cli.verbose import Verbose
    from agentplex.planning.ask import aplan

    for path, flag in ((out, "--out"), (save.parent if save else None, "--save")):
        if path is not None:
            script.check_out_folder(path, flag=flag)
    with script.errors(output.json_out):
        options = engine.run_options()
    verbose = Verbose(script.console(stderr=True), on=output.verbose)
    outcome = script.work(
        lambda watching: aplan(
            question,
            observers=watching,
            **dataclasses.asdict(planning),
            **{**options, **verbose.run_options()},
        ),
        observers=[verbose],
        json_out=output.json_out,
        what="planning",
    )
    result: AskResult = outcome.result
    if outcome.interrupted:  # a plan is only worth its whole answer
        script.fail("interrupted while planning; nothing was written", script.EXIT_INTERRUPTED)
    if result.plan is None:
        if not output.json_out:
            error = result.run.nodes["coordinator"].error or "no plan"
            script.console(stderr=True).print(f"error: {error}", markup=False)
        script.finish(outcome, json_out=output.json_out, show=lambda: None, ok=False)
    saved = plan_file(result.plan)
    text = json.dumps(saved, indent=2, ensure_ascii=False) + "\n"
    writes = [(save, text)] if save is not None else []
    if out is not None:
        writes += [(out / "plan.json", text), (out / "plan_record.json", result.to_json() + "\n")]
    write_all(writes)
    hint = [f"wrote {save}; run it with: agentplex run {save}"] if save is not None else []
    script.finish(
        outcome,
        json_out=output.json_out,
        show=lambda: script.emit(script.console(), render_plan(question, saved, result)),
        where=hint,
    )


def write_all(writes: list[tuple[Path, str]]) -> None:
    """Write each ``(path, text)``, creating folders; a failed write is one line, exit 2."""
    from agentplex.cli import script

    for path, text in writes:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            script.fail(
                f"cannot write {path}: {exc.strerror or exc}. Fix: check the path and free space."
            )


def plan_file(accepted: Any) -> dict[str, Any]:
    """Return the accepted plan in the meta-agent format, as ``agentplex run`` reads it."""
    return {
        "description": accepted.get("description", ""),
        "agents": [{k: v for k, v in agent.items() if k != "node"} for agent in accepted["agents"]],
    }


def render_plan(question: str, saved: dict[str, Any], result: AskResult) -> RenderableType:
    """Return the plan as a table, its layers, its warnings and the repairs it took."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from agentplex.files.plan import workflow_from_plan
    from agentplex.report.terminal import render_layers

    assert result.plan is not None
    table = Table(title=Text(f"plan for: {question}"), title_justify="left")
    for column in ("#", "node", "role", "task", "depends on"):
        table.add_column(column, overflow="fold")
    for index, agent in enumerate(result.plan["agents"]):
        table.add_row(
            str(index),
            Text(agent["node"]),
            Text(agent["role"] + (" (delegates)" if agent.get("delegate") else "")),
            Text(agent["task"]),
            Text(", ".join(str(d) for d in agent["depends_on"])),
        )
    compiled = workflow_from_plan(saved, name="plan", trusted=False).compile()
    parts: list[RenderableType] = [table, render_layers(compiled)]
    parts += [Text(f"warning: {w}", style="yellow") for w in result.warnings]
    attempts = result.planning["attempts_made"]
    if attempts > 1:
        parts.append(Text(f"the plan took {attempts} attempts; the coordinator repaired:"))
        parts += [Text(f"  - {e}") for a in result.attempts[:-1] for e in a["errors"]]
    return Group(*parts)


@takes(PlanFlags, "planning")
@takes(EngineFlags, "engine", without=NOT_PLANNED)
@takes(OutputFlags, "output")
@takes(StoreFlags, "stored")
def ask(
    question: QuestionArg,
    planning: PlanFlags,
    engine: EngineFlags,
    output: OutputFlags,
    stored: StoreFlags,
    max_depth: Annotated[
        int, typer.Option("--max-depth", min=0, help="How deep agents may delegate (0: never).")
    ] = 1,
    token_budget: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(
            "--token-budget",
            min=1,
            help="Tokens (in and out) the whole run may use, plan attempts included; "
            "no node starts once they are used.",
        ),
    ] = None,
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
    out: OutDir = None,
) -> None:
    """Plan a question with the coordinator and run the plan as it arrives; print the answer.

    With --out, ask.json, run.json and every node's output are written there.
    """
    from agentplex.cli import script
    from agentplex.cli.verbose import Verbose
    from agentplex.planning.ask import AskResult, aask
    from agentplex.report.terminal import LiveView

    if out is not None:
        script.check_out_folder(out)
    with script.errors(output.json_out):
        options = engine.run_options()
    shown = script.console()
    verbose = Verbose(script.console(stderr=True), on=output.verbose)
    live = not output.json_out and not output.quiet and shown.is_terminal
    bounds: dict[str, Any] = {
        "max_depth": max_depth,
        "token_budget": token_budget,
        "review": review,
    }
    outcome = script.work(
        lambda watching: aask(
            question,
            stream=stream_plan,
            observers=watching,
            store=stored.target(),
            **dataclasses.asdict(planning),
            **bounds,
            **{**options, **verbose.run_options()},
        ),
        observers=[verbose, *([LiveView(shown)] if live else [])],
        json_out=output.json_out,
    )
    result = outcome.result
    if not isinstance(result, AskResult):  # Ctrl-C: the run so far, without an answer
        result = AskResult(question=question, answer="", plan=None, run=result)
    places = keep_ask(result, out, stored=not stored.no_store)
    script.finish(
        dataclasses.replace(outcome, result=result),
        json_out=output.json_out,
        show=lambda: script.emit(shown, render_answer(result, verbose, quiet=output.quiet)),
        where=places,
    )


def keep_ask(result: AskResult, out: Path | None, *, stored: bool) -> list[str]:
    """Write ``--out``; return the lines that say where the planned run is kept."""
    from agentplex.cli import script
    from agentplex.exceptions import AgentplexError

    lines: list[str] = []
    if out is not None:
        try:
            result.run.write(out)
        except (AgentplexError, OSError) as exc:
            script.fail(str(exc))
        write_all([(out / "ask.json", result.to_json() + "\n")])
        lines.append(f"wrote {out / 'ask.json'} and {out / 'run.json'}")
    lines += script.recorded("run", result.run.run_id, ok=result.ok, stored=stored, resumable=False)
    return lines


def render_answer(result: AskResult, verbose: Any, *, quiet: bool) -> RenderableType:
    """Return the answer, the warnings, the planning figures and the run's summary."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.text import Text

    parts: list[RenderableType] = []
    if result.answer and not quiet:  # model text: shown as text, never as markup
        parts.append(Panel(Text(result.answer), title="answer", title_align="left"))
    parts += [Text(f"warning: {w}", style="yellow") for w in result.warnings]
    figures = result.planning
    if figures:
        first = figures.get("first_node_s")
        used = figures.get("plan_usage") or {}
        tokens = used.get("input_tokens", 0) + used.get("output_tokens", 0)
        parts.append(
            Text(
                f"planned {figures['agents_planned']} agent(s) in {figures['attempts_made']} "
                f"attempt(s) ({tokens:,} tokens); coordinator {figures['coordinator_s']:.2f}s"
                + (f", first agent started at {first:.2f}s" if first is not None else "")
            )
        )
    parts.append(verbose.summary(result.run, nodes=not quiet))
    return Group(*parts)
