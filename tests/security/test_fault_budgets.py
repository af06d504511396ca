"""Issue 13, point 6 and the map part of point 5: faults use the right budget, every
LLM call has a wall-clock deadline, and one output cannot become an unbounded map.

Everything goes over real HTTP to the simulator server on 127.0.0.1: its
``script`` answers the first requests of a prompt with given statuses, and its
``p_trickle`` fault sends a 200's headers and then one byte every ``trickle_s``
forever, which a read timeout (restarted by every byte) never catches.
"""

from __future__ import annotations

import asyncio
import math
import re
from typing import Any

import pytest

import agentplex as ap
from agentplex.engine.bodies import NodeBodies
from agentplex.engine.options import RunOptions
from agentplex.events import Event, NodeRetrying
from agentplex.model.workflow import FunctionNode, MapNode
from agentplex.sim.server import SimServer
from tests.test_providers_http import wait_closed

KINDS = ("openai", "anthropic")


def url_of(server: SimServer, kind: str) -> str:
    return server.url if kind == "openai" else server.root


def one_agent() -> ap.Workflow:
    wf = ap.Workflow("one")
    wf.agent("researcher", "Compare Go and Rust", id="a")
    return wf


def run_against(server: SimServer, kind: str, wf: ap.Workflow, **options: Any) -> ap.RunResult:
    return ap.run(
        wf, model=f"{kind}:default", base_url=url_of(server, kind), api_key="sk-test-key", **options
    )


# -- 429s have their own budget ------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_node_under_many_429s_in_a_row_succeeds_with_the_default_retries(
    server: SimServer, kind: str
) -> None:
    server.configure(script=(429,) * 10, retry_after_s=0.01)
    events: list[Event] = []
    result = run_against(server, kind, one_agent(), observers=[events.append])
    node = result.nodes["a"]
    assert result.ok, node.error
    assert node.attempts == 11  # every attempt is shown, the ten 429s included
    assert len(node.attempt_starts) == 11
    assert len([e for e in events if isinstance(e, NodeRetrying)]) == 10
    assert server.stats()["by_status"] == {"429": 10, "200": 1}


def test_anthropic_overloaded_529s_count_as_rate_limits(server: SimServer) -> None:
    server.configure(script=(529,) * 6)
    result = run_against(server, "anthropic", one_agent(), backoff_base_s=0.01)
    assert result.ok, result.nodes["a"].error
    assert result.nodes["a"].attempts == 7


@pytest.mark.parametrize("kind", KINDS)
def test_real_errors_between_429s_still_use_the_retries(server: SimServer, kind: str) -> None:
    server.configure(script=(429, 500, 429, 500, 429, 500), retry_after_s=0.01)
    result = run_against(server, kind, one_agent(), retries=2, backoff_base_s=0.01)
    node = result.nodes["a"]
    assert node.status == "failed"
    assert node.attempts == 6  # three 500s used retries=2 up; the 429s used none of it
    assert "HTTP 500" in (node.error or "")
    assert server.stats()["requests"] == 6


def test_two_real_errors_and_three_429s_fit_in_retries_2(server: SimServer) -> None:
    server.configure(script=(500, 429, 500, 429, 429), retry_after_s=0.01)
    result = run_against(server, "openai", one_agent(), retries=2, backoff_base_s=0.01)
    assert result.ok, result.nodes["a"].error
    assert result.nodes["a"].attempts == 6


def test_the_rate_limit_budget_is_bounded_too(server: SimServer) -> None:
    server.configure(script=(429,) * 5, retry_after_s=0.01)
    result = run_against(server, "openai", one_agent(), rate_limit_retries=3)
    node = result.nodes["a"]
    assert node.status == "failed"
    assert node.attempts == 4
    assert "HTTP 429" in (node.error or "")
    assert RunOptions().rate_limit_retries >= 50  # generous by default


# -- every LLM call has a wall-clock deadline ----------------------------------------


@pytest.mark.timeout(40)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_trickling_server_fails_the_attempt_at_its_deadline(
    server: SimServer, kind: str, stream: bool
) -> None:
    # A byte every 0.5 s restarts any read timeout; only a deadline on the whole call ends it.
    server.configure(p_trickle=1.0, trickle_s=0.5)
    result = run_against(
        server,
        kind,
        one_agent(),
        stream=stream,
        retries=1,
        backoff_base_s=0.01,
        providers={kind: ap.ProviderConfig(kind=kind, timeout_s=1.5)},  # type: ignore[arg-type]
    )
    node = result.nodes["a"]
    assert result.status == "failed"
    assert node.status == "failed"
    assert node.attempts == 2
    assert "timed out after 1.5s" in (node.error or "")
    assert server.stats()["by_status"] == {"trickle": 2}
    asyncio.run(wait_closed(server))  # the abandoned calls closed their connections


