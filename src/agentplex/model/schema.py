"""Structured outputs: the JSON Schema an agent's answer must follow, and the checks on it.

An agent node may declare ``output_schema`` (a JSON Schema object in a file,
or ``output=SomeType`` in Python: a pydantic model, a dataclass, a TypedDict).
The engine sends the schema to the provider, reads the answer with
:func:`parse_json_answer`, checks it with :func:`validate` and sends the
problems back to the model when it missed. Everything here is pure: no I/O,
no asyncio; ``jsonschema`` and ``pydantic`` are imported on first use, so a
workflow without schemas never pays for them.

Schemas come from files that may be untrusted, so :func:`check_schema` also
refuses what no provider accepts (a top level that is not an object) and what
would reach outside the schema (a ``$ref`` that is not ``#/...``): answers are
only ever checked against the schema as written, nothing is fetched.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import types
import typing
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any

from agentplex.exceptions import MissingExtraError

MAX_PROBLEMS = 10
"""Validation errors :func:`validate` lists one by one (the repair prompt shows them)."""
MAX_SCHEMA_NAME = 64
"""Longest schema name providers accept (``[A-Za-z0-9_-]{1,64}``)."""

_PROBLEM_CHARS = 240  # one listed problem, cut to this length (a value may be huge)
_COUNTED_PROBLEMS = 1000  # past this many, validation stops counting
_VALIDATORS = 256  # compiled validators kept, by schema identity
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]+")
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\r?\n(.*?)```", re.DOTALL)

# Keywords whose value is one subschema, a list of them, or a mapping of names to them
# (JSON Schema 2020-12, plus the older spellings providers still send).
_ONE = (
    "additionalProperties",
    "unevaluatedProperties",
    "items",
    "additionalItems",
    "unevaluatedItems",
    "contains",
    "propertyNames",
    "not",
    "if",
    "then",
    "else",
    "contentSchema",
)
_MANY = ("allOf", "anyOf", "oneOf", "prefixItems")
_NAMED = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")


def schema_for(tp: Any) -> dict[str, Any]:
    """Return the JSON Schema of a Python type, or a copy of a schema given as a mapping.

    Types go through pydantic's ``TypeAdapter(tp).json_schema()``, so a
    pydantic model, a dataclass, a TypedDict (and anything else pydantic
    describes) works. A mapping is taken as a JSON Schema already and copied
    as plain JSON data, so later changes to the caller's dict do not reach
    the workflow.

    Raises:
        MissingExtraError: if ``tp`` is a type and pydantic is not installed.
        TypeError: if pydantic cannot describe ``tp``, or a mapping is not JSON data.
    """
    if isinstance(tp, Mapping):
        return json_copy(tp)
    if isinstance(tp, str) or (
        callable(tp) and not isinstance(tp, type) and typing.get_origin(tp) is None
    ):  # pydantic reads a string as a forward reference and a function as its arguments
        raise TypeError(
            f"{_type_name(tp)} is a {type(tp).__name__}, not a type; pass the class itself"
        )
    try:
        from pydantic import TypeAdapter
        from pydantic.errors import PydanticUserError
    except ImportError:
        raise MissingExtraError("pydantic", "openai", "a Python type as output=") from None
    try:
        schema = TypeAdapter(_pydantic_ready(tp)).json_schema()
    except (PydanticUserError, TypeError, ValueError, NameError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TypeError(f"cannot describe {_type_name(tp)} as a JSON Schema: {first}") from exc
    return json_copy(schema)


def _pydantic_ready(tp: Any, depth: int = 0) -> Any:
    """``tp`` with every ``typing.TypedDict`` in it remade as a ``typing_extensions`` one.

    pydantic refuses ``typing.TypedDict`` before Python 3.12 (it cannot read
    its required keys there); the copy has the same name, fields and required
    keys. Generic arguments (``list[Row]``, ``Row | None``, ``Annotated``) are
    followed a few levels deep.
    """
    if sys.version_info >= (3, 12) or depth > 8:
        return tp
    if typing.is_typeddict(tp) and type(tp).__module__ == "typing":
        import typing_extensions

        required = tp.__required_keys__
        fields = {}
        for key, hint in typing.get_type_hints(tp, include_extras=True).items():
            if typing.get_origin(hint) in (typing.Required, typing.NotRequired):
                hint = typing.get_args(hint)[0]
            hint = _pydantic_ready(hint, depth + 1)
            fields[key] = hint if key in required else typing_extensions.NotRequired[hint]
        clone = typing_extensions.TypedDict(tp.__name__, fields)  # type: ignore[misc]
        clone.__doc__ = tp.__doc__
        return clone
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is None or not args or origin is typing.Literal:
        return tp
    ready = tuple(_pydantic_ready(arg, depth + 1) for arg in args)
    if ready == args:
        return tp
    if origin is typing.Annotated:
        return typing.Annotated[ready]
    if origin in (typing.Union, types.UnionType):
        return typing.Union[ready]  # noqa: UP007 - built from a tuple of arguments
    try:
        return origin[ready]
    except TypeError:  # an origin that cannot be subscripted again: leave it
        return tp


def json_copy(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``schema`` as plain JSON data (dicts, lists, text, numbers).

    Raises:
        TypeError: if it holds something JSON cannot say (a date, a set, a function).
    """
    try:
        copied = json.loads(json.dumps(schema, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"a JSON Schema must be JSON data: {exc}") from None
    if not isinstance(copied, dict):  # pragma: no cover - a Mapping dumps as an object
        raise TypeError("a JSON Schema must be a mapping")
    return copied


def schema_name(tp: Any, fallback: str) -> str:
    """Return the name providers are given with the schema: the type's name, else the
    schema's ``title``, else ``fallback`` (the node id), made ``[A-Za-z0-9_-]{1,64}``."""
    name: Any = None
    if isinstance(tp, Mapping):
        name = tp.get("title")
    elif isinstance(tp, type):
        name = tp.__name__
    if not isinstance(name, str) or not _NAME_CHARS.sub("", name):
        name = fallback
    cleaned = _NAME_CHARS.sub("_", name).strip("_")[:MAX_SCHEMA_NAME]
    return cleaned or "answer"


def check_schema(schema: Any) -> list[str]:
    """Return what is wrong with ``schema`` as an output schema (empty: nothing).

    It must be a valid JSON Schema (draft 2020-12), its top level an object
    (``type: object``: what every provider's structured mode takes), and
    every ``$ref`` local (``#/$defs/...``).
    """
    if not isinstance(schema, Mapping):
        return [f"must be a JSON Schema object (a mapping), got {type(schema).__name__}"]
    try:
        schema = json_copy(schema)
    except TypeError as exc:
        return [str(exc)]
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped, unused-ignore]
    from jsonschema.exceptions import (  # type: ignore[import-untyped, unused-ignore]
        SchemaError as MetaSchemaError,
    )

    problems: list[str] = []
    try:
        Draft202012Validator.check_schema(schema)
    except MetaSchemaError as exc:
        problems.append(
            f"is not a valid JSON Schema: at {_path(exc.absolute_path)}: {_cut(exc.message)}"
        )
    kind = schema.get("type")
    if kind != "object" and not (kind is None and "properties" in schema):
        problems.append(
            f"its top level must be an object schema (type: object), got "
            f"{'type ' + repr(kind) if kind is not None else 'no type'}: providers' structured "
            "output takes an object; wrap a list as {type: object, properties: {items: "
            "{type: array, items: ...}}, required: [items]}"
        )
    for ref in _refs(schema):
        if not ref.startswith("#"):
            problems.append(
                f"$ref {_cut(ref, 80)!r} points outside the schema; only local references "
                "('#/$defs/Name') are followed"
            )
            break
    return problems


