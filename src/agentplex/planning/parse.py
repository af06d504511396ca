"""Finding a plan in what a model wrote, whole or while it streams.

Models wrap JSON in prose and code fences, or stop half-way. :func:`find_plan`
takes the first JSON object in the text that has an ``"agents"`` list (or, for
reviews, a given key). :class:`AgentLines` reads a plan as it streams: every
complete line that is one agent object (``{"role": ..., ...}``, a trailing
comma allowed) is an agent, numbered in the order it arrived.
"""

from __future__ import annotations

import json
from typing import Any

_DECODER = json.JSONDecoder()


class PlanParseError(ValueError):
    """No usable JSON plan in the text; the message says what was found instead."""


def find_json(text: str, key: str) -> dict[str, Any]:
    """Return the first JSON object in ``text`` that has ``key``.

    Raises:
        PlanParseError: if there is none.
    """
    start = text.find("{")
    last_error = "no JSON object"
    while start >= 0:
        try:
            value, _end = _DECODER.raw_decode(text, start)
        except json.JSONDecodeError as exc:
            last_error = f"invalid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        else:
            if isinstance(value, dict) and key in value:
                return value
            last_error = f'a JSON object without "{key}"'
        start = text.find("{", start + 1)
    raise PlanParseError(f'the answer has no JSON object with "{key}": found {last_error}.')


def find_plan(text: str) -> dict[str, Any]:
    """Return the plan (``{"agents": [...]}``) in ``text``.

    Raises:
        PlanParseError: if there is none.
    """
    return find_json(text, "agents")


class AgentLines:
    """Feed streamed text; get each agent object as soon as its line is complete."""

    def __init__(self) -> None:
        self.buffer = ""
        self.count = 0

    def feed(self, text: str) -> list[tuple[int, dict[str, Any]]]:
        """Add ``text``; return the ``(index, agent)`` pairs it completed."""
        self.buffer += text
        *lines, self.buffer = self.buffer.split("\n")
        return [agent for line in lines if (agent := self._agent(line)) is not None]

    def close(self) -> list[tuple[int, dict[str, Any]]]:
        """The last line, if it was an agent."""
        rest, self.buffer = self.buffer, ""
        agent = self._agent(rest)
        return [agent] if agent is not None else []

    def _agent(self, line: str) -> tuple[int, dict[str, Any]] | None:
        line = line.strip().rstrip(",").strip()
        if not (line.startswith("{") and line.endswith("}")):
            return None
        try:
            value = json.loads(line)
        except ValueError:
            if not line.endswith("]}"):
                return None
            try:  # the last agent followed by the end of the plan on the same line
                value = json.loads(line[:-2].rstrip())
            except ValueError:
                return None
        if not isinstance(value, dict) or "agents" in value:
            return None
        if not any(key in value for key in ("role", "task", "function", "depends_on")):
            return None  # counted even when invalid, so indices match the whole plan's
        index = self.count
        self.count += 1
        return index, value
