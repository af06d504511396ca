"""Per-node engine overhead of an older tree against this one, measured alternately.

Usage::

    git archive COMMIT src | tar -x -C /tmp/oldsrc
    python bench/bench_side_by_side.py /tmp/oldsrc/src

Each figure is the best of 3 runs of 30,000 no-op function nodes (the DAG of
``bench_core.py`` part (b)) in a fresh process; old and new alternate 4 times,
so the load of a shared machine falls on both alike. Prints the ratio new/old.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NEW = HERE.parent / "src"
CHILD = r"""
import gc, sys, time
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[2])
import agentplex as ap
import bench_core
compiled = bench_core.noop_workflow(30_000).compile()
best = float("inf")
for _ in range(3):
    gc.collect()
    t0 = time.perf_counter()
    ap.run(compiled, max_concurrency=1024)
    best = min(best, time.perf_counter() - t0)
print(best / 30_000 * 1e6)
"""


def main() -> int:
    old = sys.argv[1] if len(sys.argv) > 1 else "/tmp/oldsrc/src"
    figures: dict[str, list[float]] = {"old": [], "new": []}
    for _ in range(4):
        for name, src in (("old", old), ("new", str(NEW))):
            out = subprocess.run(
                [sys.executable, "-c", CHILD, src, str(HERE)],
                capture_output=True,
                text=True,
                check=True,
                env={"AGENTPLEX_CACHE": "off", "PATH": ""},
            )
            figures[name].append(float(out.stdout.split()[-1]))
    for name, values in figures.items():
        print(
            f"{name} us/node best {min(values):.1f} median {statistics.median(values):.1f}",
            [round(v, 1) for v in values],
        )
    print(f"new/old (best): {min(figures['new']) / min(figures['old']):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
