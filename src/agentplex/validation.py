"""Validate a workflow and compile it into its immutable form.

Validation collects every problem before raising, so one run of
``agentplex validate`` shows them all. In lenient mode (for plans an LLM
wrote) invalid dependencies are dropped and recorded as warnings, as the
meta-agent design does; a cycle stays an error unless the caller opts into
``on_cycle="declared_order"``.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import itertools
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from agentplex import graph
from agentplex.binding import Binding, Source, plan_binding
from agentplex.exceptions import (
    ConfigError,
    CycleError,
    DependencyError,
    EmptyWorkflowError,
    InvalidWorkflowError,
    SchemaError,
    TemplateError,
    UnknownRoleError,
    UntrustedCodeError,
    WorkflowError,
)
from agentplex.roles import RoleLibrary
from agentplex.templates import template_fields
from agentplex.workflow import (
    AgentNode,
    CompiledWorkflow,
    FunctionNode,
    MapNode,
    Node,
    OnCycle,
    Workflow,
)

MAP_NAMES: tuple[Source, ...] = ("item", "index")


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or ``""``."""
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Checker:
    """Collect the problems of one workflow; mutable bookkeeping for one compile."""

    def __init__(self, wf: Workflow, *, lenient: bool) -> None:
        self.wf = wf
        self.lenient = lenient
        self.errors: list[WorkflowError] = []
        self.warnings: list[str] = []

    def error(self, exc: WorkflowError, node: Node | None = None) -> None:
        line = exc.line if exc.line is not None else (node.line if node else None)
        self.errors.append(exc.located(path=self.wf.source, line=line))

    def warn(self, node: Node, message: str) -> None:
        where = self.wf.source or "<workflow>"
        if node.line is not None:
            where += f":{node.line}"
        self.warnings.append(f"{where}: node {node.id!r}: {message}")

    # -- per node ---------------------------------------------------------------

    def dependencies(self, node: Node) -> tuple[str, ...]:
        """Return the node's valid dependencies, reporting or dropping the rest."""
        kept: list[str] = []
        for dep in node.depends_on:
            if dep == node.id:
                problem = "depends on itself."
                hint = "remove it from its own depends_on."
            elif dep not in self.wf.nodes:
                problem = (
                    f"depends on {dep!r}, which is not a node{did_you_mean(dep, self.wf.nodes)}."
                )
                hint = "name an existing node in depends_on, or add the missing node."
            else:
                if dep not in kept:
                    kept.append(dep)
                continue
            if self.lenient:
                self.warn(node, f"dropped dependency {dep!r}: {problem}")
            else:
                self.error(
                    DependencyError(problem, hint=hint, node_id=node.id, field="depends_on"),
                    node,
                )
        return tuple(kept)

    def agent(
        self, node: AgentNode, owner: Node, deps: Sequence[str], extra: Sequence[str]
    ) -> None:
        roles: RoleLibrary = self.wf.roles
        if node.role not in roles:
            self.error(
                UnknownRoleError(
                    f"role {node.role!r} is not defined{did_you_mean(node.role, roles)}.",
                    hint=f"use one of {', '.join(sorted(roles))}, or define it under roles:.",
                    node_id=owner.id,
                    field="role",
                ),
                owner,
            )
        if node.literal_task:
            return
        try:
            names = template_fields(node.task)
        except ValueError as exc:
            self.error(
                TemplateError(
                    f"task is not a valid template: {exc}.",
                    hint="write literal braces as '{{' and '}}'.",
                    node_id=owner.id,
                    field="task",
                ),
                owner,
            )
            return
        for name in names:
            self.placeholder(owner, name, deps, extra, what=f"task placeholder {{{name}}}")

    def placeholder(
        self, owner: Node, name: str, deps: Sequence[str], extra: Sequence[str], *, what: str
    ) -> None:
        declared = self.wf.inputs
        if name in deps or name in extra or (declared is not None and name in declared):
            return
        if declared is None and name not in self.wf.nodes:
            return  # an undeclared input: checked against the run's inputs
        if name in self.wf.nodes:
            problem = f"{what} refers to node {name!r}, which is not a dependency."
            hint = f"add {name!r} to depends_on."
        else:
            known = [*deps, *(declared or {}), *extra]
            problem = f"{what} matches no input or dependency{did_you_mean(name, known)}."
            hint = f"declare it under inputs: ({name}: {{default: ...}}) or depend on a node named {name!r}."
        self.error(TemplateError(problem, hint=hint, node_id=owner.id, field="task"), owner)

    def function(
        self, node: FunctionNode, owner: Node, deps: Sequence[str], extra: Sequence[Source]
    ) -> tuple[FunctionNode, Binding | None]:
        if not self.wf.trusted:
            self.error(
                UntrustedCodeError(
                    "function nodes are not allowed in an untrusted plan.",
                    hint="plans written by an LLM may only use agent roles; "
                    "move the function into a workflow file you wrote.",
                    node_id=owner.id,
                    field="function",
                ),
                owner,
            )
            return node, None
        fn = node.fn
        if fn is None and node.target is not None:
            fn = self.import_target(node.target, owner)
            if fn is None:
                return node, None
            node = dataclasses.replace(node, fn=fn)
        if not callable(fn):
            self.error(
                SchemaError(
                    f"{fn!r} is not callable.",
                    hint="pass a function, or 'module:function' in a file.",
                    node_id=owner.id,
                    field="function",
                ),
                owner,
            )
            return node, None
        if node.resolved_executor() in ("process", "dask"):
            qualname = getattr(fn, "__qualname__", "")
            if "<locals>" in qualname or "<lambda>" in qualname:
                self.error(
                    SchemaError(
                        f"{qualname!r} cannot run in a process pool: it is not importable.",
                        hint="define the function at module level, or drop cpu_bound.",
                        node_id=owner.id,
                        field="cpu_bound",
                    ),
                    owner,
                )
        inputs = list(self.wf.inputs) if self.wf.inputs is not None else None
        binding = plan_binding(fn, deps, inputs=inputs, extra=extra)
        if binding.needs_ctx and node.resolved_executor() in ("process", "dask"):
            self.error(
                SchemaError(
                    "takes 'ctx', which cannot be sent to a process pool.",
                    hint="drop the ctx parameter, or run the function inline or in a thread.",
                    node_id=owner.id,
                    field="cpu_bound",
                ),
                owner,
            )
        for name in binding.unbound:
            self.placeholder(owner, name, deps, extra, what=f"parameter {name!r} of {node.name}")
        return node, binding

    def import_target(self, target: str, owner: Node) -> Any:
        module_name, _, attr = target.partition(":")
        if not module_name or not attr:
            self.error(
                SchemaError(
                    f"function {target!r} is not of the form 'module:function'.",
                    hint="write e.g. 'my_steps:clean_text'.",
                    node_id=owner.id,
                    field="function",
                ),
                owner,
            )
            return None
        if self.wf.source is not None:
            folder = str(Path(self.wf.source).resolve().parent)
            if folder not in sys.path:
                sys.path.append(folder)  # modules beside the workflow file are importable
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            self.error(
                SchemaError(
                    f"cannot import module {module_name!r}: {exc}.",
                    hint="check the spelling; the module must be importable from the "
                    "workflow file's folder or an installed package.",
                    node_id=owner.id,
                    field="function",
                ),
                owner,
            )
            return None
        fn = getattr(module, attr, None)
        if fn is None:
            names = [n for n in dir(module) if not n.startswith("_")]
            self.error(
                SchemaError(
                    f"module {module_name!r} has no attribute {attr!r}{did_you_mean(attr, names)}.",
                    hint="name a function defined in that module.",
                    node_id=owner.id,
                    field="function",
                ),
                owner,
            )
        return fn

    def common(self, node: Node) -> None:
        if node.timeout_s is not None and not node.timeout_s > 0:
            self.error(
                SchemaError(
                    f"timeout_s must be a positive number of seconds, got {node.timeout_s!r}.",
                    hint="set e.g. timeout_s: 60, or leave it out for no limit.",
                    node_id=node.id,
                    field="timeout_s",
                ),
                node,
            )
        if node.retries is not None and (not isinstance(node.retries, int) or node.retries < 0):
            self.error(
                SchemaError(
                    f"retries must be a whole number >= 0, got {node.retries!r}.",
                    hint="set e.g. retries: 2.",
                    node_id=node.id,
                    field="retries",
                ),
                node,
            )


