"""Running the tool calls a model asks for, side by side, each under its tool's limits.

A :class:`ToolBox` holds the tools one run offers. :meth:`ToolBox.call_all`
runs one model turn's calls concurrently, so a turn's latency is its slowest
call, not their sum; each tool's ``max_concurrency`` is a semaphore shared by
every call of that tool through this box (every node of a run), and its
``timeout_s`` is a timer around one call. A sync tool past its timeout is
answered (its thread cannot be stopped, and runs on to its end, outside the
tool's limit): a tool that can hang should be async, or honour a timeout of
its own.

A model's call is untrusted input. A call of a tool that was not offered, or
with arguments the tool's schema refuses, never reaches a function: it comes
back as an error result the model can read and correct. A tool that raises or
times out comes back the same way (``on_error="return"``) or fails the turn
with a :class:`~agentplex.exceptions.ToolError` (``on_error="fail"``), which
cancels the turn's other calls. Results are text for the model: strings as
they are, anything else as JSON; keys agentplex knows are masked and a result
longer than ``max_result_chars`` is cut, saying so.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from agentplex.exceptions import ToolError
from agentplex.llm.config import mask_secrets
from agentplex.tools.base import Tool

DEFAULT_MAX_RESULT_CHARS = 20_000
"""Longest tool result sent back to a model (about 5,000 tokens); longer ones are cut."""


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """One finished tool call, as the model will read it."""

    call_id: str
    """The provider's id of the call (what the result answers)."""
    name: str
    arguments: Mapping[str, Any]
    """The arguments as the model sent them."""
    content: str
    """The result (or the error) as text for the model."""
    is_error: bool
    started_s: float
    """When the call started, on the box's clock."""
    ended_s: float


@dataclass(frozen=True, slots=True)
class ToolStatistics:
    """Counters of one box."""

    calls: int
    errors: int
    in_flight: int


