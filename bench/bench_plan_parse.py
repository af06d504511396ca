"""Streamed plan parsing is linear in the plan's size, whatever its layout.

Feeds plans of about 100 KB and 1 MB (just under the 1,000,000-character
limit) to :class:`agentplex.planning.parse.AgentStream` in 10-character
chunks, as a model streams, for three layouts (one agent per line,
pretty-printed, one line) and two shapes (many short agents, a few agents with
long tasks), and prints the CPU time of each and the 1 MB / 100 KB ratio.
Linear is 10x; re-parsing the buffer on every chunk would be about 100x.
Target: every ratio under 20x (linear, with room for a busy machine's noise).
Each time is the best of three. Measured on 2 busy cores: 6-14x, about 0.1-0.4 s
per megabyte.

    python bench/bench_plan_parse.py
"""

from __future__ import annotations

import json
import sys
import time

from agentplex.planning.parse import MAX_PLAN_CHARS, AgentStream

CHUNK = 10
TARGET = 20.0


def plan(size: int, layout: str, task_chars: int) -> str:
    """A plan of at most ``size`` characters whose agents have tasks of ``task_chars``."""
    entry = {
        "role": "researcher",
        "task": "x" * task_chars,
        "depends_on": [0, 1],
        "delegate": False,
    }

    def render(count: int) -> str:
        agents = [entry] * count
        if layout == "lines":
            return '{"agents": [\n' + ",\n".join(json.dumps(a) for a in agents) + "\n]}"
        return json.dumps({"agents": agents}, indent=2 if layout == "pretty" else None)

    per = len(render(10)) / 10
    return render(max(1, int(size / per) - 1))


def parse(text: str) -> tuple[float, int, int]:
    """Best-of-three CPU seconds to stream ``text``, the agents found, the characters decoded."""
    best = float("inf")
    found = decoded = 0
    for _ in range(3):
        start = time.process_time()
        stream = AgentStream()
        found = 0
        for i in range(0, len(text), CHUNK):
            found += len(stream.feed(text[i : i + CHUNK]))
        best = min(best, time.process_time() - start)
        decoded = stream.decoded
    return best, found, decoded


def main() -> int:
    worst = 0.0
    print(f"{'layout':<8} {'tasks':>6} {'100 KB':>9} {'1 MB':>9} {'ratio':>6}  agents (1 MB)")
    for layout in ("lines", "pretty", "oneline"):
        for task_chars in (40, 4000):
            small = plan(100_000, layout, task_chars)
            large = plan(MAX_PLAN_CHARS - 1000, layout, task_chars)
            assert len(large) <= MAX_PLAN_CHARS, len(large)
            t_small, _, _ = parse(small)
            t_large, found, decoded = parse(large)
            assert decoded <= len(large)
            ratio = t_large / t_small
            worst = max(worst, ratio)
            print(
                f"{layout:<8} {task_chars:>6} {t_small * 1e3:>7.1f}ms {t_large * 1e3:>7.1f}ms "
                f"{ratio:>5.1f}x  {found:,} (decoded {decoded:,} of {len(large):,} chars)"
            )
    verdict = "PASS" if worst < TARGET else "FAIL"
    print(f"worst ratio {worst:.1f}x (linear: 10x; target < {TARGET:g}x): {verdict}")
    return 0 if worst < TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
