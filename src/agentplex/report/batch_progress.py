"""Batch progress: a live panel in a terminal, a plain line every few seconds in a log.

Both show items done / running / queued / failed, nodes in flight, tokens,
cost so far, throughput and ETA, computed from the event stream only. After
the batch, :func:`render_batch_summary` lists what did not succeed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agentplex import events as ev

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from agentplex.batch.result import BatchResult


class BatchProgress:
    """An observer of a batch's events that reports progress."""

    def __init__(
        self,
        console: Console,
        *,
        live: bool,
        every_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        self.live_mode = live
        self.every_s = every_s
        self.clock = clock
        self.total = 0
        self.finished = 0
        self.failed = 0
        self.running = 0
        self.in_flight = 0
        self.tokens = 0
        self.cost = 0.0
        self.unpriced = False
        """Some finished item used tokens of a model with no known price."""
        self.cap: int | None = None
        """The batch's max_concurrency: nodes holding a slot never exceed it."""
        self.started_at = clock()
        self._last_line = self.started_at
        self._live: Any = None

    # -- figures ----------------------------------------------------------------

    @property
    def queued(self) -> int:
        return max(0, self.total - self.finished - self.running)

    def rate(self) -> float:
        """Items finished per second so far."""
        elapsed = self.clock() - self.started_at
        return self.finished / elapsed if elapsed > 0 else 0.0

    def eta_s(self) -> float | None:
        rate = self.rate()
        return (self.total - self.finished) / rate if rate > 0 else None

    def line(self) -> str:
        eta = self.eta_s()
        # A node gives its slot back before its result is written and its end announced,
        # so for a moment the events show one more node than hold a slot.
        in_flight = self.in_flight if self.cap is None else min(self.in_flight, self.cap)
        if not self.unpriced:
            cost = f"cost ${self.cost:.4f}"
        elif self.cost:
            cost = f"cost over ${self.cost:.4f} (a model has no price)"
        else:
            cost = "cost unknown (no price for the model)"
        return (
            f"items {self.finished}/{self.total} done ({self.failed} failed), "
            f"{self.running} running, {self.queued} queued | nodes in flight {in_flight} | "
            f"tokens {self.tokens:,} | {cost} | {self.rate():.2f} items/s | "
            f"ETA {'-' if eta is None else f'{eta:.0f}s'}"
        )

    def __rich__(self) -> Any:
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        table = Table.grid(padding=(0, 1))
        table.add_row(
            ProgressBar(total=max(1, self.total), completed=self.finished, width=40),
            f"{self.finished}/{self.total}",
        )
        table.add_row(self.line(), "")
        return table

    # -- events -----------------------------------------------------------------

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.NodeStarted):
            self.in_flight += 1
        elif isinstance(event, ev.NodeFinished):
            self.in_flight -= 1
            if event.usage is not None:
                self.tokens += event.usage.total_tokens
        elif isinstance(event, ev.NodeFailed | ev.NodeRetrying):
            self.in_flight -= 1
        elif isinstance(event, ev.NodeCancelled):
            self.in_flight -= int(event.started)
        elif isinstance(event, ev.ItemStarted):
            self.running += 1
        elif isinstance(event, ev.ItemFinished):
            self.finished += 1
            if event.item.status != "invalid":  # invalid rows never started
                self.running -= 1
            if not event.item.success:
                self.failed += 1
            if event.item.cost_usd is not None:
                self.cost += event.item.cost_usd
            elif event.item.usage.total_tokens:
                self.unpriced = True
        elif isinstance(event, ev.BatchStarted):
            self.total = event.total
            self.cap = event.max_concurrency
            self.started_at = self.clock()
            if self.live_mode:
                from rich.live import Live

                self._live = Live(self, console=self.console, refresh_per_second=4, transient=True)
                self._live.start()
        elif isinstance(event, ev.BatchFinished):
            self.close(event.result)
            return
        if not self.live_mode:
            now = self.clock()
            if now - self._last_line >= self.every_s:
                self._last_line = now
                self.console.print(self.line(), highlight=False, soft_wrap=True)

    def close(self, result: BatchResult | None = None) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        if not self.live_mode:
            self.console.print(self.line(), highlight=False, soft_wrap=True)


def render_batch_summary(result: BatchResult) -> RenderableType:
    """Return the failed items (key, status, where, error), then the batch's headline figures."""
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
    cached = f" | {usage.cached_calls:,} call(s) from the cache" if usage.cached_calls else ""
    parts.append(
        Text(
            f"{len(result)} items: {counts} | wall {result.wall_s:.2f}s | sequential estimate "
            f"{result.sequential_s:.2f}s | speedup {result.speedup:.1f}x | tokens "
            f"{usage.input_tokens:,} in / {usage.output_tokens:,} out | {cost}{cached}"
        )
    )
    return Group(*parts)
