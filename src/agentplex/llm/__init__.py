"""LLM providers behind one small contract; see :mod:`agentplex.llm.base`.

Providers are named by the first part of a model string (``sim:default``)
and imported only when a run uses them, so optional SDKs stay optional.
"""

from __future__ import annotations

import importlib
from typing import Any

from agentplex.llm.base import (
    Completion,
    Message,
    ModelRef,
    Provider,
    ProviderStatistics,
    Request,
    Usage,
    parse_model,
)

#: Provider name -> "module:class", imported on first use.
PROVIDERS: dict[str, str] = {
    "sim": "agentplex.llm.sim:SimProvider",
}

DEFAULT_MODEL = "sim:default"


def create_provider(name: str, **options: Any) -> Provider:
    """Instantiate the provider registered as ``name``."""
    module_name, _, class_name = PROVIDERS[name].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    provider: Provider = cls(**options)
    return provider


class ProviderPool:
    """One provider instance per provider name for a run, closed together."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._providers: dict[str, Provider] = {}

    def get(self, ref: ModelRef) -> Provider:
        """Return the (shared) provider for ``ref``, creating it on first use."""
        provider = self._providers.get(ref.provider)
        if provider is None:
            provider = create_provider(ref.provider, **self._options.get(ref.provider, {}))
            self._providers[ref.provider] = provider
        return provider

    async def aclose(self) -> None:
        """Close every provider this pool created."""
        for provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()


__all__ = [
    "DEFAULT_MODEL",
    "PROVIDERS",
    "Completion",
    "Message",
    "ModelRef",
    "Provider",
    "ProviderPool",
    "ProviderStatistics",
    "Request",
    "Usage",
    "create_provider",
    "parse_model",
]
