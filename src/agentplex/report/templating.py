"""The one Jinja2 environment of reports and exports: autoescaped, strict, packaged templates.

Every value a template prints is HTML-escaped (``autoescape=True``), in text
and in quoted attributes alike, so a record's strings can only ever be text.
Templates never put a value inside ``<style>``, a URL or an event attribute;
the colours they use come from constants. Undefined names fail loudly
(``StrictUndefined``) instead of rendering as empty.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import jinja2


@cache
def environment() -> jinja2.Environment:
    """Return the shared environment, loading ``agentplex/report/templates/``."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("agentplex.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(template: str, **context: Any) -> str:
    """Render ``template`` (a file in ``templates/``) with ``context``."""
    return environment().get_template(template).render(**context)
