"""Task templates: ``{name}`` placeholders filled from inputs and dependency outputs.

Templates use :meth:`str.format` syntax restricted to plain names: ``{query}``
and ``{research}`` are placeholders, ``{{`` and ``}}`` are literal braces.
Attribute access, indexing and positional fields are refused so that a
template can never reach into an object's internals.

A placeholder may carry a conversion (``!r``, ``!s``, ``!a``) and a format
spec (``{price:>10.2f}``), bounded so that a template cannot make one field
allocate without limit: every width and precision is at most
:data:`MAX_FORMAT_WIDTH`, and a spec may not itself hold a placeholder
(``{x:{y}}``). :func:`template_fields` (run by validation) and :func:`render`
(defence in depth, for templates built in Python) both enforce this.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import Any

from agentplex.exceptions import TemplateError

MAX_FORMAT_WIDTH = 1000
"""The largest width or precision a placeholder's format spec may ask for."""

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


def template_fields(template: str) -> list[str]:
    """Return the placeholder names of ``template`` in order of first use.

    Raises:
        TemplateError: if a placeholder is positional, not a plain name, or has an
            unknown conversion or a nested or unbounded format spec.
        ValueError: if the template is malformed (an unmatched brace).
    """
    names: list[str] = []
    for _literal, field_name, spec, conversion in _FORMATTER.parse(template):
        if field_name is None:
            continue
        if not field_name or field_name.isdigit():
            raise TemplateError(
                "positional placeholders such as '{}' are not allowed.",
                hint="name them, e.g. '{query}'; write literal braces as '{{' and '}}'.",
            )
        if not field_name.replace("_", "a").replace("-", "a").isalnum():
            raise TemplateError(
                f"placeholder {_placeholder(field_name, '', None)} must be a plain name "
                "(no '.', '[' or spaces).",
                hint="name an input or a dependency, e.g. '{query}'; write literal braces "
                "as '{{' and '}}'.",
            )
        check_format(field_name, spec or "", conversion)
        if field_name not in names:
            names.append(field_name)
    return names


def render(template: str, values: Mapping[str, Any]) -> str:
    """Fill ``template``'s placeholders from ``values`` (outputs are shown as text).

    Raises:
        TemplateError: if a placeholder's conversion or format spec is refused (see
            :func:`check_format`); validation refuses those before a run.
        KeyError: if ``values`` lacks a placeholder's name.
    """
    parts: list[str] = []
    for literal, field_name, spec, conversion in _FORMATTER.parse(template):
        parts.append(literal)
        if field_name is None:
            continue
        check_format(field_name, spec or "", conversion)
        value = values[field_name]
        if conversion:
            value = _FORMATTER.convert_field(value, conversion)
        parts.append(format(value, spec) if spec else str(value))
    return "".join(parts)


def escape(text: str) -> str:
    """Return ``text`` with braces doubled, so it renders as itself."""
    return text.replace("{", "{{").replace("}", "}}")