def validate(schema: Mapping[str, Any], value: Any) -> list[str]:
    """Return the ways ``value`` breaks ``schema``, one line each with its JSON path.

    At most :data:`MAX_PROBLEMS` lines, shallowest first, then one saying how
    many more; empty when ``value`` is valid. Meant for the repair prompt, so a
    line quotes at most a short piece of the offending value.
    """
    validator = _validator(schema)
    if isinstance(validator, str):
        return [validator]
    found: list[Any] = []
    count = 0
    try:
        for error in validator.iter_errors(value):
            count += 1
            if len(found) < _COUNTED_PROBLEMS:
                found.append(error)
            if count >= _COUNTED_PROBLEMS:
                break
    except Exception as exc:  # an unresolvable $ref, a pattern Python cannot compile...
        return [f"the schema cannot be checked: {type(exc).__name__}: {_cut(str(exc))}"]
    found.sort(key=lambda e: (len(e.absolute_path), _path(e.absolute_path)))
    lines = [f"at {_path(e.absolute_path)}: {_cut(e.message)}" for e in found[:MAX_PROBLEMS]]
    if count > MAX_PROBLEMS:
        more = f"{count - MAX_PROBLEMS:,}" + ("+" if count >= _COUNTED_PROBLEMS else "")
        lines.append(f"... and {more} more problems")
    return lines


