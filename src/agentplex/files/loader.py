"""Read workflow files: named-node YAML/JSON, and the meta-agent plan format.

A workflow file is a mapping with ``nodes:`` (named nodes); a file whose top
level has ``agents:`` (a list) is a meta-agent plan and goes to
:mod:`agentplex.files.plan`. YAML is read with a loader that remembers the line of
every key and reports duplicate keys, which plain PyYAML silently merges, so
every error can name the line to fix.

Problems in the file's content are collected on the returned
:class:`~agentplex.model.workflow.Workflow` (``load_errors``) and raised together by
``compile()``; only an unreadable or unparsable file raises here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from agentplex.exceptions import (
    ConfigError,
    DuplicateNodeError,
    SchemaError,
    UntrustedInputError,
    WorkflowError,
    WorkflowFileError,
)
from agentplex.llm.config import ProviderConfig, provider_config_from_data
from agentplex.llm.pricing import Price, prices_from_data
from agentplex.model.roles import Role
from agentplex.model.schema import has_patterns, json_copy
from agentplex.model.validation import did_you_mean
from agentplex.model.workflow import (
    DEFAULT_MAX_ITEMS,
    TRUNCATION_POLICIES,
    AgentNode,
    FunctionNode,
    InputSpec,
    MapNode,
    Node,
    Workflow,
    WorkflowDefaults,
)


class Located(dict[Any, Any]):
    """A mapping read from a file, with the line of each key and any duplicate keys."""

    def __init__(self) -> None:
        super().__init__()
        self.line: int | None = None
        self.lines: dict[Any, int] = {}
        self.duplicates: list[tuple[Any, int | None]] = []


def line_of(mapping: Any, key: Any = None) -> int | None:
    """Return the line of ``key`` in ``mapping`` (or of the mapping itself), if known."""
    if not isinstance(mapping, Located):
        return None
    if key is not None and key in mapping.lines:
        return mapping.lines[key]
    return mapping.line


class _LineLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> Located:
    own = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
    loader.flatten_mapping(node)  # puts the pairs of any '<<: *anchor' first
    merged = len(node.value) - own
    mapping = Located()
    mapping.line = node.start_mark.line + 1
    from_merge: set[Any] = set()
    for index, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if index < merged:  # the first merged value of a key wins, as in YAML
            if key in mapping:
                continue
            from_merge.add(key)
        elif key in from_merge:  # a key of the mapping's own overrides a merged one
            from_merge.discard(key)
        elif key in mapping:
            mapping.duplicates.append((key, line))
            continue
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.lines[key] = line
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _json_object(pairs: list[tuple[str, Any]]) -> Located:
    mapping = Located()
    for key, value in pairs:
        if key in mapping:
            mapping.duplicates.append((key, None))
            continue
        mapping[key] = value
    return mapping


MAX_FILE_DEPTH = 100
"""How deeply lists and mappings may nest in a workflow file (workflows need a few levels)."""
_ALIAS_EXPANSION = 10  # YAML aliases may make the data at most this many times what is written
_ALIAS_EXPANSION_FLOOR = 10_000
_VALUE_ERRORS = (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError)
_DEPTH_FIX = "Fix: keep lists and mappings a few levels deep."


class _Refused(Exception):
    """What :func:`read_data` turns into a :class:`WorkflowFileError` (problem, line)."""

    def __init__(self, problem: str, line: int | None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.line = line


def _too_deep() -> str:
    return f"nested too deeply (over {MAX_FILE_DEPTH} levels). {_DEPTH_FIX}"


def _json_too_deep(text: str) -> int | None:
    """Return the line where ``text``'s JSON nests past :data:`MAX_FILE_DEPTH`, or None.

    A linear scan that never recurses, in C-speed steps: drop escaped backslashes
    and quotes, keep only quotes and brackets (UTF-8 bytes, so no character is
    split), drop adjacent quote pairs (empty strings, or the gap between two
    strings: the parity of every later quote is unchanged), drop what is left
    between quotes, and take the running sum of the brackets. Where the text is
    valid JSON this is its exact nesting; past an error the decoder stops anyway.
    Only a refused file is scanned again, token by token, for the line.
    """
    import itertools
    import re

    if text.count("[") + text.count("{") <= MAX_FILE_DEPTH:
        return None
    unescaped = text.replace("\\\\", "").replace('\\"', "")
    others = bytes(range(256)).translate(None, b'"[]{}')
    marks = unescaped.encode("utf-8", "surrogatepass").translate(None, others).replace(b'""', b"")
    brackets = re.sub(rb'"[^"]*"?', b"", marks)
    delta = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
    if max(itertools.accumulate(map(delta.__getitem__, brackets)), default=0) <= MAX_FILE_DEPTH:
        return None
    depth = 0
    string = r'"[^"\\]*(?:\\.[^"\\]*)*"?'
    for token in re.finditer(string + r"|[\[\]{}]", text, flags=re.DOTALL):
        depth += {"[": 1, "{": 1, "]": -1, "}": -1}.get(token.group(), 0)
        if depth > MAX_FILE_DEPTH:
            return text.count("\n", 0, token.start()) + 1
    return None  # pragma: no cover - the sum above said otherwise


def _value_problem(exc: Exception) -> str:
    """Say what Python could not build from a value the file wrote."""
    import sys

    if "integer string conversion" in str(exc):
        limit = sys.get_int_max_str_digits()
        return f"a number with too many digits (Python reads at most {limit})"
    return f"a value Python cannot build ({type(exc).__name__}: {exc})"


class _BoundedLoader(_LineLoader):
    """The line-keeping loader, bounded: nesting depth, and how far aliases expand the data.

    Composing recurses once per level, so the depth is checked before each
    collection is composed (never near the recursion limit). An alias costs
    nothing to compose but stands for its whole target; every composed node
    carries its expanded size, and a document whose aliases make it more than
    ``_ALIAS_EXPANSION`` times what it writes out ("billion laughs") is refused.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.bound_depth = 0
        self.bound_written = 0
        self.bound_sizes: dict[int, int] = {}

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        line = event.start_mark.line + 1 if event.start_mark is not None else None
        if isinstance(event, yaml.AliasEvent):
            target = self.anchors.get(event.anchor)
            if target is not None and id(target) not in self.bound_sizes:
                raise _Refused("a YAML alias refers to a collection that holds it.", line)
            return super().compose_node(parent, index)
        collection = isinstance(event, yaml.CollectionStartEvent)
        if collection:
            self.bound_depth += 1
            if self.bound_depth > MAX_FILE_DEPTH:
                raise _Refused(_too_deep(), line)
        try:
            node = super().compose_node(parent, index)
        finally:
            if collection:
                self.bound_depth -= 1
        sizes = self.bound_sizes
        size = 1
        if isinstance(node, yaml.SequenceNode):
            size += sum(sizes[id(item)] for item in node.value)
        elif isinstance(node, yaml.MappingNode):
            size += sum(sizes[id(key)] + sizes[id(value)] for key, value in node.value)
        sizes[id(node)] = size
        self.bound_written += 1
        if size > _ALIAS_EXPANSION * self.bound_written + _ALIAS_EXPANSION_FLOOR:
            raise _Refused(
                f"YAML aliases expand this file to more than {size:,} values, from "
                f"{self.bound_written:,} written out. Fix: write the values out, or use "
                "fewer aliases.",
                line,
            )
        return node

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except _VALUE_ERRORS as exc:  # e.g. a date 2001-13-45, or a key that is a list
            line = node.start_mark.line + 1
            raise _Refused(f"invalid YAML: {_value_problem(exc)}", line) from None


