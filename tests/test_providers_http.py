"""The openai and anthropic providers over real HTTP, against the simulator server on loopback."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import pytest

import agentplex as ap
from agentplex.exceptions import ProviderError
from agentplex.llm import ProviderConfig, ProviderPool, Request, Secret
from agentplex.llm.base import Message, ModelRef
from agentplex.sim.provider import generate
from agentplex.sim.server import SimServer

KINDS = ("openai", "anthropic")
MESSAGES = (Message("system", "You are terse."), Message("user", "Compare Go and Rust"))


def base_url(server: SimServer, kind: str) -> str:
    return server.url if kind == "openai" else server.root


def pool(server: SimServer, kind: str, **config: Any) -> ProviderPool:
    config.setdefault("timeout_s", 2.0)
    return ProviderPool(
        {
            kind: ProviderConfig(
                kind=kind, base_url=base_url(server, kind), api_key=Secret("sk-test-key"), **config
            )
        }  # type: ignore[arg-type]
    )


async def call(server: SimServer, kind: str, model: str = "default", **kwargs: Any) -> Any:
    providers = pool(server, kind, **kwargs.pop("config", {}))
    try:
        provider = providers.get(ModelRef(kind, model))
        return await provider.complete(Request(model, MESSAGES, {"seed": 0}, **kwargs))
    finally:
        await providers.aclose()


async def wait_closed(server: SimServer) -> None:
    # The tracker lives on the server's own thread and loop: nothing here can
    # await it, so poll.
    deadline = time.monotonic() + 5
    while server.app.tracker.open and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    assert server.app.tracker.open == 0, "a connection was left open"


@pytest.mark.parametrize("kind", KINDS)
async def test_a_call_returns_the_simulators_answer_and_usage(server: SimServer, kind: str) -> None:
    completion = await call(server, kind)
    expected = generate("default", MESSAGES, 0)
    assert completion.text == expected.text
    assert completion.usage == expected.usage
    assert completion.provider == kind
    await wait_closed(server)


@pytest.mark.parametrize("kind", KINDS)
async def test_streaming_delivers_the_same_text_in_pieces(server: SimServer, kind: str) -> None:
    pieces: list[str] = []
    completion = await call(server, kind, on_text=pieces.append)
    assert len(pieces) > 1
    assert "".join(pieces) == completion.text == generate("default", MESSAGES, 0).text
    assert completion.usage.output_tokens > 0
    await wait_closed(server)


RETRYABLE_FAULTS = [
    ("p429", 429, 0.25),
    ("p429_bare", 429, None),
    ("p500", 500, None),
    ("p503", 503, None),
    ("p529", 529, None),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("fault", "status", "retry_after"), RETRYABLE_FAULTS)
async def test_status_faults_are_retryable_with_retry_after(
    server: SimServer, kind: str, fault: str, status: int, retry_after: float | None
) -> None:
    server.configure(**{fault: 1.0}, retry_after_s=0.25)
    with pytest.raises(ProviderError) as info:
        await call(server, kind)
    error = info.value
    assert error.retryable
    assert error.status == status
    assert error.retry_after_s == retry_after
    assert server.stats()["requests"] == 1  # the SDK did not retry behind our back
    await wait_closed(server)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("fault", "words"),
    [("p_malformed", "malformed"), ("p_drop", "connection"), ("p_hang", "timed out")],
)
async def test_wire_faults_are_retryable(
    server: SimServer, kind: str, fault: str, words: str
) -> None:
    server.configure(**{fault: 1.0})
    with pytest.raises(ProviderError, match=words) as info:
        await call(server, kind, config={"timeout_s": 0.3})
    assert info.value.retryable
    assert server.stats()["requests"] == 1
    await wait_closed(server)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (408, True),
        (409, True),
        (422, False),
        (502, True),
    ],
)
async def test_which_statuses_are_retried(
    server: SimServer, kind: str, status: int, retryable: bool
) -> None:
    with pytest.raises(ProviderError) as info:
        await call(server, kind, model=f"status-{status}")
    assert info.value.retryable is retryable
    assert info.value.status == status
    if not retryable:
        assert "Fix:" in str(info.value)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_refused_key_is_never_repeated_in_the_error(server: SimServer, kind: str) -> None:
    with pytest.raises(ProviderError) as info:
        await call(server, kind, model="status-401")
    assert "sk-test-key" not in str(info.value)
    assert "API key" in str(info.value)


def workflow(n: int = 3) -> ap.Workflow:
    wf = ap.Workflow("w")
    for i in range(n):
        wf.agent("researcher", f"Topic number {i}", id=f"a{i}")
    return wf


@pytest.mark.parametrize("kind", KINDS)
def test_engine_never_retries_4xx_and_says_why(server: SimServer, kind: str) -> None:
    wf = ap.Workflow("w")
    wf.agent("researcher", "x", id="a", model=f"{kind}:status-404")
    result = ap.run(
        wf,
        base_url=base_url(server, kind),
        api_key="sk-test-key",
        model=f"{kind}:default",
        retries=5,
    )
    node = result.nodes["a"]
    assert node.status == "failed"
    assert node.attempts == 1
    assert "404" in (node.error or "")
    assert "base URL" in (node.error or "")
    assert server.stats()["requests"] == 1


@pytest.mark.parametrize("kind", KINDS)
def test_engine_honours_retry_after_before_retrying(server: SimServer, kind: str) -> None:
    server.configure(p429=0.5, retry_after_s=0.2, seed=1)
    sleeps: list[float] = []

    async def sleep(delay: float) -> None:
        sleeps.append(delay)
        await asyncio.sleep(delay)

    result = ap.run(
        workflow(6),
        base_url=base_url(server, kind),
        api_key="sk-test-key",
        model=f"{kind}:default",
        retries=20,
        backoff_base_s=0.001,
        sleep=sleep,
    )
    assert result.ok
    limited = server.stats()["by_status"].get("429", 0)
    assert limited >= 1
    assert len(sleeps) == limited
    assert all(d >= 0.2 for d in sleeps)  # the jittered backoff alone would be ~1 ms


@pytest.mark.parametrize("kind", KINDS)
def test_runs_close_every_connection(server: SimServer, kind: str) -> None:
    result = ap.run(
        workflow(8), base_url=base_url(server, kind), api_key="sk-test-key", model=f"{kind}:default"
    )
    assert result.ok
    assert server.app.tracker.total >= 1
    asyncio.run(wait_closed(server))


def test_one_client_per_configuration_with_a_pool_sized_to_concurrency(server: SimServer) -> None:
    providers = ProviderPool(
        {
            "openai": ProviderConfig(
                kind="openai", base_url=server.url, api_key=Secret("sk-test-key")
            )
        },
        max_connections=7,
    )
    a = providers.get(ModelRef("openai", "gpt-4o"))
    b = providers.get(ModelRef("openai", "gpt-4o-mini"))
    assert a is b
    assert a.max_connections == 7  # type: ignore[attr-defined]
    limited = ProviderPool(
        {
            "openai": ProviderConfig(
                kind="openai",
                base_url=server.url,
                api_key=Secret("sk-test-key"),
                limits=ap.Limits(max_concurrency=3),
            )
        },
        max_connections=7,
    ).get(ModelRef("openai", "m"))
    assert limited.max_connections == 3  # type: ignore[attr-defined]


def test_peak_connections_stay_within_the_pool(server: SimServer) -> None:
    server.configure(latency_s=0.05)
    result = ap.run(
        workflow(30),
        base_url=server.url,
        api_key="sk-test-key",
        model="openai:default",
        max_concurrency=30,
        max_inflight=4,
    )
    assert result.ok
    assert server.app.tracker.peak <= 4


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_a_trickle_is_cut_off_at_the_call_deadline(
    server: SimServer, kind: str, stream: bool
) -> None:
    server.configure(p_trickle=1.0, trickle_s=0.1)  # each byte restarts the SDK's read timeout
    extra: dict[str, Any] = {"on_text": lambda piece: None} if stream else {}
    with pytest.raises(ProviderError, match=r"timed out after 0\.5s") as info:
        await call(server, kind, config={"timeout_s": 0.5}, **extra)
    assert info.value.retryable
    assert server.stats()["by_status"] == {"trickle": 1}
    await wait_closed(server)


@pytest.mark.parametrize("kind", KINDS)
async def test_the_call_deadline_defaults_to_600_s_and_inf_turns_it_off(
    server: SimServer, kind: str
) -> None:
    from agentplex.llm import DEFAULT_CALL_TIMEOUT_S

    default = ProviderPool(
        {kind: ProviderConfig(kind=kind, base_url=base_url(server, kind), api_key=Secret("k"))}
    )
    assert default.get(ModelRef(kind, "m")).call_timeout_s == DEFAULT_CALL_TIMEOUT_S == 600
    providers = pool(server, kind, timeout_s=math.inf)
    try:
        provider = providers.get(ModelRef(kind, "default"))
        assert provider.call_timeout_s is None
        completion = await provider.complete(Request("default", MESSAGES, {"seed": 0}))
        assert completion.text == generate("default", MESSAGES, 0).text
    finally:
        await providers.aclose()