def parse_json_answer(text: str) -> Any:
    """Return the JSON value in a model's answer.

    Tried in order: the whole text; each fenced block (```json, or no
    language); the outermost ``{...}`` or ``[...]`` span (from the first
    opening bracket to the last matching closing one), which finds the JSON
    a model wrapped in prose.

    Raises:
        ValueError: saying why, when none of them is JSON.
    """
    if not isinstance(text, str):
        raise ValueError(f"the answer is {type(text).__name__}, not text")
    stripped = text.strip()
    if not stripped:
        raise ValueError("the answer is empty")
    first_error = _loads(stripped)
    if not isinstance(first_error, str):
        return first_error[0]
    for language, body in _FENCE.findall(text):
        if language.lower() not in ("", "json", "jsonc", "json5"):
            continue
        parsed = _loads(body.strip())
        if not isinstance(parsed, str):
            return parsed[0]
    span = _outer_span(stripped)
    if span is None:
        raise ValueError("no JSON in the answer: it holds no {...} object or [...] list")
    parsed = _loads(span)
    if not isinstance(parsed, str):
        return parsed[0]
    raise ValueError(f"the JSON in the answer is invalid: {parsed}")


def field_schema(schema: Mapping[str, Any], path: tuple[str, ...]) -> tuple[Any, str | None]:
    """Follow ``path`` (``("author", "name")``) through an object schema.

    Returns ``(subschema, None)`` where the path leads (``None`` as the
    subschema when its shape is not declared there, e.g. an object with no
    ``properties``), or ``(None, problem)`` when the schema rules the path out:
    the problem names the missing field and the declared ones.
    """
    current: Any = schema
    for depth, part in enumerate(path):
        where = ".".join(path[:depth]) or None
        options = _branches(schema, current)
        if options is None:
            return None, None  # somewhere along the way the shape is open
        declared: list[str] = []
        kinds: list[str] = []
        found: Any = _MISSING
        for branch in options:
            props = branch.get("properties")
            if isinstance(props, Mapping):
                declared += [str(k) for k in props if str(k) not in declared]
                if part in props:
                    found = props[part]
                    break
            elif branch.get("type") in (None, "object"):
                return None, None  # an object of any fields
            else:
                kinds.append(str(branch.get("type")))
        if found is not _MISSING:
            current = found
            continue
        full = ".".join(path[: depth + 1])
        if not declared:
            shown = " or ".join(dict.fromkeys(kinds)) or "not an object"
            value = f"{where!r}" if where else "its value"
            return None, f"has no field {full!r}: {value} is {shown}, not an object"
        under = f" under {where!r}" if where else ""
        more = ", ..." if len(declared) > 20 else ""
        return None, (
            f"has no field {full!r}: its output_schema declares {', '.join(declared[:20])}"
            f"{more}{under}"
        )
    return current, None


def has_patterns(schema: Any) -> bool:
    """Whether ``schema`` holds a regular expression (``pattern``, ``patternProperties``).

    Checking an answer runs each one on text a model wrote; a hostile pattern
    (``(a+)+$``) takes exponential time on a short answer, so untrusted files
    may not use them.
    """
    return any(
        isinstance(sub.get("pattern"), str) or isinstance(sub.get("patternProperties"), Mapping)
        for sub in _subschemas(schema)
    )


def is_list_schema(schema: Mapping[str, Any]) -> bool | None:
    """Whether values of ``schema`` are lists: True, False, or None when it does not say."""
    kind = schema.get("type")
    if kind is None:
        return None
    kinds = kind if isinstance(kind, list) else [kind]
    return "array" in kinds


def item_schema(schema: Mapping[str, Any]) -> Any:
    """The schema of each item of a list schema, or ``None`` when it is not declared."""
    items = schema.get("items")
    return items if isinstance(items, Mapping) else None


# -- helpers ------------------------------------------------------------------------------

_MISSING = object()


