"""Task templates: ``{name}`` placeholders filled from inputs and dependency outputs.

Templates use :meth:`str.format` syntax restricted to plain names: ``{query}``
and ``{research}`` are placeholders, ``{{`` and ``}}`` are literal braces.
Attribute access, indexing and positional fields are refused so that a
template can never reach into an object's internals.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

_FORMATTER = string.Formatter()


def template_fields(template: str) -> list[str]:
    """Return the placeholder names of ``template`` in order of first use.

    Raises:
        ValueError: if the template is malformed or uses a field other than a plain name.
    """
    names: list[str] = []
    for _literal, field_name, _spec, _conversion in _FORMATTER.parse(template):
        if field_name is None:
            continue
        if not field_name or field_name.isdigit():
            raise ValueError(
                "positional placeholders such as '{}' are not allowed; name them, e.g. '{query}'"
            )
        if not field_name.replace("_", "a").replace("-", "a").isalnum():
            raise ValueError(
                f"placeholder {{{field_name}}} must be a plain name (no '.', '[' or spaces)"
            )
        if field_name not in names:
            names.append(field_name)
    return names


def render(template: str, values: Mapping[str, Any]) -> str:
    """Fill ``template``'s placeholders from ``values`` (outputs are shown as text)."""
    parts: list[str] = []
    for literal, field_name, spec, conversion in _FORMATTER.parse(template):
        parts.append(literal)
        if field_name is None:
            continue
        value = values[field_name]
        if conversion:
            value = _FORMATTER.convert_field(value, conversion)
        parts.append(format(value, spec) if spec else str(value))
    return "".join(parts)


def escape(text: str) -> str:
    """Return ``text`` with braces doubled, so it renders as itself."""
    return text.replace("{", "{{").replace("}", "}}")
