"""Turn an agent node into an LLM request.

The system message is the role's prompt. The user message puts the material
first and the task last, so a long context does not bury what is asked: a
short lead-in, one delimited section per dependency output the task did not
already insert through a ``{placeholder}``, then the rendered task (the format
is :mod:`agentplex.llm.material`'s, which the simulator reads back)::

    Material for your task follows: the outputs of earlier steps. ...

    <<material 3f9a1c0d node="python" role="researcher">>
    <python's output>
    <<end material 3f9a1c0d>>

    Your task:
    Compare the findings

A task with no such dependencies is the task alone. Plan tasks (plain text,
written by a coordinator) also get the run's inputs as sections, since they
cannot name them in placeholders.

The prompt depends only on the spec, the inputs and the dependency outputs,
so the same run asks the same thing (and the result cache hits). The seed is
the run's plus ``attempt - 1``, so a retry (of a runaway answer cut off by its
cap, say) is not the same generation byte for byte; a seed a node pins in its
options stays as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agentplex.llm.base import Message, Request
from agentplex.llm.material import Section, render_prompt
from agentplex.model.roles import Role
from agentplex.model.templates import render, template_fields, value_text
from agentplex.model.workflow import AgentNode
from agentplex.result import Usage

_TOOL_PREFIX = "tool "
"""How the engine keys a tool's result among a node's dependencies (``tool search``);
node ids cannot hold a space, so no dependency is mistaken for one."""


def as_text(value: Any) -> str:
    """Return how an output reads inside a prompt (a mapping as JSON, a list as bullets)."""
    return value_text(value)


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
    attempt: int = 1,
    max_output_tokens: int | None = None,
    schema: Mapping[str, Any] | None = None,
    schema_name: str = "answer",
    on_spent: Callable[[Usage], None] | None = None,
) -> Request:
    """Build the request for one call of ``node``.

    Args:
        deps: dependency outputs by node id (a tool's result as ``"tool <name>"``).
        labels: how to label each dependency's section (its role or kind).
        inputs: the run's inputs.
        extra: map-item values (``item``, ``index``).
        exclude: dependencies not to add as sections (a map node's list).
        seed: the run's seed; the request's is ``seed + attempt - 1`` unless the
            node's options pin one.
        attempt: which attempt of the node this call belongs to (1 for the first).
        max_output_tokens: the answer's cap; None takes an old ``options:
            {max_tokens}``. ``max_tokens`` never stays in the options either way,
            so a provider does not send the cap twice.
        schema: the JSON Schema the answer must follow, named ``schema_name``.
        on_spent: told the tokens of a call that returned no completion.

    Raises:
        ValueError: if ``attempt`` is below 1.
    """
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, got {attempt!r} (node {node.id!r})")
    if node.literal_task:
        task, used = node.task, frozenset[str]()
        sections = [
            Section("input", name, as_text(value).strip()) for name, value in inputs.items()
        ]
    else:
        task = render(node.task, {**inputs, **(extra or {}), **deps})
        used = frozenset(template_fields(node.task))
        sections = []
    for dep_id, output in deps.items():
        if dep_id in used or dep_id in exclude:
            continue
        label = labels.get(dep_id, "node")
        body = as_text(output).strip()
        if label == "tool" and dep_id.startswith(_TOOL_PREFIX):
            sections.append(Section("tool", dep_id[len(_TOOL_PREFIX) :], body))
        else:
            sections.append(Section("node", dep_id, body, label))
    options = dict(node.options)
    legacy = options.pop("max_tokens", None)
    if max_output_tokens is None and type(legacy) is int and legacy > 0:
        max_output_tokens = legacy
    if "seed" not in options:
        options["seed"] = seed + attempt - 1
    return Request(
        model=model,
        messages=(
            Message("system", role.system_prompt),
            Message("user", render_prompt(task.strip(), sections)),
        ),
        options=options,
        latency_s=node.latency_s,
        node_id=node_id or node.id,
        max_output_tokens=max_output_tokens,
        schema=schema,
        schema_name=schema_name,
        on_spent=on_spent,
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
