"""Tools from Python functions (agentplex.tools): schemas from signatures, and running calls."""

from __future__ import annotations

import asyncio
import os
from typing import Literal

import pytest

from agentplex.exceptions import ToolError
from agentplex.llm import config
from agentplex.tools import Tool, ToolBox, tool


@tool
async def search_archive(
    query: str, limit: int = 5, kind: Literal["news", "blog"] = "news"
) -> list[str]:
    """Search the newsroom archive.

    Args:
        query: words to look for,
            in any order.
        limit: most results to return.

    Returns:
        Matching headlines.
    """
    return [f"{kind}: {query} #{i}" for i in range(limit)]


def test_schema_comes_from_the_signature_and_docstring() -> None:
    assert search_archive.name == "search_archive"
    assert search_archive.description == "Search the newsroom archive."
    params = search_archive.parameters
    assert params["type"] == "object"
    assert params["required"] == ["query"]
    assert params["additionalProperties"] is False
    props = params["properties"]
    assert props["query"]["type"] == "string"
    assert props["query"]["description"] == "words to look for, in any order."
    assert props["limit"] == {
        "default": 5,
        "description": "most results to return.",
        "title": "Limit",
        "type": "integer",
    }
    assert props["kind"]["enum"] == ["news", "blog"]


def test_arguments_are_checked_and_converted_by_the_signature() -> None:
    assert search_archive.check_arguments({"query": "x", "limit": "3"}) == {
        "query": "x",
        "limit": 3,
        "kind": "news",
    }
    with pytest.raises(ValueError, match=r"limit: Input should be a valid integer"):
        search_archive.check_arguments({"query": "x", "limit": "many"})
    with pytest.raises(ValueError, match=r"query: Field required"):
        search_archive.check_arguments({})
    with pytest.raises(ValueError, match=r"shell: Extra inputs are not permitted"):
        search_archive.check_arguments({"query": "x", "shell": "rm -rf /"})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "1bad name"}, "must start with a letter"),
        ({"max_concurrency": 0}, "max_concurrency must be a whole number >= 1"),
        ({"timeout_s": -1}, "timeout_s must be a number of seconds > 0"),
        ({"on_error": "ignore"}, "on_error must be 'return' or 'fail'"),
    ],
)
def test_bad_tool_settings_are_refused_with_the_fix(
    kwargs: dict[str, object], message: str
) -> None:
    def f(x: int) -> int:
        return x

    with pytest.raises(ToolError, match=message):
        Tool.from_function(f, **kwargs)  # type: ignore[arg-type]


def test_a_parameter_a_model_cannot_pass_by_name_is_refused() -> None:
    def f(*values: int) -> int:
        return sum(values)

    with pytest.raises(ToolError, match=r"parameter 'values' is variadic positional"):
        Tool.from_function(f)


async def test_a_turns_calls_run_side_by_side_and_per_tool_limits_hold() -> None:
    running = peak = 0

    async def slow(n: int) -> int:
        """Wait, then echo."""
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.2)
        running -= 1
        return n

    box = ToolBox([Tool.from_function(slow)])
    outcomes = await box.call_all([(f"c{i}", "slow", {"n": i}) for i in range(5)])
    assert [o.content for o in outcomes] == ["0", "1", "2", "3", "4"]
    assert peak == 5  # all five at once, not one after another

    peak = 0
    limited = ToolBox([Tool.from_function(slow, max_concurrency=2)])
    await limited.call_all([(f"c{i}", "slow", {"n": i}) for i in range(5)])
    assert peak == 2


async def test_sync_tools_run_in_threads_off_the_loop() -> None:
    import threading

    loop_thread = threading.get_ident()

    def where() -> int:
        """Say which thread runs this."""
        return threading.get_ident()

    box = ToolBox([Tool.from_function(where)])
    (outcome,) = await box.call_all([("c1", "where", {})])
    assert int(outcome.content) != loop_thread


async def test_untrusted_calls_never_reach_a_function() -> None:
    called: list[str] = []

    def secret_action(path: str) -> str:
        """Do something only the user may choose."""
        called.append(path)
        return "done"

    box = ToolBox([search_archive, Tool.from_function(secret_action)])
    unknown = await box.call("c1", "os_system", {"cmd": "id"})
    not_offered = await box.call(
        "c2", "secret_action", {"path": "/etc"}, offered=["search_archive"]
    )
    bad_json = await box.call("c3", "search_archive", "{not json")
    not_object = await box.call("c4", "search_archive", "[1, 2]")
    bad_args = await box.call("c5", "search_archive", {"query": 3, "limit": -1, "x": 1})
    assert called == []
    for outcome in (unknown, not_offered, bad_json, not_object, bad_args):
        assert outcome.is_error
        assert outcome.content.startswith("error: ")
    assert "no tool named 'os_system'" in unknown.content
    assert "tools: search_archive" in not_offered.content
    assert "arguments are not JSON" in bad_json.content
    assert "must be a JSON object" in not_object.content
    assert "Extra inputs are not permitted" in bad_args.content
    assert box.statistics().errors == 5


