"""Finding a plan in what a model wrote, whole or while it streams.

Models wrap JSON in prose and code fences, or stop half-way. :func:`find_plan`
takes the first JSON object in the text that has an ``"agents"`` list (or, for
reviews, a given key). :class:`AgentStream` reads a plan as it streams, laid
out in any way (pretty-printed, as small models and grammar-constrained ones
write it, or one agent per line, or all on one line): each element of the
``"agents"`` array is handed over, with its index, once its object has closed.

It is a small scanner rather than a partial-JSON parser such as ``jiter``
(which the ``openai`` extra brings): a partial parse cannot tell a closed
object from one cut off after a complete value (``{"task": "a"`` and
``{"task": "a"}`` read the same, ``[1`` may become ``[12``), reports no
offsets to resume from, so it would re-read the buffer on every chunk; and
planning must work with the core dependencies alone (the simulator has no extra).

Both are linear in the answer's length and bounded, since the answer is
untrusted: an answer longer than :data:`MAX_PLAN_CHARS` is refused, and so is
JSON nested deeper than :data:`MAX_PLAN_DEPTH` levels, measured without
recursion once decoded; past about a thousand levels the C decoder itself
stops with ``RecursionError``, which is caught right at the call, so the
caller never sees one. The refusal is a :class:`PlanParseError` worded for the
coordinator, which the planner sends back as a repair prompt. A stream stops
yielding agents once it passes the size limit (the whole answer will be
refused), and an agent nested too deeply is counted but never handed over.
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
# Where AgentStream's scanner stops: outside strings, and inside them.
_STRUCTURAL = re.compile(r'[{}\[\]",:]')
_STRING_STOP = re.compile(r'["\\]')


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


class AgentStream:
    """Feed a plan as it streams; get each agent object as soon as it is complete.

    The plan may be laid out in any way (one agent per line, pretty-printed, all
    on one line) and wrapped in prose or a code fence. The agents are the
    elements of the first ``"agents": [...]`` array in the text, numbered in
    order, so streamed indices match the whole plan's; an element that is not
    an object, or is nested too deeply, takes its index but is never handed over.

    An agent object is handed over when its closing ``}`` arrives, never
    before: a half-written task, or a number that may still grow (``[1`` before
    ``[12``), is inside an unclosed object. Strings, their escapes and brackets
    are tracked across chunk boundaries by a small scanner, so a ``}`` inside a
    task is text, not the object's end.

    Linear in the text, whatever the chunks: the scanner jumps between
    structural characters with a regular expression (each character is looked
    at once), an unfinished object is kept as a list of pieces joined once when
    it closes, and each object's text is decoded once (:attr:`decoded` counts
    the characters handed to the decoder, at most :attr:`chars`). A stream past
    :data:`MAX_PLAN_CHARS` stops handing over agents (the whole answer will be
    refused), and once the agents array has closed the rest is not read.
    """

    def __init__(self) -> None:
        self.count = 0
        """Elements of the agents array seen so far, so indices match the whole plan's."""
        self.chars = 0
        """Characters fed so far."""
        self.decoded = 0
        """Characters handed to the JSON decoder (one per character of each closed agent)."""
        self.full = False
        """Past :data:`MAX_PLAN_CHARS`: the whole answer will be refused; nothing more is read."""
        self.done = False
        """The agents array has closed: what follows cannot add agents."""
        self._depth = 0  # open objects and arrays, of any kind (the JSON decoder checks the kinds)
        self._in_string = False
        self._escape = False  # the chunk ended right after a backslash inside a string
        self._key: list[str] | None = None  # the string being read, while it may still be "agents"
        self._key_chars = 0
        self._after_agents = False  # the last string read was exactly "agents"
        self._expect_array = False  # just read `"agents":`; a `[` now opens the agents array
        self._array = 0  # depth inside the agents array; 0 until it has opened
        self._element = False  # the current element of the agents array has begun
        self._start = -1  # where the open agent object began in this chunk; -1: none open
        self._pieces: list[str] = []  # the open agent object's text from earlier chunks
        self._too_deep = False  # the open agent object nests past the limit: never decoded

    def feed(self, text: str) -> list[tuple[int, dict[str, Any]]]:
        """Add ``text``; return the ``(index, agent)`` pairs it completed."""
        if self.full or self.done:
            return []
        self.chars += len(text)
        if self.chars > MAX_PLAN_CHARS:
            self.full = True
            self._pieces = []
            return []
        got: list[tuple[int, dict[str, Any]]] = []
        pos, end = 0, len(text)
        while pos < end:
            if self._in_string:
                pos = self._string(text, pos)
                continue
            match = _STRUCTURAL.search(text, pos)
            stop = end if match is None else match.start()
            if self._array and self._depth == self._array and not self._element:
                # a number, true, false or null as an element of the agents array
                self._element = bool(text[pos:stop].strip())
            if match is None:
                break
            pos = stop + 1
            self._structural(text, stop, got)
            if self.done:
                return got
        if self._start >= 0:  # an agent object still open: keep this chunk's part of it
            if not self._too_deep:
                self._pieces.append(text[self._start :])
            self._start = 0
        return got

    def close(self) -> list[tuple[int, dict[str, Any]]]:
        """End the stream. Nothing more is handed over: an object still open was cut off."""
        self.done = True
        self._pieces = []
        self._start = -1
        return []

    def _string(self, text: str, pos: int) -> int:
        """Read string characters from ``pos``; return where to continue."""
        if self._escape:  # the escaped character opens this chunk
            self._escape = False
            return pos + 1
        match = _STRING_STOP.search(text, pos)
        stop = len(text) if match is None else match.start()
        if self._key is not None:
            self._key_chars += stop - pos
            if self._key_chars > len("agents"):
                self._key = None
            else:
                self._key.append(text[pos:stop])
        if match is None:
            return stop
        if text[stop] == "\\":
            self._key = None  # an escape in a key: not the plain key "agents"
            if stop + 1 < len(text):
                return stop + 2
            self._escape = True
            return stop + 1
        self._in_string = False
        self._after_agents = self._key is not None and "".join(self._key) == "agents"
        self._key = None
        return stop + 1

    def _structural(self, text: str, at: int, got: list[tuple[int, dict[str, Any]]]) -> None:
        """Handle the structural character at ``text[at]`` (outside any string)."""
        char = text[at]
        depth = self._depth
        after_agents, self._after_agents = self._after_agents, False
        expect_array, self._expect_array = self._expect_array, False
        if depth == 0 and char != "{":
            return  # prose around the JSON: only an object can start a plan
        in_array = self._array and depth == self._array
        if char == '"':
            self._in_string = True
            if in_array:
                self._element = True
            elif not self._array:
                self._key, self._key_chars = [], 0
        elif char in "{[":
            self._depth = depth + 1
            if expect_array and char == "[":
                self._array, self._element = depth + 1, False
            elif in_array:
                self._element = True
                if char == "{":
                    self._start, self._pieces, self._too_deep = at, [], False
            elif self._start >= 0 and depth + 1 - self._array > MAX_PLAN_DEPTH - 2:
                self._too_deep, self._pieces = True, []  # an agent sits two levels down a plan
        elif char in "}]":
            self._depth = depth - 1
            if not self._array:
                return
            if depth == self._array:  # the agents array closed
                self.count += self._element
                self.done = True
            elif depth == self._array + 1 and self._start >= 0:  # an agent object closed
                self._close_agent(text, at, got)
        elif char == ",":
            if in_array:
                self.count += self._element
                self._element = False
        elif char == ":" and after_agents and not self._array:
            self._expect_array = True

    def _close_agent(self, text: str, at: int, got: list[tuple[int, dict[str, Any]]]) -> None:
        start, self._start = self._start, -1
        pieces, self._pieces = self._pieces, []
        if self._too_deep:
            return
        pieces.append(text[start : at + 1])
        body = "".join(pieces)
        self.decoded += len(body)
        try:  # nesting is bounded by the scan, so the decoder cannot recurse too deeply
            value = json.loads(body)
        except ValueError:  # brackets that do not match, a bad literal: the plan will say
            return
        if isinstance(value, dict):
            got.append((self.count, value))