def read_data(path: str | Path) -> Any:
    """Parse a YAML or JSON file into Python data (mappings are :class:`Located`).

    Lists and mappings may nest :data:`MAX_FILE_DEPTH` levels; YAML aliases may
    not expand the data more than tenfold; both are checked without deep
    recursion, so a hostile file gets one line, never a ``RecursionError``.

    Raises:
        WorkflowFileError: if the file cannot be read or parsed, nests too
            deeply, or holds a value Python cannot build.
    """
    from agentplex.model.validation import paused_gc

    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WorkflowFileError(name, "no such file. Fix: check the path.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkflowFileError(name, f"cannot read the file: {exc}") from None
    if name.endswith(".json"):
        line = _json_too_deep(text)
        if line is not None:
            raise WorkflowFileError(name, _too_deep(), line=line)
        try:
            with paused_gc():
                return json.loads(text, object_pairs_hook=_json_object)
        except json.JSONDecodeError as exc:
            raise WorkflowFileError(name, f"invalid JSON: {exc.msg}", line=exc.lineno) from None
        except ValueError as exc:  # e.g. an integer of more digits than Python converts
            raise WorkflowFileError(name, f"invalid JSON: {_value_problem(exc)}") from None
        except RecursionError:  # defence in depth: the scan above refuses this first
            raise WorkflowFileError(name, _too_deep()) from None
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text)  # reads the text: may refuse a character already
        with paused_gc():
            return loader.get_single_data()
    except _Refused as exc:
        raise WorkflowFileError(name, exc.problem, line=exc.line) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        raise WorkflowFileError(name, f"invalid YAML: {exc.problem}", line=line) from None
    except yaml.YAMLError as exc:
        raise WorkflowFileError(name, f"invalid YAML: {exc}") from None
    finally:
        if loader is not None:
            loader.dispose()