async def test_a_tool_error_goes_back_to_the_model_by_default() -> None:
    def broken(x: int) -> int:
        """Always fails."""
        raise RuntimeError(f"archive offline for {x}")

    async def stuck() -> str:
        """Never answers."""
        await asyncio.sleep(30)
        return "late"

    box = ToolBox([Tool.from_function(broken), Tool.from_function(stuck, timeout_s=0.05)])
    failed, late = await box.call_all([("c1", "broken", {"x": 1}), ("c2", "stuck", {})])
    assert failed.is_error
    assert failed.content == "error: RuntimeError: archive offline for 1"
    assert late.is_error
    assert late.content == "error: timed out after 0.05s"


async def test_on_error_fail_fails_the_turn_and_cancels_its_other_calls() -> None:
    cancelled = asyncio.Event()

    def broken() -> str:
        """Always fails."""
        raise RuntimeError("boom")

    async def long_call() -> str:
        """Takes long."""
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "late"

    box = ToolBox([Tool.from_function(broken, on_error="fail"), Tool.from_function(long_call)])
    with pytest.raises(ToolError, match=r"tool 'broken': failed \(RuntimeError: boom\)") as info:
        await box.call_all([("c1", "long_call", {}), ("c2", "broken", {})])
    assert isinstance(info.value.__cause__, RuntimeError)
    assert cancelled.is_set()


async def test_results_are_text_with_keys_masked_and_long_results_cut() -> None:
    config._register("sk-tooltest-0123456789abcdef")  # as a provider's key is, when read

    def leaky() -> dict[str, object]:
        """Return a record holding a key."""
        return {"key": "sk-tooltest-0123456789abcdef", "n": 1}

    def huge() -> str:
        """Return a lot."""
        return "x" * 50

    box = ToolBox([Tool.from_function(leaky), Tool.from_function(huge)], max_result_chars=10)
    box.max_result_chars = 100
    (leaked,) = await box.call_all([("c1", "leaky", {})])
    assert "sk-tooltest" not in leaked.content
    assert leaked.content == '{"key": "***", "n": 1}'
    box.max_result_chars = 10
    (cut,) = await box.call_all([("c1", "huge", {})])
    assert cut.content == "x" * 10 + "\n[... 40 more characters cut]"


def test_two_tools_of_one_name_are_refused() -> None:
    def a() -> None:
        """A."""

    with pytest.raises(ToolError, match="two tools have this name"):
        ToolBox([Tool.from_function(a, name="same"), Tool.from_function(lambda: None, name="same")])
    box = ToolBox([search_archive])
    with pytest.raises(ToolError, match="no such tool"):
        box.specs(["nope"])
    assert box.specs() == [
        {
            "name": "search_archive",
            "description": "Search the newsroom archive.",
            "parameters": dict(search_archive.parameters),
        }
    ]


def process_id() -> int:
    """Say which process runs this (module level, so a process can import it)."""
    return os.getpid()


async def test_cpu_bound_tools_run_in_another_process() -> None:
    box = ToolBox([Tool.from_function(process_id, cpu_bound=True)])
    try:
        (outcome,) = await box.call_all([("c1", "process_id", {})])
        assert int(outcome.content) != os.getpid()
    finally:
        await box.aclose()
    assert box._processes is None


async def test_a_tool_built_from_a_schema_checks_arguments_with_it() -> None:
    async def lookup(**arguments: object) -> str:
        return f"found {arguments['entity']}"

    described = Tool(
        name="lookup_entity",
        description="Look an entity up.",
        parameters={
            "type": "object",
            "properties": {"entity": {"type": "string"}},
            "required": ["entity"],
            "additionalProperties": False,
        },
        fn=lookup,
    )
    box = ToolBox([described])
    ok, refused = await box.call_all(
        [("c1", "lookup_entity", {"entity": "ACME"}), ("c2", "lookup_entity", {"entity": 3})]
    )
    assert ok.content == "found ACME"
    assert refused.is_error
    assert (
        refused.content
        == "error: invalid arguments for lookup_entity: entity: 3 is not of type 'string'"
    )


def test_parameters_named_like_pydantic_methods_work() -> None:
    def export(json: str, copy: int = 1) -> str:
        """Export a document."""
        return json * copy

    described = Tool.from_function(export)
    assert sorted(described.parameters["properties"]) == ["copy", "json"]
    assert described.check_arguments({"json": "a", "copy": 2}) == {"json": "a", "copy": 2}
