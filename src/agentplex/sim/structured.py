"""The simulator's structured answers: a JSON value that follows a JSON Schema.

A request with a schema (``response_format: json_schema``, an Anthropic
forced tool call, ``Request.schema`` in process) is answered the way a model
under a grammar answers it: with one value the schema accepts, built here
from the schema and the prompt, deterministically (the caller's generator is
seeded by the request). Strings are made of the prompt's own words, so data
visibly flows through a structured step as through a plain one.

Covered, as pydantic and hand-written schemas use them: ``type`` (one or a
list), ``const``, ``enum``; objects with ``properties`` (every ``required``
one, and some of the optional ones), ``additionalProperties`` (a schema: a
map; ``false``: nothing extra), ``minProperties``/``maxProperties``; strings
with ``minLength``/``maxLength`` and the common ``format`` values (date,
date-time, time, email, uri, uuid, ipv4, ipv6, hostname, duration);
integers and numbers within ``minimum``/``maximum`` (exclusive ones too, the
draft-4 booleans included) and ``multipleOf``; booleans and null; arrays
with ``items``, ``prefixItems`` (and the draft-7 list form of ``items``),
``minItems``/``maxItems``, ``uniqueItems`` and ``contains``; ``anyOf`` and
``oneOf`` (their first branch, merged with the keywords beside them),
``allOf`` (merged); and ``$ref`` into ``$defs``/``definitions`` (any JSON
pointer into the root), recursive ones included: past :data:`MAX_DEPTH`
levels an object keeps only its required properties, an array its
``minItems`` and a union its most terminal branch, so a tree model ends.

Not attempted: ``pattern`` beyond trying a few candidates, ``not``,
``if``/``then``/``else``, ``patternProperties``, and schemas no value
satisfies (the answer is then simply invalid, as a real model's would be).
"""

from __future__ import annotations

import math
import random
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

MAX_DEPTH = 4
"""Nesting below which optional parts (optional properties, extra items) are still added."""
_HARD_DEPTH = 48
"""Nesting at which a schema that can only recurse (a required self-reference) gets null."""

_LONG_TEXT = frozenset(
    {
        "answer",
        "body",
        "content",
        "description",
        "details",
        "explanation",
        "justification",
        "rationale",
        "reason",
        "reasoning",
        "summary",
        "text",
    }
)
_OBJECT_KEYS = ("properties", "required", "additionalProperties", "minProperties")
_ARRAY_KEYS = ("items", "prefixItems", "minItems", "maxItems", "contains", "uniqueItems")
_STRING_KEYS = ("minLength", "maxLength", "pattern", "format")
_NUMBER_KEYS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
_SCALARS = frozenset({"string", "integer", "number", "boolean"})


def value_for(schema: Any, *, words: Sequence[str], rng: random.Random) -> Any:
    """Return a value ``schema`` accepts, made of ``words`` and choices drawn from ``rng``.

    The same schema, words and generator state give the same value.
    """
    return _Values(schema, list(words) or ["answer"], rng).value(schema, 0, "answer")