class ToolBox:
    """The tools of one run; see the module docstring.

    Raises:
        ToolError: at construction, if two tools share a name.
    """

    def __init__(
        self,
        tools: Iterable[Tool],
        *,
        clock: Callable[[], float] = time.perf_counter,
        max_result_chars: int = DEFAULT_MAX_RESULT_CHARS,
    ) -> None:
        self.tools: dict[str, Tool] = {}
        for item in tools:
            if item.name in self.tools and self.tools[item.name] is not item:
                raise ToolError(item.name, "two tools have this name. Fix: rename one.")
            self.tools[item.name] = item
        self.clock = clock
        self.max_result_chars = max_result_chars
        self._limits = {
            t.name: asyncio.Semaphore(t.max_concurrency)
            for t in self.tools.values()
            if t.max_concurrency is not None
        }
        self._processes: ProcessPoolExecutor | None = None
        self._calls = self._errors = self._in_flight = 0

    def specs(self, names: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Return ``{name, description, parameters}`` of the named tools (all by default).

        Raises:
            ToolError: for a name that is not in the box.
        """
        chosen = list(self.tools) if names is None else list(names)
        for name in chosen:
            if name not in self.tools:
                raise ToolError(name, f"no such tool; known: {', '.join(sorted(self.tools))}.")
        return [
            {
                "name": t.name,
                "description": t.description,
                "parameters": dict(t.parameters),
            }
            for t in (self.tools[n] for n in chosen)
        ]

    async def call_all(
        self,
        calls: Sequence[tuple[str, str, Mapping[str, Any] | str]],
        *,
        offered: Collection[str] | None = None,
    ) -> list[ToolOutcome]:
        """Run one turn's ``(call_id, name, arguments)`` calls side by side; results in order.

        Raises:
            ToolError: if a tool with ``on_error="fail"`` raised or timed out (the
                turn's other calls are cancelled).
        """
        if len(calls) == 1:
            call_id, name, arguments = calls[0]
            return [await self.call(call_id, name, arguments, offered=offered)]
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(self.call(call_id, name, arguments, offered=offered))
                    for call_id, name, arguments in calls
                ]
        except BaseExceptionGroup as failed:
            first = failed.exceptions[0]
            raise first from first.__cause__  # the tool's own exception stays the cause
        return [task.result() for task in tasks]

    async def call(
        self,
        call_id: str,
        name: str,
        arguments: Mapping[str, Any] | str,
        *,
        offered: Collection[str] | None = None,
    ) -> ToolOutcome:
        """Run one call; see :meth:`call_all`.

        ``offered`` names the tools the model was given (default: all of the box's);
        a call of any other comes back as an error and runs nothing.

        Raises:
            ToolError: if the tool has ``on_error="fail"`` and raised or timed out.
        """
        started = self.clock()
        given: Mapping[str, Any] = arguments if isinstance(arguments, Mapping) else {}
        self._calls += 1
        tool = self.tools.get(name)
        if tool is None or (offered is not None and name not in offered):
            known = sorted(self.tools if offered is None else offered)
            return self._error(
                call_id, name, given, started, f"no tool named {name!r}; tools: {', '.join(known)}"
            )
        if isinstance(arguments, str):
            try:
                parsed = json.loads(arguments or "{}")
            except ValueError as exc:
                return self._error(call_id, name, given, started, f"arguments are not JSON: {exc}")
            if not isinstance(parsed, dict):
                return self._error(call_id, name, given, started, "arguments must be a JSON object")
            given = parsed
        try:
            checked = tool.check_arguments(given)
        except ValueError as exc:
            return self._error(call_id, name, given, started, str(exc))
        self._in_flight += 1
        try:
            value = await self._run(tool, checked)
        except Exception as exc:  # the tool's own failure: its policy decides
            why = (
                f"timed out after {tool.timeout_s:g}s"
                if isinstance(exc, TimeoutError)
                else f"{type(exc).__name__}: {exc}"
            )
            if tool.on_error == "fail":
                self._errors += 1
                raise ToolError(
                    name, f"failed ({mask_secrets(why)}), and fails its node (on_error='fail')."
                ) from exc
            return self._error(call_id, name, given, started, why)
        finally:
            self._in_flight -= 1
        return ToolOutcome(call_id, name, given, self._text(value), False, started, self.clock())

    async def _run(self, tool: Tool, arguments: dict[str, Any]) -> Any:
        limit = self._limits.get(tool.name)
        if limit is None:
            return await self._timed(tool, arguments)
        async with limit:
            return await self._timed(tool, arguments)

    async def _timed(self, tool: Tool, arguments: dict[str, Any]) -> Any:
        if tool.timeout_s is None:
            return await self._invoke(tool, arguments)
        async with asyncio.timeout(tool.timeout_s):
            return await self._invoke(tool, arguments)

    async def _invoke(self, tool: Tool, arguments: dict[str, Any]) -> Any:
        fn = tool.fn
        if inspect.iscoroutinefunction(fn):
            return await fn(**arguments)
        if tool.cpu_bound:
            if self._processes is None:
                self._processes = ProcessPoolExecutor()
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._processes, functools.partial(fn, **arguments))
        return await asyncio.to_thread(fn, **arguments)

    def _error(
        self, call_id: str, name: str, arguments: Mapping[str, Any], started: float, why: str
    ) -> ToolOutcome:
        self._errors += 1
        text = self._cut(mask_secrets(f"error: {why}"))
        return ToolOutcome(call_id, name, arguments, text, True, started, self.clock())

    def _text(self, value: Any) -> str:
        if isinstance(value, str):
            text = value
        else:
            try:
                text = json.dumps(value, ensure_ascii=False, default=str)
            except (TypeError, ValueError):  # a circular structure, say
                text = repr(value)
        return self._cut(mask_secrets(text))

    def _cut(self, text: str) -> str:
        if len(text) <= self.max_result_chars:
            return text
        cut = len(text) - self.max_result_chars
        return f"{text[: self.max_result_chars]}\n[... {cut:,} more characters cut]"

    def statistics(self) -> ToolStatistics:
        """Return the box's call counters."""
        return ToolStatistics(self._calls, self._errors, self._in_flight)

    async def aclose(self) -> None:
        """Stop the process pool of ``cpu_bound`` tools, if one was started."""
        if self._processes is not None:
            processes, self._processes = self._processes, None
            await asyncio.to_thread(processes.shutdown)
