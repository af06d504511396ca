"""Batch benchmark: the issue-4 targets, measured side by side in one invocation.

(a) 100 topics through the four-stage content pipeline (examples/) at the
    simulator's latency model (scaled by --scale): sequential, a pool of 4
    item workers, layers and dataflow at max concurrency 64. Targets:
    dataflow >= 50x over sequential and >= 10x over the pool of 4.
(b) 1,000 items x 4 stages at 1 s per call, max concurrency 512: wall time
    against the lower bound max(critical path, total work / 512). Target:
    within 15%.
(c) 10,000 items of a 4-node workflow at simulator latency 0, in a fresh
    process: peak memory (max RSS). Target: under 1 GB.

    python bench/bench_batch.py            # everything, about 2 minutes
    python bench/bench_batch.py --only b   # one part
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import agentplex as ap
from agentplex.batch.benchmark import benchmark

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def part_a(scale: float) -> list[str]:
    wf = ap.load_workflow(EXAMPLES / "content_pipeline.yaml").compile()
    result = benchmark(wf, EXAMPLES / "topics.txt", max_concurrency=64, sim_scale=scale)
    lines = [f"(a) 100 topics x 4 stages, sim latency x{scale}, dataflow/layers at concurrency 64"]
    for row in result.designs:
        lines.append(
            f"    {row.design:10s} {row.wall_s:7.2f}s  speedup {row.speedup or 0:5.1f}x  "
            f"calls {row.calls}  failed {row.failed}"
        )
    over_seq = result.speedup("dataflow")
    over_pool = result.speedup("dataflow", over="pool4")
    lines.append(
        f"    dataflow over sequential {over_seq:.1f}x (target >= 50x), "
        f"over pool of 4 {over_pool:.1f}x (target >= 10x)"
    )
    return lines


def stages(latency: float | None = None) -> ap.Workflow:
    wf = ap.Workflow("four_stages", inputs=["topic"])
    previous: list[str] = []
    for role, node in (
        ("researcher", "research"),
        ("writer", "write"),
        ("reviewer", "review"),
        ("presenter", "present"),
    ):
        wf.agent(role, f"{node} {{topic}}", id=node, depends_on=previous, latency_s=latency)
        previous = [node]
    return wf


def part_b(items: int = 1000, limit: int = 512) -> list[str]:
    wf = stages(latency=1.0).compile()
    inputs = [{"topic": f"topic {i}"} for i in range(items)]
    t0 = time.perf_counter()
    result = ap.run_batch(wf, inputs, max_concurrency=limit, sim_scale=1.0)
    wall = time.perf_counter() - t0
    assert result.ok, result.counts()
    work = result.sequential_s
    bound = max(4.0, work / limit)
    return [
        f"(b) {items} items x 4 stages at 1 s per call, max concurrency {limit}",
        f"    wall {wall:.2f}s | total work {work:.0f}s | lower bound max(4.0, {work:.0f}/{limit}) "
        f"= {bound:.2f}s | wall / bound {wall / bound:.3f} (target <= 1.15)",
    ]


MEMORY_PROBE = """
import json, resource, sys, time
sys.path.insert(0, {bench!r})
import agentplex as ap
from bench_batch import stages
wf = stages().compile()
t0 = time.perf_counter()
result = ap.run_batch(wf, [{{"topic": f"topic {{i}}"}} for i in range({items})],
                      max_concurrency=256, sim_scale=0)
print(json.dumps({{"ok": result.ok, "counts": result.counts(),
                  "wall": time.perf_counter() - t0,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def part_c(items: int = 10_000) -> list[str]:
    code = MEMORY_PROBE.format(bench=str(Path(__file__).parent), items=items)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=900
    )
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return [
        f"(c) {items} items x 4 nodes at sim latency 0, outputs kept in memory: "
        f"{data['wall']:.1f}s, all succeeded {data['ok']}, peak RSS {data['rss_mb']:.0f} MB "
        "(target < 1024 MB)"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="abc")
    parser.add_argument("--scale", type=float, default=0.05, help="sim latency scale for (a)")
    args = parser.parse_args()
    print(f"agentplex {ap.__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} cpus")
    parts = {"a": lambda: part_a(args.scale), "b": part_b, "c": part_c}
    for key in args.only:
        for line in parts[key]():
            print(line, flush=True)


if __name__ == "__main__":
    main()
