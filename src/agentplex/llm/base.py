"""The provider contract: one request in, one completion out.

A provider is a small object with ``async complete(request)``, ``aclose()``
and ``statistics()``. Providers do not retry: the runner owns the one retry
loop, so every failure is seen by it. A failure that may go away when tried
again raises :class:`~agentplex.exceptions.ProviderError` with
``retryable=True``.

Every call has a wall-clock deadline, :attr:`Provider.call_timeout_s`: the
provider configuration's ``timeout_s``, else the run's ``timeout_s``, else
:data:`DEFAULT_CALL_TIMEOUT_S` (600 s, which a long real completion fits in).
It is one timer around the whole call, streaming included, from the moment
the call has its limiter ticket (waiting for the limiter does not count), so a
server that trickles a byte every few seconds, which restarts an SDK's read
timeout on every byte, is still cut off. ``math.inf`` turns it off.

The engine may also set :data:`CALL_DEADLINE`, the loop time by which the node
making the call must be done (its total time limit); the same timer then fires
at whichever comes first. One plain loop timer per call, not a per-attempt
``asyncio.timeout``: a call is all an agent attempt waits for, and the timer
costs a few microseconds where ``asyncio.timeout`` costs several times that.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Literal

from agentplex.exceptions import ConfigError, ProviderError
from agentplex.llm.errors import is_rate_limit
from agentplex.llm.limits import Limiter, Limits, limiter_for
from agentplex.result import TRUNCATED_REASONS, Usage

DEFAULT_CALL_TIMEOUT_S = 600.0
"""Wall-clock deadline of one LLM call when neither its provider nor the run sets one."""

CALL_DEADLINE: ContextVar[tuple[asyncio.Task[Any], float] | None] = ContextVar(
    "agentplex_call_deadline", default=None
)
"""``(task, loop time)``: calls made by ``task`` must end by then; None: no such deadline.

Set by the engine around a node's attempt when the node's total time limit is
enforced through its calls (see :mod:`agentplex.engine.attempts`). It names its task
because tasks started meanwhile inherit the context: a node the planner adds
from inside another node's attempt must not inherit that node's deadline."""

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message."""

    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True)
class Request:
    """What a node asks of a model."""

    model: str
    """The model name within its provider (``gpt-4o-mini``, ``default``)."""
    messages: tuple[Message, ...]
    options: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    """Sampling parameters: ``temperature``, ``max_tokens``, ``seed``..."""
    latency_s: float | None = None
    """A pinned latency for the simulator; real providers ignore it."""
    node_id: str | None = None
    """The node making the call, for statistics and logs."""
    on_text: Callable[[str], None] | None = None
    """If set, the answer is streamed and each piece of text is passed here as it arrives."""
    max_output_tokens: int | None = None
    """The cap on the answer's length, sent as the provider's own parameter
    (``max_completion_tokens``, ``max_tokens``); None: the provider's default."""
    schema: Mapping[str, Any] | None = None
    """A JSON Schema the answer must follow, sent the way the provider enforces it
    (OpenAI-compatible ``response_format: json_schema``, Ollama's ``format``,
    Anthropic's forced tool call); the answer's text is then the JSON value."""
    schema_name: str = "answer"
    """The schema's name, where the provider wants one (letters, digits, ``_``, ``-``)."""
    on_spent: Callable[[Usage], None] | None = None
    """Told the tokens of a call that did not return a completion (failed, timed out
    or cancelled) but may have been billed: see :func:`unreturned_usage`."""


