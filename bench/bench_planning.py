"""Planning benchmark: streamed plans start work earlier; planned runs beat sequential ones.

(a) Time to first node start on a 10-agent plan (8 researchers, an analyzer,
    a synthesizer), streaming the plan into execution vs waiting for the
    whole plan, on the simulator at its own latency, alternating rounds with
    different seeds; medians side by side. Target: streaming starts work at
    least 40% earlier.
(b) Ten questions planned and run with ``sim``: each question end to end as
    ``ask`` runs it (plan streamed into dataflow execution) against the same
    planning followed by the same plan run one agent after another; and the
    plan alone, dataflow against sequential, side by side. Prints each
    speedup and their geometric means.

    python bench/bench_planning.py            # about 2 minutes
    python bench/bench_planning.py --quick
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

import agentplex as ap
from agentplex import events as ev
from agentplex.files.plan import workflow_from_plan

TEN_AGENTS = (
    "Compare PostgreSQL, MySQL, SQLite, MongoDB, Cassandra, Redis, DynamoDB and CockroachDB "
    "for a multi-tenant SaaS backend"
)

QUESTIONS = (
    "Compare Python, Rust, Go and JavaScript for backend development",
    "Business plan for a bike repair shop",
    "Design the architecture of a SaaS product: frontend, backend, database, caching, monitoring",
    "Compare AWS, Azure and Google Cloud for a data platform",
    "Launch plan for a mobile banking app: compliance, security, onboarding, marketing",
    "Should a 20-person startup adopt Kubernetes",
    "Compare React, Vue, Svelte, Angular and Solid for a dashboard",
    "Migration plan for a monolith: data, services, testing, rollout, observability",
    "Evaluate solar, wind, hydro and nuclear for a regional grid",
    "How to reduce churn in a subscription business",
)


def first_start(stream: bool, seed: int, scale: float) -> tuple[float, float]:
    """Seconds to the first planned node's start, and the coordinator's own duration."""
    starts: list[float] = []

    def watch(event: ev.Event) -> None:
        if isinstance(event, ev.NodeStarted) and event.node_id != "coordinator":
            starts.append(event.t)

    result = ap.ask(TEN_AGENTS, stream=stream, seed=seed, sim_scale=scale, observers=[watch])
    assert result.ok
    assert len(result.plan["agents"]) == 10
    return min(starts), result.planning["coordinator_s"]


def part_a(rounds: int, scale: float = 1.0) -> list[str]:
    streamed, waited, planning = [], [], []
    for seed in range(rounds):
        s, _ = first_start(True, seed, scale)
        w, p = first_start(False, seed, scale)
        streamed.append(s)
        waited.append(w)
        planning.append(p)
    s, w = statistics.median(streamed), statistics.median(waited)
    return [
        f"(a) time to first node start, 10-agent plan, sim latency x{scale}, median of {rounds}",
        f"    streamed {s:5.2f}s | whole plan first {w:5.2f}s (planning takes "
        f"{statistics.median(planning):.2f}s) | streaming starts {1 - s / w:.0%} earlier "
        "(target >= 40%)",
    ]


def part_b(scale: float) -> list[str]:
    lines = [f"(b) ten questions planned and run with sim, latency x{scale}"]
    ratios: list[float] = []
    executed: list[float] = []
    for question in QUESTIONS:
        t0 = time.perf_counter()
        asked = ap.ask(question, sim_scale=scale)
        wall = time.perf_counter() - t0
        assert asked.ok, question
        planning = asked.planning["coordinator_s"]
        plan = {"agents": [dict(a) for a in asked.plan["agents"]]}  # type: ignore[index]
        compiled = workflow_from_plan(plan, trusted=False).compile()
        sequential = ap.run(compiled, strategy="sequential", sim_scale=scale)
        dataflow = ap.run(compiled, sim_scale=scale)
        assert sequential.ok
        assert dataflow.ok
        one_by_one = planning + sequential.wall_s
        ratios.append(one_by_one / wall)
        executed.append(sequential.wall_s / dataflow.wall_s)
        lines.append(
            f"    {len(plan['agents']):2d} agents | ask {wall:5.2f}s vs plan then sequential "
            f"{one_by_one:5.2f}s: {one_by_one / wall:4.2f}x | the plan alone: "
            f"{executed[-1]:4.2f}x | {question[:50]}"
        )
    lines.append(
        f"    geometric mean speedup over sequential: end to end {_gmean(ratios):.2f}x, "
        f"the plans alone {_gmean(executed):.2f}x"
    )
    return lines


def _gmean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    os.environ.pop("AGENTPLEX_SIM_SCALE", None)
    print(f"agentplex {ap.__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} cpus")
    for line in part_a(3 if args.quick else 7):
        print(line, flush=True)
    for line in part_b(0.1 if args.quick else 0.25):
        print(line, flush=True)


if __name__ == "__main__":
    main()
