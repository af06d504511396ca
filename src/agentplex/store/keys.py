"""Content keys of nodes: what makes a stored result reusable on resume.

A node's key hashes its own spec (kind; for agents the role's name and system
prompt, the task, the model and the provider options; for functions the
callable's module, name and source), the run's inputs, and the keys of its
dependencies. So editing one node's task changes its key and, through them,
its descendants' keys, and nothing else: on resume exactly those re-run,
whatever order or position the nodes have in the file.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable, Iterable, Mapping
from graphlib import TopologicalSorter
from typing import Any

from agentplex.model.workflow import AgentNode, CompiledWorkflow, FunctionNode, MapNode, Node

_SOURCES: dict[int, str] = {}


def _source_digest(fn: Callable[..., Any] | None) -> str:
    if fn is None:
        return ""
    cached = _SOURCES.get(id(fn))
    if cached is None:
        try:
            text = inspect.getsource(fn)
        except (OSError, TypeError):
            text = ""
        cached = hashlib.sha256(text.encode()).hexdigest()[:16]
        _SOURCES[id(fn)] = cached
    return cached


def spec_of(compiled: CompiledWorkflow, node: Node | AgentNode | FunctionNode, model: str) -> Any:
    """The parts of a node that decide its output."""
    if isinstance(node, MapNode):
        return ["map", node.over, spec_of(compiled, node.body, model)]
    if isinstance(node, AgentNode):
        role = compiled.roles[node.role]
        spec = [
            "agent",
            role.name,
            role.system_prompt,
            node.task,
            node.literal_task,
            node.model or model,
            sorted((str(k), repr(v)) for k, v in node.options.items()),
        ]
        # What shapes the answer too; only when set, so older keys stay what they were.
        shape = {
            "schema": node.output_schema,
            "cap": node.max_output_tokens,
            "role_cap": role.max_output_tokens,
            "on_truncated": node.on_truncated,
        }
        if any(v is not None for v in shape.values()):
            spec.append(json.dumps(shape, sort_keys=True, default=repr))
        return spec
    if isinstance(node, FunctionNode):
        fn = node.fn
        name = node.target or (f"{fn.__module__}:{fn.__qualname__}" if fn is not None else "")
        return ["function", name, _source_digest(fn)]
    return [node.kind]


_Plan = list[tuple[str, bytes, tuple[str, ...]]]
_PLANS: dict[tuple[int, str], tuple[CompiledWorkflow, _Plan]] = {}
"""Per (workflow, model): each node's encoded spec and sorted deps, in topological order.

A batch computes keys for every item of one workflow; the specs are the same
for all of them. The workflow is held alongside its id, so the id stays its own.
"""


def _plan(compiled: CompiledWorkflow, model: str) -> _Plan:
    cached = _PLANS.get((id(compiled), model))
    if cached is not None and cached[0] is compiled:
        return cached[1]
    deps = compiled.deps
    plan = [
        (
            node_id,
            json.dumps(spec_of(compiled, compiled.nodes[node_id], model), default=repr).encode(),
            tuple(sorted(deps[node_id])),
        )
        for node_id in TopologicalSorter(deps).static_order()
    ]
    if len(_PLANS) >= 16:
        _PLANS.pop(next(iter(_PLANS)))
    _PLANS[(id(compiled), model)] = (compiled, plan)
    return plan


def _inputs_digest(inputs: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(json.dumps(dict(inputs), sort_keys=True, default=repr).encode()).digest()


def _key(spec: bytes, inputs_digest: bytes, deps: Iterable[str], keys: Mapping[str, str]) -> str:
    digest = hashlib.sha256(spec)
    digest.update(inputs_digest)
    for dep in deps:
        digest.update(keys[dep].encode())
    return digest.hexdigest()[:32]


def node_keys(compiled: CompiledWorkflow, inputs: Mapping[str, Any], model: str) -> dict[str, str]:
    """Return every node's content key (see the module docstring)."""
    inputs_digest = _inputs_digest(inputs)
    keys: dict[str, str] = {}
    for node_id, spec, deps in _plan(compiled, model):
        keys[node_id] = _key(spec, inputs_digest, deps, keys)
    return keys


def add_key(
    keys: dict[str, str],
    compiled: CompiledWorkflow,
    node_id: str,
    inputs: Mapping[str, Any],
    model: str,
) -> str:
    """Key a node that joined a running workflow (its dependencies are keyed already)."""
    spec = json.dumps(spec_of(compiled, compiled.nodes[node_id], model), default=repr).encode()
    keys[node_id] = _key(spec, _inputs_digest(inputs), sorted(compiled.deps[node_id]), keys)
    return keys[node_id]
