"""Task templates: ``{name}`` placeholders filled from inputs and dependency outputs.

Templates use :meth:`str.format` syntax restricted to plain names: ``{query}``
and ``{research}`` are placeholders, ``{{`` and ``}}`` are literal braces.
Attribute access, indexing and positional fields are refused so that a
template can never reach into an object's internals. The one kind of access
allowed is a dotted path into a *mapping* (``{extract.title}``,
``{extract.author.name}``, at most :data:`MAX_FIELD_DEPTH` parts): it reads
keys of a structured output (a dict), never attributes, so it is as safe as
the plain name. Validation checks each path against the node's
``output_schema``.

A placeholder may carry a conversion (``!r``, ``!s``, ``!a``) and a format
spec (``{price:>10.2f}``), bounded so that a template cannot make one field
allocate without limit: every width and precision is at most
:data:`MAX_FORMAT_WIDTH`, and a spec may not itself hold a placeholder
(``{x:{y}}``). :func:`template_fields` (run by validation) and :func:`render`
(defence in depth, for templates built in Python) both enforce this.

Values that are not text are shown as text by :func:`value_text`: a mapping
(a structured answer, a function's dict) as JSON, never as a Python repr.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from agentplex.exceptions import TemplateError

MAX_FORMAT_WIDTH = 1000
"""The largest width or precision a placeholder's format spec may ask for."""
MAX_FIELD_DEPTH = 8
"""The most parts a dotted placeholder may have (``{a.b.c}`` has three)."""

_FORMATTER = string.Formatter()
_CONVERSIONS = ("r", "s", "a")
# Every run of digits in a spec: a width or a precision in the standard mini-language
# (a digit fill is one character and is always followed by an alignment sign). For a
# custom __format__ spec the rule is conservative, which is the safe direction.
_DIGITS = re.compile(r"\d+")


def _placeholder(field_name: str, spec: str, conversion: str | None) -> str:
    text = field_name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
    if len(text) > 60:
        text = text[:57] + "..."
    return "{" + text + "}"


def check_format(field_name: str, spec: str, conversion: str | None) -> None:
    """Refuse a conversion or format spec that is unknown, nested or unbounded.

    Raises:
        TemplateError: naming the placeholder and the fix (no node: callers locate it).
    """
    if conversion is not None and conversion not in _CONVERSIONS:
        raise TemplateError(
            f"placeholder {_placeholder(field_name, spec, conversion)} has the unknown "
            f"conversion {'!' + conversion!r}.",
            hint="use !r, !s or !a, or no conversion.",
        )
    if not spec:
        return
    if "{" in spec or "}" in spec:
        raise TemplateError(
            f"placeholder {_placeholder(field_name, spec, conversion)} has a placeholder "
            "nested in its format spec.",
            hint="write a fixed format spec, e.g. '{x:>20}'.",
        )
    for digits in _DIGITS.findall(spec):
        significant = digits.lstrip("0")
        if len(significant) > 4 or (significant and int(significant) > MAX_FORMAT_WIDTH):
            raise TemplateError(
                f"placeholder {_placeholder(field_name, spec, conversion)} asks for a width "
                f"or precision of {digits if len(digits) <= 20 else digits[:17] + '...'}; "
                f"at most {MAX_FORMAT_WIDTH} is allowed.",
                hint=f"use a width and precision of at most {MAX_FORMAT_WIDTH}, "
                "e.g. '{x:>20}' or '{x:.2f}'.",
            )


def _parse(template: str) -> Iterator[tuple[str, str, tuple[str, ...], str, str | None]]:
    """Yield ``(literal, root, path, spec, conversion)`` per placeholder, checked.

    A final ``literal`` with an empty ``root`` carries the text after the last
    placeholder.

    Raises:
        TemplateError: see :func:`template_fields`.
        ValueError: if the template is malformed (an unmatched brace).
    """
    for literal, field_name, spec, conversion in _FORMATTER.parse(template):
        if field_name is None:
            yield literal, "", (), "", None
            continue
        if not field_name or field_name.isdigit():
            raise TemplateError(
                "positional placeholders such as '{}' are not allowed.",
                hint="name them, e.g. '{query}'; write literal braces as '{{' and '}}'.",
            )
        parts = field_name.split(".")
        if not all(_is_name(part) for part in parts):
            raise TemplateError(
                f"placeholder {_placeholder(field_name, '', None)} must be a name or a "
                "dotted path of names (no '[', spaces or empty parts).",
                hint="name an input or a dependency, e.g. '{query}', or a field of a "
                "structured output, e.g. '{extract.title}'; write literal braces as '{{' "
                "and '}}'.",
            )
        if len(parts) > MAX_FIELD_DEPTH:
            raise TemplateError(
                f"placeholder {_placeholder(field_name, '', None)} is {len(parts)} levels "
                f"deep; at most {MAX_FIELD_DEPTH} are allowed.",
                hint="pick the field in a function step and depend on that step instead.",
            )
        check_format(field_name, spec or "", conversion)
        yield literal, parts[0], tuple(parts[1:]), spec or "", conversion


def _is_name(part: str) -> bool:
    return part != "" and part.replace("_", "a").replace("-", "a").isalnum()


