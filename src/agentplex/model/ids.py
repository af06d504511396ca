"""Node ids: stable, human-readable strings that double as placeholder names.

A node id is what ``depends_on`` names, what ``{placeholder}`` in a task names,
and what a function node's parameter may be called, so ids are restricted to
letters, digits, ``_`` and ``-`` and must start with a letter or ``_``.
"""

from __future__ import annotations

import re
import secrets
import time

_NODE_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,127}")
_NOT_ID_CHARS = re.compile(r"[^A-Za-z0-9_\-]+")


def is_valid_node_id(value: object) -> bool:
    """Return whether ``value`` may be used as a node id."""
    return isinstance(value, str) and _NODE_ID.fullmatch(value) is not None


def suggest_node_id(value: str) -> str:
    """Return the closest valid node id to ``value`` (used in error hints)."""
    slug = _NOT_ID_CHARS.sub("_", value.strip()).strip("_") or "node"
    if not (slug[0].isalpha() or slug[0] == "_"):
        slug = f"n_{slug}"
    return slug[:128]


def plan_node_id(index: int, role: str) -> str:
    """Return the id of the ``index``-th agent of a meta-agent plan, e.g. ``researcher_0``."""
    return f"{suggest_node_id(role).lower()}_{index}"


def new_run_id() -> str:
    """Return a new run id: sortable by start time, unique enough to name files."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)
