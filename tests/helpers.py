"""Importable helpers for tests that need picklable, module-level functions."""

from __future__ import annotations

import os


def pid_and_square(x: int = 7) -> tuple[int, int]:
    return os.getpid(), x * x


def burn(n: int = 20_000) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def fails() -> None:
    raise ValueError("raised in a worker")


def sleep_then_pid(seconds: float, x: int = 0) -> tuple[int, int]:
    import time

    time.sleep(seconds)
    return os.getpid(), x
