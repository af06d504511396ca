"""The workflow model: frozen node specs and the builder that collects them.

A :class:`Workflow` is a small, mutable builder (``wf.agent(...)``,
``@wf.step(...)``, ``wf.map(...)``); every node it holds is a frozen
dataclass. :meth:`Workflow.compile` validates the whole graph and returns a
:class:`CompiledWorkflow`, the immutable spec that schedulers, runners and
reports work from. Compiling never mutates the builder, so one builder can be
edited and compiled again.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, TypeVar, cast

from agentplex.exceptions import DuplicateNodeError, SchemaError
from agentplex.llm.config import ProviderConfig
from agentplex.llm.pricing import Price
from agentplex.model.binding import Binding
from agentplex.model.ids import is_valid_node_id, suggest_node_id
from agentplex.model.roles import Role, RoleLibrary, normalize_role

ExecutorName = Literal["auto", "inline", "thread", "process", "dask"]
OnCycle = Literal["error", "declared_order"]
F = TypeVar("F", bound=Callable[..., Any])

#: Duration estimates (seconds) used for scheduling priority when a node gives none.
DEFAULT_AGENT_ESTIMATE_S = 1.0
DEFAULT_FUNCTION_ESTIMATE_S = 0.01

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    """Fields every node kind shares."""

    id: str
    """Stable id: what ``depends_on`` and ``{placeholders}`` refer to."""
    depends_on: tuple[str, ...] = ()
    """Ids of the nodes whose outputs this one needs; it starts once they succeed."""
    timeout_s: float | None = None
    """Time limit for one attempt, or ``None`` for no limit."""
    retries: int | None = None
    """Extra attempts after a retryable failure (see ``retry_on``); ``None``: the run's default."""
    retry_on: tuple[type[BaseException], ...] = ()
    """Exception types that are retried besides :class:`RetryableError` and timeouts."""
    estimate_s: float | None = None
    """Expected duration, used only to order ready nodes when slots are scarce."""
    description: str = ""
    cache: bool | None = None
    """Reuse a cached result: agents default to yes, functions to no (side effects)."""
    line: int | None = field(default=None, compare=False)
    """Line of the workflow file that declared this node, for error messages."""

    @property
    def kind(self) -> str:
        """``agent``, ``function`` or ``map``."""
        raise NotImplementedError

    def estimated_duration(self) -> float:
        """Return the duration the scheduler assumes for priorities."""
        return self.estimate_s if self.estimate_s is not None else DEFAULT_FUNCTION_ESTIMATE_S


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentNode(Node):
    """An LLM agent: a role, a task template and a model."""

    role: str
    task: str
    """Template: ``{name}`` is a workflow input or a dependency's output; ``{{`` is a brace."""
    model: str | None = None
    """``provider:model``; ``None`` uses the run's default model."""
    options: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    """Provider parameters such as ``temperature``, ``max_tokens`` or ``seed``."""
    latency_s: float | None = None
    """Pin the ``sim`` provider's latency for this node (ignored by real providers)."""
    literal_task: bool = False
    """Treat ``task`` as plain text, not a template (meta-agent plans)."""
    tools: tuple[str, ...] = ()
    """Registered tools called (side by side, with the task) before the model; their
    results join the prompt. Set by planned runs (``ask(tools=...)``)."""

    @property
    def kind(self) -> str:
        return "agent"

    def estimated_duration(self) -> float:
        if self.estimate_s is not None:
            return self.estimate_s
        return self.latency_s if self.latency_s is not None else DEFAULT_AGENT_ESTIMATE_S


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionNode(Node):
    """A Python callable, sync or async, run inline, in a thread or in a process."""

    fn: Callable[..., Any] | None = None
    """The callable; ``None`` until ``target`` is imported at compile time."""
    target: str | None = None
    """``module:function`` as written in a workflow file."""
    executor: ExecutorName = "auto"
    """``auto``: async functions inline, sync ones in threads, ``cpu_bound`` ones in processes
    (or on Dask when the run says ``executor="dask"``); ``dask``: always on the Dask cluster."""
    cpu_bound: bool = False

    @property
    def kind(self) -> str:
        return "function"

    @property
    def name(self) -> str:
        """The callable's name, or its ``module:function`` target."""
        if self.target is not None:
            return self.target
        return getattr(self.fn, "__qualname__", repr(self.fn))

    def resolved_executor(self) -> Literal["inline", "thread", "process", "dask"]:
        """Return where this function runs."""
        if self.executor != "auto":
            return self.executor
        if self.cpu_bound:
            return "process"
        return "inline" if inspect.iscoroutinefunction(self.fn) else "thread"


