"""Flags declared once: groups of options that commands share, and how a command takes them.

Typer reads a command's options from its signature, so a flag shared by five
commands would otherwise be declared five times. Here each group of flags is
one frozen dataclass whose fields carry their ``typer.Option``; the decorator
:func:`takes` puts a group's fields into a command's signature in place of
one parameter, and hands the command one instance of the group::

    @takes(EngineFlags, "engine", defaults={"max_concurrency": 64})
    def batch(workflow: WorkflowArg, engine: EngineFlags) -> None:
        arun_batch(..., **engine.run_options())

A command may leave some fields out (they keep their default, or the value
``defaults`` gives them) or change a field's default; the option's name and
help text stay the ones written here.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Collection, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar, get_type_hints

import typer

F = TypeVar("F", bound=Callable[..., Any])


class StrategyChoice(StrEnum):
    dataflow = "dataflow"
    layers = "layers"
    sequential = "sequential"


class ErrorPolicyChoice(StrEnum):
    fail_fast = "fail_fast"
    continue_ = "continue"


class TruncationChoice(StrEnum):
    accept = "accept"
    warn = "warn"
    retry = "retry"
    fail = "fail"


class OnCycleChoice(StrEnum):
    error = "error"
    declared_order = "declared-order"


_PER_MODEL = "allowed per model of --model's provider."

#: Help of every engine flag, by field; the option's name is the field's, dashed.
ENGINE_HELP = {
    "max_concurrency": "Nodes running at once (provider limits, adaptive on 429s, protect "
    "the endpoint).",
    "max_output_tokens": "Output cap of each model call of agents whose node and role set "
    "none [default: the workflow's defaults:, else 1024].",
    "on_truncated": "What to do with an answer cut off at its output cap, for nodes that "
    "say nothing [default: warn].",
    "strategy": "Scheduling strategy [default: $AGENTPLEX_STRATEGY or dataflow].",
    "error_policy": "fail_fast cancels the run; continue skips dependents only.",
    "model": "Model for agents that name none, as provider:model.",
    "seed": "Seed passed to the model (the simulator is deterministic).",
    "timeout": "Per-attempt time limit (s) of nodes that set none, and the deadline of each "
    "LLM call whose provider sets none (default: 600 s per LLM call, none for Python steps; "
    "inf: off).",
    "retries": "Retries after real errors (5xx, timeouts, dropped connections); rate limits "
    "(429, 529, Retry-After) have their own budget (--rate-limit-retries).",
    "rate_limit_retries": "Retries after rate limits (429, 529, Retry-After), which never "
    "use up --retries.",
    "sim_scale": "Multiply simulated latencies (e.g. 0.1 for a quick look).",
    "base_url": "Endpoint of --model's provider, e.g. http://127.0.0.1:8000/v1 (default: "
    "$OPENAI_BASE_URL / $ANTHROPIC_BASE_URL, else the public API).",
    "api_key": "Key of --model's provider. Prefer $OPENAI_API_KEY / $ANTHROPIC_API_KEY: a "
    "flag can end up in your shell history.",
    "rpm": f"Requests per minute {_PER_MODEL}",
    "tpm": f"Tokens per minute {_PER_MODEL}",
    "max_inflight": f"Calls in flight {_PER_MODEL}",
    "total_timeout": "Time limit (s) of a node across all its attempts and waits (default: "
    "1800 for nodes that call a model, none for Python steps; inf: off).",
    "prices": "YAML/JSON price file: {model: {input: $/Mtok, output: $/Mtok}}.",
    "executor": "Where cpu_bound steps run: process (default), dask (a local cluster, or "
    "--dask), thread or inline.",
    "dask": "Dask scheduler address (tcp://host:8786) for cpu_bound steps "
    "[default: $AGENTPLEX_DASK].",
    "no_cache": "Call every model again instead of reusing cached answers.",
}


def _engine(field: str, *decls: str, **more: Any) -> Any:
    """Return the ``typer.Option`` of the engine flag ``field``, with its help."""
    return typer.Option(*decls, help=ENGINE_HELP[field], **more)


@dataclasses.dataclass(frozen=True, kw_only=True)
class EngineFlags:
    """The flags that become run options (``run``, ``batch``, ``bench``, ``plan``, ``ask``)."""

    max_concurrency: Annotated[
        int, _engine("max_concurrency", "--max-concurrency", "-c", min=1)
    ] = 256  # RunOptions' DEFAULT_MAX_CONCURRENCY (not imported: --help stays fast)
    strategy: Annotated[Optional[StrategyChoice], _engine("strategy")] = None  # noqa: UP045
    error_policy: Annotated[ErrorPolicyChoice, _engine("error_policy", "--error-policy")] = (
        ErrorPolicyChoice.fail_fast
    )
    model: Annotated[str, _engine("model")] = "sim:default"
    seed: Annotated[int, _engine("seed")] = 0
    max_output_tokens: Annotated[
        Optional[int],  # noqa: UP045
        _engine("max_output_tokens", "--max-output-tokens", min=1),
    ] = None
    on_truncated: Annotated[Optional[TruncationChoice], _engine("on_truncated")] = None  # noqa: UP045
    timeout: Annotated[Optional[float], _engine("timeout")] = None  # noqa: UP045
    retries: Annotated[int, _engine("retries", min=0)] = 4
    rate_limit_retries: Annotated[int, _engine("rate_limit_retries", min=0)] = 50
    sim_scale: Annotated[Optional[float], _engine("sim_scale")] = None  # noqa: UP045
    base_url: Annotated[Optional[str], _engine("base_url")] = None  # noqa: UP045
    api_key: Annotated[Optional[str], _engine("api_key")] = None  # noqa: UP045
    rpm: Annotated[Optional[float], _engine("rpm")] = None  # noqa: UP045
    tpm: Annotated[Optional[float], _engine("tpm")] = None  # noqa: UP045
    max_inflight: Annotated[Optional[int], _engine("max_inflight", min=1)] = None  # noqa: UP045
    total_timeout: Annotated[Optional[float], _engine("total_timeout")] = None  # noqa: UP045
    prices: Annotated[Optional[Path], _engine("prices")] = None  # noqa: UP045
    executor: Annotated[Optional[str], _engine("executor")] = None  # noqa: UP045
    dask: Annotated[Optional[str], _engine("dask")] = None  # noqa: UP045
    no_cache: Annotated[bool, _engine("no_cache", "--no-cache")] = False

    def run_options(self) -> dict[str, Any]:
        """Return the :class:`~agentplex.engine.options.RunOptions` keywords these flags give.

        Raises:
            ConfigError: if the price file is invalid.
        """
        options: dict[str, Any] = {
            "max_concurrency": self.max_concurrency,
            "strategy": self.strategy.value if self.strategy else None,
            "error_policy": self.error_policy.value,
            "model": self.model,
            "seed": self.seed,
            "max_output_tokens": self.max_output_tokens,
            "on_truncated": self.on_truncated.value if self.on_truncated else None,
            "timeout_s": self.timeout,
            "retries": self.retries,
            "rate_limit_retries": self.rate_limit_retries,
            "sim_scale": self.sim_scale,
            "base_url": self.base_url,
            "api_key": self.api_key,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "max_inflight": self.max_inflight,
            "total_timeout_s": self.total_timeout,
            "cache": not self.no_cache,
            "executor": self.executor,
            "dask": self.dask,
        }
        if self.prices is not None:
            from agentplex.llm.pricing import load_prices

            options["prices"] = load_prices(self.prices)
        return options

    def needs_dask(self) -> bool:
        """Say whether these flags send work to Dask (so its extra must be installed)."""
        return self.dask is not None or self.executor == "dask"


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoadFlags:
    """How a workflow file is read: its trust, lenience and imports."""

    lenient: Annotated[
        bool,
        typer.Option(
            "--lenient", help="Drop invalid dependencies with a warning (for LLM-written plans)."
        ),
    ] = False
    on_cycle: Annotated[
        OnCycleChoice,
        typer.Option(
            "--on-cycle", help="On a dependency cycle: fail, or drop dependencies on later nodes."
        ),
    ] = OnCycleChoice.error
    untrusted: Annotated[
        bool,
        typer.Option(
            "--untrusted",
            help="Treat the file as untrusted: no Python functions, endpoints, keys or headers.",
        ),
    ] = False
    trust: Annotated[
        bool,
        typer.Option(
            "--trust",
            help="Trust a meta-agent plan file (untrusted by default: plans are what LLMs write).",
        ),
    ] = False
    imports: Annotated[
        bool,
        typer.Option(
            "--import",
            help="Import the modules the file's function: steps name, to check them too.",
        ),
    ] = True


@dataclasses.dataclass(frozen=True, kw_only=True)
class OutputFlags:
    """What a command prints: JSON for machines, less, or more."""

    json_out: Annotated[
        bool,
        typer.Option("--json", help="Print one JSON object on stdout and nothing else there."),
    ] = False
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the summary.")] = False
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Also show the traceback of failing Python steps and each request an agent "
            "sends (on stderr).",
        ),
    ] = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class StoreFlags:
    """Where runs are recorded."""

    store: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--store",
            help="Run store file or folder [default: $AGENTPLEX_STORE or .agentplex/runs.sqlite].",
        ),
    ] = None
    no_store: Annotated[
        bool, typer.Option("--no-store", help="Do not record the run (it cannot be resumed).")
    ] = False

    def target(self) -> Path | bool:
        """Return the ``store=`` of a run: False (none), a path, or True (the default store)."""
        return False if self.no_store else (self.store or True)


_EXPORT_HELP = (
    "Also export the final outputs into the --out folder (default ./results): md, html, pptx, "
    "pdf (comma-separated; pptx and pdf need agentplex[export])."
)
_OUT_HELP = (
    "Write the command's record (run.json, batch.json, ask.json or plan.json) and every output "
    "into this folder."
)
ExportOpt = Annotated[Optional[str], typer.Option("--export", help=_EXPORT_HELP)]  # noqa: UP045
OutDir = Annotated[Optional[Path], typer.Option("--out", help=_OUT_HELP)]  # noqa: UP045
WorkflowArg = Annotated[
    Path, typer.Argument(help="Workflow file: YAML or JSON, named nodes or a meta-agent plan.")
]


def takes(
    group: type[Any],
    name: str,
    *,
    only: Collection[str] | None = None,
    without: Collection[str] = (),
    defaults: Mapping[str, Any] | None = None,
) -> Callable[[F], F]:
    """Give a command the flags of ``group`` in place of its parameter ``name``.

    ``only`` / ``without`` choose the fields that become options; the others
    take ``defaults`` or the group's own defaults. ``defaults`` also changes
    the default of an option (``max_concurrency=64`` for a batch).

    Raises:
        TypeError: if the command has no parameter ``name`` or ``defaults``
            names a field the group does not have (a programming error).
    """
    hints = get_type_hints(group, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(group)}
    given = dict(defaults or {})
    unknown = set(given) | set(only or ()) | set(without)
    if unknown - set(fields):
        raise TypeError(f"{group.__name__} has no field(s) {sorted(unknown - set(fields))}")
    chosen = [f for f in fields if (only is None or f in only) and f not in without]
    fixed = {k: v for k, v in given.items() if k not in chosen}

    def decorate(command: F) -> F:
        signature = inspect.signature(command, eval_str=True)
        if name not in signature.parameters:
            raise TypeError(f"{command.__name__} has no parameter {name!r} for {group.__name__}")
        params: list[inspect.Parameter] = []
        for param in signature.parameters.values():
            if param.name != name:
                params.append(param.replace(kind=inspect.Parameter.KEYWORD_ONLY))
                continue
            for field in chosen:
                default = given.get(field, fields[field].default)
                params.append(
                    inspect.Parameter(
                        field,
                        inspect.Parameter.KEYWORD_ONLY,
                        default=default,
                        annotation=hints[field],
                    )
                )

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            values = {field: kwargs.pop(field) for field in chosen}
            kwargs[name] = group(**fixed, **values)
            return command(**kwargs)

        new = signature.replace(parameters=params)
        wrapper.__signature__ = new  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        if new.return_annotation is not inspect.Signature.empty:
            wrapper.__annotations__["return"] = new.return_annotation
        return wrapper  # type: ignore[return-value]

    return decorate