def estimate_tokens(text: str) -> int:
    """Return a rough token count (about four characters a token)."""
    return max(1, (len(text) + 3) // 4)


def estimate_request_tokens(request: Request) -> int:
    """Return what a request may cost in tokens before it is sent (prompt + output budget)."""
    prompt = sum(estimate_tokens(m.content) for m in request.messages)
    budget = request.max_output_tokens
    return prompt + (budget if budget is not None and budget > 0 else 256)


def unreturned_usage(request: Request, exc: BaseException, streamed_chars: int) -> Usage:
    """What a call that raised ``exc`` may have been billed, as an estimate.

    A call the endpoint answered with an HTTP error status did no work: nothing.
    One cut off by a deadline, cancelled, dropped or answered with a malformed body
    had its prompt read and produced at least what it streamed: the prompt and the
    streamed text, estimated (about four characters a token). A connection that
    failed before anything streamed may never have reached the server: nothing.
    """
    if isinstance(exc, ProviderError):
        if exc.status is not None:
            return Usage()
        if streamed_chars == 0 and exc.connection:
            return Usage()
    elif not isinstance(exc, asyncio.CancelledError | TimeoutError):
        return Usage()
    prompt = sum(estimate_tokens(m.content) for m in request.messages)
    output = (streamed_chars + 3) // 4
    return Usage(prompt, output, estimated=True)


@dataclass(frozen=True, slots=True)
class Completion:
    """A model's answer."""

    text: str
    usage: Usage
    model: str
    provider: str
    latency_s: float = 0.0
    finish_reason: str = "stop"
    """Why the model stopped, in the provider's words (``stop``, ``length``,
    ``end_turn``, ``max_tokens``, ``tool_use``...)."""

    @property
    def truncated(self) -> bool:
        """Whether the answer was cut off by its output cap (or the context window)."""
        return self.finish_reason in TRUNCATED_REASONS


@dataclass(frozen=True, slots=True)
class ProviderStatistics:
    """Counters every provider keeps."""

    calls: int
    failures: int
    in_flight: int
    usage: Usage


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A parsed ``provider:model`` string."""

    provider: str
    model: str

    def __str__(self) -> str:
        return f"{self.provider}:{self.model}"


def parse_model(spec: str, known: Mapping[str, object] | None = None) -> ModelRef:
    """Parse ``provider:model`` (the model part may itself contain ``:``, as in Ollama tags).

    ``known`` holds the provider names in use (default: the built-in ones).

    Raises:
        ConfigError: if the string is not of that form or names an unknown provider.
    """
    from agentplex.llm.config import BUILTIN_PROVIDERS

    known = BUILTIN_PROVIDERS if known is None else known
    provider, sep, model = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    if not sep or not provider or not model:
        raise ConfigError(
            f"model {spec!r} is not of the form 'provider:model'. "
            "Fix: write e.g. 'sim:default' (the built-in simulator)."
        )
    if provider not in known:
        raise ConfigError(
            f"unknown provider {provider!r} in model {spec!r}; known providers: "
            f"{', '.join(sorted(known))}. Fix: use one of those (e.g. 'openai:gpt-4o-mini'), "
            "or declare it under providers: with a kind."
        )
    return ModelRef(provider, model)


class _Counted:
    """Passes streamed text on and counts its characters."""

    __slots__ = ("chars", "target")

    def __init__(self, target: Callable[[str], None]) -> None:
        self.target = target
        self.chars = 0

    def __call__(self, piece: str) -> None:
        self.chars += len(piece)
        self.target(piece)


class _Timer:
    """Cancels its task when it fires, and remembers that it did."""

    __slots__ = ("cancelling", "fired", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.cancelling = task.cancelling()
        self.fired = False

    def fire(self) -> None:
        self.fired = True
        self.task.cancel()


class Provider(ABC):
    """Base class of the LLM providers: implement ``_complete``.

    Writing one: subclass, set ``name`` and implement ``async _complete(request)
    -> Completion`` (one call, no retries; raise
    :class:`~agentplex.exceptions.ProviderError` with ``retryable=True`` for a
    failure worth retrying, and ``status=429`` for a rate limit). The base
    class's :meth:`complete` wraps it with the limiter, the call deadline and
    the counters. Override :meth:`aclose` if it holds connections.

    Register a factory with :func:`agentplex.register_provider`; it is called
    as ``factory(resolved, max_connections=n)`` with the provider
    configuration, its URL and key looked up
    (:class:`~agentplex.llm.config.ResolvedProvider`: ``name``, ``kind``,
    ``base_url``, ``api_key``, ``timeout_s``, ``limits``, ``headers``,
    ``options``). The pool then names the provider after its configuration,
    sets its call deadline and, unless the provider set limits itself, puts
    it under the configuration's limits. The contract every provider passes
    is in ``tests/test_plugins.py``.
    """

    name: ClassVar[str]

    def __init__(self, *, limits: Limits | None = None, limit_key: str | None = None) -> None:
        self._calls = 0
        self._failures = 0
        self._in_flight = 0
        self._usage = Usage()
        self._limits = limits
        self._limit_key = limit_key or self.name
        self._limiters: dict[str, Limiter] = {}
        self.label = self.name
        """How errors name this provider (its configuration's name)."""
        self.call_timeout_s: float | None = DEFAULT_CALL_TIMEOUT_S
        """Wall-clock deadline of each whole call (streaming included); None: no deadline."""

    @property
    def limits(self) -> Limits | None:
        """The limits calls are paced by, or None for none."""
        return self._limits

    def use_limits(self, limits: Limits, key: str) -> None:
        """Pace every call by ``limits``, shared process-wide by everything that uses ``key``."""
        self._limits = limits
        self._limit_key = key
        self._limiters.clear()

    def set_call_timeout(self, timeout_s: float) -> None:
        """Set :attr:`call_timeout_s`; ``math.inf`` means no deadline."""
        self.call_timeout_s = None if math.isinf(timeout_s) else timeout_s

    def limiter(self, model: str) -> Limiter | None:
        """Return the process-wide limiter of ``model`` on this endpoint, or None if unlimited."""
        if self._limits is None:
            return None
        limiter = self._limiters.get(model)
        if limiter is None:
            limiter = self._limiters[model] = limiter_for(
                f"{self._limit_key}|{model}", self._limits
            )
        return limiter

    async def complete(self, request: Request) -> Completion:
        """Run one completion under the model's limits; raise ProviderError on failure.

        Never retries: a 429 (or an overload, see
        :func:`~agentplex.llm.errors.is_rate_limit`) is reported to the limiter
        (which slows every caller of the model down) and raised for the engine
        to retry. A call past :attr:`call_timeout_s` raises a retryable
        ProviderError saying so.
        """
        limiter = self._limiters.get(request.model) or self.limiter(request.model)
        ticket = await limiter.acquire(estimate_request_tokens(request)) if limiter else None
        self._calls += 1
        self._in_flight += 1
        streamed = None
        if request.on_text is not None:  # count what streams, for a call cut off midway
            streamed = _Counted(request.on_text)
            request = dataclasses.replace(request, on_text=streamed)
        try:
            owned = CALL_DEADLINE.get()
            ends = owned[1] if owned is not None and owned[0] is asyncio.current_task() else None
            if self.call_timeout_s is None and ends is None:
                completion = await self._complete(request)
            else:
                completion = await self._complete_by(request, self.call_timeout_s, ends)
        except BaseException as exc:
            self._failures += 1
            spent = unreturned_usage(request, exc, streamed.chars if streamed else 0)
            self._usage = self._usage + spent
            if limiter is not None and ticket is not None:
                limited = isinstance(exc, ProviderError) and is_rate_limit(exc)
                limiter.release(
                    ticket,
                    "rate_limited" if limited else "error",
                    retry_after_s=getattr(exc, "retry_after_s", None),
                    tokens_used=spent.total_tokens,  # a refused call refunds its estimate
                )
            if request.on_spent is not None and spent.total_tokens:
                request.on_spent(spent)
            raise
        finally:
            self._in_flight -= 1
        if limiter is not None and ticket is not None:
            limiter.release(ticket, "ok", tokens_used=completion.usage.total_tokens)
        self._usage = self._usage + completion.usage
        return completion

    async def _complete_by(
        self, request: Request, timeout_s: float | None, ends: float | None
    ) -> Completion:
        """``_complete`` under one wall-clock timer: ``timeout_s`` from now or ``ends``."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        start = loop.time()
        when = start + timeout_s if timeout_s is not None else math.inf
        if ends is not None and ends < when:
            when = ends
        timer = _Timer(task)
        handle = loop.call_at(when, timer.fire)
        try:
            completion = await self._complete(request)
        except BaseException as exc:
            handle.cancel()
            # Ours only if nobody else cancelled the task meanwhile (as asyncio.timeout does).
            if (
                timer.fired
                and task.uncancel() <= timer.cancelling
                and isinstance(exc, asyncio.CancelledError)
            ):
                if ends is not None and when == ends:
                    why = (
                        f"call cut off after {when - start:g}s: the node's total time limit "
                        "(all its attempts) ran out. Fix: raise the run's total_timeout_s "
                        "(--total-timeout)"
                    )
                else:
                    why = (
                        f"call timed out after {when - start:g}s (the per-call deadline, a "
                        "wall-clock limit on the whole call, streamed or not). Fix: raise the "
                        "provider's timeout_s, or the run's timeout_s (--timeout) if the "
                        "provider sets none, or lower the output cap (--max-output-tokens)"
                    )
                raise ProviderError(self.label, why, retryable=True) from None
            raise
        handle.cancel()
        if timer.fired:  # the call ended anyway: take the cancellation back
            task.uncancel()
        return completion

    @abstractmethod
    async def _complete(self, request: Request) -> Completion:
        """Provider-specific call."""

    async def aclose(self) -> None:  # noqa: B027 - a no-op default for stateless providers
        """Release connections and other resources."""

    def statistics(self) -> ProviderStatistics:
        """Return call counters and total usage."""
        return ProviderStatistics(self._calls, self._failures, self._in_flight, self._usage)
