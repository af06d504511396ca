from __future__ import annotations

import asyncio
import time

import pytest

from agentplex.exceptions import ConfigError, ProviderError
from agentplex.llm import parse_model
from agentplex.llm.base import Message, Request
from agentplex.model.roles import BUILTIN_ROLES
from agentplex.sim.provider import SimProvider, generate


def messages(role: str, user: str) -> list[Message]:
    return [Message("system", BUILTIN_ROLES[role].system_prompt), Message("user", user)]


def test_same_model_messages_and_seed_give_the_same_answer() -> None:
    a = generate("default", messages("researcher", "Research Rust async runtimes"), 0)
    b = generate("default", messages("researcher", "Research Rust async runtimes"), 0)
    assert a == b
    assert generate("default", messages("researcher", "Research Rust async runtimes"), 1) != a
    assert generate("other", messages("researcher", "Research Rust async runtimes"), 0) != a


def test_text_is_role_shaped_and_uses_task_and_context() -> None:
    research = generate("default", messages("researcher", "Research Tokio and async-std"), 0)
    assert research.text.startswith("## Research notes: Research Tokio and async-std")
    critique = generate(
        "default",
        messages("critic", "Review the plan\n\n### From budget (planner)\nSpend 40k on ovens"),
        0,
    )
    assert critique.text.startswith("## Critique")
    assert 'budget (planner): "Spend 40k on ovens..."' in critique.text
    assert critique.usage.input_tokens > 0
    assert critique.usage.output_tokens > 0


def test_latency_model_depends_on_the_model_name() -> None:
    msgs = messages("writer", "Write a haiku about queues")
    default = generate("default", msgs).latency_s
    assert 0.2 < default < 5
    assert generate("fast", msgs).latency_s < default
    assert generate("instant", msgs).latency_s == 0


def test_pinned_latency_is_exact_and_scaled() -> None:
    async def main() -> float:
        provider = SimProvider(scale=0.5)
        t0 = time.perf_counter()
        completion = await provider.complete(
            Request("default", tuple(messages("writer", "x")), latency_s=0.2)
        )
        assert completion.latency_s == pytest.approx(0.1)
        return time.perf_counter() - t0

    assert 0.09 < asyncio.run(main()) < 0.5


def test_fail_first_fails_then_succeeds() -> None:
    async def main() -> None:
        provider = SimProvider(scale=0)
        request = Request("default", tuple(messages("writer", "x")), options={"sim_fail_first": 1})
        with pytest.raises(ProviderError) as info:
            await provider.complete(request)
        assert info.value.retryable
        assert info.value.status == 429
        assert (await provider.complete(request)).text
        stats = provider.statistics()
        assert (stats.calls, stats.failures) == (2, 1)

    asyncio.run(main())


def test_bad_scale_is_a_config_error(monkeypatch) -> None:
    monkeypatch.setenv("AGENTPLEX_SIM_SCALE", "fast")
    with pytest.raises(ConfigError, match="AGENTPLEX_SIM_SCALE"):
        SimProvider()


def test_model_strings_keep_colons_in_the_model_part() -> None:
    ref = parse_model("sim:llama3.2:1b")
    assert (ref.provider, ref.model) == ("sim", "llama3.2:1b")
    with pytest.raises(ConfigError, match="provider:model"):
        parse_model("default")
