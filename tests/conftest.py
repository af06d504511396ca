"""Shared fixtures: fast simulated latencies and small workflow builders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.realmodel import real_server  # noqa: F401

if TYPE_CHECKING:
    from agentplex.sim.server import SimServer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(autouse=True)
def fast_sim(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the simulator at 1/100 of its latency unless a test pins its own scale."""
    monkeypatch.setenv("AGENTPLEX_SIM_SCALE", "0.01")
    monkeypatch.delenv("AGENTPLEX_STRATEGY", raising=False)


@pytest.fixture
def examples() -> Path:
    return EXAMPLES


@pytest.fixture(autouse=True)
def fresh_limiters() -> Iterator[None]:
    """Limiters are process-wide; no test may inherit what another one taught them."""
    from agentplex.llm.limits import reset_limiters

    reset_limiters()
    yield
    reset_limiters()


@pytest.fixture(autouse=True)
def no_wait_for_local_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused loopback endpoint fails at once: tests start their servers first (the
    wait for a server still starting has its own test)."""
    monkeypatch.setattr("agentplex.llm.LOCAL_START_S", 0.0)


@pytest.fixture(autouse=True)
def forget_secrets() -> Iterator[None]:
    """Keys are masked process-wide once seen; no test may inherit another test's keys
    (a test that used the key ``k`` would otherwise mask every standalone ``k`` after it)."""
    from agentplex.llm import config

    yield
    config._SECRETS.clear()
    config._MASK[0] = None


@pytest.fixture(autouse=True)
def private_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Runs recorded by a test go to its own store, never the checkout's .agentplex/."""
    path = tmp_path / "agentplex-store"
    monkeypatch.setenv("AGENTPLEX_STORE", str(path))
    # Off: tests that count server calls measure the engine and the store, not the
    # cache. The cache's own tests turn it on with the ``result_cache`` fixture.
    monkeypatch.setenv("AGENTPLEX_CACHE", "off")
    return path


@pytest.fixture
def result_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Turn the result cache on, in a file private to the test."""
    path = tmp_path / "agentplex-cache.sqlite"
    monkeypatch.setenv("AGENTPLEX_CACHE", str(path))
    return path


@pytest.fixture(autouse=True)
def no_provider_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's real keys or endpoints."""
    for name in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
        "OLLAMA_HOST",
        "OLLAMA_BASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def sim_server() -> Iterator[SimServer]:
    """A simulator server on 127.0.0.1 for the module, reset to no faults before each use."""
    from agentplex.sim.server import ServerConfig, SimServer

    with SimServer(ServerConfig(scale=0.0)) as server:
        yield server


@pytest.fixture
def server(sim_server: SimServer) -> SimServer:
    """The module's simulator server with fresh statistics and no faults or limits."""
    from agentplex.sim.server import ServerConfig

    sim_server.configure(**dict(vars_of(ServerConfig(scale=0.0)).items()))
    sim_server.reset()
    return sim_server


def vars_of(config: object) -> dict[str, object]:
    import dataclasses

    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}  # type: ignore[arg-type]