def load_workflow(
    path: str | Path, *, trusted: bool | None = None, lenient: bool = False
) -> Workflow:
    """Read a workflow or plan file into a :class:`Workflow` (call ``compile()`` next).

    Args:
        path: a ``.yaml``, ``.yml`` or ``.json`` file.
        trusted: whether you wrote the file. ``None`` (the default) trusts a
            named-node workflow file and distrusts a meta-agent plan file, since
            plans are what a coordinator LLM writes. An untrusted file may not
            name Python functions, choose endpoints, keys, headers or
            environment variables, or pass options the endpoint does not sample
            with; see "Security model" in the README.
        lenient: for plans, drop out-of-range dependency indices with a
            warning instead of reporting them as errors.

    Raises:
        WorkflowFileError: if the file cannot be read or parsed.
    """
    from agentplex.model.validation import paused_gc

    with paused_gc():  # tens of thousands of new nodes: collect once, afterwards
        data = read_data(path)
        return workflow_from_data(data, source=str(path), trusted=trusted, lenient=lenient)


def workflow_from_data(
    data: Any, *, source: str | None = None, trusted: bool | None = None, lenient: bool = False
) -> Workflow:
    """Build a :class:`Workflow` from parsed file data (either format); see :func:`load_workflow`."""
    from agentplex.files.plan import is_plan, workflow_from_plan

    stem = Path(source).stem if source else "workflow"
    if isinstance(data, Mapping) and is_plan(data):
        return workflow_from_plan(
            data, name=stem, source=source, trusted=trusted is True, lenient=lenient
        )
    return _FileReader(source, trusted is not False).read(data, stem)


