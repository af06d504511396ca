"""The meta-agent plan format, accepted unchanged.

A plan is the JSON a coordinator LLM writes::

    {"description": "...",
     "agents": [{"role": "RESEARCHER", "task": "...", "depends_on": []},
                {"role": "ANALYZER", "task": "...", "depends_on": [0, 1]}]}

Agent ``i`` becomes node ``<role>_<i>`` (``researcher_0``); dependencies are
indices into ``agents``. Tasks are plain text, not templates, so braces in an
LLM's text are harmless. Each agent may pin ``latency_s`` for the simulator,
name a ``model`` and set its ``max_output_tokens`` (in an untrusted plan at most
:data:`~agentplex.files.loader.UNTRUSTED_MAX_OUTPUT_TOKENS`: a larger cap is cut
to it, with a warning). A ``function`` entry (``module:function``) is allowed
only in trusted plans; other extra fields are ignored, since LLMs add them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentplex.exceptions import (
    DependencyError,
    SchemaError,
    UntrustedCodeError,
    UntrustedInputError,
    WorkflowError,
)
from agentplex.model.ids import plan_node_id
from agentplex.model.workflow import AgentNode, FunctionNode, Node, Workflow

#: Keys that ask a plan to run code; refused outright in untrusted plans.
CODE_KEYS = ("function", "import", "module", "shell", "command", "code", "python")
#: Keys that would choose where requests go, with which key or headers; an untrusted plan
#: is refused for naming them (they were never applied, and silence would hide the attempt).
CHOOSER_KEYS = (
    "base_url",
    "api_key",
    "api_key_env",
    "headers",
    "extra_headers",
    "extra_body",
    "extra_query",
    "provider",
    "providers",
)


def _choosers(entry: Mapping[str, Any]) -> list[str]:
    """The keys of ``entry`` (and of its ``options``) that only the user may choose."""
    found = [k for k in CHOOSER_KEYS if k in entry]
    options = entry.get("options")
    if isinstance(options, Mapping):
        found += [
            f"options.{k}" for k in options if k in CHOOSER_KEYS or str(k).startswith("extra_")
        ]
    return found


def is_plan(data: Mapping[str, Any]) -> bool:
    """Return whether ``data`` is in the meta-agent plan format."""
    return "agents" in data and "nodes" not in data


def workflow_from_plan(
    data: Mapping[str, Any],
    *,
    name: str = "plan",
    source: str | None = None,
    trusted: bool = True,
    lenient: bool = False,
) -> Workflow:
    """Build a :class:`Workflow` from a meta-agent plan.

    Problems are collected on ``load_errors`` (raised by ``compile()``); in
    lenient mode invalid dependency indices are dropped and recorded on
    ``load_warnings`` instead.
    """
    from agentplex.files.loader import line_of

    wf = Workflow(
        str(data.get("name", name)),
        description=str(data.get("description", "")),
        trusted=trusted,
    )
    wf.source = source
    errors: list[WorkflowError] = []
    top = [k for k in CHOOSER_KEYS if k in data]
    if top and not trusted:
        errors.append(
            UntrustedInputError(
                f"an untrusted plan may not choose endpoints, keys or headers ({top[0]!r}).",
                hint="configure providers in a workflow file you wrote, or with flags; run the "
                "plan with --trust only if you wrote it.",
                path=source,
                line=line_of(data, top[0]),
                field=top[0],
            )
        )
    agents = data.get("agents")
    if not isinstance(agents, list):
        errors.append(
            SchemaError(
                f"'agents' must be a list, got {type(agents).__name__}.",
                hint='write "agents": [{"role": ..., "task": ..., "depends_on": []}, ...].',
                path=source,
                line=line_of(data, "agents"),
            )
        )
        wf.load_errors.extend(errors)
        return wf
    ids = [
        plan_node_id(
            i, a["role"] if isinstance(a, Mapping) and isinstance(a.get("role"), str) else "agent"
        )
        for i, a in enumerate(agents)
    ]
    for index, entry in enumerate(agents):
        node = _plan_node(index, entry, ids, errors, wf, source=source, lenient=lenient)
        if node is not None:
            wf.add(node)
    wf.load_errors.extend(errors)
    return wf


def _plan_node(
    index: int,
    entry: Any,
    ids: list[str],
    errors: list[WorkflowError],
    wf: Workflow,
    *,
    source: str | None,
    lenient: bool,
) -> Node | None:
    from agentplex.files.loader import line_of

    node_id = ids[index]
    line = line_of(entry)

    def fail(exc_type: type[WorkflowError], problem: str, hint: str, field: str | None) -> None:
        errors.append(
            exc_type(
                problem,
                hint=hint,
                path=source,
                line=line_of(entry, field) if field else line,
                node_id=node_id,
                field=field,
            )
        )

    if not isinstance(entry, Mapping):
        fail(
            SchemaError, f"agent {index} must be an object, got {entry!r}.", "see examples/.", None
        )
        return None
    code_keys = [k for k in CODE_KEYS if k in entry]
    if code_keys and not wf.trusted:
        fail(
            UntrustedCodeError,
            f"an untrusted plan may not ask to run code ({code_keys[0]!r}).",
            "plans written by an LLM may only use registered roles.",
            code_keys[0],
        )
        return None
    choosers = _choosers(entry)
    if choosers and not wf.trusted:
        fail(
            UntrustedInputError,
            f"an untrusted plan may not choose endpoints, keys or headers ({choosers[0]!r}).",
            "plans written by an LLM choose roles, tasks and dependencies only; run the plan "
            "with --trust only if you wrote it.",
            choosers[0].partition(".")[0],
        )
        return None
    before = len(errors)
    for key in ("role", "task") if "function" not in entry else ():
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            fail(
                SchemaError,
                f"agent {index} needs a non-empty string {key!r}, got {entry.get(key)!r}.",
                f'give every agent "{key}".',
                key,
            )
    deps = _plan_deps(index, entry.get("depends_on", []), ids, fail, wf, lenient, source, line)
    latency = entry.get("latency_s")
    if latency is not None and (
        not isinstance(latency, int | float) or isinstance(latency, bool) or latency < 0
    ):
        fail(
            SchemaError,
            f"latency_s must be seconds >= 0, got {latency!r}.",
            "e.g. 2.0",
            "latency_s",
        )
    cap = entry.get("max_output_tokens")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        fail(
            SchemaError,
            f"max_output_tokens must be a whole number of tokens >= 1, got {cap!r}.",
            "e.g. 800, or leave it out for the run's default",
            "max_output_tokens",
        )
    if len(errors) > before:
        return None
    if cap is not None and not wf.trusted:
        cap = _capped(cap, node_id, wf, source, line_of(entry, "max_output_tokens"))
    if "function" in entry:
        return FunctionNode(id=node_id, target=str(entry["function"]), depends_on=deps, line=line)
    return AgentNode(
        id=node_id,
        role=entry["role"],
        task=entry["task"],
        depends_on=deps,
        model=entry.get("model") if isinstance(entry.get("model"), str) else None,
        latency_s=latency,
        max_output_tokens=cap,
        literal_task=True,
        line=line,
    )


def _capped(cap: int, node_id: str, wf: Workflow, source: str | None, line: int | None) -> int:
    """``cap``, or the untrusted maximum (with a warning on ``wf``) when it is larger."""
    from agentplex.files.loader import UNTRUSTED_MAX_OUTPUT_TOKENS as most

    if cap <= most:
        return cap
    where = f"{source or '<plan>'}{f':{line}' if line else ''}"
    wf.load_warnings.append(
        f"{where}: node {node_id!r}: an untrusted plan may ask for an output cap of at most "
        f"{most:,} tokens, got {cap:,}; using {most:,} (run with --trust if you wrote it)."
    )
    return most


def _plan_deps(
    index: int,
    raw: Any,
    ids: list[str],
    fail: Any,
    wf: Workflow,
    lenient: bool,
    source: str | None,
    line: int | None,
) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raw = [raw]
    deps: list[str] = []
    for dep in raw:
        if isinstance(dep, bool) or not isinstance(dep, int):
            problem = f"dependency {dep!r} is not an agent index."
        elif dep == index:
            problem = f"depends on itself (index {dep})."
        elif not 0 <= dep < len(ids):
            problem = f"dependency index {dep} is out of range (the plan has {len(ids)} agents, 0-{len(ids) - 1})."
        else:
            if ids[dep] not in deps:
                deps.append(ids[dep])
            continue
        if lenient:
            where = f"{source or '<plan>'}{f':{line}' if line else ''}"
            wf.load_warnings.append(f"{where}: node {ids[index]!r}: dropped {problem}")
        else:
            fail(
                DependencyError,
                problem,
                "use indices of other agents in this plan, counting from 0.",
                "depends_on",
            )
    return tuple(deps)
