"""LLM providers behind one small contract; see :mod:`agentplex.llm.base`.

A model string ``name:model`` names a provider configuration (see
:mod:`agentplex.llm.config`); its ``kind`` picks the implementation from one
registry of factories (:func:`register_provider`, ``agentplex.register_provider``),
where the built-in kinds are ``module:attr`` strings imported only when a run
uses them, so the SDKs stay optional and the simulator stays out of llm/.

Owns: the provider contract (base), the registry of provider kinds, provider
configurations and secrets (config), limits, errors and pricing, and the
OpenAI-compatible and Anthropic providers.

May import: agentplex.exceptions, agentplex.result.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
from collections.abc import Callable, Iterable, Mapping
from typing import NoReturn, cast
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
    is_local,
    redact,
    resolve,
)
from agentplex.llm.limits import Limits
from agentplex.result import Usage

ProviderFactory = Callable[..., Provider]
"""``factory(resolved: ResolvedProvider, *, max_connections: int) -> Provider``."""


def _simulator(resolved: ResolvedProvider, *, max_connections: int = 16) -> Provider:
    """Build the simulator (imported by name: nothing in llm/ imports agentplex.sim)."""
    module = importlib.import_module("agentplex.sim.provider")
    provider: Provider = module.SimProvider(scale=resolved.options.get("scale"))
    return provider


_PROVIDERS: dict[str, ProviderFactory | str] = {
    # "module:attr" entries are imported on first use, so an SDK loads only when a
    # run uses it; the simulator's factory imports it by name for the same reason.
    "sim": _simulator,
    "openai": "agentplex.llm.openai_provider:OpenAIProvider",
    "ollama": "agentplex.llm.openai_provider:OllamaProvider",
    "anthropic": "agentplex.llm.anthropic_provider:AnthropicProvider",
}
_BUILTIN_KINDS = frozenset(_PROVIDERS)

DEFAULT_MODEL = "sim:default"


def register_provider(kind: str, factory: ProviderFactory | str, *, replace: bool = False) -> None:
    """Make ``model="kind:some-model"`` call providers that ``factory`` builds.

    ``factory(resolved, max_connections=n)`` returns a new
    :class:`~agentplex.llm.base.Provider` for one provider configuration (see
    :class:`Provider` for what ``resolved`` holds); a subclass whose
    ``__init__`` takes those arguments is its own factory. A ``"module:attr"``
    string is imported on first use. The kind also becomes a provider
    configuration of the same name, so ``kind:model`` works without one;
    ``ProviderConfig(kind=kind, ...)`` under another name adds more.

    Raises:
        ConfigError: if ``kind`` is not a plain name, is taken (pass
            ``replace=True`` to replace it on purpose), or ``factory`` is
            neither callable nor a ``"module:attr"`` string.
    """
    if not isinstance(kind, str) or not kind.replace("-", "_").isidentifier():
        raise ConfigError(
            f"provider kind {kind!r} cannot be registered. Fix: use a plain name such as "
            "'mykind' (letters, digits, _ and -), the part before ':' in model strings."
        )
    if not (callable(factory) or (isinstance(factory, str) and ":" in factory)):
        raise ConfigError(
            f"provider kind {kind!r}: the factory {factory!r} is neither callable nor a "
            "'module:attr' string. Fix: pass the Provider subclass, a function returning a "
            "provider, or 'package.module:name'."
        )
    if kind in _PROVIDERS and not replace:
        raise ConfigError(
            f"provider kind {kind!r} is registered already. Fix: choose another kind, or pass "
            "replace=True to replace it."
        )
    _PROVIDERS[kind] = factory


def provider_kinds() -> tuple[str, ...]:
    """Return every registered provider kind, built-in ones first."""
    return tuple(_PROVIDERS)


def _factory(kind: str) -> ProviderFactory:
    try:
        entry = _PROVIDERS[kind]
    except KeyError:
        raise ConfigError(
            f"unknown provider kind {kind!r}; known kinds: {', '.join(_PROVIDERS)}. Fix: use "
            "one of those, or register yours first with agentplex.register_provider()."
        ) from None
    if isinstance(entry, str):
        module_name, _, attr = entry.partition(":")
        entry = cast("ProviderFactory", getattr(importlib.import_module(module_name), attr))
    return entry


def _limited(limits: Limits) -> bool:
    return bool(limits.max_concurrency or limits.rpm or limits.tpm)


def create_provider(resolved: ResolvedProvider, *, max_connections: int = 16) -> Provider:
    """Build the provider of ``resolved``'s kind through the registry.

    Every provider, built-in or registered, is then named after its
    configuration, gets the configuration's call deadline, and is paced by its
    limits unless it chose limits itself.

    Raises:
        ConfigError: if the kind is not registered, or its factory returns
            something that is not a Provider.
    """
    provider = _factory(resolved.kind)(resolved, max_connections=max_connections)
    if not isinstance(provider, Provider):
        raise ConfigError(
            f"provider {resolved.name!r}: the factory of kind {resolved.kind!r} returned "
            f"{type(provider).__name__}, not a Provider. Fix: return an instance of an "
            "agentplex.Provider subclass."
        )
    provider.label = resolved.name
    provider.set_call_timeout(resolved.timeout_s)
    if provider.limits is None and _limited(resolved.limits):
        provider.use_limits(resolved.limits, f"{resolved.kind}|{resolved.name}")
    return provider


def registered_configs() -> dict[str, ProviderConfig]:
    """Return a configuration named after each registered kind that is not built in."""
    return {kind: ProviderConfig(kind=kind) for kind in _PROVIDERS if kind not in _BUILTIN_KINDS}


def _resolve_registered(
    name: str, config: ProviderConfig, default_timeout_s: float | None
) -> ResolvedProvider:
    """Resolve a configuration of a registered kind: what it says, no built-in defaults.

    A registered kind has no default URL or key variable; the key comes from
    ``api_key`` or the variable ``api_key_env`` names.

    Raises:
        ConfigError: if ``api_key_env`` names a variable that is not set.
    """
    key = config.api_key
    if key is None and config.api_key_env:
        value = os.environ.get(config.api_key_env)
        if not value:
            raise ConfigError(
                f"provider {name!r}: api_key_env names {config.api_key_env}, which is not set. "
                f"Fix: export {config.api_key_env}=..."
            )
        key = Secret(value)
    timeout = config.timeout_s or default_timeout_s or DEFAULT_CALL_TIMEOUT_S
    return ResolvedProvider(
        name,
        config.kind,
        config.base_url,
        key,
        timeout,
        config.limits,
        config.headers,
        config.options,
    )


class ProviderPool:
    """The providers of one run: resolved up front, created on first use, closed together."""

    def __init__(
        self,
        configs: Mapping[str, ProviderConfig] | None = None,
        *,
        max_connections: int = 16,
        default_timeout_s: float | None = None,
    ) -> None:
        self.configs: dict[str, ProviderConfig] = {
            **BUILTIN_PROVIDERS,
            **registered_configs(),
            **(configs or {}),
        }
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
            config = self.configs[name]
            if config.kind in _BUILTIN_KINDS or config.kind not in _PROVIDERS:
                resolved = resolve(name, config, default_timeout_s=self.default_timeout_s)
            else:
                resolved = _resolve_registered(name, config, self.default_timeout_s)
            self._resolved[name] = resolved
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
            if resolved.kind not in _BUILTIN_KINDS:
                self.get(ModelRef(name, "-"))  # a registered provider is built (and checked)
                continue
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


LOCAL_START_S = 5.0
"""How long a refused connection to this machine is retried before the run fails: a
server started just before (``agentplex sim-server &``, ``llama-server ... &``) may
still be binding its port."""


async def _reach(host: str, port: int, name: str, url: str, timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    give_up = loop.time() + (LOCAL_START_S if is_local(url) else 0.0)
    while True:
        try:
            _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
            break
        except ConnectionRefusedError:
            if loop.time() >= give_up:
                _unreachable(name, url, "connection refused")
            await asyncio.sleep(0.1)
        except (OSError, TimeoutError) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
            _unreachable(name, url, reason)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


def _unreachable(name: str, url: str, reason: str) -> NoReturn:
    raise ConfigError(
        f"provider {name!r}: cannot reach {url} ({reason}). Fix: start the server, or "
        "correct the base URL (--base-url, the provider's base_url, or its *_BASE_URL "
        "variable)."
    ) from None


__all__ = [
    "DEFAULT_CALL_TIMEOUT_S",
    "DEFAULT_MODEL",
    "Completion",
    "Limits",
    "Message",
    "ModelRef",
    "Provider",
    "ProviderConfig",
    "ProviderFactory",
    "ProviderPool",
    "ProviderStatistics",
    "Request",
    "Secret",
    "Usage",
    "create_provider",
    "parse_model",
    "provider_kinds",
    "redact",
    "register_provider",
]
