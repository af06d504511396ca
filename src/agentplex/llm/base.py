"""The provider contract: one request in, one completion out.

A provider is a small object with ``async complete(request)``, ``aclose()``
and ``statistics()``. Providers do not retry: the runner owns the one retry
loop, so every failure is seen by it. A failure that may go away when tried
again raises :class:`~agentplex.exceptions.ProviderError` with
``retryable=True``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Literal

from agentplex.exceptions import ConfigError

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

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens
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


def parse_model(spec: str) -> ModelRef:
    """Parse ``provider:model`` (the model part may itself contain ``:``, as in Ollama tags).

    Raises:
        ConfigError: if the string is not of that form or names an unknown provider.
    """
    from agentplex.llm import PROVIDERS

    provider, sep, model = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    if not sep or not provider or not model:
        raise ConfigError(
            f"model {spec!r} is not of the form 'provider:model'. "
            "Fix: write e.g. 'sim:default' (the built-in simulator)."
        )
    if provider not in PROVIDERS:
        raise ConfigError(
            f"unknown provider {provider!r} in model {spec!r}; known providers: "
            f"{', '.join(sorted(PROVIDERS))}. Fix: use e.g. 'sim:default'."
        )
    return ModelRef(provider, model)


class Provider(ABC):
    """Base class of the LLM providers."""

    name: ClassVar[str]

    def __init__(self) -> None:
        self._calls = 0
        self._failures = 0
        self._in_flight = 0
        self._usage = Usage()

    async def complete(self, request: Request) -> Completion:
        """Run one completion; raise ProviderError on failure. Never retries."""
        self._calls += 1
        self._in_flight += 1
        try:
            completion = await self._complete(request)
        except BaseException:
            self._failures += 1
            raise
        finally:
            self._in_flight -= 1
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
