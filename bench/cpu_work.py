"""Pure-Python CPU work for the executor benchmark (a module, so workers can import it)."""

from __future__ import annotations

import time


def spin(item: int, loops: int) -> int:
    """About ``loops`` iterations of pure-Python arithmetic (holds the GIL throughout)."""
    total = item
    for i in range(loops):
        total = (total * 31 + i) % 1_000_003
    return total


def calibrate(seconds: float) -> int:
    """How many ``spin`` loops take ``seconds`` here."""
    loops = 10_000
    while True:
        t0 = time.perf_counter()
        spin(0, loops)
        if time.perf_counter() - t0 > 0.1:
            break
        loops *= 2
    best = min(_timed(loops) for _ in range(3))  # the least disturbed of three
    return int(loops * seconds / best)


def _timed(loops: int) -> float:
    t0 = time.perf_counter()
    spin(0, loops)
    return time.perf_counter() - t0