def compile_workflow(
    wf: Workflow, *, lenient: bool = False, on_cycle: OnCycle = "error"
) -> CompiledWorkflow:
    """Validate ``wf`` and return its compiled form; see :meth:`Workflow.compile`.

    Raises:
        InvalidWorkflowError: listing every problem found.
    """
    checker = _Checker(wf, lenient=lenient)
    checker.warnings.extend(wf.load_warnings)
    for exc in wf.load_errors:
        if isinstance(exc, WorkflowError):
            checker.error(exc)
    if not wf.nodes and not checker.errors:
        checker.error(
            EmptyWorkflowError("has no nodes.", hint="add at least one agent or function node.")
        )
    nodes: dict[str, Node] = {}
    deps: dict[str, tuple[str, ...]] = {}
    bindings: dict[str, Binding] = {}
    for node in wf.nodes.values():
        checker.common(node)
        node_deps = checker.dependencies(node)
        deps[node.id] = node_deps
        if isinstance(node, AgentNode):
            checker.agent(node, node, node_deps, ())
        elif isinstance(node, FunctionNode):
            node, binding = checker.function(node, node, node_deps, ())
            if binding is not None:
                bindings[node.id] = binding
        elif isinstance(node, MapNode):
            if node.over not in node_deps:
                checker.error(
                    DependencyError(
                        f"maps over {node.over!r}, which is not a node"
                        f"{did_you_mean(node.over, wf.nodes)}.",
                        hint="set 'map' to the id of the node that produces the list.",
                        node_id=node.id,
                        field="map",
                    ),
                    node,
                )
            if isinstance(node.body, AgentNode):
                checker.agent(node.body, node, node_deps, MAP_NAMES)
            else:
                body, binding = checker.function(node.body, node, node_deps, MAP_NAMES)
                node = dataclasses.replace(node, body=body)
                if binding is not None:
                    bindings[node.id] = binding
        nodes[node.id] = node

    if not any(isinstance(e, DependencyError) for e in checker.errors):
        deps = _check_cycles(checker, nodes, deps, on_cycle)

    if checker.errors:
        raise InvalidWorkflowError(sorted(checker.errors, key=lambda e: e.line or 0))
    compiled = CompiledWorkflow(
        name=wf.name,
        nodes=nodes,
        deps=deps,
        roles=wf.roles,
        inputs=dict(wf.inputs) if wf.inputs is not None else None,
        description=wf.description,
        source=wf.source,
        warnings=tuple(checker.warnings),
        trusted=wf.trusted,
        bindings=bindings,
        providers=MappingProxyType(dict(wf.providers)),
        prices=MappingProxyType(dict(wf.prices)),
    )
    return compiled


