"""Turn an agent node into an LLM request.

The system message is the role's prompt. The user message is the rendered
task followed by one labelled section per dependency output the task did not
already insert through a ``{placeholder}``::

    Compare the findings

    ### From python (researcher)
    <python's output>

Plan tasks (plain text, written by a coordinator) also get the run's inputs
as labelled sections, since they cannot name them in placeholders.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agentplex.llm.base import CONTEXT_MARKER, Message, Request
from agentplex.model.roles import Role
from agentplex.model.templates import render, template_fields
from agentplex.model.workflow import AgentNode


def as_text(value: Any) -> str:
    """Return how an output reads inside a prompt."""
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return "\n".join(f"- {item}" for item in value)
    return str(value)


def build_request(
    node: AgentNode,
    role: Role,
    *,
    model: str,
    deps: Mapping[str, Any],
    labels: Mapping[str, str],
    inputs: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
    exclude: Sequence[str] = (),
    seed: int = 0,
    node_id: str | None = None,
) -> Request:
    """Build the request for one call of ``node``.

    Args:
        deps: dependency outputs by node id.
        labels: how to label each dependency's section (its role or kind).
        inputs: the run's inputs.
        extra: map-item values (``item``, ``index``).
        exclude: dependencies not to add as sections (a map node's list).
    """
    values: dict[str, Any] = {**inputs, **(extra or {})}
    values.update((k, as_text(v)) for k, v in deps.items())
    if node.literal_task:
        task, used = node.task, set()
        sections = [(f"input: {name}", as_text(value)) for name, value in inputs.items()]
    else:
        task = render(node.task, values)
        used = set(template_fields(node.task))
        sections = []
    for dep_id, output in deps.items():
        if dep_id not in used and dep_id not in exclude:
            sections.append((f"{dep_id} ({labels.get(dep_id, 'node')})", as_text(output)))
    parts = [task.strip()]
    parts += [f"{CONTEXT_MARKER}{label}\n{body.strip()}" for label, body in sections]
    options = dict(node.options)
    options.setdefault("seed", seed)
    return Request(
        model=model,
        messages=(Message("system", role.system_prompt), Message("user", "\n\n".join(parts))),
        options=options,
        latency_s=node.latency_s,
        node_id=node_id or node.id,
    )


def as_items(value: Any) -> list[Any]:
    """Return the list a map node fans out over.

    Lists and tuples are used as they are. Text is split into lines: bullet or
    numbered lines if there are any (markers removed), else every non-empty line.

    Raises:
        TypeError: for any other kind of value.
    """
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, str):
        lines = [line.strip() for line in value.splitlines() if line.strip()]
        bullets = [_strip_bullet(line) for line in lines if _strip_bullet(line) != line]
        return bullets or lines
    raise TypeError(
        f"can only map over a list or text, got {type(value).__name__}; "
        "make the upstream node return a list"
    )


def _strip_bullet(line: str) -> str:
    if line[:2] in ("- ", "* ", "• "):
        return line[2:].strip()
    head, dot, rest = line.partition(". ")
    if dot and head.isdigit():
        return rest.strip()
    return line
