"""Check the engine's performance targets; exit 1, loudly, when any figure misses.

Figures, each measured in a fresh process so one cannot warm up another:

- ``core us/node``: scheduler + runner overhead per no-op function node (the
  DAG of ``bench_core.py`` part (b)), best of 3 runs, no store. Target <= 30.
- ``core B/node``: peak memory of one run above the compiled workflow, per
  node, under tracemalloc. Target <= 1024.
- ``sqlite us/node``: the same DAG recorded in a fresh SQLite store (the
  CLI's default path), best of 3 runs. Target <= 100.

``--ci`` is for a shared, loaded machine: memory is deterministic, so it is
checked against its target as is; times are checked against twice their
target, loose enough not to flake under load and tight enough to catch a
regression like the 20% one of issue 14 compounded over a few commits.

    python bench/check.py              # 30,000 nodes (about 40 s)
    python bench/check.py --ci         # the same figures, CI bounds
    python bench/check.py --nodes 100000
    python bench/check.py --src /tmp/old/src   # measure another tree (side by side)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"

_CHILD = r"""
import gc, sys, tempfile, time, tracemalloc
from pathlib import Path
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[2])
import agentplex as ap
import bench_core
figure, n = sys.argv[3], int(sys.argv[4])
if figure == "core_us":
    compiled = bench_core.noop_workflow(n).compile()
    best = float("inf")
    for _ in range(3):
        gc.collect()
        t0 = time.perf_counter()
        assert ap.run(compiled, max_concurrency=1024).ok
        best = min(best, time.perf_counter() - t0)
    print(best / n * 1e6)
elif figure == "core_bytes":
    gc.collect()
    tracemalloc.start()
    compiled = bench_core.noop_workflow(n).compile()
    baseline = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    result = ap.run(compiled, max_concurrency=1024)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert result.ok
    print((peak - baseline) / n)
elif figure == "sqlite_us":
    from agentplex.store.sqlite import SqliteStore
    compiled = bench_core.noop_workflow(n).compile()
    best = float("inf")
    with tempfile.TemporaryDirectory() as folder:
        for r in range(3):
            store = SqliteStore(Path(folder) / f"r{r}.sqlite")
            gc.collect()
            t0 = time.perf_counter()
            result = ap.run(compiled, max_concurrency=1024, store=store)
            store.close()
            best = min(best, time.perf_counter() - t0)
            assert result.ok
    print(best / n * 1e6)
"""


@dataclass(frozen=True)
class Target:
    """One figure and the bound it must stay under."""

    name: str
    figure: str
    unit: str
    limit: float
    timed: bool
    """A time (loosened by ``--ci``), not a count."""


TARGETS = (
    Target("core overhead", "core_us", "us/node", 30.0, True),
    Target("core memory", "core_bytes", "B/node", 1024.0, False),
    Target("sqlite store", "sqlite_us", "us/node", 100.0, True),
)


def measure(figure: str, nodes: int, src: Path) -> float:
    """Return one figure, measured in a fresh process on the tree at ``src``."""
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(src), str(HERE), figure, str(nodes)],
        capture_output=True,
        text=True,
        env={"AGENTPLEX_CACHE": "off", "PATH": "", "PYTHONHASHSEED": "0"},
    )
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"check.py: measuring {figure} failed (exit {out.returncode})")
    return float(out.stdout.split()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ci", action="store_true", help="times against 2x their target")
    parser.add_argument("--nodes", type=int, default=30_000, help="nodes in the no-op DAG")
    parser.add_argument("--src", type=Path, default=SRC, help="the source tree to measure")
    args = parser.parse_args(argv)
    failed: list[str] = []
    for target in TARGETS:
        limit = target.limit * (2 if args.ci and target.timed else 1)
        value = measure(target.figure, args.nodes, args.src)
        verdict = "PASS" if value <= limit else "FAIL"
        print(
            f"{target.name:<14} {value:8.1f} {target.unit:<8} (target <= {limit:g}): {verdict}",
            flush=True,
        )
        if verdict == "FAIL":
            failed.append(f"{target.name}: {value:.1f} {target.unit}, target <= {limit:g}")
    for line in failed:
        print(f"check.py: FAIL {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