def template_references(template: str) -> tuple[list[str], list[tuple[str, tuple[str, ...]]]]:
    """Return :func:`template_fields` and :func:`template_paths` of ``template`` in one pass.

    Raises:
        TemplateError, ValueError: as :func:`template_fields`.
    """
    names: dict[str, None] = {}
    paths: dict[tuple[str, tuple[str, ...]], None] = {}
    for _literal, root, path, _spec, _conversion in _parse(template):
        if root:
            names[root] = None
            if path:
                paths[(root, path)] = None
    return list(names), list(paths)


def template_fields(template: str) -> list[str]:
    """Return the names ``template``'s placeholders start with, in order of first use.

    ``{extract.title}`` counts as ``extract``: the names are the inputs and
    dependencies the template reads (see :func:`template_paths` for the fields).

    Raises:
        TemplateError: if a placeholder is positional, not a name or dotted path of
            names, too deep, or has an unknown conversion or a nested or unbounded
            format spec.
        ValueError: if the template is malformed (an unmatched brace).
    """
    names: dict[str, None] = {}
    for _literal, root, _path, _spec, _conversion in _parse(template):
        if root:
            names[root] = None
    return list(names)


def template_paths(template: str) -> list[tuple[str, tuple[str, ...]]]:
    """Return each dotted placeholder as ``(name, fields)``, in order of first use.

    ``"{extract.title} by {extract.author.name}, {query}"`` gives
    ``[("extract", ("title",)), ("extract", ("author", "name"))]``; plain names
    are left out.

    Raises:
        TemplateError, ValueError: as :func:`template_fields`.
    """
    paths: dict[tuple[str, tuple[str, ...]], None] = {}
    for _literal, root, path, _spec, _conversion in _parse(template):
        if root and path:
            paths[(root, path)] = None
    return list(paths)


def value_text(value: Any) -> str:
    """Return how a value reads inside a prompt.

    Text is itself. A mapping (a structured answer, a dict a function returned)
    is JSON, indented, never a Python repr; so is a list holding mappings or
    lists. A list of plain values is one ``- item`` line each. Anything else is
    ``str(value)``.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return _json(value)
    if isinstance(value, list | tuple):
        if any(isinstance(item, Mapping | list | tuple) for item in value):
            return _json(value)
        return "\n".join(f"- {item}" for item in value)
    return str(value)


def _json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, indent=2, default=str)
    except (TypeError, ValueError):  # keys JSON cannot have, or a cycle
        return str(value)


def field_value(value: Any, name: str, path: tuple[str, ...]) -> Any:
    """Return the field ``path`` of ``value`` (the output or input called ``name``).

    Only keys of mappings are read, never attributes or items of other objects.

    Raises:
        TemplateError: if a step of the path is not a mapping, or lacks the key
            (listing the keys it has).
    """
    current = value
    for depth, part in enumerate(path):
        where = ".".join((name, *path[:depth]))
        shown = "{" + ".".join((name, *path)) + "}"
        if not isinstance(current, Mapping):
            raise TemplateError(
                f"placeholder {shown}: {where} is {type(current).__name__}, not a mapping, "
                f"so it has no field {part!r}.",
                hint=f"declare an output_schema on {name!r} so its answer is an object, "
                f"or write {{{where}}} to insert the whole value.",
            )
        if part not in current:
            keys = [str(k) for k in list(current)[:20]]
            raise TemplateError(
                f"placeholder {shown}: {where} has no field {part!r} (it has: "
                f"{', '.join(keys) or 'no fields'}).",
                hint=f"list {part!r} under required: in the output_schema so every answer "
                "has it, or use a field the value has.",
            )
        current = current[part]
    return current


def render(
    template: str, values: Mapping[str, Any], *, text: Callable[[Any], str] = value_text
) -> str:
    """Fill ``template``'s placeholders from ``values``.

        A value that is not text is shown by ``text`` (:func:`value_text`: a
        mapping as JSON); ``{extract.title}`` reads that key of the mapping
        ``values["extract"]``, and a ``null``/``true`` it reaches reads as JSON
        does. A format spec formats a value by its own ``__format__`` (``{score:.2f}``),
    a mapping or list as its text.

        Raises:
            TemplateError: if a placeholder's conversion or format spec is refused (see
                :func:`check_format`), or a dotted path does not lead to a value (see
                :func:`field_value`); validation refuses the first kind before a run.
            KeyError: if ``values`` lacks a placeholder's name.
    """
    parts: list[str] = []
    for literal, root, path, spec, conversion in _parse(template):
        parts.append(literal)
        if not root:
            continue
        value = values[root]
        if path:
            value = field_value(value, root, path)
            if value is None or isinstance(value, bool):
                value = json.dumps(value)
        if conversion:
            value = _FORMATTER.convert_field(value, conversion)
        if isinstance(value, str):
            parts.append(format(value, spec) if spec else value)
        elif spec and not isinstance(value, Mapping | list | tuple):
            parts.append(format(value, spec))  # numbers, dates... by their own format
        else:
            shown = text(value)
            parts.append(format(shown, spec) if spec else shown)
    return "".join(parts)


def escape(text: str) -> str:
    """Return ``text`` with braces doubled, so it renders as itself."""
    return text.replace("{", "{{").replace("}", "}}")
