"""Core engine benchmark: how close dataflow gets to the critical path, and what it costs.

Prints, side by side from one invocation:

(a) wall time over critical path for ``dataflow``, ``layers`` and
    ``sequential``, for each example workflow (simulated latencies) and for
    randomized DAGs with heterogeneous pinned latencies (target for dataflow:
    <= 1.05 with enough concurrency);
(b) scheduler + runner overhead per node on a 100,000-node DAG of no-op
    function nodes (target <= 30 us per node), and peak memory per node above
    the baseline (target <= 1 KB per node), measured in a separate run with
    tracemalloc so tracing does not distort the timing;
(c) the speedup of ``dataflow`` over ``sequential`` for each example.

The critical path of a run is computed from the node durations measured in
that same run, so every ratio compares numbers taken seconds apart on the
same machine.

    python bench/bench_core.py            # full run, about a minute
    python bench/bench_core.py --quick    # smaller, for a smoke test
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import agentplex as ap
from agentplex.model.graph import critical_path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
STRATEGIES = ("dataflow", "layers", "sequential")


def random_dag(rng: random.Random, n: int) -> ap.Workflow:
    """A random DAG: each node depends on up to 3 of the previous 10, latencies log-normal."""
    wf = ap.Workflow(f"random{n}")
    for i in range(n):
        window = list(range(max(0, i - 10), i))
        deps = [f"n{j}" for j in rng.sample(window, k=min(len(window), rng.randint(0, 3)))]
        latency = min(0.6, max(0.02, rng.lognormvariate(-2.0, 0.8)))
        wf.agent(
            "researcher", f"step {i}", id=f"n{i}", depends_on=deps, latency_s=round(latency, 3)
        )
    return wf


def measure(compiled: ap.CompiledWorkflow, strategy: str, limit: int, scale: float) -> ap.RunResult:
    result = ap.run(compiled, strategy=strategy, max_concurrency=limit, sim_scale=scale)
    assert result.ok, result.status
    return result


def part_a_and_c(scale: float, dags: int, dag_size: int) -> list[str]:
    lines = [
        "(a) wall / critical path (lower is better; 1.00 is optimal; target dataflow <= 1.05)",
        "    and (c) speedup of dataflow over sequential, same run",
        "",
        f"    {'workflow':<28}{'nodes':>6}{'crit s':>9}"
        + "".join(f"{s:>12}" for s in STRATEGIES)
        + f"{'speedup':>10}",
    ]
    workloads: list[tuple[str, ap.CompiledWorkflow]] = []
    for name in ("compare_languages", "business_plan", "software_architecture"):
        workloads.append((name, ap.load_workflow(EXAMPLES / f"{name}.yaml").compile()))
    rng = random.Random(42)
    for i in range(dags):
        workloads.append((f"random DAG #{i + 1}", random_dag(rng, dag_size).compile()))
    worst = 0.0
    for name, compiled in workloads:
        results = {s: measure(compiled, s, len(compiled), scale) for s in STRATEGIES}
        durations = {n: r.duration_s for n, r in results["dataflow"].nodes.items()}
        crit, _ = critical_path(compiled.deps, durations)
        ratios = {s: r.wall_s / crit for s, r in results.items()}
        worst = max(worst, ratios["dataflow"])
        speedup = results["sequential"].wall_s / results["dataflow"].wall_s
        lines.append(
            f"    {name:<28}{len(compiled):>6}{crit:>9.2f}"
            + "".join(f"{ratios[s]:>12.3f}" for s in STRATEGIES)
            + f"{speedup:>9.2f}x"
        )
    verdict = "PASS" if worst <= 1.05 else "FAIL"
    lines += ["", f"    worst dataflow ratio {worst:.3f} (target <= 1.05): {verdict}"]
    return lines


def noop_workflow(n: int, seed: int = 7) -> ap.Workflow:
    """n no-op async function nodes; each depends on up to 2 of the previous 50."""

    async def noop() -> None:
        return None

    rng = random.Random(seed)
    wf = ap.Workflow(f"noop{n}")
    for i in range(n):
        k = rng.randint(0, 2) if i else 0
        deps = [f"n{j}" for j in rng.sample(range(max(0, i - 50), i), k=min(k, i))]
        wf.function(noop, id=f"n{i}", depends_on=deps)
    return wf


def part_b(n: int, repeats: int) -> list[str]:
    compiled = noop_workflow(n).compile()

    def per_node(observers: list[ap.events.Observer]) -> float:
        times = []
        for _ in range(repeats):
            gc.collect()
            t0 = time.perf_counter()
            result = ap.run(compiled, max_concurrency=1024, observers=observers)
            times.append(time.perf_counter() - t0)
            assert result.ok
            del result
        return statistics.median(times) / n * 1e6

    events = 0

    def count(_: ap.events.Event) -> None:
        nonlocal events
        events += 1

    per_node_us = per_node([])
    observed_us = per_node([count])

    gc.collect()
    tracemalloc.start()
    before_build = tracemalloc.get_traced_memory()[0]
    traced = noop_workflow(n).compile()
    baseline = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    result = ap.run(traced, max_concurrency=1024)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert result.ok
    run_bytes = (peak - baseline) / n
    spec_bytes = (baseline - before_build) / n
    return [
        f"(b) {n:,} no-op function nodes, max_concurrency 1024, median of {repeats} runs",
        f"    overhead per node: {per_node_us:.1f} us (target <= 30): "
        + ("PASS" if per_node_us <= 30 else "FAIL"),
        f"    with one observer receiving every event ({events // repeats // n} per node): "
        f"{observed_us:.1f} us (the cost of the event stream, for reference)",
        f"    peak memory of the run above the baseline (compiled workflow): {run_bytes:.0f} B/node"
        " (target <= 1024): " + ("PASS" if run_bytes <= 1024 else "FAIL"),
        f"    for reference, the compiled workflow itself: {spec_bytes:.0f} B/node",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller workloads, for a smoke test")
    parser.add_argument("--scale", type=float, default=0.5, help="sim latency scale for part (a)")
    args = parser.parse_args()
    n = 10_000 if args.quick else 100_000
    dags = 2 if args.quick else 5
    print(f"agentplex core benchmark - python {sys.version.split()[0]}, sim scale {args.scale}")
    print()
    for line in part_a_and_c(args.scale, dags=dags, dag_size=40):
        print(line, flush=True)
    print()
    for line in part_b(n, repeats=1 if args.quick else 3):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
