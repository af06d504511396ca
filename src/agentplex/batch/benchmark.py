"""``benchmark``: the same batch under the designs people actually build, side by side.

The designs, all over the same workflow and inputs in one process, one after
another, so their times are comparable:

- ``sequential``: one item after another, each item's nodes one at a time
  (a plain loop over a crew);
- ``pool4``: four item workers, each running its item's nodes one at a time
  (the common "parallel crew manager");
- ``layers``: every item at once under ``max_concurrency``, each item in
  lock-step layers (what most graph frameworks do);
- ``dataflow``: every item at once under ``max_concurrency``, each node the
  moment its own inputs are ready, slots served by global urgency (agentplex).

Each design reports wall time, speedup over ``sequential`` (measured, not
estimated, when ``sequential`` is among the designs), provider calls, tokens
and 429 responses.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentplex import events as ev
from agentplex.batch.driver import BatchInputs, as_items, run_batch
from agentplex.batch.result import BatchResult
from agentplex.exceptions import ConfigError
from agentplex.model.workflow import CompiledWorkflow, Workflow

DESIGNS: dict[str, str] = {
    "sequential": "one item after another, one node at a time",
    "pool4": "4 item workers, each item one node at a time",
    "layers": "all items under max_concurrency, lock-step layers per item",
    "dataflow": "all items under max_concurrency, dataflow (agentplex)",
}


@dataclass(frozen=True, slots=True)
class DesignResult:
    """One design's figures."""

    design: str
    wall_s: float
    max_concurrency: int
    items: int
    failed: int
    calls: int
    input_tokens: int
    output_tokens: int
    rate_limited: int
    """Calls answered 429."""
    speedup: float | None = None
    """Over ``sequential``, measured in the same benchmark (None without it)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "design": self.design,
            "wall_s": round(self.wall_s, 4),
            "speedup": None if self.speedup is None else round(self.speedup, 2),
            "max_concurrency": self.max_concurrency,
            "items": self.items,
            "failed": self.failed,
            "calls": self.calls,
            "tokens": {"input": self.input_tokens, "output": self.output_tokens},
            "rate_limited": self.rate_limited,
        }


@dataclass(frozen=True, slots=True)
class BenchmarkResult:
    """Every design's figures, in the order they ran."""

    workflow: str
    designs: tuple[DesignResult, ...]

    def __getitem__(self, design: str) -> DesignResult:
        for row in self.designs:
            if row.design == design:
                return row
        raise KeyError(design)

    def speedup(self, design: str, over: str = "sequential") -> float:
        """Wall time of ``over`` divided by that of ``design``."""
        return self[over].wall_s / self[design].wall_s

    def to_dict(self) -> dict[str, Any]:
        return {"workflow": self.workflow, "designs": [d.to_dict() for d in self.designs]}


class _Counter:
    """Counts provider calls and 429s from the event stream."""

    def __init__(self) -> None:
        self.calls = 0
        self.rate_limited = 0

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.NodeStarted | ev.NodeProgress):
            self.calls += 1
        elif isinstance(event, ev.NodeRetrying | ev.NodeFailed) and "429" in event.error:
            self.rate_limited += 1


def benchmark(
    workflow: Workflow | CompiledWorkflow,
    inputs: BatchInputs,
    *,
    designs: Sequence[str] = tuple(DESIGNS),
    max_concurrency: int = 64,
    observers: Iterable[ev.Observer] = (),
    **options: Any,
) -> BenchmarkResult:
    """Run the batch once per design and return the figures side by side.

    Keyword options are :class:`~agentplex.engine.options.RunOptions` fields
    (``model``, ``sim_scale``...). ``max_concurrency`` applies to ``layers``
    and ``dataflow``.

    Raises:
        ConfigError: for an unknown design or a bad option.
    """
    unknown = [d for d in designs if d not in DESIGNS]
    if unknown:
        raise ConfigError(
            f"unknown design(s) {', '.join(unknown)}; choose from {', '.join(DESIGNS)}."
        )
    compiled = workflow if isinstance(workflow, CompiledWorkflow) else workflow.compile()
    items = as_items(inputs, compiled)  # read once: every design sees the same items
    rows: list[DesignResult] = []
    for design in designs:
        strategy, limit, open_items = {
            "sequential": ("sequential", 1, 1),
            "pool4": ("sequential", 4, 4),
            "layers": ("layers", max_concurrency, None),
            "dataflow": ("dataflow", max_concurrency, None),
        }[design]
        counter = _Counter()
        t0 = time.perf_counter()
        result = run_batch(
            compiled,
            items,
            strategy=strategy,
            max_concurrency=limit,
            max_open=open_items,
            observers=[counter, *observers],
            **{**options, "cache": False},  # every design pays for its own calls
        )
        wall = time.perf_counter() - t0
        rows.append(_row(design, result, wall, limit, counter))
    if "sequential" in designs:
        base = next(r.wall_s for r in rows if r.design == "sequential")
        rows = [_with_speedup(r, base / r.wall_s) for r in rows]
    return BenchmarkResult(compiled.name, tuple(rows))


def _row(
    design: str, result: BatchResult, wall: float, limit: int, counter: _Counter
) -> DesignResult:
    usage = result.usage
    return DesignResult(
        design,
        wall,
        limit,
        len(result),
        len(result.failed()),
        counter.calls,
        usage.input_tokens,
        usage.output_tokens,
        counter.rate_limited,
    )


def _with_speedup(row: DesignResult, speedup: float) -> DesignResult:
    import dataclasses

    return dataclasses.replace(row, speedup=speedup)


def plot(result: BenchmarkResult, path: str | Path) -> Path:
    """Draw wall time and speedup per design into a PNG (needs the ``plot`` extra).

    Raises:
        MissingExtraError: if matplotlib is not installed.
    """
    from agentplex.exceptions import MissingExtraError

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingExtraError("matplotlib", "plot", "agentplex bench --plot") from None
    names = [r.design for r in result.designs]
    walls = [r.wall_s for r in result.designs]
    figure, axis = plt.subplots(figsize=(7, 3.6), dpi=120)
    bars = axis.barh(names[::-1], walls[::-1], color="#4c72b0")
    for bar, row in zip(bars, result.designs[::-1], strict=True):
        label = f" {row.wall_s:.2f}s" + (f"  ({row.speedup:.1f}x)" if row.speedup else "")
        axis.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, label, va="center")
    axis.set_xlabel("wall time (s), lower is better")
    axis.set_title(f"{result.workflow}: {result.designs[0].items} items")
    axis.set_xlim(0, max(walls) * 1.35)
    figure.tight_layout()
    out = Path(path)
    figure.savefig(out)
    plt.close(figure)
    return out
