"""Finding a plan in what a model wrote, whole or while it streams.

Models wrap JSON in prose and code fences, or stop half-way. :func:`find_plan`
takes the first JSON object in the text that has an ``"agents"`` list (or, for
reviews, a given key). :class:`AgentLines` reads a plan as it streams: every
complete line that is one agent object (``{"role": ..., ...}``, a trailing
comma allowed) is an agent, numbered in the order it arrived.

Both are linear in the answer's length and bounded, since the answer is
untrusted: an answer longer than :data:`MAX_PLAN_CHARS` is refused, and so is
JSON nested deeper than :data:`MAX_PLAN_DEPTH` levels, measured without
recursion once decoded; past about a thousand levels the C decoder itself
stops with ``RecursionError``, which is caught right at the call, so the
caller never sees one. The refusal is a :class:`PlanParseError` worded for the
coordinator, which the planner sends back as a repair prompt. A stream stops
yielding agents once it passes the size limit (the whole answer will be
refused), and an agent line nested too deeply is counted but never yielded.
"""

from __future__ import annotations

import json
import re
from typing import Any

from agentplex.exceptions import PlanParseError

MAX_PLAN_CHARS = 1_000_000
"""The longest answer searched for a plan (about 250,000 tokens); longer ones are refused."""
MAX_PLAN_DEPTH = 32
"""How deeply lists and objects may nest in a plan (a plan needs four levels)."""

_DECODER = json.JSONDecoder()
# Where a JSON object can begin: "{" then optional JSON whitespace, then a key or "}".
# Other "{" fail at once, so they are never decoded.
_OBJECT_START = re.compile(r'\{[ \t\n\r]*["}]')
# Decodes that fail cost O(position) each (the error computes its line and column),
# so after this many the search stops: a real answer has a handful at most.
_MAX_FAILED_DECODES = 100
_AGENT_KEYS = ("role", "task", "function", "depends_on")


def _too_large(size: int) -> PlanParseError:
    return PlanParseError(
        f"the answer is too large: {size:,} characters, and at most {MAX_PLAN_CHARS:,} are "
        "read. Send a shorter answer: fewer agents, shorter tasks, JSON only."
    )


def _too_deep() -> PlanParseError:
    return PlanParseError(
        f"the answer's JSON is nested too deeply (over {MAX_PLAN_DEPTH} levels). Send a flat "
        'plan: {"agents": [{"role": ..., "task": ..., "depends_on": [0]}]}.'
    )


def nested_deeper(value: Any, limit: int) -> bool:
    """Return whether lists and dicts in ``value`` nest more than ``limit`` levels.

    Iterative, so any depth is safe to measure; stops at the first level past ``limit``.
    """
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def find_json(text: str, key: str) -> dict[str, Any]:
    """Return the first JSON object in ``text`` that has ``key``.

    Linear in ``len(text)``: at most :data:`MAX_PLAN_CHARS` characters, the
    decoder is never started where an object cannot begin, decodes that
    succeed may cover each character about :data:`MAX_PLAN_DEPTH` times in
    all, and failed decodes are capped.

    Raises:
        PlanParseError: if there is none, or the text is too large or nested too deeply.
    """
    if len(text) > MAX_PLAN_CHARS:
        raise _too_large(len(text))
    last_error = "no JSON object"
    failed = 0
    decoded = 0  # characters covered by successful decodes, summed over starts
    budget = MAX_PLAN_DEPTH * len(text) + 4096
    for match in _OBJECT_START.finditer(text):
        start = match.start()
        try:
            value, end = _DECODER.raw_decode(text, start)
        except RecursionError:  # raised by the C decoder as it enters one level too many
            raise _too_deep() from None
        except json.JSONDecodeError as exc:
            last_error = f"invalid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
            failed += 1
        except ValueError:  # an integer of more digits than Python converts
            last_error = "invalid JSON (a number with too many digits)"
            failed += 1
        else:
            if isinstance(value, dict) and key in value:
                if nested_deeper(value, MAX_PLAN_DEPTH):
                    raise _too_deep()
                return value
            last_error = f'a JSON object without "{key}"'
            decoded += end - start
            if decoded > budget:  # objects inside objects, on average too deep
                raise _too_deep()
        if failed > _MAX_FAILED_DECODES:
            raise PlanParseError(
                f'the answer has no JSON object with "{key}": found {last_error}, and more '
                f"than {_MAX_FAILED_DECODES} other places that are not JSON. Answer with "
                "the JSON object only."
            )
    raise PlanParseError(f'the answer has no JSON object with "{key}": found {last_error}.')


def find_plan(text: str) -> dict[str, Any]:
    """Return the plan (``{"agents": [...]}``) in ``text``.

    Raises:
        PlanParseError: if there is none, or the text is too large or nested too deeply.
    """
    return find_json(text, "agents")


class AgentLines:
    """Feed streamed text; get each agent object as soon as its line is complete.

    Each character is handled a bounded number of times, whatever the chunks:
    the unfinished line is kept as a list of pieces and joined once, when its
    newline arrives.
    """

    def __init__(self) -> None:
        self.pending: list[str] = []
        """Pieces of the line not finished yet."""
        self.count = 0
        """Agent lines seen so far (valid or not), so indices match the whole plan's."""
        self.chars = 0
        """Characters fed so far."""
        self.full = False
        """Past :data:`MAX_PLAN_CHARS`: the whole answer will be refused; nothing more is read."""

    def feed(self, text: str) -> list[tuple[int, dict[str, Any]]]:
        """Add ``text``; return the ``(index, agent)`` pairs it completed."""
        if self.full:
            return []
        self.chars += len(text)
        if self.chars > MAX_PLAN_CHARS:
            self.full = True
            self.pending = []
            return []
        if "\n" not in text:
            self.pending.append(text)
            return []
        first, *lines, rest = text.split("\n")
        self.pending.append(first)
        lines.insert(0, "".join(self.pending))
        self.pending = [rest] if rest else []
        return [agent for line in lines if (agent := self._agent(line)) is not None]

    def close(self) -> list[tuple[int, dict[str, Any]]]:
        """The last line, if it was an agent."""
        rest, self.pending = "".join(self.pending), []
        if self.full:
            return []
        agent = self._agent(rest)
        return [agent] if agent is not None else []

    def _agent(self, line: str) -> tuple[int, dict[str, Any]] | None:
        line = line.strip().rstrip(",").strip()
        if not (line.startswith("{") and line.endswith("}")):
            return None
        try:
            value = _decode(line)
            if value is None and line.endswith("]}"):
                # the last agent followed by the end of the plan on the same line
                value = _decode(line[:-2].rstrip())
        except RecursionError:  # raised by the C decoder as it enters one level too many
            self.count += 1  # an agent line of the plan, which the whole plan refuses
            return None
        if not isinstance(value, dict) or "agents" in value:
            return None
        if not any(key in value for key in _AGENT_KEYS):
            return None  # counted even when invalid, so indices match the whole plan's
        index = self.count
        self.count += 1
        if nested_deeper(value, MAX_PLAN_DEPTH - 2):  # an agent sits two levels down a plan
            return None
        return index, value


def _decode(line: str) -> Any:
    """The JSON value of ``line``, or None if it is not JSON (``RecursionError`` passes)."""
    try:
        return json.loads(line)
    except ValueError:
        return None
