"""Shared fixtures: fast simulated latencies and small workflow builders."""

from __future__ import annotations

from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(autouse=True)
def fast_sim(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the simulator at 1/100 of its latency unless a test pins its own scale."""
    monkeypatch.setenv("AGENTPLEX_SIM_SCALE", "0.01")
    monkeypatch.delenv("AGENTPLEX_STRATEGY", raising=False)


@pytest.fixture
def examples() -> Path:
    return EXAMPLES