# Fields of a named node, with the check each value must pass.
_Check = tuple[Callable[[Any], bool], str]
_STR: _Check = (lambda v: isinstance(v, str), "a string")
_TEXT: _Check = (lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string")
_SECONDS: _Check = (
    lambda v: isinstance(v, int | float) and not isinstance(v, bool) and v >= 0,
    "a number of seconds >= 0",
)
_COUNT: _Check = (
    lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
    "a whole number >= 0",
)
_BOOL: _Check = (lambda v: isinstance(v, bool), "true or false")
_TOKENS: _Check = (
    lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
    "a whole number of tokens >= 1",
)
_POLICY: _Check = (
    lambda v: isinstance(v, str) and v in TRUNCATION_POLICIES,
    f"one of {', '.join(TRUNCATION_POLICIES)}",
)
_MAPPING: _Check = (lambda v: isinstance(v, Mapping), "a mapping")
_DEPS: _Check = (
    lambda v: isinstance(v, str) or (isinstance(v, list) and all(isinstance(d, str) for d in v)),
    "a list of node ids",
)


def _is_executor(value: Any) -> bool:
    from agentplex.executors import executor_names

    return value == "auto" or value in executor_names()


_EXECUTOR: _Check = (
    _is_executor,
    "auto, one of the built-in executors (inline, thread, process, dask) or a registered one",
)

COMMON_FIELDS: dict[str, _Check] = {
    "depends_on": _DEPS,
    "timeout_s": _SECONDS,
    "retries": _COUNT,
    "estimate_s": _SECONDS,
    "description": _STR,
    "cache": _BOOL,
}
AGENT_FIELDS: dict[str, _Check] = {
    "role": _TEXT,
    "task": _TEXT,
    "model": _TEXT,
    "options": _MAPPING,
    "latency_s": _SECONDS,
    "max_output_tokens": _TOKENS,
    "on_truncated": _POLICY,
    "output_schema": (lambda v: isinstance(v, Mapping), "a JSON Schema object (a mapping)"),
}
#: Node fields that only agents (or the agent body of a map) can use.
AGENT_ONLY_FIELDS = ("max_output_tokens", "on_truncated", "output_schema")
FUNCTION_FIELDS: dict[str, _Check] = {
    "function": _TEXT,
    "cpu_bound": _BOOL,
    "executor": _EXECUTOR,
}
MAP_FIELDS: dict[str, _Check] = {
    "map": _TEXT,
    "max_items": (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        "a whole number >= 1 (the most items the map fans out over; default 1000)",
    ),
}
ALL_NODE_FIELDS = {**COMMON_FIELDS, **AGENT_FIELDS, **FUNCTION_FIELDS, **MAP_FIELDS}
#: Request fields agentplex builds itself; a node's ``options`` may never set them
#: (``extra_*`` too: the SDKs read those as headers, query and body overrides).
RESERVED_OPTIONS = frozenset(
    {
        "model",
        "messages",
        "system",
        "stream",
        "stream_options",
        "timeout",
        "api_key",
        "base_url",
        "headers",
        "tools",
        "tool_choice",
        "functions",
        "function_call",
    }
)
#: The options an untrusted workflow may set: sampling parameters only (and the
#: simulator's own ``sim_*`` knobs, which never reach an endpoint).
UNTRUSTED_OPTIONS = frozenset(
    {
        "temperature",
        "top_p",
        "top_k",
        "max_tokens",
        "seed",
        "stop",
        "presence_penalty",
        "frequency_penalty",
    }
)
#: What an untrusted file may set in ``providers:``: limits that slow its own
#: calls down, on a provider that already exists. Everything else (``base_url``,
#: ``api_key_env``, ``headers``, a ``kind`` that sends another provider's key, a
#: new provider name) chooses where requests go or which key they carry.
UNTRUSTED_PROVIDER_FIELDS = ("rpm", "tpm", "max_concurrency")
#: Budgets an untrusted file may not raise past these (its own nodes' retries,
#: timeouts and map fan-out).
UNTRUSTED_MAX_RETRIES = 10
UNTRUSTED_MAX_TIMEOUT_S = 3600.0
UNTRUSTED_MAX_OUTPUT_TOKENS = 32_768
"""The largest output cap an untrusted file gets: it may lower a cap (that only lowers
cost), but a larger one (``max_output_tokens``, a role's, ``defaults:``, or an old
``options: {max_tokens}``) is cut to this, with a warning, so a hostile file cannot
make every call of a run as long and as expensive as it likes."""
_UNTRUSTED_CAPS = {
    "retries": UNTRUSTED_MAX_RETRIES,
    "timeout_s": UNTRUSTED_MAX_TIMEOUT_S,
    "max_items": DEFAULT_MAX_ITEMS,
}
TOP_FIELDS = ("name", "description", "inputs", "defaults", "roles", "providers", "prices", "nodes")
DEFAULT_FIELDS = (
    "model",
    "timeout_s",
    "retries",
    "latency_s",
    "options",
    "max_output_tokens",
    "on_truncated",
)


class _FileReader:
    """Turn named-node file data into a Workflow, collecting every problem."""

    def __init__(self, source: str | None, trusted: bool) -> None:
        self.source = source
        self.trusted = trusted
        self.errors: list[WorkflowError] = []
        self.warnings: list[str] = []

    def problem(
        self,
        exc_type: type[WorkflowError],
        problem: str,
        hint: str,
        *,
        mapping: Any = None,
        key: Any = None,
        node_id: str | None = None,
        field: str | None = None,
    ) -> None:
        self.errors.append(
            exc_type(
                problem,
                hint=hint,
                path=self.source,
                line=line_of(mapping, key),
                node_id=node_id,
                field=field,
            )
        )

    def read(self, data: Any, default_name: str) -> Workflow:
        if not isinstance(data, Mapping):
            self.problem(
                SchemaError,
                f"the file must hold a mapping with 'nodes:', got {type(data).__name__}.",
                "start from one of the files in examples/.",
            )
            return self._finish(Workflow(default_name))
        self._duplicates(data, None)
        for key in data:
            if key not in TOP_FIELDS:
                self.problem(
                    SchemaError,
                    f"unknown top-level field {key!r}{did_you_mean(str(key), TOP_FIELDS)}.",
                    f"top-level fields are {', '.join(TOP_FIELDS)}.",
                    mapping=data,
                    key=key,
                )
        name = data.get("name", default_name)
        wf = Workflow(
            str(name),
            description=str(data.get("description", "")),
            inputs=self._inputs(data.get("inputs")) if "inputs" in data else None,
            roles=self._roles(data.get("roles")),
            trusted=self.trusted,
            providers=self._providers(data.get("providers")),
            prices=self._prices(data.get("prices"), data),
        )
        wf.source = self.source
        defaults = self._defaults(data.get("defaults"))
        # These two stay on the workflow instead of being copied into each node like
        # the other defaults: a role's cap and the run's options rank above them.
        wf.defaults = WorkflowDefaults(
            max_output_tokens=defaults.get("max_output_tokens"),
            on_truncated=defaults.get("on_truncated"),
        )
        nodes = data.get("nodes")
        if nodes is None:
            self.problem(
                SchemaError,
                "missing the 'nodes' field.",
                "add nodes: with one entry per agent or function.",
                mapping=data,
            )
        elif isinstance(nodes, list):
            for entry in nodes:  # a list of nodes, each with an 'id'
                node_id = entry.get("id") if isinstance(entry, Mapping) else None
                body = {k: v for k, v in entry.items() if k != "id"} if node_id else entry
                self._node(wf, node_id, body, defaults, nodes, entry)
        elif isinstance(nodes, Mapping):
            self._duplicates(nodes, None, node_level=True)
            for node_id, body in nodes.items():
                self._node(wf, node_id, body, defaults, nodes, node_id)
        else:
            self.problem(
                SchemaError,
                f"'nodes' must be a mapping of node id to node, got {type(nodes).__name__}.",
                "write nodes: followed by indented 'my_node: {role: ..., task: ...}' entries.",
                mapping=data,
                key="nodes",
            )
        return self._finish(wf)

    def _finish(self, wf: Workflow) -> Workflow:
        wf.source = self.source
        wf.load_errors.extend(self.errors)
        wf.load_warnings.extend(self.warnings)
        return wf

    def _capped(self, value: Any, what: str, mapping: Any, key: Any) -> Any:
        """``value``, or :data:`UNTRUSTED_MAX_OUTPUT_TOKENS` (with a warning) where an
        untrusted file asks for a larger output cap."""
        if self.trusted or not isinstance(value, int) or isinstance(value, bool):
            return value
        if value <= UNTRUSTED_MAX_OUTPUT_TOKENS:
            return value
        where = self.source or "<workflow>"
        line = line_of(mapping, key)
        if line is not None:
            where += f":{line}"
        self.warnings.append(
            f"{where}: {what}: an untrusted file may ask for an output cap of at most "
            f"{UNTRUSTED_MAX_OUTPUT_TOKENS:,} tokens, got {value:,}; using "
            f"{UNTRUSTED_MAX_OUTPUT_TOKENS:,} (run with --trust if you wrote this file)."
        )
        return UNTRUSTED_MAX_OUTPUT_TOKENS

    def _duplicates(self, mapping: Any, node_id: str | None, *, node_level: bool = False) -> None:
        for key, line in getattr(mapping, "duplicates", ()):
            exc = DuplicateNodeError if node_level else SchemaError
            self.errors.append(
                exc(
                    "is defined twice." if node_level else f"field {key!r} is given twice.",
                    hint="remove or rename one of the two.",
                    path=self.source,
                    line=line,
                    node_id=str(key) if node_level else node_id,
                )
            )

    def _inputs(self, raw: Any) -> list[InputSpec]:
        specs: list[InputSpec] = []
        if isinstance(raw, list):
            return [InputSpec(str(name)) for name in raw]
        if not isinstance(raw, Mapping):
            self.problem(
                SchemaError,
                "'inputs' must map input names to a default value or {default, description}.",
                "write inputs: {query: {default: 'web frameworks'}}.",
            )
            return specs
        for name, value in raw.items():
            if isinstance(value, Mapping):
                required = "default" not in value
                specs.append(
                    InputSpec(
                        str(name),
                        default=value.get("default"),
                        required=bool(value.get("required", required)),
                        description=str(value.get("description", "")),
                    )
                )
            else:  # a bare value is the default; null means required
                specs.append(InputSpec(str(name), default=value, required=value is None))
        return specs

    def _providers(self, raw: Any) -> dict[str, ProviderConfig]:
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            self.problem(
                SchemaError,
                "'providers' must map provider names to their settings.",
                "write providers: {openai: {base_url: http://127.0.0.1:8000/v1, rpm: 500}}.",
            )
            return {}
        configs: dict[str, ProviderConfig] = {}
        where = self.source or "workflow"
        for name, spec in raw.items():
            if not isinstance(spec, Mapping):
                spec = {} if spec is None else spec
            try:
                if not isinstance(spec, Mapping):
                    raise ConfigError(f"{where}: providers.{name} must be a mapping.")
                if not self.trusted and self._provider_chosen(raw, str(name), spec):
                    continue
                configs[str(name)] = provider_config_from_data(str(name), spec, where)
            except ConfigError as exc:
                problem, _, fix = str(exc).removeprefix(f"{where}: ").partition(" Fix: ")
                self.problem(
                    SchemaError,
                    problem,
                    fix or "see 'Providers' in the README.",
                    mapping=raw,
                    key=name,
                    field="providers",
                )
        return configs

    def _provider_chosen(self, raw: Any, name: str, spec: Mapping[str, Any]) -> bool:
        """Report an untrusted file's provider entry that chooses where requests go."""
        from agentplex.llm.config import KINDS

        if name not in KINDS:
            problem = f"providers.{name}: an untrusted workflow may not add providers."
        else:
            chosen = [
                str(f)
                for f in spec
                if f not in UNTRUSTED_PROVIDER_FIELDS and not (f == "kind" and spec[f] == name)
            ]
            if not chosen:
                return False
            problem = (
                f"providers.{name}.{chosen[0]}: an untrusted workflow may not choose "
                "endpoints, keys, headers or environment variables."
            )
        self.problem(
            UntrustedInputError,
            problem,
            f"an untrusted file may only set {', '.join(UNTRUSTED_PROVIDER_FIELDS)} on the "
            "built-in providers; configure providers yourself (--base-url, --api-key, or a "
            "file you wrote), or run with --trust if you wrote this file.",
            mapping=raw,
            key=name,
            field="providers",
        )
        return True

    def _prices(self, raw: Any, data: Any) -> dict[str, Price]:
        if raw is None:
            return {}
        where = self.source or "workflow"
        try:
            return prices_from_data(raw, where)
        except ConfigError as exc:
            self.problem(
                SchemaError,
                str(exc).removeprefix(f"{where}: "),
                "write prices: {my-model: {input: 0.5, output: 1.5}} (dollars per million tokens).",
                mapping=data,
                key="prices",
                field="prices",
            )
            return {}

    def _roles(self, raw: Any) -> list[Role]:
        if raw is None:
            return []
        if not isinstance(raw, Mapping):
            self.problem(
                SchemaError,
                "'roles' must map role names to {description, system_prompt}.",
                "see the roles: section of examples/business_plan.yaml.",
            )
            return []
        roles = []
        for name, spec in raw.items():
            if isinstance(spec, str):
                roles.append(Role(str(name), spec.splitlines()[0] if spec else "", spec))
            elif isinstance(spec, Mapping) and isinstance(spec.get("system_prompt"), str):
                cap = spec.get("max_output_tokens")
                if cap is not None and not _TOKENS[0](cap):
                    self.problem(
                        SchemaError,
                        f"role {name!r}: max_output_tokens must be {_TOKENS[1]}, got {cap!r}.",
                        f"write {name}: {{system_prompt: ..., max_output_tokens: 800}}, or "
                        "leave it out.",
                        mapping=spec,
                        key="max_output_tokens",
                        field="roles",
                    )
                    cap = None  # the role still exists: its nodes get no second error
                cap = self._capped(cap, f"role {name!r}", spec, "max_output_tokens")
                roles.append(
                    Role(
                        str(name),
                        str(spec.get("description", "")),
                        spec["system_prompt"],
                        max_output_tokens=cap,
                    )
                )
            else:
                self.problem(
                    SchemaError,
                    f"role {name!r} needs a system_prompt string.",
                    f"write {name}: {{description: ..., system_prompt: ...}}.",
                    mapping=raw,
                    key=name,
                )
        return roles

    def _defaults(self, raw: Any) -> dict[str, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            self.problem(
                SchemaError, "'defaults' must be a mapping.", "e.g. defaults: {retries: 1}."
            )
            return {}
        out = {}
        for key, value in raw.items():
            if key not in DEFAULT_FIELDS:
                self.problem(
                    SchemaError,
                    f"unknown field {key!r} in defaults{did_you_mean(str(key), DEFAULT_FIELDS)}.",
                    f"defaults may set {', '.join(DEFAULT_FIELDS)}.",
                    mapping=raw,
                    key=key,
                )
            elif self._type_ok(raw, key, value, None, field=f"defaults.{key}"):
                out[key] = value
        if "max_output_tokens" in out:
            out["max_output_tokens"] = self._capped(
                out["max_output_tokens"], "defaults", raw, "max_output_tokens"
            )
        return out

    def _type_ok(
        self, mapping: Any, key: str, value: Any, node_id: str | None, *, field: str | None = None
    ) -> bool:
        check, wanted = ALL_NODE_FIELDS[key]
        if check(value):
            return True
        self.problem(
            SchemaError,
            f"must be {wanted}, got {value!r} ({type(value).__name__}).",
            f"set {key} to {wanted}.",
            mapping=mapping,
            key=key,
            node_id=node_id,
            field=field or key,
        )
        return False

    def _node(
        self,
        wf: Workflow,
        node_id: Any,
        body: Any,
        defaults: Mapping[str, Any],
        parent: Any,
        parent_key: Any,
    ) -> None:
        line = line_of(parent, parent_key) if not isinstance(parent_key, Mapping) else None
        if line is None:
            line = line_of(body)
        if not isinstance(node_id, str) or not node_id:
            self.errors.append(
                SchemaError(
                    f"node id must be a non-empty string, got {node_id!r}.",
                    hint="name every node, e.g. 'research_python:'.",
                    path=self.source,
                    line=line,
                )
            )
            return
        if not isinstance(body, Mapping):
            self.errors.append(
                SchemaError(
                    f"must be a mapping of fields, got {body!r}.",
                    hint="give it role and task (an agent) or function (a function node).",
                    path=self.source,
                    line=line,
                    node_id=node_id,
                )
            )
            return
        self._duplicates(body, node_id)
        fields: dict[str, Any] = {}
        for key, value in body.items():
            if key not in ALL_NODE_FIELDS:
                self.problem(
                    SchemaError,
                    f"unknown field {key!r}{did_you_mean(str(key), ALL_NODE_FIELDS)}.",
                    f"node fields are {', '.join(ALL_NODE_FIELDS)}.",
                    mapping=body,
                    key=key,
                    node_id=node_id,
                    field=str(key),
                )
            elif self._type_ok(body, key, value, node_id):
                fields[key] = value
        before = len(self.errors)
        node = self._build(node_id, fields, defaults, line, body)
        if node is None or len(self.errors) > before:
            return
        try:
            wf.add(node)
        except WorkflowError as exc:
            self.errors.append(exc.located(path=self.source, line=line))

    def _build(
        self,
        node_id: str,
        fields: dict[str, Any],
        defaults: Mapping[str, Any],
        line: int | None,
        body: Any,
    ) -> Node | None:
        deps = fields.get("depends_on", [])
        common: dict[str, Any] = {
            "id": node_id,
            "depends_on": tuple([deps] if isinstance(deps, str) else deps),
            "timeout_s": fields.get("timeout_s", defaults.get("timeout_s")),
            "retries": fields.get("retries", defaults.get("retries")),
            "estimate_s": fields.get("estimate_s"),
            "description": fields.get("description", ""),
            "cache": fields.get("cache"),
            "line": line,
        }
        if not self.trusted and not self._budgets_ok({**fields, **common}, body, node_id):
            return None
        is_agent = "role" in fields or "task" in fields
        is_function = "function" in fields
        if is_agent and is_function:
            self._kind_problem(node_id, body, "has both role/task and function")
            return None
        inner: AgentNode | FunctionNode | None = None
        if is_agent:
            missing = [k for k in ("role", "task") if k not in fields]
            if missing:
                self.problem(
                    SchemaError,
                    f"an agent node needs {' and '.join(missing)}.",
                    "give the agent a role (e.g. researcher) and a task.",
                    mapping=body,
                    node_id=node_id,
                    field=missing[0],
                )
                return None
            options = {**defaults.get("options", {}), **fields.get("options", {})}
            if not self._options_ok(options, body, node_id):
                return None
            if "max_tokens" in options:
                options["max_tokens"] = self._capped(
                    options["max_tokens"], f"node {node_id!r}: options.max_tokens", body, "options"
                )
            ok, schema = self._output_schema(fields, body, node_id)
            if not ok:
                return None
            inner = AgentNode(
                **common,
                role=fields["role"],
                task=fields["task"],
                model=fields.get("model", defaults.get("model")),
                options=MappingProxyType(options),
                latency_s=fields.get("latency_s", defaults.get("latency_s")),
                max_output_tokens=self._capped(
                    fields.get("max_output_tokens"), f"node {node_id!r}", body, "max_output_tokens"
                ),
                on_truncated=fields.get("on_truncated"),
                output_schema=schema,
            )
        elif is_function:
            agent_only = [k for k in AGENT_ONLY_FIELDS if k in fields]
            if agent_only:
                self.problem(
                    SchemaError,
                    f"{agent_only[0]} applies to agent nodes, and this is a function node.",
                    f"remove {agent_only[0]}; a function's return value is its output as it is.",
                    mapping=body,
                    key=agent_only[0],
                    node_id=node_id,
                    field=agent_only[0],
                )
                return None
            inner = FunctionNode(
                **common,
                target=fields["function"],
                cpu_bound=fields.get("cpu_bound", False),
                executor=fields.get("executor", "auto"),
            )
        if "map" in fields:
            if inner is None:
                self._kind_problem(node_id, body, "maps over a list but has no body")
                return None
            over = fields["map"]
            common["depends_on"] = tuple(dict.fromkeys([over, *common["depends_on"]]))
            limit = {"max_items": fields["max_items"]} if "max_items" in fields else {}
            return MapNode(**common, over=over, body=inner, **limit)
        if "max_items" in fields:
            self.problem(
                SchemaError,
                "max_items only applies to map nodes.",
                "add map: <node id> to fan out over that node's list, or remove max_items.",
                mapping=body,
                key="max_items",
                node_id=node_id,
                field="max_items",
            )
            return None
        if inner is None:
            self._kind_problem(node_id, body, "is neither an agent nor a function")
        return inner

    def _output_schema(
        self, fields: Mapping[str, Any], body: Any, node_id: str
    ) -> tuple[bool, dict[str, Any] | None]:
        """``(True, schema)``: the node's ``output_schema`` as plain JSON data (``None``
        if it has none); ``(False, None)`` (reported) if it holds what JSON cannot. Its
        validity is checked at compile time, with every other problem."""
        raw = fields.get("output_schema")
        if raw is None:
            return True, None
        if not self.trusted and has_patterns(raw):
            self.problem(
                UntrustedInputError,
                "an untrusted workflow may not use pattern or patternProperties in "
                "output_schema: checking an answer against a hostile regular expression can "
                "take exponential time.",
                "drop the pattern (describe the format in the task instead), or run with "
                "--trust if you wrote this file.",
                mapping=body,
                key="output_schema",
                node_id=node_id,
                field="output_schema",
            )
            return False, None
        try:
            return True, json_copy(raw)
        except TypeError as exc:
            self.problem(
                SchemaError,
                f"output_schema {exc}.",
                "write the schema with mappings, lists, text, numbers, true/false and null "
                "only (quote dates and other values YAML would read as something else).",
                mapping=body,
                key="output_schema",
                node_id=node_id,
                field="output_schema",
            )
            return False, None

    def _budgets_ok(self, fields: Mapping[str, Any], body: Any, node_id: str) -> bool:
        """Refuse an untrusted node that raises its own budgets past the defaults."""
        for name, cap in _UNTRUSTED_CAPS.items():
            value = fields.get(name)
            if isinstance(value, int | float) and value > cap:
                self.problem(
                    UntrustedInputError,
                    f"an untrusted workflow may not set {name} above {cap:g}, got {value!r}.",
                    f"lower {name}, or run with --trust if you wrote this file.",
                    mapping=body,
                    key=name,
                    node_id=node_id,
                    field=name,
                )
                return False
        return True

    def _options_ok(self, options: Mapping[str, Any], body: Any, node_id: str) -> bool:
        """Refuse options that would replace the request agentplex builds, or that an
        untrusted file may not choose (anything but sampling parameters)."""
        for key, value in options.items():
            name = str(key)
            if name in RESERVED_OPTIONS or name.startswith("extra_"):
                problem = f"option {name!r} is set by agentplex itself, not by a node."
                hint = (
                    "drop it; endpoints, keys and headers belong in the providers section, "
                    "timeouts in timeout_s."
                )
            elif not self.trusted and not (name in UNTRUSTED_OPTIONS or name.startswith("sim_")):
                problem = f"an untrusted workflow may not set option {name!r}."
                hint = (
                    f"untrusted files may set only {', '.join(sorted(UNTRUSTED_OPTIONS))}; "
                    "run with --trust if you wrote this file."
                )
            elif not self.trusted and not isinstance(value, str | int | float | bool | list):
                problem = f"option {name!r} must be a plain value, got {type(value).__name__}."
                hint = "give a number, text, true/false or a list of text."
            else:
                continue
            self.problem(
                UntrustedInputError if not self.trusted else SchemaError,
                problem,
                hint,
                mapping=body,
                key="options",
                node_id=node_id,
                field="options",
            )
            return False
        return True

    def _kind_problem(self, node_id: str, body: Any, what: str) -> None:
        self.problem(
            SchemaError,
            f"{what}.",
            "an agent node has role and task; a function node has function: 'module:name'; "
            "a map node adds map: <node id> to either.",
            mapping=body,
            node_id=node_id,
        )
