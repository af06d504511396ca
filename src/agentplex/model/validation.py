"""Validate a workflow and compile it into its immutable form.

Validation collects every problem before raising, so one run of
``agentplex validate`` shows them all. In lenient mode (for plans an LLM
wrote) invalid dependencies are dropped and recorded as warnings, as the
meta-agent design does; a cycle stays an error unless the caller opts into
``on_cycle="declared_order"``.

Bounded for any file: "did you mean" suggestions are computed for the first
:data:`MAX_SUGGESTIONS` problems only (each against a bounded pool of
candidates), and an :class:`~agentplex.exceptions.InvalidWorkflowError` lists
the first :data:`MAX_LISTED_ERRORS` problems, then how many more there are;
50,000 unknown dependencies take well under a second.

A function node's ``module:function`` is checked for shape first (module
names are dotted Python identifiers), so a path such as ``../x`` is never
imported. With ``imports=False`` (``validate`` and ``graph`` unless asked)
nothing is imported at all and no parameter binding is planned; the compiled
workflow is for inspection only. Modules beside a trusted workflow file are
importable (its folder joins ``sys.path``); untrusted workflows never name
code, so they never touch ``sys.path``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import gc
import importlib
import itertools
import keyword
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

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
from agentplex.model import graph
from agentplex.model.binding import Binding, Source, plan_binding
from agentplex.model.roles import RoleLibrary
from agentplex.model.schema import check_schema, field_schema
from agentplex.model.templates import template_fields, template_references
from agentplex.model.workflow import (
    TRUNCATION_POLICIES,
    AgentNode,
    CompiledWorkflow,
    FunctionNode,
    MapNode,
    Node,
    OnCycle,
    Workflow,
    WorkflowDefaults,
)

MAP_NAMES: tuple[Source, ...] = ("item", "index")

MAX_SUGGESTIONS = 20
"""Problems per compile that get a "did you mean" suggestion; later ones get none."""
MAX_LISTED_ERRORS = 50
"""Problems an InvalidWorkflowError lists one by one; the rest are counted."""
_SUGGESTION_POOL = 1000  # candidates compared per suggestion (difflib is O(len) each)
_SUGGESTION_MAX_LEN = 200  # a longer name is no typo of anything
_PAUSE_GC_NODES = 1000
_SCHEMA_PROBLEMS = 3  # problems listed per invalid output_schema

# The shape of a value a placeholder reads fields of: text (an agent without an
# output_schema), unknown (a function's return value), or a JSON Schema.
_TEXT = "text"
_UNKNOWN = "unknown"


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while a large workflow is read or compiled.

    Building tens of thousands of new containers makes the collector walk the
    whole workflow again and again (about half the time of reading or compiling
    50,000 nodes); what is built holds no reference cycles, so collecting can
    wait until it is done.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or ``""``.

    From a large set of choices only a bounded pool of those of about the same
    length is compared, so one call stays cheap whatever the file holds.
    """
    if not isinstance(value, str) or len(value) > _SUGGESTION_MAX_LEN:
        return ""
    pool = [c for c in choices if isinstance(c, str)]
    if len(pool) > _SUGGESTION_POOL:
        size = len(value)
        pool = [c for c in pool if abs(len(c) - size) <= 2][:_SUGGESTION_POOL]
    close = difflib.get_close_matches(value, pool, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _short(value: object, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters (names in messages come from files)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def target_problem(target: object) -> str | None:
    """Return what is wrong with a ``module:function`` target's shape, or ``None``.

    Module names are dotted Python identifiers and the function is an
    identifier: no paths (``../x``, ``/abs``), no empty parts, nothing to import
    that is not a plain module name.
    """
    if not isinstance(target, str):
        return f"function must be a 'module:function' string, got {_short(target)}."
    module_name, colon, attr = target.partition(":")
    parts = module_name.split(".")
    if (
        colon
        and all(part.isidentifier() and not keyword.iskeyword(part) for part in parts)
        and attr.isidentifier()
        and not keyword.iskeyword(attr)
    ):
        return None
    return (
        f"function {_short(target)} is not 'module:function': module names are dotted "
        "Python identifiers (e.g. 'my_steps' or 'pkg.steps') and the function is an "
        "identifier."
    )


class _MoreProblems(WorkflowError):
    """The last entry of a capped error list: how many problems were not listed."""

    code = "more"

    def __init__(self, count: int, *, path: str | None) -> None:
        self.count = count
        super().__init__(f"and {count:,} more problems", path=path)

    def _format(self) -> str:
        return f"... and {self.count:,} more problems (fix the ones above, then validate again)"


def _invalid(listed: Sequence[WorkflowError], count: int) -> InvalidWorkflowError:
    """The error for ``count`` problems of which ``listed`` are shown (and counted last)."""
    exc = InvalidWorkflowError(listed)
    if count > len(listed):  # the header counts every problem, not the listed ones
        head = f"invalid workflow ({count:,} problems, the first {MAX_LISTED_ERRORS} listed):"
        exc.args = ("\n".join([head, *(f"  - {error}" for error in listed)]),)
    return exc


class _Checker:
    """Collect the problems of one workflow; mutable bookkeeping for one compile."""

    def __init__(self, wf: Workflow, *, lenient: bool, imports: bool = True) -> None:
        self.wf = wf
        self.lenient = lenient
        self.imports = imports
        self.errors: list[tuple[int, WorkflowError | tuple[Node, str]]] = []
        """Each problem with its line (0: unknown), located only if it is listed. An
        unknown dependency is kept as ``(node, dep)`` and its error built only if it is
        listed, so 50,000 of them cost little more than a count."""
        self.bad_dependencies = False
        self.warnings: list[str] = []
        self.suggestions = 0
        self.ids_by_length: dict[int, list[str]] | None = None
        self.known_roles: dict[str, bool] = {}
        self.not_imported: list[str] = []
        """Function nodes whose target was only checked for shape (``imports=False``)."""
        self.schemas: dict[int, tuple[Any, list[str]]] = {}
        """The problems of each output schema checked, by identity (the schema kept)."""

    def suggest(self, value: str, choices: Iterable[str]) -> str:
        """:func:`did_you_mean`, for the first :data:`MAX_SUGGESTIONS` problems only."""
        if self.suggestions >= MAX_SUGGESTIONS:
            return ""
        self.suggestions += 1
        return did_you_mean(value, choices)

    def suggest_node(self, value: str) -> str:
        """:meth:`suggest` among the node ids, from an index by length built once."""
        if self.suggestions >= MAX_SUGGESTIONS or not isinstance(value, str):
            return ""
        if self.ids_by_length is None:
            self.ids_by_length = {}
            for node_id in self.wf.nodes:
                self.ids_by_length.setdefault(len(node_id), []).append(node_id)
        size = len(value)
        near = [
            node_id
            for length in range(max(size - 2, 0), size + 3)
            for node_id in self.ids_by_length.get(length, ())
        ]
        return self.suggest(value, near[:_SUGGESTION_POOL])

    def error(self, exc: WorkflowError, node: Node | None = None) -> None:
        line = exc.line if exc.line is not None else (node.line if node else None)
        self.errors.append((line or 0, exc))
        self.bad_dependencies = self.bad_dependencies or isinstance(exc, DependencyError)

    def listed_errors(self) -> list[WorkflowError]:
        """The problems in line order, located; past :data:`MAX_LISTED_ERRORS` only counted."""
        ordered = sorted(self.errors, key=lambda pair: pair[0])
        listed = [
            (exc if isinstance(exc, WorkflowError) else self.unknown_dependency(*exc)).located(
                path=self.wf.source, line=line or None
            )
            for line, exc in ordered[:MAX_LISTED_ERRORS]
        ]
        if len(ordered) > MAX_LISTED_ERRORS:
            listed.append(_MoreProblems(len(ordered) - MAX_LISTED_ERRORS, path=self.wf.source))
        return listed

    def warn(self, node: Node, message: str) -> None:
        where = self.wf.source or "<workflow>"
        if node.line is not None:
            where += f":{node.line}"
        self.warnings.append(f"{where}: node {node.id!r}: {message}")

    # -- per node ---------------------------------------------------------------

    def dependencies(self, node: Node) -> tuple[str, ...]:
        """Return the node's valid dependencies, reporting or dropping the rest."""
        kept: dict[str, None] = {}
        nodes = self.wf.nodes
        for dep in node.depends_on:
            if dep in kept:
                continue
            if dep == node.id:
                problem = "depends on itself."
                hint = "remove it from its own depends_on."
            elif dep not in nodes:
                if not self.lenient:
                    self.errors.append((node.line or 0, (node, dep)))
                    self.bad_dependencies = True
                    continue
                problem = f"depends on {_short(dep)}, which is not a node{self.suggest_node(dep)}."
            else:
                kept[dep] = None
                continue
            if self.lenient:
                self.warn(node, f"dropped dependency {_short(dep)}: {problem}")
            else:
                self.error(
                    DependencyError(problem, hint=hint, node_id=node.id, field="depends_on"),
                    node,
                )
        return tuple(kept)

    def unknown_dependency(self, node: Node, dep: str) -> WorkflowError:
        """The error for ``node`` depending on ``dep``, which is not a node."""
        return DependencyError(
            f"depends on {_short(dep)}, which is not a node{self.suggest_node(dep)}.",
            hint="name an existing node in depends_on, or add the missing node.",
            node_id=node.id,
            field="depends_on",
        )

    def agent(
        self, node: AgentNode, owner: Node, deps: Sequence[str], extra: Sequence[str]
    ) -> None:
        roles: RoleLibrary = self.wf.roles
        known = self.known_roles.get(node.role)
        if known is None:  # a generated workflow repeats a few roles over many nodes
            known = self.known_roles[node.role] = node.role in roles
        if not known:
            self.error(
                UnknownRoleError(
                    f"role {_short(node.role)} is not defined{self.suggest(node.role, roles)}.",
                    hint=f"use one of {', '.join(sorted(roles))}, or define it under roles:.",
                    node_id=owner.id,
                    field="role",
                ),
                owner,
            )
        self.agent_settings(node, owner)
        if node.literal_task:
            return
        try:
            names, paths = template_references(node.task)
        except TemplateError as exc:
            self.error(
                TemplateError(
                    f"task is not a valid template: {exc.problem}",
                    hint=exc.hint,
                    node_id=owner.id,
                    field="task",
                ),
                owner,
            )
            return
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
        for name, path in paths:
            self.field_path(owner, name, path, deps, extra)

    def agent_settings(self, node: AgentNode, owner: Node) -> None:
        """Check an agent's output cap, truncation policy and output schema."""
        if node.max_output_tokens is not None:
            problem = cap_problem(node.max_output_tokens)
            if problem is not None:
                self.error(
                    SchemaError(
                        problem,
                        hint="set e.g. max_output_tokens: 800, or leave it out for the "
                        "role's, the run's or the engine's default.",
                        node_id=owner.id,
                        field="max_output_tokens",
                    ),
                    owner,
                )
        if node.on_truncated is not None and node.on_truncated not in TRUNCATION_POLICIES:
            self.error(
                SchemaError(
                    f"on_truncated must be one of {', '.join(TRUNCATION_POLICIES)}, got "
                    f"{_short(node.on_truncated)}"
                    f"{self.suggest(str(node.on_truncated), TRUNCATION_POLICIES)}.",
                    hint="accept keeps a cut-off answer, warn keeps it with a warning, retry "
                    "tries again with a doubled cap, fail fails the node.",
                    node_id=owner.id,
                    field="on_truncated",
                ),
                owner,
            )
        if node.output_schema is not None:
            for problem in self.schema_problems(node.output_schema):
                self.error(
                    SchemaError(
                        f"output_schema {problem}.",
                        hint="write a JSON Schema object, e.g. output_schema: {type: object, "
                        "properties: {title: {type: string}}, required: [title]}.",
                        node_id=owner.id,
                        field="output_schema",
                    ),
                    owner,
                )

    def schema_problems(self, schema: Any) -> list[str]:
        """:func:`check_schema`, once per schema object (a generated file repeats one)."""
        key = id(schema)
        cached = self.schemas.get(key)
        if cached is None or cached[0] is not schema:
            cached = self.schemas[key] = (schema, check_schema(schema)[:_SCHEMA_PROBLEMS])
        return cached[1]

    def shape(self, node_id: str) -> Any:
        """What the output of ``node_id`` is: a JSON Schema, ``_TEXT`` or ``_UNKNOWN``."""
        node = self.wf.nodes.get(node_id)
        if isinstance(node, AgentNode):
            return node.output_schema if node.output_schema is not None else _TEXT
        if isinstance(node, MapNode):
            return {"type": "array"}  # a list, whatever its items are
        return _UNKNOWN

    def item_shape(self, owner: Node) -> Any:
        """What each ``{item}`` of the map node ``owner`` is."""
        over = self.wf.nodes.get(owner.over) if isinstance(owner, MapNode) else None
        if isinstance(over, MapNode):  # a list of its body's outputs
            body = over.body
            if isinstance(body, AgentNode):
                return body.output_schema if body.output_schema is not None else _TEXT
            return _UNKNOWN
        if isinstance(over, AgentNode) and over.output_schema is None:
            return _TEXT  # an answer's lines
        return _UNKNOWN

    def field_path(
        self,
        owner: Node,
        name: str,
        path: tuple[str, ...],
        deps: Sequence[str],
        extra: Sequence[str],
    ) -> None:
        """Check that ``{name.a.b}`` reads a field the value of ``name`` can have."""
        shown = "{" + ".".join((name, *path)) + "}"
        fields = ".".join(path)
        what = f"task placeholder {shown}"
        if name in deps:
            shape: Any = self.shape(name)
            subject = f"node {name!r}"
        elif name == "item" and "item" in extra:
            shape = self.item_shape(owner)
            subject = "{item}"
        elif name in extra:  # {index}: a number
            shape = {"type": "integer"}
            subject = "{" + name + "}"
        elif name in self.wf.nodes:
            return  # not a dependency: reported by placeholder()
        else:
            self.error(
                TemplateError(
                    f"{what} reads field {fields!r} of input {name!r}; only the outputs of "
                    "nodes with an output_schema (or of function steps) have fields.",
                    hint=f"write {{{name}}} to insert the input as it is.",
                    node_id=owner.id,
                    field="task",
                ),
                owner,
            )
            return
        if shape is _UNKNOWN:
            return  # a function's return value: its shape is known only at run time
        if shape is _TEXT:
            if subject == "{item}":
                assert isinstance(owner, MapNode)
                problem = (
                    f"{what} reads field {fields!r} of each item, but the items of "
                    f"{owner.over!r} are lines of text (it declares no output_schema)."
                )
                hint = "write {item} to insert the line, or map over a step that returns dicts."
            else:
                problem = (
                    f"{what} reads field {fields!r} of {subject}, whose output is text: "
                    "it declares no output_schema."
                )
                hint = (
                    f"declare output_schema on {name!r} (a JSON Schema object with a "
                    f"{path[0]!r} property; output= in Python), or write {{{name}}} to "
                    "insert its whole answer."
                )
            self.error(TemplateError(problem, hint=hint, node_id=owner.id, field="task"), owner)
            return
        _target, missing_field = field_schema(shape, path)
        if missing_field is None:
            return
        reached = next(  # the path up to the first field the schema rules out
            path[:depth]
            for depth in range(1, len(path) + 1)
            if field_schema(shape, path[:depth])[1] is not None
        )
        missing = reached[-1]
        declared = _declared_fields(shape, reached)
        suggestion = self.suggest(missing, declared) if declared else ""
        whole = "{" + ".".join((name, *reached[:-1])) + "}"
        self.error(
            TemplateError(
                f"{what}: {subject} {missing_field}{suggestion}.",
                hint=f"use one of its declared fields, or add {missing!r} to the properties "
                f"of the output_schema of {subject}."
                if declared
                else f"write {whole} to insert that value as it is.",
                node_id=owner.id,
                field="task",
            ),
            owner,
        )

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
            problem = f"{what} matches no input or dependency{self.suggest(name, known)}."
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
            problem = target_problem(node.target)
            if problem is not None:
                self.error(
                    SchemaError(
                        problem,
                        hint="write e.g. 'my_steps:clean_text', and put the module beside the "
                        "workflow file (or install it as a package), not a path.",
                        node_id=owner.id,
                        field="function",
                    ),
                    owner,
                )
                return node, None
            if not self.imports:
                self.not_imported.append(owner.id)
                return node, None  # shape checked; importing and binding wait for a run
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
        """Import a well-formed ``module:function`` (see :func:`target_problem`)."""
        module_name, _, attr = target.partition(":")
        if self.wf.trusted and self.wf.source is not None:
            folder = str(Path(self.wf.source).resolve().parent)
            if folder not in sys.path:
                sys.path.append(folder)  # modules beside the user's own file are importable
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
        except Exception as exc:  # the module itself failed: one line, not its traceback
            self.error(
                SchemaError(
                    f"importing module {module_name!r} failed: {type(exc).__name__}: {exc}.",
                    hint="fix that module (import it in Python to see the traceback).",
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
                    f"module {module_name!r} has no attribute {attr!r}{self.suggest(attr, names)}.",
                    hint="name a function defined in that module.",
                    node_id=owner.id,
                    field="function",
                ),
                owner,
            )
        return fn

    def defaults(self, defaults: WorkflowDefaults) -> None:
        """Check the workflow-wide output cap and truncation policy."""
        cap = defaults.max_output_tokens
        problem = cap_problem(cap) if cap is not None else None
        if problem is not None:
            self.error(
                SchemaError(
                    f"defaults: {problem}",
                    hint="set e.g. defaults: {max_output_tokens: 800}, or leave it out.",
                    field="defaults.max_output_tokens",
                )
            )
        policy = defaults.on_truncated
        if policy is not None and policy not in TRUNCATION_POLICIES:
            self.error(
                SchemaError(
                    f"defaults: on_truncated must be one of {', '.join(TRUNCATION_POLICIES)}, "
                    f"got {_short(policy)}.",
                    hint="set e.g. defaults: {on_truncated: retry}, or leave it out (warn).",
                    field="defaults.on_truncated",
                )
            )

    def role_caps(self, roles: RoleLibrary) -> None:
        """Check the output cap of every role that sets one (roles built in Python)."""
        for role in roles.values():
            cap = role.max_output_tokens
            problem = cap_problem(cap) if cap is not None else None
            if problem is not None:
                self.error(
                    SchemaError(
                        f"role {role.name!r}: {problem}",
                        hint=f"give Role({role.name!r}, ..., max_output_tokens=800), or leave "
                        "it out for the run's default.",
                        field="roles",
                    )
                )

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
    wf: Workflow, *, lenient: bool = False, on_cycle: OnCycle = "error", imports: bool = True
) -> CompiledWorkflow:
    """Validate ``wf`` and return its compiled form; see :meth:`Workflow.compile`.

    Raises:
        InvalidWorkflowError: listing the problems found (the first
            :data:`MAX_LISTED_ERRORS`, then how many more).
    """
    # Only a large workflow is worth pausing the collector for (a compile may import
    # the user's modules, which then run with it paused).
    with paused_gc() if len(wf.nodes) >= _PAUSE_GC_NODES else contextlib.nullcontext():
        return _compile(wf, lenient=lenient, on_cycle=on_cycle, imports=imports)


def _compile(wf: Workflow, *, lenient: bool, on_cycle: OnCycle, imports: bool) -> CompiledWorkflow:
    checker = _Checker(wf, lenient=lenient, imports=imports)
    checker.warnings.extend(wf.load_warnings)
    checker.defaults(wf.defaults)
    checker.role_caps(wf.roles)
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
                        f"maps over {_short(node.over)}, which is not a node"
                        f"{checker.suggest_node(node.over)}.",
                        hint="set 'map' to the id of the node that produces the list.",
                        node_id=node.id,
                        field="map",
                    ),
                    node,
                )
            over = wf.nodes.get(node.over)
            if isinstance(over, AgentNode) and over.output_schema is not None:
                checker.error(
                    DependencyError(
                        f"maps over {node.over!r}, whose output_schema makes its answer an "
                        "object, not a list.",
                        hint="add a function step that returns the list (def items(extract): "
                        "return extract['items']) and map over that step.",
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

    if not checker.bad_dependencies:
        deps = _check_cycles(checker, nodes, deps, on_cycle)

    if checker.errors:
        raise _invalid(checker.listed_errors(), len(checker.errors))
    if checker.not_imported:
        shown = ", ".join(checker.not_imported[:5])
        more = f" and {len(checker.not_imported) - 5} more" if len(checker.not_imported) > 5 else ""
        checker.warnings.append(
            f"{wf.source or '<workflow>'}: the modules of function node(s) {shown}{more} were "
            "checked but not imported; pass --import (imports=True in Python) to import them."
        )
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
        defaults=wf.defaults,
    )
    return compiled


def cap_problem(cap: object) -> str | None:
    """Say what is wrong with an output cap (a whole number of tokens >= 1), or ``None``."""
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        return f"max_output_tokens must be a whole number of tokens >= 1, got {_short(cap)}."
    return None


def _declared_fields(schema: Mapping[str, Any], path: tuple[str, ...]) -> list[str]:
    """The fields declared where the last step of ``path`` looks (for "did you mean")."""
    parent, _problem = field_schema(schema, path[:-1]) if len(path) > 1 else (schema, None)
    if not isinstance(parent, Mapping):
        return []
    props = parent.get("properties")
    return [str(k) for k in props] if isinstance(props, Mapping) else []


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