class _Values:
    """One value's construction: the root schema (for ``$ref``), the words and the draws."""

    __slots__ = ("next_word", "rng", "root", "words")

    def __init__(self, root: Any, words: list[str], rng: random.Random) -> None:
        self.root = root
        self.words = words
        self.rng = rng
        self.next_word = rng.randrange(len(words))

    # -- schemas ---------------------------------------------------------------------------

    def resolve(self, schema: Mapping[str, Any], depth: int) -> Any:
        """``schema`` with its ``$ref`` and ``allOf`` folded in (siblings win over the target)."""
        seen = 0
        while isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str):
            target = self.pointer(schema["$ref"])
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            if not isinstance(target, Mapping):
                return rest or target
            schema = {**target, **rest}
            seen += 1
            if seen > _HARD_DEPTH:  # a $ref that only points at itself
                return {}
        if isinstance(schema, Mapping) and isinstance(schema.get("allOf"), list):
            merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                part = self.resolve(part, depth) if isinstance(part, Mapping) else part
                if isinstance(part, Mapping):
                    merged = _merge(merged, part)
            return merged
        return schema

    def pointer(self, ref: str) -> Any:
        """The part of the root schema a local ``$ref`` (``#/$defs/Name``) points at."""
        if not ref.startswith("#"):
            return {}  # a remote reference: nothing to fetch it from
        node: Any = self.root
        for raw in ref[1:].split("/")[1:]:
            part = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return {}
        return node

    def value(self, schema: Any, depth: int, name: str) -> Any:
        if depth > _HARD_DEPTH:
            return None
        if schema is True or schema is None:
            return self.text(name, {})
        if schema is False or not isinstance(schema, Mapping):
            return None
        schema = self.resolve(schema, depth)
        if not isinstance(schema, Mapping):
            return self.value(schema, depth, name)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self.rng.choice(schema["enum"])
        for union in ("anyOf", "oneOf"):
            branches = schema.get(union)
            if isinstance(branches, list) and branches:
                rest = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
                branch = self.branch(branches, depth)
                if isinstance(branch, Mapping):
                    branch = _merge(rest, self.resolve(branch, depth))
                return self.value(branch, depth, name)
        kind = self.type_of(schema, depth)
        if kind == "object":
            return self.object(schema, depth)
        if kind == "array":
            return self.array(schema, depth, name)
        if kind == "integer":
            return self.integer(schema)
        if kind == "number":
            return self.number(schema)
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "null":
            return None
        return self.text(name, schema)

    def branch(self, branches: list[Any], depth: int) -> Any:
        """The first branch, or deep down the most terminal one (null, then a scalar)."""
        if depth < MAX_DEPTH:
            return branches[0]

        def weight(branch: Any) -> int:
            resolved = self.resolve(branch, depth) if isinstance(branch, Mapping) else branch
            if not isinstance(resolved, Mapping):
                return 1
            kind = resolved.get("type")
            if kind == "null" or "const" in resolved or "enum" in resolved:
                return 0
            return 1 if kind in _SCALARS else 2

        return min(branches, key=weight)

    def type_of(self, schema: Mapping[str, Any], depth: int) -> str:
        kind = schema.get("type")
        if isinstance(kind, list):
            kinds = [k for k in kind if isinstance(k, str)]
            real = [k for k in kinds if k != "null"]
            if real and (depth < MAX_DEPTH or "null" not in kinds):
                return real[0]
            return "null" if "null" in kinds else "string"
        if isinstance(kind, str):
            return kind
        for keys, inferred in (
            (_OBJECT_KEYS, "object"),
            (_ARRAY_KEYS, "array"),
            (_STRING_KEYS, "string"),
            (_NUMBER_KEYS, "number"),
        ):
            if any(key in schema for key in keys):
                return inferred
        return "string"

    # -- values ----------------------------------------------------------------------------

    def object(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        props = schema.get("properties")
        props = props if isinstance(props, Mapping) else {}
        required = [r for r in schema.get("required") or () if isinstance(r, str)]
        extra = schema.get("additionalProperties", True)
        low = _count(schema.get("minProperties"), 0)
        high = _count(schema.get("maxProperties"), math.inf)
        keys = list(dict.fromkeys(required))
        optional = [k for k in props if k not in keys]
        for key in optional:
            if len(keys) >= high:
                break
            if len(keys) < low or (depth < MAX_DEPTH and self.rng.random() < 0.6):
                keys.append(key)
        if extra is not False and not props and depth < MAX_DEPTH and not keys:
            low = max(low, 1)  # a map (dict[str, X]): give it an entry or two
            high = min(high, 2)
        word = 0
        while len(keys) < low and extra is not False and word < len(self.words) * 2 + low:
            key = _slug(self.words[(self.next_word + word) % len(self.words)]) or "key"
            key = key if word < len(self.words) else f"{key}_{word}"
            word += 1
            if key not in keys and key not in props:
                keys.append(key)
        out: dict[str, Any] = {}
        for key in keys:
            sub = props.get(key, extra if isinstance(extra, Mapping | bool) else True)
            out[key] = self.value(sub, depth + 1, key)
        return out

    def array(self, schema: Mapping[str, Any], depth: int, name: str) -> list[Any]:
        prefix = schema.get("prefixItems")
        items = schema.get("items", True)
        if isinstance(items, list):  # draft 7's tuple form
            prefix, items = items, schema.get("additionalItems", True)
        prefix = prefix if isinstance(prefix, list) else []
        low = _count(schema.get("minItems"), 0)
        high = _count(schema.get("maxItems"), math.inf)
        if items is False:
            high = min(high, len(prefix))
        if depth >= MAX_DEPTH:
            size = int(min(low, high))
        else:
            top = int(min(high, max(low, 3)))
            size = self.rng.randint(int(min(max(low, 1), top)), top) if top >= 1 else 0
        size = int(min(max(size, low), high))
        unique = schema.get("uniqueItems") is True
        out: list[Any] = []
        seen: set[str] = set()
        contains = schema.get("contains")
        tries = 0
        while len(out) < size and tries < size * 10 + 10:
            tries += 1
            index = len(out)
            if index < len(prefix):
                sub = prefix[index]
            elif index == 0 and contains is not None:
                sub = contains
            else:
                sub = items
            item = self.value(sub, depth + 1, _singular(name))
            if unique:
                key = repr(_canonical(item))
                if key in seen:
                    if index < len(prefix):
                        break  # a fixed position cannot be drawn again
                    continue
                seen.add(key)
            out.append(item)
        return out

    def integer(self, schema: Mapping[str, Any]) -> int:
        low, high = _bounds(schema, integer=True)
        lowest, highest = math.ceil(low), math.floor(high)
        step = _number(schema.get("multipleOf"))
        if step is not None and step > 0:
            first, last = math.ceil(lowest / step), math.floor(highest / step)
            for _ in range(20):
                k = self.rng.randint(first, last) if first <= last else first
                candidate = k * step
                if float(candidate).is_integer() and _multiple(int(candidate), step):
                    return int(candidate)
            return 0 if lowest <= 0 <= highest else lowest
        return self.rng.randint(lowest, highest) if lowest <= highest else lowest

    def number(self, schema: Mapping[str, Any]) -> float:
        low, high = _bounds(schema, integer=False)
        step = _number(schema.get("multipleOf"))
        if step is not None and step > 0:
            first, last = math.ceil(low / step), math.floor(high / step)
            digits = max(0, -math.floor(math.log10(step))) + 2 if step < 1 else 0
            for _ in range(20):
                k = self.rng.randint(first, last) if first <= last else first
                candidate = round(k * step, digits) if digits else k * step
                if low <= candidate <= high and _multiple(candidate, step):
                    return candidate
            return 0 if low <= 0 <= high else low
        if low >= high:
            return low
        value = low + (high - low) * self.rng.uniform(0.1, 0.9)
        rounded = round(value, 2)
        return rounded if low < rounded < high else value

    def text(self, name: str, schema: Mapping[str, Any]) -> str:
        low = _count(schema.get("minLength"), 0)
        high = _count(schema.get("maxLength"), math.inf)
        form = schema.get("format")
        text = self.formatted(form) if isinstance(form, str) else None
        if text is None:
            many = self.rng.randint(8, 16) if name.lower() in _LONG_TEXT else self.rng.randint(2, 5)
            text = self.phrase(many)
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            text = self.matching(pattern, text)
        while len(text) < low:
            text = f"{text} {self.phrase(4)}"
        if len(text) > high:
            text = text[: int(high)].rstrip() or text[: int(high)]
        return text + "x" * (int(low) - len(text)) if len(text) < low else text

    def phrase(self, count: int) -> str:
        words = self.words
        picked = [words[(self.next_word + i) % len(words)] for i in range(count)]
        self.next_word = (self.next_word + count) % len(words)
        text = " ".join(picked)
        return text[:1].upper() + text[1:]

    def formatted(self, form: str) -> str | None:
        rng = self.rng
        day = f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        clock = f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
        slug = _slug(self.words[self.next_word]) or "answer"
        values = {
            "date": day,
            "date-time": f"{day}T{clock}Z",
            "time": f"{clock}Z",
            "email": f"{slug}@example.com",
            "idn-email": f"{slug}@example.com",
            "uri": f"https://example.com/{slug}",
            "url": f"https://example.com/{slug}",
            "iri": f"https://example.com/{slug}",
            "uri-reference": f"/{slug}",
            "iri-reference": f"/{slug}",
            "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "ipv4": f"192.0.2.{rng.randint(1, 254)}",
            "ipv6": f"2001:db8::{rng.randint(1, 0xFFFF):x}",
            "hostname": f"{slug}.example.com",
            "idn-hostname": f"{slug}.example.com",
            "duration": f"P{rng.randint(1, 30)}D",
            "json-pointer": f"/{slug}",
            "regex": f"^{slug}$",
        }
        return values.get(form)

    def matching(self, pattern: str, text: str) -> str:
        """``text`` if it matches ``pattern``, else the first simple candidate that does."""
        try:
            compiled = re.compile(pattern)
        except (re.error, RecursionError):
            return text
        candidates = [text, *self.words[:8], _slug(text), str(self.rng.randint(0, 9999))]
        candidates += ["a", "A", "0", "x-1", "abc", "ABC", "a1"]
        return next((c for c in candidates if compiled.search(c)), text)


def _merge(base: Mapping[str, Any], part: Mapping[str, Any]) -> dict[str, Any]:
    """Both schemas' keywords: properties and required lists joined, else ``base`` wins."""
    merged = {**part, **base}
    if isinstance(base.get("properties"), Mapping) and isinstance(part.get("properties"), Mapping):
        merged["properties"] = {**part["properties"], **base["properties"]}
    if isinstance(base.get("required"), list) and isinstance(part.get("required"), list):
        merged["required"] = list(dict.fromkeys([*part["required"], *base["required"]]))
    return merged


def _number(value: Any) -> float | None:
    """``value`` if it is a finite JSON number (not a boolean), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None


def _count(value: Any, default: float) -> float:
    number = _number(value)
    return number if number is not None and number >= 0 else default


def _bounds(schema: Mapping[str, Any], *, integer: bool) -> tuple[float, float]:
    """The inclusive range a number must lie in (a hundred wide where the schema is open)."""
    low, high = _number(schema.get("minimum")), _number(schema.get("maximum"))
    ex_low, ex_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    gap = 1 if integer else 1e-6
    if ex_low is True:  # draft 4: a flag on minimum
        low = None if low is None else (math.floor(low) + 1 if integer else low + gap)
    elif (strict := _number(ex_low)) is not None:
        strict = math.floor(strict) + 1 if integer else strict + gap
        low = strict if low is None else max(low, strict)
    if ex_high is True:
        high = None if high is None else (math.ceil(high) - 1 if integer else high - gap)
    elif (strict := _number(ex_high)) is not None:
        strict = math.ceil(strict) - 1 if integer else strict - gap
        high = strict if high is None else min(high, strict)
    if low is None and high is None:
        return 0, 100
    if low is None:
        assert high is not None
        return high - 100, high
    if high is None:
        return low, low + 100
    return low, high


def _multiple(value: float, step: float) -> bool:
    """Whether ``value`` is a multiple of ``step`` the way JSON Schema validators judge it."""
    if isinstance(step, float):
        quotient = value / step
        try:
            return int(quotient) == quotient
        except (OverflowError, ValueError):
            return False
    return isinstance(value, int) and value % step == 0


def _canonical(value: Any) -> Any:
    """A form of ``value`` equal for values JSON Schema's ``uniqueItems`` counts as equal."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return (type(value).__name__, value)
    if isinstance(value, int | float):
        return ("number", float(value))
    if isinstance(value, list):
        return ("array", tuple(_canonical(v) for v in value))
    if isinstance(value, dict):
        return ("object", tuple(sorted((k, _canonical(v)) for k, v in value.items())))
    return ("other", repr(value))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _singular(name: str) -> str:
    return name[:-1] if name.endswith("s") and len(name) > 3 else name
