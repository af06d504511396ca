"""Command-line options shared by ``run`` and ``batch``, and how they become run options."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer


class StrategyChoice(StrEnum):
    dataflow = "dataflow"
    layers = "layers"
    sequential = "sequential"


class ErrorPolicyChoice(StrEnum):
    fail_fast = "fail_fast"
    continue_ = "continue"


MaxConcurrencyOpt = Annotated[
    int, typer.Option("--max-concurrency", "-c", min=1, help="Nodes running at once.")
]

StrategyOpt = Annotated[
    Optional[StrategyChoice],  # noqa: UP045
    typer.Option(help="Scheduling strategy [default: $AGENTPLEX_STRATEGY or dataflow]."),
]

ErrorPolicyOpt = Annotated[
    ErrorPolicyChoice,
    typer.Option(
        "--error-policy", help="fail_fast cancels the run; continue skips dependents only."
    ),
]

ModelOpt = Annotated[str, typer.Option(help="Model for agents that name none, as provider:model.")]

SeedOpt = Annotated[
    int, typer.Option(help="Seed passed to the model (the simulator is deterministic).")
]

TimeoutOpt = Annotated[
    Optional[float],  # noqa: UP045
    typer.Option(
        "--timeout",
        help="Per-attempt time limit (s) of nodes that set none, and the deadline of each "
        "LLM call whose provider sets none (default: 600 s per LLM call, none for Python "
        "steps; inf: off).",
    ),
]

RetriesOpt = Annotated[
    int,
    typer.Option(
        min=0,
        help="Retries after real errors (5xx, timeouts, dropped connections); rate limits "
        "(429, 529, Retry-After) have their own budget of 50.",
    ),
]

SimScaleOpt = Annotated[
    Optional[float],  # noqa: UP045
    typer.Option("--sim-scale", help="Multiply simulated latencies (e.g. 0.1 for a quick look)."),
]

BaseUrlOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--base-url",
        help="Endpoint of --model's provider, e.g. http://127.0.0.1:8000/v1 "
        "(default: $OPENAI_BASE_URL / $ANTHROPIC_BASE_URL, else the public API).",
    ),
]

ApiKeyOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--api-key",
        help="Key of --model's provider. Prefer $OPENAI_API_KEY / $ANTHROPIC_API_KEY: "
        "a flag can end up in your shell history.",
    ),
]

RpmOpt = Annotated[
    Optional[float],  # noqa: UP045
    typer.Option("--rpm", help="Requests per minute allowed per model of --model's provider."),
]

TpmOpt = Annotated[
    Optional[float],  # noqa: UP045
    typer.Option("--tpm", help="Tokens per minute allowed per model of --model's provider."),
]

MaxInflightOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option(
        "--max-inflight", min=1, help="Calls in flight allowed per model of --model's provider."
    ),
]

TotalTimeoutOpt = Annotated[
    Optional[float],  # noqa: UP045
    typer.Option(
        "--total-timeout",
        help="Time limit (s) of a node across all its attempts and waits (default: 1800 "
        "for nodes that call a model, none for Python steps; inf: off).",
    ),
]

PricesOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(
        "--prices", help="YAML/JSON price file: {model: {input: $/Mtok, output: $/Mtok}}."
    ),
]

JsonOutOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object and nothing else.")]

QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the summary.")]


ENGINE_FLAGS = (
    "max_concurrency",
    "strategy",
    "error_policy",
    "model",
    "seed",
    "timeout",
    "retries",
    "sim_scale",
    "base_url",
    "api_key",
    "rpm",
    "tpm",
    "max_inflight",
    "total_timeout",
    "prices",
    "executor",
    "dask",
)
"""The command-line flags that become run options (every command names them the same way)."""


def options_from(flags: dict[str, Any], **fixed: Any) -> dict[str, Any]:
    """:func:`engine_options` from a command's parameters (its ``locals()``).

    Flags a command does not have take ``fixed`` or their defaults; ``no_cache``
    turns into ``cache``.

    Raises:
        ConfigError: if the price file is invalid.
    """
    picked = {name: flags[name] for name in ENGINE_FLAGS if name in flags}
    picked.setdefault("strategy", None)
    picked.setdefault("error_policy", ErrorPolicyChoice.fail_fast)
    picked.update(fixed)
    return engine_options(cache=not flags.get("no_cache", False), **picked)


def engine_options(
    *,
    max_concurrency: int,
    strategy: StrategyChoice | None,
    error_policy: ErrorPolicyChoice,
    model: str,
    seed: int,
    timeout: float | None,
    retries: int,
    sim_scale: float | None,
    base_url: str | None,
    api_key: str | None,
    rpm: float | None,
    tpm: float | None,
    max_inflight: int | None,
    total_timeout: float | None,
    prices: Path | None,
    cache: bool = True,
    executor: str | None = None,
    dask: str | None = None,
) -> dict[str, Any]:
    """Turn the shared flags into :class:`~agentplex.engine.options.RunOptions` keywords.

    Raises:
        ConfigError: if the price file is invalid.
    """
    options: dict[str, Any] = {
        "max_concurrency": max_concurrency,
        "strategy": strategy.value if strategy else None,
        "error_policy": error_policy.value,
        "model": model,
        "seed": seed,
        "timeout_s": timeout,
        "retries": retries,
        "sim_scale": sim_scale,
        "base_url": base_url,
        "api_key": api_key,
        "rpm": rpm,
        "tpm": tpm,
        "max_inflight": max_inflight,
        "total_timeout_s": total_timeout,
        "cache": cache,
        "executor": executor,
        "dask": dask,
    }
    if prices is not None:
        from agentplex.llm.pricing import load_prices

        options["prices"] = load_prices(prices)
    return options


ExportOpt = Annotated[
    Optional[str],  # noqa: UP045 - typer needs Optional here
    typer.Option(
        "--export",
        help="Also export the final outputs into the --out folder (default ./results): "
        "md, html, pptx, pdf (comma-separated; pptx and pdf need agentplex[export]).",
    ),
]


StoreOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(
        "--store",
        help="Run store file or folder [default: $AGENTPLEX_STORE or .agentplex/runs.sqlite].",
    ),
]
NoStoreOpt = Annotated[
    bool, typer.Option("--no-store", help="Do not record the run (it cannot be resumed).")
]
NoCacheOpt = Annotated[
    bool,
    typer.Option("--no-cache", help="Call every model again instead of reusing cached answers."),
]
ExecutorOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--executor",
        help="Where cpu_bound steps run: process (default), dask (a local cluster, or --dask), "
        "thread or inline.",
    ),
]
DaskOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--dask",
        help="Dask scheduler address (tcp://host:8786) for cpu_bound steps "
        "[default: $AGENTPLEX_DASK].",
    ),
]


UntrustedOpt = Annotated[
    bool,
    typer.Option(
        "--untrusted",
        help="Treat the file as untrusted: no Python functions, endpoints, keys or headers.",
    ),
]
TrustOpt = Annotated[
    bool,
    typer.Option(
        "--trust",
        help="Trust a meta-agent plan file (untrusted by default: plans are what LLMs write).",
    ),
]
ImportOpt = Annotated[
    bool,
    typer.Option(
        "--import",
        help="Import the modules the file's function: steps name, to check them too.",
    ),
]