DEFAULT_MAX_ITEMS = 1_000
"""Items a map node fans out over unless it says ``max_items``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MapNode(Node):
    """Fan one body out over the list an upstream node produced.

    The body runs once per item with ``{item}`` and ``{index}`` available to
    its template (or ``item`` / ``index`` parameters for a function body). The
    items run concurrently, results are gathered in item order, and the first
    failure cancels the remaining items. An agent's text output is split into
    its non-empty lines (list bullets removed).

    Raises:
        SchemaError: if ``max_items`` is not a whole number >= 1.
    """

    over: str
    """Id of the node whose output is the list; it is a dependency automatically."""
    body: AgentNode | FunctionNode
    max_items: int = DEFAULT_MAX_ITEMS
    """Most items this node fans out over. A longer list (one model answer can hold
    any number of lines) fails the node before any item starts, with the count."""

    def __post_init__(self) -> None:
        limit = self.max_items
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise SchemaError(
                f"max_items must be a whole number >= 1, got {limit!r}.",
                hint="e.g. max_items: 5000 for a map that really needs more than 1,000 items.",
                node_id=self.id,
                field="max_items",
                line=self.line,
            )

    @property
    def kind(self) -> str:
        return "map"

    def estimated_duration(self) -> float:
        return self.estimate_s if self.estimate_s is not None else self.body.estimated_duration()


@dataclass(frozen=True, slots=True)
class InputSpec:
    """A declared workflow input."""

    name: str
    default: Any = None
    required: bool = True
    description: str = ""


@dataclass(frozen=True, slots=True, repr=False)
class CompiledWorkflow:
    """A validated, immutable workflow: what every scheduler and runner works from."""

    name: str
    nodes: Mapping[str, Node]
    """Nodes by id, in declaration order."""
    deps: Mapping[str, tuple[str, ...]]
    """Effective dependencies (after lenient repairs), in declaration order."""
    roles: RoleLibrary
    inputs: Mapping[str, InputSpec] | None
    """Declared inputs, or ``None`` when the workflow did not declare them."""
    description: str = ""
    source: str | None = None
    warnings: tuple[str, ...] = ()
    """Repairs made in lenient mode and other things worth knowing."""
    trusted: bool = True
    bindings: Mapping[str, Binding] = field(default_factory=lambda: _EMPTY)
    """How each function (or function-bodied map) node's parameters are filled."""
    providers: Mapping[str, ProviderConfig] = field(default_factory=lambda: _EMPTY)
    """Provider configurations the workflow declares (``providers:`` in a file)."""
    prices: Mapping[str, Price] = field(default_factory=lambda: _EMPTY)
    """Prices the workflow adds to the built-in table."""

    def __len__(self) -> int:
        return len(self.nodes)

    def __repr__(self) -> str:  # compact: a workflow may hold 100,000 nodes
        return f"CompiledWorkflow({self.name!r}, nodes={len(self.nodes)})"

    def grow(self, node: AgentNode) -> None:
        """Add an agent node to this workflow while it runs (a plan arriving piece by piece).

        Only the planner of a plan run calls this, on a workflow of its own;
        the node's role and dependencies must already be known. Everything
        else treats a compiled workflow as immutable.

        Raises:
            ConfigError: for a duplicate id, an unknown role or an unknown dependency.
        """
        from agentplex.exceptions import ConfigError

        if node.id in self.nodes:
            raise ConfigError(f"node {node.id!r} is already in the workflow")
        if node.role not in self.roles:
            raise ConfigError(f"node {node.id!r}: unknown role {node.role!r}")
        missing = [d for d in node.depends_on if d not in self.nodes]
        if missing:
            raise ConfigError(f"node {node.id!r} depends on unknown node(s) {missing}")
        cast("dict[str, Node]", self.nodes)[node.id] = node
        cast("dict[str, tuple[str, ...]]", self.deps)[node.id] = tuple(node.depends_on)

    def estimates(self) -> dict[str, float]:
        """Return each node's estimated duration."""
        return {nid: node.estimated_duration() for nid, node in self.nodes.items()}

    def layers(self) -> list[list[str]]:
        """Return the topological layers: how many nodes can run side by side at each depth."""
        from agentplex.model.graph import layers

        return layers(self.deps)


