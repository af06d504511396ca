"""LLM providers behind one small contract; see :mod:`agentplex.llm.base`.

A model string ``name:model`` names a provider configuration (see
:mod:`agentplex.llm.config`); its ``kind`` picks the implementation, which
is imported only when a run uses it, so the SDKs stay optional.

Owns: the provider contract (base), provider configurations and secrets
(config), limits, errors and pricing, and the OpenAI-compatible and Anthropic
providers.

May import: agentplex.exceptions, agentplex.result.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from agentplex.exceptions import ConfigError
from agentplex.llm.base import (
    DEFAULT_CALL_TIMEOUT_S,
    Completion,
    Message,
    ModelRef,
    Provider,
    ProviderStatistics,
    Request,
    parse_model,
)
from agentplex.llm.config import (
    BUILTIN_PROVIDERS,
    ProviderConfig,
    ResolvedProvider,
    Secret,
    redact,
    resolve,
)
from agentplex.llm.limits import Limits
from agentplex.result import Usage

#: Provider kind -> "module:class", imported on first use.
PROVIDERS: dict[str, str] = {
    "sim": "agentplex.sim.provider:SimProvider",
    "openai": "agentplex.llm.openai_provider:OpenAIProvider",
    "ollama": "agentplex.llm.openai_provider:OllamaProvider",
    "anthropic": "agentplex.llm.anthropic_provider:AnthropicProvider",
}

DEFAULT_MODEL = "sim:default"


def create_provider(resolved: ResolvedProvider, *, max_connections: int = 16) -> Provider:
    """Instantiate the provider of ``resolved``'s kind."""
    module_name, _, class_name = PROVIDERS[resolved.kind].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    provider: Provider
    if resolved.kind == "sim":
        limits = resolved.limits
        limited = limits.max_concurrency or limits.rpm or limits.tpm
        provider = cls(
            scale=resolved.options.get("scale"),
            limits=limits if limited else None,
            limit_key=f"sim|{resolved.name}",
        )
        provider.label = resolved.name
        provider.set_call_timeout(resolved.timeout_s)
    else:
        provider = cls(resolved, max_connections=max_connections)
    return provider


class ProviderPool:
    """The providers of one run: resolved up front, created on first use, closed together."""

    def __init__(
        self,
        configs: Mapping[str, ProviderConfig] | None = None,
        *,
        max_connections: int = 16,
        default_timeout_s: float | None = None,
    ) -> None:
        self.configs: dict[str, ProviderConfig] = {**BUILTIN_PROVIDERS, **(configs or {})}
        self.max_connections = max_connections
        self.default_timeout_s = default_timeout_s
        self._resolved: dict[str, ResolvedProvider] = {}
        self._providers: dict[str, Provider] = {}

    def parse(self, spec: str) -> ModelRef:
        """Parse a model string against the configured provider names."""
        return parse_model(spec, self.configs)

    def resolve(self, name: str) -> ResolvedProvider:
        """Look up a configuration's URL and key (ConfigError saying what to set)."""
        resolved = self._resolved.get(name)
        if resolved is None:
            resolved = self._resolved[name] = resolve(
                name, self.configs[name], default_timeout_s=self.default_timeout_s
            )
        return resolved

    def get(self, ref: ModelRef) -> Provider:
        """Return the (shared) provider for ``ref``, creating it on first use."""
        provider = self._providers.get(ref.provider)
        if provider is None:
            provider = create_provider(
                self.resolve(ref.provider), max_connections=self.max_connections
            )
            self._providers[ref.provider] = provider
        return provider

    async def preflight(self, names: Iterable[str], *, timeout_s: float = 5.0) -> None:
        """Check, before anything runs, that each named provider can be used.

        Resolves URL and key, imports the SDK, and opens (and closes) one TCP
        connection to each distinct endpoint.

        Raises:
            ConfigError: naming the provider and what to set.
            MissingExtraError: if the provider's SDK is not installed.
        """
        endpoints: dict[tuple[str, int], tuple[str, str]] = {}
        for name in sorted(set(names)):
            resolved = self.resolve(name)
            if resolved.kind == "sim" or resolved.base_url is None:
                continue
            self.get(ModelRef(name, "-"))  # imports the SDK: a missing extra fails here
            parts = urlsplit(resolved.base_url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            endpoints.setdefault((parts.hostname or "", port), (name, resolved.base_url))
        await asyncio.gather(*(_reach(h, p, *who, timeout_s) for (h, p), who in endpoints.items()))

    async def aclose(self) -> None:
        """Close every provider this pool created."""
        for provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()


async def _reach(host: str, port: int, name: str, url: str, timeout_s: float) -> None:
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (OSError, TimeoutError) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ConfigError(
            f"provider {name!r}: cannot reach {url} ({reason}). Fix: start the server, or "
            "correct the base URL (--base-url, the provider's base_url, or its *_BASE_URL "
            "variable)."
        ) from None
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


__all__ = [
    "DEFAULT_CALL_TIMEOUT_S",
    "DEFAULT_MODEL",
    "PROVIDERS",
    "Completion",
    "Limits",
    "Message",
    "ModelRef",
    "Provider",
    "ProviderConfig",
    "ProviderPool",
    "ProviderStatistics",
    "Request",
    "Secret",
    "Usage",
    "create_provider",
    "parse_model",
    "redact",
]
