"""Store benchmark: what recording runs durably costs, measured side by side in one run.

(a) the core engine's 100,000-node no-op DAG (bench_core.py) at max
    concurrency 1024: the SQLite store against the in-memory store,
    alternating rounds, median of each. Target: SQLite at most 2x slower.
(b) 100 topics through the content pipeline (concurrency 64): with the
    SQLite store against no store at all, alternating rounds. Target: within
    3% at the simulator's own latency (x1, calls of about a second, as a real
    model answers). The same batch compressed to x0.05 is printed too: there
    the engine's CPU, not waiting, decides the wall time, so the store's
    per-node CPU shows as a larger share.

    python bench/bench_store.py            # about 5 minutes
    python bench/bench_store.py --quick    # 20,000 nodes, fewer rounds
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import agentplex as ap
from agentplex.store import MemoryStore
from agentplex.store.sqlite import SqliteStore

sys.path.insert(0, str(Path(__file__).parent))
from bench_core import noop_workflow

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def timed(fn: Any) -> float:
    gc.collect()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def part_a(n: int, rounds: int) -> list[str]:
    compiled = noop_workflow(n).compile()
    memory, sqlite = [], []
    with tempfile.TemporaryDirectory() as folder:
        for r in range(rounds):
            memory.append(
                timed(lambda: ap.run(compiled, max_concurrency=1024, store=MemoryStore()))
            )
            path = Path(folder) / f"r{r}.sqlite"

            def with_sqlite(path: Path = path) -> None:
                store = SqliteStore(path)
                result = ap.run(compiled, max_concurrency=1024, store=store)
                store.close()
                assert result.ok

            sqlite.append(timed(with_sqlite))
        size = sum(p.stat().st_size for p in Path(folder).glob("r0.sqlite*"))
    m, s = statistics.median(memory), statistics.median(sqlite)
    return [
        f"(a) {n:,} no-op nodes, concurrency 1024, median of {rounds} alternating rounds",
        f"    memory store {m:6.2f}s ({m / n * 1e6:5.1f} us/node) | SQLite store {s:6.2f}s "
        f"({s / n * 1e6:5.1f} us/node) | SQLite / memory {s / m:.2f} (target <= 2.0) | "
        f"file {size / 1e6:.0f} MB",
    ]


def part_b(rounds: int, scale: float) -> list[str]:
    wf = ap.load_workflow(EXAMPLES / "content_pipeline.yaml").compile()
    topics = EXAMPLES / "topics.txt"
    bare, stored = [], []
    with tempfile.TemporaryDirectory() as folder:
        for r in range(rounds):
            bare.append(
                timed(lambda: ap.run_batch(wf, topics, max_concurrency=64, sim_scale=scale))
            )
            path = Path(folder) / f"b{r}.sqlite"
            stored.append(
                timed(
                    lambda path=path: ap.run_batch(
                        wf, topics, max_concurrency=64, sim_scale=scale, store=path
                    )
                )
            )
    b, s = statistics.median(bare), statistics.median(stored)
    target = "target within 3%" if scale == 1.0 else "CPU-bound stress, no target"
    return [
        f"(b) 100 topics x 4 stages, sim latency x{scale}, concurrency 64, median of {rounds}",
        f"    no store {b:6.3f}s | SQLite store {s:6.3f}s | overhead {s / b - 1:+.1%} "
        f"({(s - b) / 400 * 1e6:.0f} us per node; {target})",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="ab")
    args = parser.parse_args()
    print(f"agentplex {ap.__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} cpus")
    parts = {
        "a": lambda: part_a(20_000 if args.quick else 100_000, 3),
        "b": lambda: part_b(1 if args.quick else 3, 1.0) + part_b(3 if args.quick else 5, 0.05),
    }
    for key in args.only:
        for line in parts[key]():
            print(line, flush=True)


if __name__ == "__main__":
    main()