@pytest.mark.timeout(40)
def test_ctx_ask_in_a_function_has_the_same_deadline(server: SimServer) -> None:
    server.configure(p_trickle=1.0, trickle_s=0.5)
    wf = ap.Workflow("ask")

    @wf.step(retries=0)
    async def survey(ctx: ap.NodeContext) -> str:
        return await ctx.ask("researcher", "Compare Go and Rust")

    result = run_against(
        server, "openai", wf, providers={"openai": ap.ProviderConfig(kind="openai", timeout_s=1.5)}
    )
    node = result.nodes["survey"]
    assert node.status == "failed"
    assert "timed out after 1.5s" in (node.error or "")


def test_with_default_options_every_llm_call_has_a_deadline(server: SimServer) -> None:
    from agentplex.engine.attempts import time_limits
    from agentplex.engine.options import DEFAULT_TOTAL_TIMEOUT_S
    from agentplex.llm import DEFAULT_CALL_TIMEOUT_S

    options = RunOptions(model="openai:default", base_url=server.url, api_key="sk-test-key")
    bodies = NodeBodies(one_agent().compile(), options, run_id="r", inputs={})
    provider = bodies.providers.get(bodies.default_model)
    # The deadline the provider wraps around each whole call (streaming included):
    assert provider.call_timeout_s == DEFAULT_CALL_TIMEOUT_S == 600.0
    agent = one_agent().compile().nodes["a"]
    assert time_limits(agent, RunOptions()) == (None, DEFAULT_TOTAL_TIMEOUT_S)
    assert DEFAULT_TOTAL_TIMEOUT_S == 1800.0


def test_a_user_function_gets_no_default_deadline_and_inf_turns_them_off() -> None:
    from agentplex.engine.attempts import time_limits

    wf = ap.Workflow("f")

    @wf.step()
    def slow_on_purpose() -> int:
        return 1

    function = wf.compile().nodes["slow_on_purpose"]
    assert time_limits(function, RunOptions()) == (None, None)
    agent = one_agent().compile().nodes["a"]
    off = RunOptions(timeout_s=math.inf, total_timeout_s=math.inf)
    assert time_limits(agent, off) == (None, None)
    assert time_limits(agent, RunOptions(timeout_s=5, total_timeout_s=60)) == (5, 60)


# -- one output cannot become an unbounded map ---------------------------------------


def test_a_map_over_100000_items_fails_before_starting_any() -> None:
    started = 0

    def items() -> list[int]:
        return list(range(100_000))

    async def each(item: int) -> int:
        nonlocal started
        started += 1
        return item

    wf = ap.Workflow("fanout")
    wf.function(items)
    wf.map("items", fn=each, id="each")
    result = ap.run(wf)
    node = result.nodes["each"]
    assert node.status == "failed"
    assert started == 0
    error = node.error or ""
    assert "'each'" in error
    assert "100,000 items" in error
    assert "limit of 1,000" in error
    assert "max_items: 100000" in error


def test_max_items_raises_the_limit_in_python_and_in_files(tmp_path: Any) -> None:
    def items() -> list[int]:
        return list(range(1_500))

    async def each(item: int) -> int:
        return item

    wf = ap.Workflow("fanout")
    wf.function(items)
    wf.add(
        MapNode(
            id="each",
            over="items",
            body=FunctionNode(id="b", fn=each),
            depends_on=("items",),
            max_items=2_000,
        )
    )
    assert ap.run(wf).outputs["each"] == list(range(1_500))

    path = tmp_path / "wf.yaml"
    path.write_text(
        "nodes:\n"
        "  src: {role: researcher, task: List claims}\n"
        "  checks: {role: fact_checker, task: 'Check {item}', map: src, max_items: 2}\n"
    )
    checks = ap.load_workflow(path).compile().nodes["checks"]
    assert isinstance(checks, MapNode)
    assert checks.max_items == 2
    result = ap.run(ap.load_workflow(path))
    error = result.nodes["checks"].error or ""
    assert re.search(r"gave \d+ items to map over, more than the node's limit of 2", error)
    assert "limit of 2" in error
    assert re.search(r"set max_items: \d+ on node .checks.", error)
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "nodes:\n"
        "  src: {role: researcher, task: List claims}\n"
        "  checks: {role: fact_checker, task: 'Check {item}', map: src, max_items: 0}\n"
    )
    with pytest.raises(ap.exceptions.InvalidWorkflowError, match="max_items"):
        ap.load_workflow(bad).compile()
