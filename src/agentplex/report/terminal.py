"""Terminal views of a run: the layers before, a live view during, a summary after.

All three read only the compiled workflow and the event stream. The live
view is a rich ``Live`` display shown only on a terminal; elsewhere (a pipe,
CI) nothing is drawn while the run goes, and the summary is plain text.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from agentplex import events as ev
from agentplex.model.workflow import AgentNode, CompiledWorkflow, MapNode, Node
from agentplex.result import RunResult

_STATUS_STYLE = {
    "succeeded": "green",
    "failed": "bold red",
    "skipped": "yellow",
    "cancelled": "magenta",
    "pending": "dim",
}


def node_label(compiled: CompiledWorkflow, node: Node) -> str:
    """Return ``id (role)`` for agents, ``id (function)`` and so on for others."""
    body = node.body if isinstance(node, MapNode) else node
    kind = compiled.roles[body.role].name if isinstance(body, AgentNode) else node.kind
    if isinstance(node, MapNode):
        kind = f"map over {node.over}: {kind}"
    return f"{node.id} ({kind})"


def render_layers(compiled: CompiledWorkflow) -> Text:
    """Return the layers view: how many nodes can run side by side at each depth."""
    layers = compiled.layers()
    text = Text()
    text.append(f"{compiled.name}", style="bold")
    text.append(f": {len(compiled)} nodes in {len(layers)} layers\n")
    for depth, layer in enumerate(layers):
        labels = ", ".join(node_label(compiled, compiled.nodes[n]) for n in layer)
        text.append(f"  layer {depth} ", style="cyan")
        text.append(f"({len(layer)} in parallel): ", style="bold")
        text.append(f"{labels}\n")
    for warning in compiled.warnings:
        text.append(f"  warning: {warning}\n", style="yellow")
    return text


def mermaid(compiled: CompiledWorkflow) -> str:
    """Return the DAG as a Mermaid flowchart, one subgraph per layer."""
    lines = ["flowchart TD"]
    for depth, layer in enumerate(compiled.layers()):
        lines.append(f"  subgraph layer{depth} [layer {depth}]")
        for node_id in layer:
            label = node_label(compiled, compiled.nodes[node_id]).replace('"', "'")
            lines.append(f'    {_mermaid_id(node_id)}["{label}"]')
        lines.append("  end")
    for node_id, deps in compiled.deps.items():
        for dep in deps:
            lines.append(f"  {_mermaid_id(dep)} --> {_mermaid_id(node_id)}")
    return "\n".join(lines)


def _mermaid_id(node_id: str) -> str:
    return "n_" + node_id.replace("-", "_")


def dot(compiled: CompiledWorkflow) -> str:
    """Return the DAG in Graphviz dot, nodes of one layer on one rank."""
    lines = [f'digraph "{compiled.name}" {{', "  rankdir=TB;", "  node [shape=box];"]
    for layer in compiled.layers():
        names = " ".join(f'"{n}"' for n in layer)
        lines.append(f"  {{ rank=same; {names} }}")
    for node_id, node in compiled.nodes.items():
        label = node_label(compiled, node).replace('"', "'")
        lines.append(f'  "{node_id}" [label="{label}"];')
    for node_id, deps in compiled.deps.items():
        for dep in deps:
            lines.append(f'  "{dep}" -> "{node_id}";')
    lines.append("}")
    return "\n".join(lines)


def render_summary(
    result: RunResult, *, nodes: bool = True, hint: str | None = None
) -> RenderableType:
    """Return the after-run summary: a node table and the headline figures.

    Every failed node gets one line; ``hint`` is added to the lines of
    failed Python steps (how to see their traceback).
    """
    parts: list[RenderableType] = []
    if nodes:
        table = Table(title=f"{result.workflow} - {result.status}", title_justify="left")
        for column in ("node", "role", "status", "start s", "end s", "took s", "tries", "tokens"):
            left = column in ("node", "role", "status")
            table.add_column(column, justify="left" if left else "right", overflow="fold")
        for node in sorted(
            result.nodes.values(), key=lambda n: (n.started_s is None, n.started_s or 0)
        ):
            tokens = f"{node.usage.total_tokens}" if node.usage else ""
            if node.usage is not None and node.usage.estimated:
                tokens += "~"  # partly estimated: a call failed or was cut off
            status = Text(node.status, style=_STATUS_STYLE.get(node.status, ""))
            if node.truncated:
                status.append(" (cut off)", style="yellow")
            table.add_row(  # Text: an id or role is never read as rich markup
                Text(node.node_id),
                Text(node.role or node.kind),
                status,
                _fmt(node.started_s),
                _fmt(node.finished_s),
                _fmt(node.duration_s) if node.started_s is not None else "",
                str(node.attempts or ""),
                tokens,
            )
        parts.append(table)
    parts.append(headline(result))
    for node in result.nodes.values():
        if node.status == "failed":
            line = Text(f"  {node.node_id} failed: {node.error}", style="red")
            if hint and node.kind in ("function", "map") and node.role is None:
                line.append(f" {hint}", style="dim")
            parts.append(line)
    cut = [n.node_id for n in result.nodes.values() if n.truncated and n.status == "succeeded"]
    if cut:
        shown = ", ".join(cut[:10]) + (f" and {len(cut) - 10} more" if len(cut) > 10 else "")
        parts.append(
            Text(
                f"  {len(cut)} answer(s) were cut off at their output cap and passed on as "
                f"they were: {shown}. Raise max_output_tokens (--max-output-tokens, or per "
                "node or role), or set on_truncated: retry or fail.",
                style="yellow",
            )
        )
    return Group(*parts)


def render_final_outputs(compiled: CompiledWorkflow, result: RunResult) -> RenderableType:
    """Return a panel per sink (a node nothing depends on) that succeeded, with its output."""
    from rich.panel import Panel

    from agentplex.model.graph import successors

    panels: list[RenderableType] = []
    for node_id, children in successors(compiled.deps).items():
        node = result.nodes.get(node_id)
        if children or node is None or node.status != "succeeded":
            continue
        text = node.output if isinstance(node.output, str) else repr(node.output)
        # An output is the model's text: shown as text, never read as rich markup.
        title = Text(f"output of {node_id}")
        panels.append(Panel(Text(text), title=title, title_align="left", expand=False))
    return Group(*panels)


def render_benchmark(result: Any) -> RenderableType:
    """Return the designs of a benchmark as a table: wall time, speedup, calls, tokens, 429s."""
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


def headline(result: RunResult) -> Text:
    """Return the figures that say how parallel the run was."""
    usage = result.usage
    text = Text()
    text.append(f"wall {result.wall_s:.2f}s", style="bold")
    if result.status == "succeeded":
        text.append(f" | sequential estimate {result.sequential_s:.2f}s")
        text.append(f" | speedup {result.speedup:.2f}x", style="bold green")
        text.append(f" | critical path {result.critical_path_s:.2f}s")
        text.append(f" | efficiency {result.efficiency:.0%}")
    else:  # a run that did not finish its work has no speedup to claim
        text.append(f" | {result.status}: no speedup figures", style="yellow")
    if usage.total_tokens:
        text.append(f" | tokens {usage.input_tokens} in / {usage.output_tokens} out")
        if usage.cache_read_tokens or usage.cache_write_tokens:
            text.append(
                f" ({usage.cache_read_tokens} in read from the prompt cache, "
                f"{usage.cache_write_tokens} written)"
            )
        if usage.estimated:
            text.append(" (some estimated: calls that failed or were cut off)", style="dim")
        cost = result.cost_usd
        unpriced = result.unpriced_models
        if cost is not None:
            text.append(f" | cost ${cost:.4f}")
        if unpriced:
            text.append(f" | no price for {', '.join(unpriced)} (add one with --prices)")
    if usage.cached_calls:
        text.append(f" | {usage.cached_calls} call(s) from the cache (--no-cache to re-ask)")
    if result.critical_path:
        text.append("\ncritical path: " + " -> ".join(result.critical_path), style="dim")
    return text


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


class LiveView:
    """An observer drawing running, finished and waiting nodes while a run goes."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live: Live | None = None
        self.compiled: CompiledWorkflow | None = None
        self.running: dict[str, float] = {}
        self.progress: dict[str, tuple[int, int]] = {}
        self.ended: dict[str, str] = {}
        self.retries = 0
        self.cap: int | None = None
        """The run's max_concurrency: nodes holding a slot never exceed it."""
        self.backing_off: set[str] = set()
        """Nodes waiting to retry: started, but holding no slot."""
        self.t = 0.0
        self.text: dict[str, str] = {}
        """The tail of each running node's streamed answer."""

    def __call__(self, event: ev.Event) -> None:
        self.t = event.t
        if isinstance(event, ev.RunStarted):
            self.compiled = event.workflow
            self.cap = event.max_concurrency
            self.live = Live(
                self._render_lazy(), console=self.console, refresh_per_second=8, transient=True
            )
            self.live.start()
        elif isinstance(event, ev.NodeStarted):
            self.running.setdefault(event.node_id, event.t)
            self.backing_off.discard(event.node_id)
        elif isinstance(event, ev.NodeRetrying):
            self.retries += 1
            self.running.pop(event.node_id, None)  # waiting out its backoff, holding no slot
            self.backing_off.add(event.node_id)
        elif isinstance(event, ev.NodeText):
            self.text[event.node_id] = (self.text.get(event.node_id, "") + event.text)[-200:]
        elif isinstance(event, ev.NodeProgress):
            self.progress[event.node_id] = (event.done, event.total)
        elif isinstance(event, ev.NodeFinished | ev.NodeFailed | ev.NodeSkipped | ev.NodeCancelled):
            self.running.pop(event.node_id, None)
            self.backing_off.discard(event.node_id)
            self.text.pop(event.node_id, None)
            self.ended[event.node_id] = _ENDED[type(event)]
        elif isinstance(event, ev.RunFinished):
            self.stop()

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def _render_lazy(self) -> Any:
        view = self

        class _Lazy:
            def __rich__(self) -> RenderableType:
                return view.render()

        return _Lazy()

    def render(self) -> RenderableType:
        assert self.compiled is not None
        total = len(self.compiled)
        done = sum(1 for s in self.ended.values() if s == "succeeded")
        failed = sum(1 for s in self.ended.values() if s != "succeeded")
        waiting = total - done - failed - len(self.running) - len(self.backing_off)
        head = Text()
        head.append(f"{self.t:6.1f}s ", style="bold")
        # A node gives its slot back before its result is written and its end announced,
        # so for a moment the events show one more node than hold a slot.
        running = len(self.running) if self.cap is None else min(len(self.running), self.cap)
        head.append(f"running {running}", style="cyan")
        if self.backing_off:
            head.append(f" | backing off {len(self.backing_off)}", style="yellow")
        head.append(f" | done {done}/{total}", style="green")
        if failed:
            head.append(f" | failed/skipped {failed}", style="red")
        head.append(f" | waiting {waiting}")
        if self.retries:
            head.append(f" | retries {self.retries}", style="yellow")
        lines = [head]
        for node_id, since in list(self.running.items())[:12]:
            label = node_label(self.compiled, self.compiled.nodes[node_id])
            line = Text(f"  > {label}  {self.t - since:4.1f}s", style="cyan")
            if node_id in self.progress:
                d, n = self.progress[node_id]
                line.append(f"  [{d}/{n} items]")
            tail = self.text.get(node_id)
            if tail:
                last = " ".join(tail.split())[-60:]
                line.append(f"  {last}", style="dim")
            lines.append(line)
        if len(self.running) > 12:
            lines.append(Text(f"  ... and {len(self.running) - 12} more", style="dim"))
        return Group(*lines)


_ENDED: dict[type, str] = {
    ev.NodeFinished: "succeeded",
    ev.NodeFailed: "failed",
    ev.NodeSkipped: "skipped",
    ev.NodeCancelled: "cancelled",
}
