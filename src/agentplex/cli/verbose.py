"""``--verbose``: the traceback of each failing Python step and each request an agent sends.

Both go to stderr as they happen, so ``--json`` keeps stdout to itself. Without
``--verbose`` a failing Python step keeps its one line, with a hint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentplex import events as ev

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from agentplex.result import RunResult

HINT = "(run with --verbose for the traceback)"


class Verbose:
    """An observer printing requests and tracebacks when ``on``; otherwise it does nothing."""

    def __init__(self, console: Console, *, on: bool) -> None:
        self.console = console
        self.on = on

    def run_options(self) -> dict[str, Any]:
        """Return the run options that make the engine emit the requests it sends."""
        return {"record_requests": True} if self.on else {}

    def __call__(self, event: ev.Event) -> None:
        if not self.on:
            return
        if isinstance(event, ev.NodeRequest):
            self._request(event)
        elif isinstance(event, ev.NodeFailed) and event.traceback:
            self.console.print(
                f"traceback of node {event.node_id!r} (attempt {event.attempts}):",
                style="red",
                markup=False,
                soft_wrap=True,
            )
            self.console.print(event.traceback.rstrip(), markup=False, soft_wrap=True)

    def _request(self, event: ev.NodeRequest) -> None:
        self.console.print(
            f"request of node {event.node_id!r} (attempt {event.attempt}) to {event.model}:",
            style="cyan",
            markup=False,
            soft_wrap=True,
        )
        for role, content in event.messages:
            self.console.print(f"  [{role}] {content}", markup=False, soft_wrap=True)

    def summary(self, result: RunResult, *, nodes: bool = True) -> RenderableType:
        """Return the run's summary; a failing Python step's line says how to see its traceback."""
        from agentplex.report.terminal import render_summary

        return render_summary(result, nodes=nodes, hint=None if self.on else HINT)
