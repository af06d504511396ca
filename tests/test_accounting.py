"""Honest token accounting: every attempt's tokens, cached prompt tokens, and their price.

A paid API bills a call that timed out, was cancelled or was cut off midway as
much as one that answered, so those calls count too (estimated from the prompt
and what streamed, and marked so); a call the endpoint refused with an HTTP
error did no work and counts nothing. Cached prompt tokens are read from both
APIs' usage fields and priced the way each provider prices them.
"""

from __future__ import annotations

from typing import Any

import pytest

from agentplex.exceptions import ProviderError
from agentplex.llm import ProviderConfig, ProviderPool, Request, Secret
from agentplex.llm.base import Message, ModelRef, unreturned_usage
from agentplex.llm.limits import limiter_for
from agentplex.llm.pricing import Price, PriceTable, prices_from_data
from agentplex.result import Usage
from agentplex.sim.server import SimServer

MESSAGES = (Message("system", "You are terse."), Message("user", "Compare Go and Rust " * 20))


def _pool(server: SimServer, kind: str, **config: Any) -> ProviderPool:
    url = server.url if kind == "openai" else server.root
    return ProviderPool(
        {kind: ProviderConfig(kind=kind, base_url=url, api_key=Secret("sk-test-key"), **config)}  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_a_streamed_call_cut_off_by_its_deadline_counts_its_prompt_and_what_streamed(
    server: SimServer, kind: str
) -> None:
    server.configure(p_trickle=1.0, trickle_s=0.05)
    spent: list[Usage] = []
    providers = _pool(server, kind, timeout_s=0.5)
    try:
        provider = providers.get(ModelRef(kind, "default"))
        request = Request(
            "default", MESSAGES, {"seed": 0}, on_text=lambda piece: None, on_spent=spent.append
        )
        with pytest.raises(ProviderError, match="timed out"):
            await provider.complete(request)
    finally:
        await providers.aclose()
    [usage] = spent
    assert usage.estimated
    prompt = sum((len(m.content) + 3) // 4 for m in MESSAGES)
    assert usage.input_tokens == prompt  # the prompt was read, whatever came back
    assert provider.statistics().usage == usage  # the provider's own totals see it too


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_a_call_refused_with_an_http_error_counts_nothing(
    server: SimServer, kind: str
) -> None:
    server.configure(script=(400,))
    spent: list[Usage] = []
    providers = _pool(server, kind, timeout_s=5.0)
    try:
        provider = providers.get(ModelRef(kind, "default"))
        with pytest.raises(ProviderError, match="HTTP 400"):
            await provider.complete(Request("default", MESSAGES, on_spent=spent.append))
    finally:
        await providers.aclose()
    assert spent == []
    assert provider.statistics().usage == Usage()


def test_what_a_failed_call_was_billed_depends_on_how_it_failed() -> None:
    import asyncio

    request = Request("m", (Message("user", "x" * 400),))
    assert unreturned_usage(request, ProviderError("p", "no", retryable=True, status=500), 80) == (
        Usage()
    )
    refused = ProviderError("p", "connection failed", retryable=True, connection=True)
    assert unreturned_usage(request, refused, 0) == Usage()
    dropped = unreturned_usage(request, refused, 80)  # it streamed: the server was working
    assert dropped == Usage(100, 20, estimated=True)
    cancelled = unreturned_usage(request, asyncio.CancelledError(), 0)
    assert cancelled == Usage(100, 0, estimated=True)
    assert unreturned_usage(request, ValueError("a bug"), 80) == Usage()


@pytest.mark.parametrize(("used", "waits"), [(0, False), (500, True)], ids=["refused", "billed"])
async def test_the_tpm_limiter_refunds_a_refused_call_and_keeps_a_billed_one(
    used: int, waits: bool
) -> None:
    import asyncio

    from agentplex.llm.limits import Limits

    # 600 tokens a minute: a second 500-token call fits only if the first gave its back.
    limiter = limiter_for(f"test|accounting|{used}", Limits(tpm=600, adaptive=False))
    ticket = await limiter.acquire(500)
    limiter.release(ticket, "error", tokens_used=used)
    try:
        second = await asyncio.wait_for(limiter.acquire(500), 1.0)
    except TimeoutError:
        assert waits
    else:
        assert not waits
        limiter.release(second, "ok", tokens_used=500)


def test_openai_cached_prompt_tokens_are_read_from_prompt_tokens_details() -> None:
    from agentplex.llm.openai_provider import _usage

    request = Request("m", MESSAGES)
    reported = {
        "prompt_tokens": 1200,
        "completion_tokens": 50,
        "prompt_tokens_details": {"cached_tokens": 1024},
    }
    assert _usage(reported, request, "") == Usage(1200, 50, cache_read_tokens=1024)
    # A server that reports no details (or nonsense in them) reads none.
    assert _usage({"prompt_tokens": 10, "completion_tokens": 2}, request, "") == Usage(10, 2)
    odd = {
        "prompt_tokens": 10,
        "completion_tokens": 2,
        "prompt_tokens_details": {"cached_tokens": 99},
    }
    assert _usage(odd, request, "").cache_read_tokens == 0
    # No usage at all: estimated, and marked so.
    assert _usage(None, request, "four").estimated


def test_anthropic_cache_counts_are_folded_into_the_prompt_tokens() -> None:
    from agentplex.llm.anthropic_provider import AnthropicProvider

    usage = AnthropicProvider._read_usage(
        AnthropicProvider.__new__(AnthropicProvider),
        {
            "input_tokens": 20,
            "output_tokens": 7,
            "cache_read_input_tokens": 3000,
            "cache_creation_input_tokens": 500,
        },
    )
    assert usage == Usage(3520, 7, cache_read_tokens=3000, cache_write_tokens=500)


def test_cached_prompt_tokens_are_priced_as_each_provider_prices_them() -> None:
    usage = Usage(1_000_000, 0, cache_read_tokens=600_000, cache_write_tokens=200_000)
    price = Price(input=3.0, output=15.0)
    # Anthropic: fresh 200k at $3, reads 600k at $0.30, writes 200k at $3.75.
    assert price.cost(usage, "anthropic") == pytest.approx(0.6 + 0.18 + 0.75)
    # OpenAI: reads at half price, no write surcharge.
    assert price.cost(usage, "openai") == pytest.approx(0.6 + 0.9 + 0.6)
    # A model's own cache prices win; the built-in table has OpenAI's.
    table = PriceTable()
    read_only = Usage(1_000_000, 0, cache_read_tokens=1_000_000)
    assert table.cost("openai", "openai", "gpt-4.1-mini", read_only) == pytest.approx(0.10)
    assert table.cost("anthropic", "anthropic", "claude-sonnet-4-5", read_only) == (
        pytest.approx(0.30)
    )


def test_a_price_file_may_give_cache_prices_and_nothing_unknown() -> None:
    from agentplex.exceptions import ConfigError

    prices = prices_from_data({"m": {"input": 1, "output": 2, "cache_read": 0.1}}, "p.yaml")
    assert prices["m"] == Price(1.0, 2.0, 0.1, None)
    with pytest.raises(ConfigError, match="cache_read and cache_write"):
        prices_from_data({"m": {"input": 1, "cached": 0.1}}, "p.yaml")
    with pytest.raises(ConfigError, match="negative"):
        prices_from_data({"m": {"input": 1, "cache_write": -1}}, "p.yaml")


def test_usage_round_trips_with_its_cache_counts_and_estimate_flag() -> None:
    usage = Usage(10, 2, 1, 4, 3, estimated=True)
    assert Usage.from_dict(usage.to_dict()) == usage
    assert Usage.from_dict({"input_tokens": 1, "output_tokens": 2}) == Usage(1, 2)  # old records
    assert (Usage(1, 1) + Usage(1, 1, estimated=True)).estimated


def test_openai_sends_its_own_cap_name_and_compatible_servers_the_common_one() -> None:
    from agentplex.llm.config import BUILTIN_PROVIDERS, resolve
    from agentplex.llm.openai_provider import OpenAIProvider, strict_compatible

    def param(base_url: str | None, **options: Any) -> str:
        config = BUILTIN_PROVIDERS["openai"].merged(base_url=base_url, options=options or None)
        resolved = resolve("openai", config, environ={"OPENAI_API_KEY": "sk-x"})
        return OpenAIProvider(resolved)._cap_param()

    assert param(None) == "max_completion_tokens"  # OpenAI's reasoning models refuse max_tokens
    assert param("http://127.0.0.1:8080/v1") == "max_tokens"  # llama.cpp, vLLM, LM Studio
    assert param("http://127.0.0.1:8080/v1", max_tokens_param="n_predict") == "n_predict"
    closed = {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    assert strict_compatible(closed)
    assert not strict_compatible({**closed, "required": []})
    assert not strict_compatible({k: v for k, v in closed.items() if k != "additionalProperties"})