class Workflow:
    """Build a workflow in Python, node by node.

    Example::

        wf = Workflow("compare")
        py = wf.agent("researcher", "Research Python web frameworks for {query}")
        rs = wf.agent("researcher", "Research Rust web frameworks for {query}")
        cmp = wf.agent("analyzer", "Compare the findings", depends_on=[py, rs], id="compare")

        @wf.step(depends_on=[cmp])
        def word_count(compare: str) -> int:
            return len(compare.split())

    Every method that adds a node returns its id, to use in ``depends_on``.
    """

    def __init__(
        self,
        name: str,
        *,
        description: str = "",
        inputs: Iterable[str | InputSpec] | None = None,
        roles: Iterable[Role] = (),
        trusted: bool = True,
        providers: Mapping[str, ProviderConfig] | None = None,
        prices: Mapping[str, Price] | None = None,
    ) -> None:
        self.name = name
        self.providers: dict[str, ProviderConfig] = dict(providers or {})
        """Provider configurations by the name model strings use (``local:qwen``)."""
        self.prices: dict[str, Price] = dict(prices or {})
        """Prices (US dollars per million tokens) added to the built-in table."""
        self.description = description
        self.inputs: dict[str, InputSpec] | None = None
        if inputs is not None:
            specs = [i if isinstance(i, InputSpec) else InputSpec(i) for i in inputs]
            self.inputs = {spec.name: spec for spec in specs}
        self.roles = RoleLibrary(roles)
        self.trusted = trusted
        """``False`` for plans an LLM wrote: they may not run Python."""
        self.source: str | None = None
        """Path of the file this workflow was loaded from, if any."""
        self.load_errors: list[Exception] = []
        """Problems found while loading a file, reported again by :meth:`compile`."""
        self.load_warnings: list[str] = []
        """Repairs made while loading a plan leniently, carried into the compiled warnings."""
        self._nodes: dict[str, Node] = {}

    @property
    def nodes(self) -> Mapping[str, Node]:
        """The nodes added so far, by id, in declaration order."""
        return MappingProxyType(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)

    def __repr__(self) -> str:
        return f"Workflow({self.name!r}, nodes={len(self._nodes)})"

    def add(self, node: Node) -> str:
        """Add a node spec and return its id.

        Raises:
            DuplicateNodeError: if a node with this id exists already.
            SchemaError: if the id is not a valid node id.
        """
        if not is_valid_node_id(node.id):
            raise SchemaError(
                f"{node.id!r} is not a valid node id.",
                hint=f"use letters, digits, '_' and '-' only, e.g. {suggest_node_id(str(node.id))!r}.",
                node_id=str(node.id),
                field="id",
                path=self.source,
                line=node.line,
            )
        if node.id in self._nodes:
            raise DuplicateNodeError(
                "a node with this id exists already.",
                hint="give one of the two nodes another id.",
                node_id=node.id,
                path=self.source,
                line=node.line,
            )
        self._nodes[node.id] = node
        return node.id

    def add_role(self, role: Role) -> Role:
        """Make ``role`` available to this workflow's agents (replacing one of the same name)."""
        self.roles = self.roles.with_roles([role])
        return role

    def agent(
        self,
        role: str,
        task: str,
        *,
        id: str | None = None,
        depends_on: Sequence[str] = (),
        model: str | None = None,
        timeout_s: float | None = None,
        retries: int | None = None,
        latency_s: float | None = None,
        estimate_s: float | None = None,
        cache: bool | None = None,
        **options: Any,
    ) -> str:
        """Add an agent node and return its id (by default the role, made unique).

        Extra keyword arguments (``temperature=0.2``, ``max_tokens=500``...) are
        passed to the provider. ``cache=False`` never reuses a cached answer.
        """
        node_id = id if id is not None else self._unique_id(normalize_role(role))
        return self.add(
            AgentNode(
                id=node_id,
                role=role,
                task=task,
                depends_on=tuple(depends_on),
                model=model,
                timeout_s=timeout_s,
                retries=retries,
                latency_s=latency_s,
                estimate_s=estimate_s,
                cache=cache,
                options=MappingProxyType(dict(options)),
            )
        )

    def function(
        self,
        fn: Callable[..., Any],
        *,
        id: str | None = None,
        depends_on: Sequence[str] = (),
        cpu_bound: bool = False,
        executor: ExecutorName = "auto",
        timeout_s: float | None = None,
        retries: int | None = None,
        retry_on: Sequence[type[BaseException]] = (),
        estimate_s: float | None = None,
        cache: bool | None = None,
    ) -> str:
        """Add a function node and return its id (by default the function's name).

        The function's parameters are bound by name to dependency outputs and
        workflow inputs; a parameter named ``ctx`` receives the
        :class:`~agentplex.NodeContext`. A single unmatched parameter takes the
        single unmatched dependency. ``cpu_bound=True`` runs it in a process
        pool, so it must be importable (defined at module level). ``cache=True``
        reuses a cached result for the same arguments (only for functions
        without side effects).
        """
        name = getattr(fn, "__name__", "function")
        node_id = id if id is not None else self._unique_id(name if name != "<lambda>" else "fn")
        return self.add(
            FunctionNode(
                id=node_id,
                fn=fn,
                depends_on=tuple(depends_on),
                cpu_bound=cpu_bound,
                executor=executor,
                timeout_s=timeout_s,
                retries=retries,
                retry_on=tuple(retry_on),
                estimate_s=estimate_s,
                cache=cache,
            )
        )

    def step(
        self,
        *,
        id: str | None = None,
        depends_on: Sequence[str] = (),
        cpu_bound: bool = False,
        executor: ExecutorName = "auto",
        timeout_s: float | None = None,
        retries: int | None = None,
        retry_on: Sequence[type[BaseException]] = (),
    ) -> Callable[[F], F]:
        """Decorate a function to add it as a function node; the function is returned as is."""

        def register(fn: F) -> F:
            self.function(
                fn,
                id=id,
                depends_on=depends_on,
                cpu_bound=cpu_bound,
                executor=executor,
                timeout_s=timeout_s,
                retries=retries,
                retry_on=retry_on,
            )
            return fn

        return register

    def map(
        self,
        over: str,
        *,
        role: str | None = None,
        task: str | None = None,
        fn: Callable[..., Any] | None = None,
        id: str | None = None,
        depends_on: Sequence[str] = (),
        model: str | None = None,
        cpu_bound: bool = False,
        executor: ExecutorName = "auto",
        timeout_s: float | None = None,
        retries: int | None = None,
        latency_s: float | None = None,
        max_items: int = DEFAULT_MAX_ITEMS,
    ) -> str:
        """Add a map node running an agent (``role`` + ``task``) or ``fn`` once per item of ``over``.

        ``max_items`` bounds the fan-out: a longer list fails the node before
        any item starts.

        Raises:
            SchemaError: unless exactly one of ``role``/``task`` or ``fn`` is
                given, or if ``max_items`` is not a whole number >= 1.
        """
        has_agent = role is not None or task is not None
        if has_agent == (fn is not None) or (has_agent and (role is None or task is None)):
            raise SchemaError(
                "a map node needs either role and task (an agent body) or fn (a function body).",
                hint="pass role='fact_checker', task='Check {item}' or fn=my_function.",
                node_id=id,
            )
        body: AgentNode | FunctionNode
        if fn is not None:
            base = getattr(fn, "__name__", "map")
            body = FunctionNode(
                id=base, fn=fn, cpu_bound=cpu_bound, executor=executor, timeout_s=timeout_s
            )
        else:
            assert role is not None
            assert task is not None
            base = f"{normalize_role(role)}_each"
            body = AgentNode(
                id=base,
                role=role,
                task=task,
                model=model,
                latency_s=latency_s,
                timeout_s=timeout_s,
            )
        node_id = id if id is not None else self._unique_id(base)
        deps = tuple(dict.fromkeys([over, *depends_on]))
        return self.add(
            MapNode(
                id=node_id,
                over=over,
                body=body,
                depends_on=deps,
                retries=retries,
                max_items=max_items,
            )
        )

    def compile(
        self,
        *,
        lenient: bool = False,
        on_cycle: OnCycle = "error",
        imports: bool = True,
    ) -> CompiledWorkflow:
        """Validate the workflow and return its immutable, compiled form.

        Args:
            lenient: drop invalid dependencies (unknown, out of range, self)
                with a recorded warning instead of failing; meant for plans an
                LLM wrote.
            on_cycle: ``"error"`` (default) or ``"declared_order"``, which
                breaks cycles by dropping dependencies on later-declared nodes,
                each with a warning.
            imports: import the modules that function nodes name as
                ``module:function`` and plan their parameter binding. With
                ``False`` each target is only checked for shape, nothing is
                imported and a warning says so; the result is for inspection
                (layers, graphs), not for running.

        Raises:
            InvalidWorkflowError: listing the problems found.
        """
        from agentplex.model.validation import compile_workflow

        return compile_workflow(self, lenient=lenient, on_cycle=on_cycle, imports=imports)

    def _unique_id(self, base: str) -> str:
        base = suggest_node_id(base)
        if base not in self._nodes:
            return base
        n = 2
        while f"{base}_{n}" in self._nodes:
            n += 1
        return f"{base}_{n}"