def _check_cycles(
    checker: _Checker,
    nodes: Mapping[str, Node],
    deps: dict[str, tuple[str, ...]],
    on_cycle: OnCycle,
) -> dict[str, tuple[str, ...]]:
    order = {nid: i for i, nid in enumerate(nodes)}
    while (cycle := graph.find_cycle(deps)) is not None:
        if on_cycle == "error":
            first = nodes[cycle[0]]
            checker.error(CycleError(cycle, node_id=first.id, field="depends_on"), first)
            return deps
        # Break the cycle at its first edge pointing to a later-declared node.
        for node_id, dep in itertools.pairwise(cycle):
            if order[dep] > order[node_id]:
                deps[node_id] = tuple(d for d in deps[node_id] if d != dep)
                checker.warn(
                    nodes[node_id],
                    f"dropped dependency {dep!r} to break the cycle {' -> '.join(cycle)}.",
                )
                break
    return deps


def required_inputs(compiled: CompiledWorkflow) -> dict[str, list[str]]:
    """Return ``{input name: ids of the nodes that read it}``."""
    needed: dict[str, list[str]] = {}
    bindings = compiled.bindings
    for node in compiled.nodes.values():
        body = node.body if isinstance(node, MapNode) else node
        names: list[str] = []
        if isinstance(body, AgentNode) and not body.literal_task:
            names = template_fields(body.task)
        elif node.id in bindings:
            names = bindings[node.id].input_names()
        for name in names:
            if name in compiled.deps[node.id] or name in MAP_NAMES:
                continue
            needed.setdefault(name, []).append(node.id)
    return needed


def resolve_inputs(compiled: CompiledWorkflow, given: Mapping[str, Any]) -> dict[str, Any]:
    """Return the run's inputs: ``given`` plus declared defaults, checked for completeness.

    Raises:
        ConfigError: if a required input is missing, or an input is not declared.
    """
    values = dict(given)
    declared = compiled.inputs
    if declared is not None:
        unknown = [k for k in given if k not in declared]
        if unknown:
            name = unknown[0]
            raise ConfigError(
                f"input {name!r} is not declared by workflow {compiled.name!r}"
                f"{did_you_mean(name, declared)}; declared inputs: "
                f"{', '.join(declared) or 'none'}. Fix: pass one of those, or declare "
                f"{name!r} under inputs:."
            )
        for spec in declared.values():
            if spec.name not in values and not spec.required:
                values[spec.name] = spec.default
    missing = {n: ids for n, ids in required_inputs(compiled).items() if n not in values}
    if missing:
        name, ids = next(iter(missing.items()))
        where = f" ({compiled.source})" if compiled.source else ""
        raise ConfigError(
            f"input {name!r} is required by node(s) {', '.join(ids)}{where} but was not given. "
            f"Fix: pass --input {name}=... (or inputs={{{name!r}: ...}} in Python)"
            + (f"; also missing: {', '.join(list(missing)[1:])}" if len(missing) > 1 else "")
            + "."
        )
    return values
