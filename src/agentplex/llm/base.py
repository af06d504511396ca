"""The provider contract: one request in, one completion out.

A provider is a small object with ``async complete(request)``, ``aclose()``
and ``statistics()``. Providers do not retry: the runner owns the one retry
loop, so every failure is seen by it. A failure that may go away when tried
again raises :class:`~agentplex.exceptions.ProviderError` with
``retryable=True``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Literal

from agentplex.exceptions import ConfigError, ProviderError
from agentplex.llm.limits import Limiter, Limits, limiter_for

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message."""

    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens a call consumed, as the provider reported them."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_calls: int = 0
    """Calls answered from the result cache instead (they cost no tokens)."""

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_calls + other.cached_calls,
        )


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


def estimate_tokens(text: str) -> int:
    """Return a rough token count (about four characters a token)."""
    return max(1, (len(text) + 3) // 4)


def estimate_request_tokens(request: Request) -> int:
    """Return what a request may cost in tokens before it is sent (prompt + output budget)."""
    prompt = sum(estimate_tokens(m.content) for m in request.messages)
    budget = request.options.get("max_tokens")
    return prompt + (budget if isinstance(budget, int) and budget > 0 else 256)


@dataclass(frozen=True, slots=True)
class Completion:
    """A model's answer."""

    text: str
    usage: Usage
    model: str
    provider: str
    latency_s: float = 0.0
    finish_reason: str = "stop"


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


class Provider(ABC):
    """Base class of the LLM providers."""

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

        Never retries: a 429 is reported to the limiter (which slows every
        caller of the model down) and raised for the engine to retry.
        """
        limiter = self._limiters.get(request.model) or self.limiter(request.model)
        ticket = await limiter.acquire(estimate_request_tokens(request)) if limiter else None
        self._calls += 1
        self._in_flight += 1
        try:
            completion = await self._complete(request)
        except BaseException as exc:
            self._failures += 1
            if limiter is not None and ticket is not None:
                limited = isinstance(exc, ProviderError) and exc.status == 429
                limiter.release(
                    ticket,
                    "rate_limited" if limited else "error",
                    retry_after_s=getattr(exc, "retry_after_s", None),
                )
            raise
        finally:
            self._in_flight -= 1
        if limiter is not None and ticket is not None:
            limiter.release(ticket, "ok", tokens_used=completion.usage.total_tokens)
        self._usage = self._usage + completion.usage
        return completion

    @abstractmethod
    async def _complete(self, request: Request) -> Completion:
        """Provider-specific call."""

    async def aclose(self) -> None:  # noqa: B027 - a no-op default for stateless providers
        """Release connections and other resources."""

    def statistics(self) -> ProviderStatistics:
        """Return call counters and total usage."""
        return ProviderStatistics(self._calls, self._failures, self._in_flight, self._usage)
