"""Acceptance: a 300-node workflow through a faulty endpoint gives the fault-free outputs.

With the default run options (issue 13): 429s have their own retry budget, so
the default ``retries`` are left for the 5xx, hangs and drops.
"""

from __future__ import annotations

import random

import pytest

import agentplex as ap
from agentplex.sim.server import SimServer

pytestmark = pytest.mark.slow

FAULT_MIX = {
    "p429": 0.10,  # 20% 429, half with Retry-After and half without
    "p429_bare": 0.10,
    "p500": 0.025,  # 5% 5xx
    "p503": 0.025,
    "p_hang": 0.02,
    "p_drop": 0.01,
}


def big_workflow(n: int = 300, seed: int = 7) -> ap.Workflow:
    """``n`` agents, each depending on up to two random earlier ones."""
    rng = random.Random(seed)
    wf = ap.Workflow("faulty")
    for i in range(n):
        deps = sorted({f"n{rng.randrange(i)}" for _ in range(rng.randint(0, 2))}) if i else []
        wf.agent("researcher", f"Topic {i}", id=f"n{i}", depends_on=deps)
    return wf


def run_through(server: SimServer, kind: str, wf: ap.Workflow) -> ap.RunResult:
    """Run ``wf`` against the server with the default run options.

    The one setting that is not a default is the provider's call deadline:
    with the default (600 s) every hung request is abandoned and retried just
    the same, only ten minutes later. It is a wall-clock limit on the whole
    call, so it is kept well above what an answered call can take on a loaded
    machine (an answered call cut off would be asked twice). The deadline is
    the provider's, so time spent waiting for the limiter does not count.
    """
    url = server.url if kind == "openai" else server.root
    return ap.run(
        wf,
        model=f"{kind}:sim",
        base_url=url,
        api_key="sk-test-key",
        providers={kind: ap.ProviderConfig(kind=kind, timeout_s=2.0)},  # type: ignore[arg-type]
    )


# The limiter takes the injected 429s for a rate limit and paces the run down to
# about ten requests a second, so the 300-node run takes some 40 s of waiting.
@pytest.mark.timeout(240)
@pytest.mark.parametrize(("kind", "size"), [("openai", 300), ("anthropic", 120)])
def test_fault_mix_changes_nothing_but_the_retries(server: SimServer, kind: str, size: int) -> None:
    wf = big_workflow(size)
    expected = ap.run(wf, model="sim:sim", sim_scale=0).outputs  # in-process, no faults
    server.configure(**FAULT_MIX, retry_after_s=0.05, seed=11)
    result = run_through(server, kind, wf)
    assert result.ok, result.counts()
    assert result.outputs == expected
    stats = server.stats()
    by_status = stats["by_status"]
    assert by_status["200"] == size
    for fault in ("429", "500", "503", "hang", "drop"):
        assert by_status.get(fault, 0) > 0, f"the mix produced no {fault}: {by_status}"
    assert all(counts.get("200", 0) <= 1 for counts in stats["by_prompt"].values())
    assert len(stats["by_prompt"]) == size
    assert sum(n.attempts for n in result.nodes.values()) == stats["requests"]
