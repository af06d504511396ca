"""``agentplex validate``, ``graph`` and ``roles``: read a workflow file, run nothing."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from agentplex.cli.flags import LoadFlags, OutputFlags, WorkflowArg, takes

if TYPE_CHECKING:
    from agentplex.model.workflow import CompiledWorkflow


class GraphFormat(StrEnum):
    text = "text"
    mermaid = "mermaid"
    dot = "dot"


@takes(LoadFlags, "loading", defaults={"imports": False})
@takes(OutputFlags, "output", only=("json_out",))
def validate(workflow: WorkflowArg, loading: LoadFlags, output: OutputFlags) -> None:
    """Check a workflow file; list every problem with its line, node and fix.

    The modules that function: steps name are checked for their form but not
    imported (so no code in them runs) unless --import is given.
    """
    from agentplex.cli import script

    compiled = script.load(workflow, loading, json_out=output.json_out)
    layers = compiled.layers()
    functions = sum(1 for n in compiled.nodes.values() if _runs_code(n))
    unchecked = functions if not loading.imports else 0
    if output.json_out:
        script.write_json(
            {
                "path": str(workflow),
                "valid": True,
                "nodes": len(compiled),
                "layers": len(layers),
                "max_parallel": max(len(layer) for layer in layers),
                "warnings": list(compiled.warnings),
                "functions_not_imported": unchecked,
            }
        )
        return
    log = script.console(stderr=True)
    for warning in compiled.warnings:
        log.print(f"warning: {warning}", style="yellow", markup=False)
    note = f" ({unchecked} function step(s) not imported; add --import to check them)"
    typer.echo(
        f"{workflow}: valid - {len(compiled)} nodes in {len(layers)} layers, "
        f"up to {max(len(layer) for layer in layers)} in parallel{note if unchecked else ''}"
    )


def _runs_code(node: Any) -> bool:
    from agentplex.model.workflow import FunctionNode, MapNode

    body = node.body if isinstance(node, MapNode) else node
    return isinstance(body, FunctionNode) and body.target is not None


@takes(LoadFlags, "loading", without=("untrusted",), defaults={"imports": False})
@takes(OutputFlags, "output", only=("json_out",))
def graph(
    workflow: WorkflowArg,
    loading: LoadFlags,
    output: OutputFlags,
    format: Annotated[
        GraphFormat, typer.Option("--format", "-f", help="text (layers), mermaid or dot.")
    ] = GraphFormat.text,
) -> None:
    """Show a workflow's DAG: its layers as text, or Mermaid / Graphviz source.

    The modules that function: steps name are not imported (so no code in them
    runs) unless --import is given. --json prints the nodes, edges and layers.
    """
    from agentplex.cli import script
    from agentplex.report.terminal import dot, mermaid, render_layers

    if output.json_out and format is not GraphFormat.text:
        script.fail(f"--json and --format {format.value} contradict each other. Fix: pass one.")
    compiled = script.load(workflow, loading, json_out=output.json_out)
    if output.json_out:
        script.write_json(graph_record(compiled))
    elif format is GraphFormat.mermaid:
        typer.echo(mermaid(compiled))
    elif format is GraphFormat.dot:
        typer.echo(dot(compiled))
    else:
        script.emit(script.console(), render_layers(compiled), end="")


def graph_record(compiled: CompiledWorkflow) -> dict[str, Any]:
    """Return a workflow's DAG as data: nodes with their label and dependencies, and layers."""
    from agentplex.report.terminal import node_label

    return {
        "name": compiled.name,
        "nodes": {
            node_id: {
                "label": node_label(compiled, node),
                "depends_on": list(compiled.deps[node_id]),
            }
            for node_id, node in compiled.nodes.items()
        },
        "layers": [list(layer) for layer in compiled.layers()],
        "warnings": list(compiled.warnings),
    }


@takes(OutputFlags, "output", only=("json_out",))
def roles(
    output: OutputFlags,
    workflow: Annotated[
        Optional[Path],  # noqa: UP045 - typer needs Optional here
        typer.Option("--workflow", "-w", help="Also list the roles this workflow file defines."),
    ] = None,
) -> None:
    """List the agent roles available to workflows."""
    from rich.table import Table
    from rich.text import Text

    from agentplex.cli import script
    from agentplex.model.roles import BUILTIN_ROLES, RoleLibrary

    library = RoleLibrary()
    if workflow is not None:
        loaded = script.load(workflow, LoadFlags(imports=False), json_out=output.json_out)
        library = loaded.roles
    rows = [
        (
            name,
            library[name].description,
            "built-in" if BUILTIN_ROLES.get(name) == library[name] else "workflow",
        )
        for name in sorted(library)
    ]
    if output.json_out:
        script.write_json([{"role": r, "description": d, "origin": o} for r, d, o in rows])
        return
    table = Table("role", "description", "origin")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    script.emit(script.console(), table)
