"""Run options: everything that says how (not what) to run."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from agentplex.engine.scheduler import Strategy, check_strategy
from agentplex.exceptions import ConfigError
from agentplex.llm import DEFAULT_MODEL, ProviderConfig, Secret, parse_model
from agentplex.llm.limits import Limits
from agentplex.llm.pricing import Price

ErrorPolicy = Literal["fail_fast", "continue"]
TruncationPolicy = Literal["accept", "warn", "retry", "fail"]
TRUNCATION_POLICIES: tuple[str, ...] = ("accept", "warn", "retry", "fail")
"""What to do with an answer cut off at its output cap: take it silently, take it and
say so (the default), try again with twice the cap, or fail the node."""

DEFAULT_MAX_CONCURRENCY = 256
"""Node bodies running at once in a run when the caller sets no limit: wide enough
for any DAG a person writes (a 20-wide DAG ran at 1.06 x its critical path under the
old default of 16 and at 1.04 x, hand-written asyncio's figure, under 256). What
protects a provider is its own limits, per model (adaptive on 429s, ``rpm``,
``tpm``, ``max_inflight``), not the run's slot count."""

DEFAULT_MAX_OUTPUT_TOKENS = 1024
"""The output cap of every model call that sets none: long enough for a full answer
(about 750 words), short enough that a model that rambles stops in a minute or so
on a slow local server instead of generating until the call's deadline."""

MAX_RETRY_OUTPUT_TOKENS = 32_768
"""The most ``on_truncated: retry`` raises a cap to (it doubles it each attempt)."""

DEFAULT_TOTAL_TIMEOUT_S = 1800.0
"""Time limit of a node that calls a model (an agent, or a map of agents), across all
its attempts and waits, when ``total_timeout_s`` is not given."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions:
    """How to run a workflow. Every field has a keyword of the same name in :func:`run`."""

    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    """Node bodies (and map items) running at once (see :data:`DEFAULT_MAX_CONCURRENCY`)."""
    strategy: Strategy | None = None
    """``dataflow``, ``layers`` or ``sequential``; ``None`` reads ``AGENTPLEX_STRATEGY``."""
    error_policy: ErrorPolicy = "fail_fast"
    model: str = DEFAULT_MODEL
    """Model of agent nodes that do not name one."""
    seed: int = 0
    """Passed to providers that take a seed (the simulator always does). A retry after
    an answer that was cut off (at its cap or its deadline) or rejected by its schema
    adds one, so a runaway generation is not replayed; a retry after an error that
    produced nothing is the same request."""
    max_output_tokens: int | None = None
    """Output cap of the calls of agents whose node and role set none; ``None``: the
    workflow's ``defaults:``, else :data:`DEFAULT_MAX_OUTPUT_TOKENS`."""
    on_truncated: TruncationPolicy | None = None
    """What to do with an answer cut off at its cap, for nodes that say nothing
    (:data:`TRUNCATION_POLICIES`); ``None``: the workflow's ``defaults:``, else warn."""
    timeout_s: float | None = None
    """Per-attempt time limit of nodes that set none, and the deadline of each LLM call
    whose provider sets no ``timeout_s``.

    ``None`` (the default): no per-attempt limit on nodes, while every LLM call
    (agent nodes, map items with an agent body, ``ctx.ask``) has a wall-clock
    deadline of :data:`~agentplex.llm.DEFAULT_CALL_TIMEOUT_S` (600 s) around the
    whole call, streaming included. User functions get no default limit: they
    may run long on purpose, and the LLM calls they make are bounded anyway.
    ``math.inf`` turns both off."""
    retries: int = 4
    """Extra attempts after real errors (5xx, timeouts, dropped connections, malformed
    bodies, ``RetryableError``...), for nodes that set none. Rate limits do not count
    (see ``rate_limit_retries``). Four, so a run of hundreds of nodes survives a
    provider that fails 5% of calls: under 20% 429s and 5% 5xx, a node's call that
    is not a 429 fails with p = 0.0625, so a node fails with p ** (retries + 1) and
    a 300-node run with 1 - (1 - p ** (retries + 1)) ** 300: 7% with two retries,
    0.03% with four."""
    rate_limit_retries: int = 50
    """Extra attempts after rate limits (429, 529 overloaded, or any error with a
    Retry-After), counted apart from ``retries`` so throttling never uses up the budget
    for real errors. Generous: a throttled call succeeds once the provider has room,
    and ``total_timeout_s`` still bounds the node."""
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 120.0
    """Cap on a provider's Retry-After."""
    total_timeout_s: float | None = None
    """Time limit of a node across all its attempts and backoff waits.

    ``None`` (the default): :data:`DEFAULT_TOTAL_TIMEOUT_S` (30 min) for nodes that
    call a model (agents, and each item of a map with an agent body), none for
    function nodes. ``math.inf`` turns it off."""
    sim_scale: float | None = None
    """Multiply simulated latencies (``None``: ``AGENTPLEX_SIM_SCALE`` or 1)."""
    providers: Mapping[str, ProviderConfig] | None = None
    """Provider configurations, on top of the built-in ones and the workflow's."""
    base_url: str | None = None
    """Endpoint of the default model's provider (``--base-url``)."""
    api_key: Secret | str | None = None
    """Key of the default model's provider (``--api-key``); prefer its environment variable."""
    rpm: float | None = None
    """Requests per minute allowed per model of the default model's provider."""
    tpm: float | None = None
    """Tokens per minute allowed per model of the default model's provider."""
    max_inflight: int | None = None
    """Calls in flight allowed per model of the default model's provider."""
    stream: bool = False
    """Stream agents' answers as :class:`~agentplex.events.NodeText` events."""
    record_requests: bool = False
    """Announce every LLM call of a node, messages included (keys masked), as a
    :class:`~agentplex.events.NodeRequest` event just before it is sent (``--verbose``)."""
    prices: Mapping[str, Price] | None = None
    """Prices (dollars per million tokens) added to the built-in table."""
    preflight: bool = True
    """Check every provider's key and endpoint before the first node starts."""
    cache: bool = True
    """Reuse cached LLM answers (and results of functions that opt in); see :mod:`agentplex.store.cache`."""
    executor: str | None = None
    """Where ``cpu_bound`` steps run (``process`` by default; ``dask`` for a Dask cluster)."""
    dask: str | None = None
    """Dask scheduler address (``tcp://host:8786``); None starts a local cluster when needed.
    Giving one sends ``cpu_bound`` steps to Dask unless ``executor`` says otherwise."""

    def __post_init__(self) -> None:
        if isinstance(self.api_key, str):  # never keep a key as a plain string
            object.__setattr__(self, "api_key", Secret(self.api_key))

    def resolved_strategy(self) -> Strategy:
        """Return the strategy, reading ``AGENTPLEX_STRATEGY`` when none was given.

        Raises:
            ConfigError: if the strategy is unknown.
        """
        if self.strategy is not None:
            return check_strategy(self.strategy)
        return check_strategy(os.environ.get("AGENTPLEX_STRATEGY", "dataflow") or "dataflow")

    @classmethod
    def from_keywords(cls, options: Mapping[str, Any]) -> RunOptions:
        """Build run options from keyword arguments (``run(wf, **options)``).

        Raises:
            ConfigError: naming the unknown keyword and listing the known ones.
        """
        try:
            return cls(**options)
        except TypeError as exc:
            known = ", ".join(cls.__dataclass_fields__)
            raise ConfigError(f"{exc}; run options are: {known}.") from None

    def check(self) -> None:
        """Raise :class:`ConfigError` for any invalid option."""
        if not isinstance(self.max_concurrency, int) or self.max_concurrency < 1:
            raise ConfigError(
                f"max_concurrency must be a whole number >= 1, got {self.max_concurrency!r}."
            )
        cap = self.max_output_tokens
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            raise ConfigError(f"max_output_tokens must be a whole number >= 1, got {cap!r}.")
        if self.on_truncated is not None and self.on_truncated not in TRUNCATION_POLICIES:
            raise ConfigError(
                f"unknown on_truncated policy {self.on_truncated!r}; choose one of "
                f"{', '.join(TRUNCATION_POLICIES)}."
            )
        if self.error_policy not in ("fail_fast", "continue"):
            raise ConfigError(
                f"unknown error policy {self.error_policy!r}; choose fail_fast or continue."
            )
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ConfigError(f"timeout_s must be > 0, got {self.timeout_s!r}.")
        for name in ("retries", "rate_limit_retries"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name} must be a whole number >= 0, got {value!r}.")
        total = self.total_timeout_s
        if total is not None and not (isinstance(total, int | float) and total > 0):
            raise ConfigError(
                f"total_timeout_s must be a number > 0 (math.inf: no limit), got {total!r}."
            )
        for name in ("rpm", "tpm"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int | float) and 0 < value < math.inf):
                raise ConfigError(f"{name} must be a number > 0, got {value!r}.")
        Limits(max_concurrency=self.max_inflight).check("max_inflight")
        if not isinstance(self.model, str) or ":" not in self.model:
            parse_model(self.model)  # raises with the fix; names are checked per run
        self.resolved_strategy()
        if self.executor is not None:
            from agentplex.executors import executor_names

            if self.executor not in executor_names():
                raise ConfigError(
                    f"unknown executor {self.executor!r}; choose one of "
                    f"{', '.join(executor_names())}, or register yours first with "
                    "agentplex.register_executor()."
                )

    def cpu_executor(self) -> str:
        """Where ``cpu_bound`` steps (executor ``auto``) run in this run."""
        return self.executor or ("dask" if self.dask else "process")
