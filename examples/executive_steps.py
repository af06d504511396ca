"""Function steps of examples/executive_delegation.yaml.

Each executive posts to one shared board file, appending under an exclusive
lock, so posts made at the same moment never interleave. The runway model is
a CPU-bound Monte Carlo simulation and runs in the process pool
(``cpu_bound: true``), off the event loop.
"""

from __future__ import annotations

import fcntl
import random
import re
import statistics
from datetime import UTC, datetime
from pathlib import Path


def _post(board: str, who: str, text: str) -> str:
    path = Path(board)
    entry = f"## {who} ({datetime.now(UTC).strftime('%H:%M:%S')})\n\n{text.strip()}\n\n"
    with path.open("a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(entry)
    return f"{who} posted {len(text.split())} words to {path}"


def post_operations(operations: str, board: str) -> str:
    return _post(board, "COO", operations)


def post_finances(finances: str, board: str) -> str:
    return _post(board, "CFO", finances)


def post_technology(technology: str, board: str) -> str:
    return _post(board, "CTO", technology)


def runway_model(finances: str, trials: int = 20_000) -> dict[str, float]:
    """Months of runway under uncertain revenue growth (Monte Carlo, seeded by the plan)."""
    numbers = [float(n) for n in re.findall(r"\d+(?:\.\d+)?", finances)] or [1.0]
    rng = random.Random(len(finances))
    cash = 100.0 + sum(numbers[:5])
    burn = 10.0 + (numbers[0] % 7)
    months = []
    for _ in range(trials):
        left, revenue, month = cash, 2.0, 0
        while left > 0 and month < 60:
            revenue *= 1 + rng.gauss(0.04, 0.05)
            left += revenue - burn
            month += 1
        months.append(month)
    months.sort()
    return {
        "median_months": statistics.median(months),
        "p10_months": months[len(months) // 10],
        "p90_months": months[9 * len(months) // 10],
    }
