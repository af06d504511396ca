"""The workflow model: frozen node specs and the builder that collects them.

A :class:`Workflow` is a small, mutable builder (``wf.agent(...)``,
``@wf.step(...)``, ``wf.map(...)``); every node it holds is a frozen
dataclass. Each method that adds a node returns a reference to it for
``depends_on``: the node's id, a ``str`` (``@wf.step`` returns a :class:`Step`,
an id that still calls the decorated function). :meth:`Workflow.compile`
validates the whole graph and returns a :class:`CompiledWorkflow`, the
immutable spec that schedulers, runners and reports work from. Compiling never
mutates the builder, so one builder can be edited and compiled again.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, Literal, ParamSpec, TypeVar, cast

from agentplex.exceptions import DependencyError, DuplicateNodeError, SchemaError
from agentplex.llm.config import ProviderConfig
from agentplex.llm.pricing import Price
from agentplex.model import schema as _schema
from agentplex.model.binding import Binding
from agentplex.model.ids import is_valid_node_id, suggest_node_id
from agentplex.model.roles import Role, RoleLibrary, normalize_role

ExecutorName = str
"""``auto``, a built-in executor (``inline``, ``thread``, ``process``, ``dask``), or the
name of one registered with :func:`agentplex.register_executor`."""
OnCycle = Literal["error", "declared_order"]
TruncationPolicy = Literal["accept", "warn", "retry", "fail"]
"""What to do with an answer cut off at its output cap: keep it silently (``accept``),
keep it with a warning (``warn``, the engine's default), try again with a doubled cap
(``retry``), or fail the node (``fail``)."""
TRUNCATION_POLICIES: tuple[TruncationPolicy, ...] = ("accept", "warn", "retry", "fail")
P = ParamSpec("P")
R = TypeVar("R")

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
    """Provider parameters such as ``temperature`` or ``seed`` (an old ``max_tokens``
    here still caps the answer; ``max_output_tokens`` is the field for it)."""
    max_output_tokens: int | None = None
    """Cap on each answer's length in tokens; ``None``: the role's, else the run's,
    else the workflow's ``defaults:``, else the engine's default."""
    on_truncated: TruncationPolicy | None = None
    """What to do with an answer cut off at the cap (:data:`TRUNCATION_POLICIES`);
    ``None``: the run's, else the workflow's ``defaults:``, else ``warn``."""
    output_schema: Mapping[str, Any] | None = None
    """A JSON Schema (plain JSON data, treated as read-only) the answer must follow:
    the answer is then parsed, checked, and handed on as the JSON value it holds."""
    schema_name: str = ""
    """The schema's name for providers (``[A-Za-z0-9_-]{1,64}``); derived from the
    schema's ``title`` or the node id when not given."""
    latency_s: float | None = None
    """Pin the ``sim`` provider's latency for this node (ignored by real providers)."""
    literal_task: bool = False
    """Treat ``task`` as plain text, not a template (meta-agent plans)."""
    tools: tuple[str, ...] = ()
    """Registered tools called (side by side, with the task) before the model; their
    results join the prompt. Set by planned runs (``ask(tools=...)``)."""

    def __post_init__(self) -> None:
        if self.output_schema is not None:  # providers want a name with every schema
            given = self.schema_name
            name = _schema.schema_name({"title": given} if given else self.output_schema, self.id)
            object.__setattr__(self, "schema_name", name)

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
    (or on Dask when the run says ``executor="dask"``); ``dask``: always on the Dask cluster;
    any other name: the executor registered under it (:func:`agentplex.register_executor`)."""
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

    def resolved_executor(self) -> str:
        """Return where this function runs: an executor's name, never ``auto``."""
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


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowDefaults:
    """Workflow-wide settings every agent inherits unless it (or its role) sets its own.

    Unlike the other ``defaults:`` of a file (``model``, ``retries``...), which
    are copied into each node as it is read, these stay here, because they
    rank below a role's cap and the run's own options: node, then role, then
    the run (``--max-output-tokens``, ``--on-truncated``), then these.
    """

    max_output_tokens: int | None = None
    """Output cap of agents whose node, role and run set none."""
    on_truncated: TruncationPolicy | None = None
    """Truncation policy of agents whose node and run set none."""

    @classmethod
    def of(cls, value: WorkflowDefaults | Mapping[str, Any] | None) -> WorkflowDefaults:
        """Return ``value`` as defaults (a mapping gives the fields by name).

        Raises:
            SchemaError: for a key that is not a field, naming the fields.
        """
        if value is None:
            return cls()
        if isinstance(value, WorkflowDefaults):
            return value
        known = ("max_output_tokens", "on_truncated")
        unknown = [str(k) for k in value if k not in known]
        if unknown:
            raise SchemaError(
                f"unknown workflow default {unknown[0]!r}.",
                hint=f"defaults may set {', '.join(known)}.",
                field="defaults",
            )
        return cls(**{str(k): v for k, v in value.items()})


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
    defaults: WorkflowDefaults = WorkflowDefaults()
    """Output cap and truncation policy every agent inherits (``defaults:`` in a file)."""

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


class Step(str, Generic[P, R]):
    """What ``@wf.step`` returns: the node's id, which still calls the function.

    Being the id (a ``str``), it goes wherever a node reference goes
    (``depends_on=[word_count]``); calling it calls the decorated function, so
    code and tests may still call ``word_count("some text")`` directly. Its
    ``__wrapped__`` is the function itself.
    """

    __wrapped__: Callable[P, R]

    def __new__(cls, node_id: str, fn: Callable[P, R]) -> Step[P, R]:
        step = super().__new__(cls, node_id)
        step.__wrapped__ = fn
        for name in ("__module__", "__name__", "__qualname__", "__doc__"):
            value = getattr(fn, name, None)
            if value is not None:
                setattr(step, name, value)
        return step

    @property
    def id(self) -> str:
        """The node id, as a plain ``str``."""
        return str.__str__(self)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.__wrapped__(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Step({self.id!r}, {getattr(self.__wrapped__, '__qualname__', self.__wrapped__)!r})"

    def __reduce__(self) -> str | tuple[Any, ...]:
        # By name where its module holds it (so a process pool finds the same object),
        # else rebuilt from the id and the function.
        module = sys.modules.get(getattr(self, "__module__", "") or "")
        found: Any = module
        for part in str(getattr(self, "__qualname__", "")).split("."):
            found = getattr(found, part, None)
        if found is self:
            return str(self.__qualname__)
        return (Step, (self.id, self.__wrapped__))


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

    Every method that adds a node returns its id, to use in ``depends_on``
    (``@wf.step`` returns a :class:`Step`: the id, still callable as the function).
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
        defaults: WorkflowDefaults | Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.defaults = WorkflowDefaults.of(defaults)
        """What every agent inherits unless it says otherwise (``max_output_tokens``,
        ``on_truncated``); checked by :meth:`compile`."""
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
            DependencyError: if a dependency is not a node id (naming the fix).
        """
        return self._add(node, check_deps=True)

    def _add(self, node: Node, *, check_deps: bool) -> str:
        """Add ``node``; builder methods pass ``check_deps=False``, having checked them."""
        if not is_valid_node_id(node.id):
            raise SchemaError(
                f"{node.id!r} is not a valid node id.",
                hint=f"use letters, digits, '_' and '-' only, e.g. {suggest_node_id(str(node.id))!r}.",
                node_id=str(node.id),
                field="id",
                path=self.source,
                line=node.line,
            )
        if check_deps:
            self._check_dependencies(node.depends_on, node.id, node.line)
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
        max_output_tokens: int | None = None,
        on_truncated: TruncationPolicy | None = None,
        output: Any = None,
        **options: Any,
    ) -> str:
        """Add an agent node and return its id (by default the role, made unique).

        ``max_output_tokens`` caps each answer; ``on_truncated`` says what to do
        with one cut off at the cap (``accept``, ``warn``, ``retry``, ``fail``).
        ``output`` asks for a structured answer: a pydantic model, a dataclass,
        a TypedDict or a JSON Schema dict; the node's output is then the parsed
        JSON value (a dict), checked against the schema, and later tasks may
        read its fields (``{extract.title}``). Extra keyword arguments
        (``temperature=0.2``, ``seed=7``...) are passed to the provider.
        ``cache=False`` never reuses a cached answer.

        Raises:
            SchemaError: if ``output`` cannot be described as a JSON Schema.
            MissingExtraError: if ``output`` is a type and pydantic is not installed.
        """
        node_id = id if id is not None else self._unique_id(normalize_role(role))
        schema, name = self._output(output, node_id)
        return self._add(
            AgentNode(
                id=node_id,
                role=role,
                task=task,
                depends_on=self._dependencies(depends_on, node_id),
                model=model,
                timeout_s=timeout_s,
                retries=retries,
                latency_s=latency_s,
                estimate_s=estimate_s,
                cache=cache,
                options=MappingProxyType(dict(options)),
                max_output_tokens=max_output_tokens,
                on_truncated=on_truncated,
                output_schema=schema,
                schema_name=name,
            ),
            check_deps=False,
        )

    def _output(self, output: Any, node_id: str) -> tuple[dict[str, Any] | None, str]:
        """The JSON Schema and schema name ``output=`` asks for (``(None, "")`` for none).

        Raises:
            SchemaError: if ``output`` is neither a type pydantic describes nor a
                JSON Schema mapping.
        """
        if output is None:
            return None, ""
        try:
            schema = _schema.schema_for(output)
        except TypeError as exc:
            raise SchemaError(
                f"output={_describe(output)} is not a structured output type: {exc}.",
                hint="pass a pydantic model, a dataclass, a TypedDict, or a JSON Schema dict "
                "such as {'type': 'object', 'properties': {'title': {'type': 'string'}}}.",
                node_id=node_id,
                field="output",
                path=self.source,
            ) from exc
        return schema, _schema.schema_name(output, node_id)

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
        if isinstance(fn, Step):
            fn = fn.__wrapped__
        name = getattr(fn, "__name__", "function")
        node_id = id if id is not None else self._unique_id(name if name != "<lambda>" else "fn")
        return self._add(
            FunctionNode(
                id=node_id,
                fn=fn,
                depends_on=self._dependencies(depends_on, node_id),
                cpu_bound=cpu_bound,
                executor=executor,
                timeout_s=timeout_s,
                retries=retries,
                retry_on=tuple(retry_on),
                estimate_s=estimate_s,
                cache=cache,
            ),
            check_deps=False,
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
        estimate_s: float | None = None,
        cache: bool | None = None,
    ) -> Callable[[Callable[P, R]], Step[P, R]]:
        """Decorate a function to add it as a function node (see :meth:`function`).

        Returns a :class:`Step`: the node's id, to pass in other nodes'
        ``depends_on``, which still calls the function when called.
        """

        def register(fn: Callable[P, R]) -> Step[P, R]:
            node_id = self.function(
                fn,
                id=id,
                depends_on=depends_on,
                cpu_bound=cpu_bound,
                executor=executor,
                timeout_s=timeout_s,
                retries=retries,
                retry_on=retry_on,
                estimate_s=estimate_s,
                cache=cache,
            )
            return Step(node_id, fn)

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
        max_output_tokens: int | None = None,
        on_truncated: TruncationPolicy | None = None,
        output: Any = None,
    ) -> str:
        """Add a map node running an agent (``role`` + ``task``) or ``fn`` once per item of ``over``.

        ``max_items`` bounds the fan-out: a longer list fails the node before
        any item starts. ``max_output_tokens``, ``on_truncated`` and ``output``
        apply to each item's agent call, as in :meth:`agent`.

        Raises:
            SchemaError: unless exactly one of ``role``/``task`` or ``fn`` is
                given, if ``max_items`` is not a whole number >= 1, if a function
                body is given an agent's settings, or if ``output`` cannot be
                described as a JSON Schema.
        """
        has_agent = role is not None or task is not None
        if has_agent == (fn is not None) or (has_agent and (role is None or task is None)):
            raise SchemaError(
                "a map node needs either role and task (an agent body) or fn (a function body).",
                hint="pass role='fact_checker', task='Check {item}' or fn=my_function.",
                node_id=id,
            )
        body: AgentNode | FunctionNode
        agent_only = {
            "max_output_tokens": max_output_tokens,
            "on_truncated": on_truncated,
            "output": output,
        }
        given = [name for name, value in agent_only.items() if value is not None]
        if fn is not None and given:
            raise SchemaError(
                f"{given[0]} applies to agent calls, and this map's body is a function.",
                hint=f"drop {given[0]}, or map an agent (role=..., task=...) instead.",
                node_id=id,
                field=given[0],
            )
        if fn is not None:
            base = getattr(fn, "__name__", "map")
            body = FunctionNode(
                id=base, fn=fn, cpu_bound=cpu_bound, executor=executor, timeout_s=timeout_s
            )
        else:
            assert role is not None
            assert task is not None
            base = f"{normalize_role(role)}_each"
            schema, name = self._output(output, id if id is not None else base)
            body = AgentNode(
                id=base,
                role=role,
                task=task,
                model=model,
                latency_s=latency_s,
                timeout_s=timeout_s,
                max_output_tokens=max_output_tokens,
                on_truncated=on_truncated,
                output_schema=schema,
                schema_name=name,
            )
        node_id = id if id is not None else self._unique_id(base)
        if not isinstance(over, str):
            raise DependencyError(
                f"maps over {over!r}, which is not a node reference.",
                hint="pass the id of the node whose output is the list, as wf.agent(), "
                "wf.function() or @wf.step returned it.",
                node_id=node_id,
                field="over",
            )
        deps = tuple(dict.fromkeys([str(over), *self._dependencies(depends_on, node_id)]))
        return self._add(
            MapNode(
                id=node_id,
                over=over,
                body=body,
                depends_on=deps,
                retries=retries,
                max_items=max_items,
            ),
            check_deps=False,
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

    def _dependencies(self, depends_on: Any, node_id: str) -> tuple[str, ...]:
        """Return ``depends_on`` as a tuple of node ids.

        Raises:
            DependencyError: naming the node and the fix, for anything but node references.
        """
        if isinstance(depends_on, str):
            raise DependencyError(
                f"depends_on is the single string {str(depends_on)!r}, not a list of nodes.",
                hint=f"write depends_on=[{str(depends_on)!r}].",
                node_id=node_id,
                field="depends_on",
            )
        if not isinstance(depends_on, Iterable):
            raise DependencyError(
                f"depends_on must be a list of node references, got {depends_on!r}.",
                hint="pass a list of what wf.agent(), wf.function() or @wf.step returned.",
                node_id=node_id,
                field="depends_on",
            )
        deps = tuple(depends_on)
        for dep in deps:  # a plain loop: this runs for every node a builder adds
            if type(dep) is not str:
                break
        else:
            return deps
        self._check_dependencies(deps, node_id, None)
        return tuple(str.__str__(dep) for dep in deps)  # a Step becomes its plain id

    def _check_dependencies(self, deps: Any, node_id: str, line: int | None) -> None:
        """Raise a DependencyError naming ``node_id`` for a dependency that is not a node id."""
        for dep in deps if isinstance(deps, tuple | list) else [deps]:
            if isinstance(dep, str):
                continue
            held = [
                nid
                for nid, node in self._nodes.items()
                if isinstance(node, FunctionNode) and node.fn is dep
            ]
            if held:
                hint = f"use its node id {held[0]!r} (what wf.function() returned)."
            elif callable(dep):
                hint = (
                    "add the function as a node first (wf.function(fn) returns its id; "
                    "@wf.step returns a reference that depends_on takes), then pass that."
                )
            else:
                hint = "pass what wf.agent(), wf.function() or @wf.step returned, or a node id."
            raise DependencyError(
                f"depends on {_describe(dep)}, which is not a node reference.",
                hint=hint,
                node_id=node_id,
                field="depends_on",
                path=self.source,
                line=line,
            )

    def _unique_id(self, base: str) -> str:
        base = suggest_node_id(base)
        if base not in self._nodes:
            return base
        n = 2
        while f"{base}_{n}" in self._nodes:
            n += 1
        return f"{base}_{n}"


def _describe(value: Any) -> str:
    """A short description of a value put where a node reference belongs."""
    if callable(value):
        return f"the function {getattr(value, '__qualname__', repr(value))!r}"
    text = repr(value)
    return f"{text[:60]}... ({type(value).__name__})" if len(text) > 60 else text