def _branches(root: Mapping[str, Any], schema: Any) -> list[Mapping[str, Any]] | None:
    """The alternatives a value of ``schema`` may follow (``$ref``, ``anyOf``/``oneOf``
    resolved, ``null`` dropped), or ``None`` where the shape is open."""
    out: list[Mapping[str, Any]] = []
    pending = [schema]
    seen = 0
    while pending:
        seen += 1
        if seen > 64:  # a schema of references to references: stop looking
            return None
        current = pending.pop(0)
        if not isinstance(current, Mapping):
            return None  # true / {} / a boolean schema: anything goes
        ref = current.get("$ref")
        if isinstance(ref, str):
            target = _resolve(root, ref)
            if target is None:
                return None
            pending.append(target)
            continue
        alternatives = current.get("anyOf") or current.get("oneOf")
        if isinstance(alternatives, list):
            pending += [a for a in alternatives if not _is_null(a)]
            continue
        every = current.get("allOf")
        if isinstance(every, list) and "properties" not in current:
            pending += list(every)
            continue
        out.append(current)
    return out or None


def _is_null(schema: Any) -> bool:
    return isinstance(schema, Mapping) and schema.get("type") == "null"


def _resolve(root: Mapping[str, Any], ref: str) -> Any:
    """The subschema a local ``#/a/b`` reference names, or ``None``."""
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        return None
    current: Any = root
    for raw in ref[2:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if not isinstance(current, Mapping) or part not in current:
            return None
        current = current[part]
    return current


def _subschemas(schema: Any) -> Iterator[Mapping[str, Any]]:
    """Every schema object inside ``schema`` (itself included), iteratively."""
    pending = [schema]
    while pending:
        current = pending.pop()
        if not isinstance(current, Mapping):
            continue
        yield current
        for key in _ONE:
            if key in current:
                value = current[key]
                pending.extend(value if isinstance(value, list) else [value])
        for key in _MANY:
            value = current.get(key)
            if isinstance(value, list):
                pending.extend(value)
        for key in _NAMED:
            value = current.get(key)
            if isinstance(value, Mapping):
                pending.extend(value.values())


def _refs(schema: Any) -> Iterator[str]:
    for sub in _subschemas(schema):
        ref = sub.get("$ref")
        if isinstance(ref, str):
            yield ref
        dynamic = sub.get("$dynamicRef")
        if isinstance(dynamic, str):
            yield dynamic


_CACHE: OrderedDict[int, tuple[Mapping[str, Any], Any]] = OrderedDict()


def _validator(schema: Mapping[str, Any]) -> Any:
    """A compiled validator for ``schema`` (kept by identity), or the problem as text."""
    key = id(schema)
    cached = _CACHE.get(key)
    if cached is not None and cached[0] is schema:
        with contextlib.suppress(KeyError):  # another thread may have just dropped it
            _CACHE.move_to_end(key)
        return cached[1]
    problems = check_schema(schema)
    if problems:
        validator: Any = f"the output_schema itself is invalid: {problems[0]}"
    else:
        from jsonschema import Draft202012Validator  # type: ignore[import-untyped, unused-ignore]

        validator = Draft202012Validator(json_copy(schema))
    _CACHE[key] = (schema, validator)  # holding the schema keeps its id its own
    if len(_CACHE) > _VALIDATORS:
        _CACHE.popitem(last=False)
    return validator


def _loads(text: str) -> tuple[Any] | str:
    """``(value,)`` if ``text`` is JSON, else why not."""
    try:
        return (json.loads(text),)
    except json.JSONDecodeError as exc:
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    except ValueError as exc:  # e.g. a number of more digits than Python converts
        return _cut(str(exc))
    except RecursionError:
        return "nested too deeply"


def _outer_span(text: str) -> str | None:
    """From the first ``{`` or ``[`` to the last matching closer, or ``None``."""
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    if not starts:
        return None
    start = min(starts)
    end = text.rfind("}" if text[start] == "{" else "]")
    return text[start : end + 1] if end > start else None


def _path(parts: Any) -> str:
    """A JSON path: ``$``, ``$.items[0].title``, ``$['odd key']``."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier():
            out += f".{part}"
        else:
            out += f"[{json.dumps(str(part))}]"
    return out


def _cut(text: str, limit: int = _PROBLEM_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _type_name(tp: Any) -> str:
    name = getattr(tp, "__qualname__", None) or getattr(tp, "__name__", None)
    return repr(name) if isinstance(name, str) else _cut(repr(tp), 80)
