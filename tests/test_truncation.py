"""Output caps, truncation policies, every attempt's tokens and structured outputs, end to end.

The simulator honours the output cap like a real server (an answer longer than
the cap is cut there and reports ``finish_reason: length``), so these run the
real engine on it; a scripted provider plays the calls the simulator cannot
(a stream that hangs midway).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

import agentplex as ap
from agentplex.engine.options import DEFAULT_MAX_OUTPUT_TOKENS
from tests.cli import cli

LONG_TASK = "Write a long essay about the history of web frameworks."


def _one_agent(**node: Any) -> ap.Workflow:
    wf = ap.Workflow("capped")
    wf.agent("writer", LONG_TASK, id="essay", **node)
    return wf


def test_every_call_gets_the_default_cap_and_the_most_specific_setting_wins() -> None:
    seen: list[int | None] = []

    class Recorder(ap.Provider):
        name = "recorder"

        def __init__(self, resolved: Any, *, max_connections: int = 16) -> None:
            super().__init__()

        async def _complete(self, request: ap.Request) -> ap.Completion:
            seen.append(request.max_output_tokens)
            return ap.Completion("ok", ap.Usage(1, 1), request.model, self.label)

    ap.register_provider("recorder", Recorder)
    try:
        wf = ap.Workflow("caps", defaults={"max_output_tokens": 300})
        wf.agent("writer", "a", id="a")
        wf.agent("writer", "b", id="b", max_output_tokens=50)
        ap.run(wf, model="recorder:m", max_concurrency=1).raise_for_status()
        assert sorted(seen) == [50, 300]  # the node's own, else the workflow's default
        seen.clear()
        ap.run(wf, model="recorder:m", max_output_tokens=80, max_concurrency=1, cache=False)
        assert sorted(seen) == [50, 80]  # the run's flag beats defaults:, not the node
        seen.clear()
        bare = ap.Workflow("bare")
        bare.agent("writer", "c", id="c")
        ap.run(bare, model="recorder:m")
        assert seen == [DEFAULT_MAX_OUTPUT_TOKENS]
    finally:
        from agentplex import llm

        llm._PROVIDERS.pop("recorder")


def test_a_cut_off_answer_is_kept_flagged_and_listed_by_default() -> None:
    result = ap.run(_one_agent(), model="sim:instant", max_output_tokens=8)
    node = result.nodes["essay"]
    assert result.ok
    assert node.finish_reason == "length"
    assert node.truncated
    assert node.usage is not None
    assert node.usage.output_tokens == 8
    record = json.loads(result.to_json())["nodes"]["essay"]
    assert record["finish_reason"] == "length"
    assert record["truncated"] is True
    again = ap.RunResult.from_dict(json.loads(result.to_json()))
    assert again.nodes["essay"].truncated  # the store and reports read it back


def test_an_answer_within_its_cap_says_why_it_stopped() -> None:
    result = ap.run(_one_agent(), model="sim:instant")
    assert result.nodes["essay"].finish_reason == "stop"
    assert not result.nodes["essay"].truncated


def test_on_truncated_fail_fails_the_node_saying_what_to_raise() -> None:
    result = ap.run(_one_agent(on_truncated="fail"), model="sim:instant", max_output_tokens=8)
    node = result.nodes["essay"]
    assert node.status == "failed"
    assert node.attempts == 1  # not retried: the same cap would cut it again
    assert "cut off at its output cap of 8 tokens" in (node.error or "")
    assert "max_output_tokens" in (node.error or "")
    assert node.usage is not None
    assert node.usage.output_tokens == 8


def test_on_truncated_retry_doubles_the_cap_and_counts_every_attempt() -> None:
    result = ap.run(
        _one_agent(on_truncated="retry"), model="sim:instant", max_output_tokens=8,
        backoff_base_s=0.001,
    )  # fmt: skip
    node = result.nodes["essay"]
    assert result.ok
    assert node.attempts > 1
    assert node.finish_reason == "stop"  # the last attempt's cap was enough
    text_tokens = len(str(node.output)) // 4
    # Every dropped attempt's output (8, 16, ...) is in the node's usage too.
    assert node.usage is not None
    assert node.usage.output_tokens >= text_tokens + 8


def test_the_cli_shows_cut_off_answers_and_takes_the_flags() -> None:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "wf.yaml"
        path.write_text(
            f"name: capped\nnodes:\n  essay:\n    role: writer\n    task: {LONG_TASK}\n",
            encoding="utf-8",
        )
        shown = cli("run", str(path), "--model", "sim:instant", "--max-output-tokens", "8")
        assert shown.exit_code == 0, shown.output
        assert "(cut off)" in shown.output
        assert "cut off at their output cap" in shown.output
        failed = cli(
            "run", str(path), "--model", "sim:instant", "--max-output-tokens", "8",
            "--on-truncated", "fail", "--json", "--no-cache",
        )  # fmt: skip
        assert failed.exit_code == 1
        assert json.loads(failed.stdout)["nodes"]["essay"]["error_type"] == "AnswerTruncatedError"


class Stalling(ap.Provider):
    """The first call streams a little and then hangs; later calls answer."""

    name = "stalling"
    calls: ClassVar[int] = 0

    def __init__(self, resolved: Any, *, max_connections: int = 16) -> None:
        super().__init__()
        self.set_call_timeout(resolved.timeout_s)

    async def _complete(self, request: ap.Request) -> ap.Completion:
        type(self).calls += 1
        if type(self).calls == 1:
            assert request.on_text is not None
            request.on_text("x" * 400)  # 100 tokens streamed, then nothing
            await asyncio.sleep(3600)
        return ap.Completion("done", ap.Usage(30, 2), request.model, self.label)


@pytest.fixture
def stalling() -> Iterator[None]:
    Stalling.calls = 0
    ap.register_provider("stalling", Stalling)
    yield
    from agentplex import llm

    llm._PROVIDERS.pop("stalling")


@pytest.mark.usefixtures("stalling")
def test_the_tokens_of_an_attempt_cut_off_by_its_deadline_count_in_the_node() -> None:
    wf = ap.Workflow("stall")
    wf.agent("writer", "w" * 80, id="w")  # 20 prompt tokens, plus the system prompt
    result = ap.run(
        wf, model="stalling:m", stream=True, timeout_s=0.3, backoff_base_s=0.001, cache=False,
        observers=[lambda event: None],  # streaming needs someone listening
    )  # fmt: skip
    node = result.nodes["w"]
    assert result.ok
    assert node.attempts == 2
    assert node.usage is not None
    assert node.usage.estimated  # the cut-off attempt reported nothing: estimated
    assert node.usage.output_tokens == 2 + 100  # the answer's, and what streamed before
    assert node.usage.input_tokens > 30 + 20  # both prompts
    assert result.usage.estimated
    assert result.usage.total_tokens == node.usage.total_tokens


@pytest.mark.usefixtures("stalling")
def test_a_node_that_fails_keeps_the_tokens_it_spent() -> None:
    wf = ap.Workflow("stall")
    wf.agent("writer", "w", id="w")
    result = ap.run(
        wf, model="stalling:m", stream=True, timeout_s=0.3, retries=0, cache=False,
        observers=[lambda event: None],
    )  # fmt: skip
    node = result.nodes["w"]
    assert node.status == "failed"
    assert "attempt timed out after 0.3s" in (node.error or "")  # which limit fired
    assert node.usage is not None
    assert node.usage.output_tokens == 100
    assert node.usage.estimated


def test_a_structured_node_hands_its_parsed_value_downstream() -> None:
    schema = {
        "type": "object",
        "properties": {"title": {"type": "string"}, "year": {"type": "integer"}},
        "required": ["title", "year"],
    }
    got: list[Any] = []
    wf = ap.Workflow("structured")
    wf.agent("researcher", "Find a paper", id="extract", output=schema)

    @wf.step(depends_on=["extract"])
    def use(extract: dict[str, Any]) -> str:
        got.append(extract)
        return f"{extract['title']} ({extract['year']})"

    wf.agent("writer", "Summarise {extract.title}", id="summary", depends_on=["extract"])
    result = ap.run(wf, model="sim:instant")
    assert result.ok, result.nodes
    value = result.outputs["extract"]
    assert isinstance(value, dict)
    assert isinstance(value["year"], int)
    assert got == [value]
    assert value["title"] in str(result.outputs["use"])
