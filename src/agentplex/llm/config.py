"""Provider configuration: which endpoint, which key, which limits; and key redaction.

A model string ``name:model`` names a *provider configuration*. Four exist
out of the box (``sim``, ``openai``, ``anthropic``, ``ollama``); a workflow
file's ``providers:`` section, :func:`agentplex.run`'s ``providers=`` and the
CLI's ``--base-url``/``--api-key``/``--rpm``/``--tpm``/``--max-inflight`` add
to or override them. A configuration of another name must say its ``kind``,
so ``local:qwen2.5`` can point at a vLLM server while ``openai:gpt-4o`` goes
to OpenAI in the same workflow.

Keys come from an environment variable (``OPENAI_API_KEY``,
``ANTHROPIC_API_KEY`` or the configuration's ``api_key_env``) or are passed
in as :class:`Secret`. Every key agentplex sees is registered with
:func:`redact`, which every error message, event, log line and stored result
passes through, along with anything shaped like a provider key.
"""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from agentplex.exceptions import ConfigError
from agentplex.llm.limits import Limits

Kind = str
"""A provider kind: a built-in one (:data:`KINDS`) or one given to
:func:`agentplex.register_provider`."""
KINDS: tuple[Kind, ...] = ("sim", "openai", "anthropic", "ollama")


def known_kinds() -> tuple[str, ...]:
    """Return every provider kind a configuration may name: built-in and registered."""
    from agentplex.llm import provider_kinds  # the registry imports this module

    return provider_kinds()


_KEY_SHAPES = re.compile(
    r"(sk-ant-[A-Za-z0-9_\-]{8,}|sk-(?:proj-)?[A-Za-z0-9_\-]{16,}|"
    r"(?i:bearer)\s+[A-Za-z0-9._\-]{12,})"
)
_SECRETS: set[str] = set()
_MASK: list[re.Pattern[str] | None] = [None]
"""The pattern of every registered key, rebuilt when a key is registered."""
_WHOLE_WORD_BELOW = 8
"""Keys shorter than this are masked where they stand alone (not inside a longer
word), so a short local key such as ``k`` does not mask every letter k."""
_WORD = "A-Za-z0-9_\\-"


def _register(value: str) -> None:
    if value and value not in _SECRETS:
        _SECRETS.add(value)
        _MASK[0] = None


def _mask_pattern() -> re.Pattern[str]:
    pattern = _MASK[0]
    if pattern is None:
        parts = [
            re.escape(key)
            if len(key) >= _WHOLE_WORD_BELOW
            else f"(?<![{_WORD}]){re.escape(key)}(?![{_WORD}])"
            for key in sorted(_SECRETS, key=len, reverse=True)
        ]
        pattern = _MASK[0] = re.compile("|".join(parts))
    return pattern


def mask_secrets(text: str) -> str:
    """Return ``text`` with every key agentplex has seen replaced by ``***``.

    Unlike :func:`redact` this masks only real keys, not text shaped like one,
    so it is safe to apply to model and function outputs.
    """
    if not _SECRETS or not text:
        return text
    return _mask_pattern().sub("***", text)


def redact(text: str) -> str:
    """Return ``text`` with every known key and anything shaped like one masked."""
    return _KEY_SHAPES.sub("***", mask_secrets(text))


def redact_value(value: Any) -> Any:
    """Return ``value`` (an output) with every known key masked in its text.

    Strings and bytes are masked, and so are those inside lists, tuples (named
    ones too), sets, mappings (keys too) and dataclass instances; a container
    is copied only when something in it changed. Other objects are returned as
    they are (the store's codec refuses what it cannot read back as data).
    """
    if not _SECRETS:
        return value
    return _redact_value(value, 0)


def _mask_bytes(data: bytes) -> bytes:
    text = data.decode("utf-8", "surrogateescape")
    masked = mask_secrets(text)
    return data if masked == text else masked.encode("utf-8", "surrogateescape")


def _redact_value(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return mask_secrets(value)
    if isinstance(value, bytes | bytearray):
        masked = _mask_bytes(bytes(value))
        return value if masked == value else type(value)(masked)
    if depth > 100 or value is None or isinstance(value, int | float | bool):
        return value
    if isinstance(value, list | tuple | set | frozenset):
        items = [_redact_value(v, depth + 1) for v in value]
        if all(a is b for a, b in zip(items, value, strict=False)) and not isinstance(
            value, set | frozenset
        ):
            return value
        if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple
            return type(value)(*items)
        return items if isinstance(value, list) else type(value)(items)
    if isinstance(value, Mapping):
        pairs = [
            (_redact_value(k, depth + 1), _redact_value(v, depth + 1)) for k, v in value.items()
        ]
        if all(k is k0 and v is v0 for (k, v), (k0, v0) in zip(pairs, value.items(), strict=True)):
            return value
        return dict(pairs)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changed = {}
        for f in dataclasses.fields(value):
            old = getattr(value, f.name)
            new = _redact_value(old, depth + 1)
            if new is not old:
                changed[f.name] = new
        if not changed:
            return value
        copied = copy.copy(value)  # no __init__/__post_init__: fields are set as they are
        for name, new in changed.items():
            object.__setattr__(copied, name, new)
        return copied
    return value


class StreamMask:
    """Mask known keys in streamed text, even when a key arrives split over pieces.

    Text is passed on at once except for a tail as long as the longest key,
    which is held until more text shows it is not part of a key (or until
    :meth:`flush`).
    """

    __slots__ = ("_held", "_send")

    def __init__(self, send: Callable[[str], None]) -> None:
        self._send = send
        self._held = ""

    def __call__(self, piece: str) -> None:
        if not _SECRETS:
            self._send(piece)
            return
        text = self._held + piece
        cut = len(text) - max(len(k) for k in _SECRETS)
        if cut <= 0:
            self._held = text
            return
        for match in _mask_pattern().finditer(text):
            if match.start() < cut < match.end():
                cut = match.start()  # never split a key between what is sent and held
        self._held = text[cut:]
        if cut > 0:
            self._send(_mask_pattern().sub("***", text[:cut]))

    def flush(self) -> None:
        """Send what is held (masked)."""
        if self._held:
            text, self._held = self._held, ""
            self._send(mask_secrets(text))


def register_environment_keys(
    configs: Mapping[str, ProviderConfig], environ: Mapping[str, str] | None = None
) -> None:
    """Register for masking every key the environment holds for ``configs`` (and the
    standard variables), so an output that echoes one is masked even if this run
    never sent it."""
    env = os.environ if environ is None else environ
    names = {var for var, _ in _DEFAULT_ENV.values() if var}
    names.update(c.api_key_env for c in configs.values() if c.api_key_env)
    for name in names:
        if env.get(name):
            _register(env[name])
    for config in configs.values():
        if config.api_key is not None:
            _register(config.api_key.reveal())


class Secret:
    """A string that never shows itself in a repr, str, log or error.

    Every secret is registered for masking (see :func:`redact` and
    :func:`redact_value`) unless ``public`` (a placeholder such as the key a
    local server is given, which protects nothing).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str, *, public: bool = False) -> None:
        self._value = value
        if not public:
            _register(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


_DEFAULT_ENV: dict[str, tuple[str | None, str | None]] = {
    # kind: (key variable, base URL variable)
    "openai": ("OPENAI_API_KEY", "OPENAI_BASE_URL"),
    "anthropic": ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"),
    "ollama": (None, "OLLAMA_BASE_URL"),
    "sim": (None, None),
}
_DEFAULT_URL = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "ollama": "http://127.0.0.1:11434/v1",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderConfig:
    """One provider configuration, as written by the user (nothing resolved yet)."""

    kind: Kind
    base_url: str | None = None
    """Endpoint; None: the kind's environment variable, else its public default."""
    api_key: Secret | None = None
    api_key_env: str | None = None
    """Environment variable holding the key (default: the kind's standard one)."""
    timeout_s: float | None = None
    """Wall-clock deadline of one whole call (streaming included); None: the run's
    ``timeout_s``, else 600 s; ``math.inf`` (``.inf`` in a file): none."""
    limits: Limits = field(default_factory=Limits)
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """Provider-specific options: the simulator's ``scale``; the SDK providers'
    ``transport`` (``aiohttp``, the default when installed, or ``httpx``)."""

    def merged(self, **changes: Any) -> ProviderConfig:
        """Return a copy with the non-None ``changes`` applied (limits field by field)."""
        limits = {k: v for k, v in changes.pop("limits", {}).items() if v is not None}
        clean = {k: v for k, v in changes.items() if v is not None}
        if limits:
            clean["limits"] = replace(self.limits, **limits)
        return replace(self, **clean) if clean else self


BUILTIN_PROVIDERS: Mapping[str, ProviderConfig] = MappingProxyType(
    {kind: ProviderConfig(kind=kind) for kind in KINDS}
)


@dataclass(frozen=True, slots=True)
class ResolvedProvider:
    """A configuration with its URL and key looked up: what a provider is built from."""

    name: str
    kind: Kind
    base_url: str | None
    api_key: Secret | None
    timeout_s: float
    limits: Limits
    headers: Mapping[str, str]
    options: Mapping[str, Any]

    @property
    def identity(self) -> str:
        """Names the endpoint and account, for sharing clients and limiters (no key inside)."""
        import hashlib

        key = self.api_key.reveal() if self.api_key else ""
        account = hashlib.sha256(key.encode()).hexdigest()[:10] if key else "-"
        return f"{self.kind}|{self.base_url or ''}|{account}"


def is_local(url: str) -> bool:
    """Return whether ``url`` points at this machine."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve(
    name: str,
    config: ProviderConfig,
    *,
    default_timeout_s: float | None = None,
    environ: Mapping[str, str] | None = None,
) -> ResolvedProvider:
    """Look up ``config``'s URL and key; raise :class:`ConfigError` saying what to set."""
    env = os.environ if environ is None else environ
    kind = config.kind
    if kind not in KINDS:
        raise ConfigError(
            f"provider {name!r}: unknown kind {kind!r}; choose one of {', '.join(KINDS)}."
        )
    key_var, url_var = _DEFAULT_ENV[kind]
    base_url = config.base_url or (env.get(url_var) if url_var else None) or _DEFAULT_URL.get(kind)
    if kind == "ollama" and not config.base_url and env.get("OLLAMA_HOST"):
        base_url = env["OLLAMA_HOST"].rstrip("/") + "/v1"
    if base_url is not None:
        parts = urlsplit(base_url if "://" in base_url else "http://" + base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"provider {name!r}: base URL {base_url!r} is not an http(s) URL. "
                "Fix: e.g. --base-url http://127.0.0.1:8000/v1"
            )
        base_url = parts.geturl().rstrip("/")
    key = config.api_key
    var = config.api_key_env or key_var
    if key is None and var and env.get(var):
        key = Secret(env[var])
    if key is None and kind != "sim":
        if kind == "ollama" or (base_url is not None and is_local(base_url)):
            key = Secret("agentplex-local", public=True)  # local servers take any key
        else:
            raise ConfigError(
                f"provider {name!r} ({kind} at {base_url}) needs an API key. "
                f"Fix: export {var or 'the key variable'}=..., or pass --api-key, or set "
                f"api_key_env in the workflow's providers section."
            )
    if config.api_key_env and not env.get(config.api_key_env) and config.api_key is None:
        raise ConfigError(
            f"provider {name!r}: api_key_env names {config.api_key_env}, which is not set. "
            f"Fix: export {config.api_key_env}=..."
        )
    from agentplex.llm.base import DEFAULT_CALL_TIMEOUT_S  # the deadline of one whole call

    timeout = config.timeout_s or default_timeout_s or DEFAULT_CALL_TIMEOUT_S
    return ResolvedProvider(
        name, kind, base_url, key, timeout, config.limits, config.headers, config.options
    )


def provider_config_from_data(name: str, data: Mapping[str, Any], where: str) -> ProviderConfig:
    """Build a :class:`ProviderConfig` from a workflow file's ``providers:`` entry.

    Raises:
        ConfigError: naming ``where`` and the field, for unknown fields, a key
            written into the file, or a value of the wrong type.
    """
    known = {
        "kind",
        "base_url",
        "api_key_env",
        "timeout_s",
        "headers",
        "max_concurrency",
        "rpm",
        "tpm",
        "adaptive",
        "transport",
    }
    if "api_key" in data:
        raise ConfigError(
            f"{where}: providers.{name}.api_key: keys do not belong in workflow files. "
            f"Fix: write api_key_env: SOME_VARIABLE and export the key in that variable."
        )
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"{where}: providers.{name}: unknown field(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}."
        )
    kinds = known_kinds()
    kind = data.get("kind", name if name in kinds else None)
    if kind not in kinds:
        raise ConfigError(
            f"{where}: providers.{name}: kind must be one of {', '.join(kinds)}"
            f"{'' if 'kind' in data else ' (a provider with a new name must say its kind)'}."
        )
    limits = Limits(
        max_concurrency=data.get("max_concurrency"),
        rpm=data.get("rpm"),
        tpm=data.get("tpm"),
        adaptive=bool(data.get("adaptive", True)),
    ).check(f"{where}: providers.{name}")
    headers = data.get("headers") or {}
    if not isinstance(headers, Mapping):
        raise ConfigError(f"{where}: providers.{name}.headers must be a mapping.")
    timeout = data.get("timeout_s")
    if timeout is not None and not (isinstance(timeout, int | float) and timeout > 0):
        raise ConfigError(f"{where}: providers.{name}.timeout_s must be a number > 0.")
    transport = data.get("transport")
    if transport not in (None, "aiohttp", "httpx"):
        raise ConfigError(f"{where}: providers.{name}.transport must be aiohttp or httpx.")
    for field_name in ("base_url", "api_key_env"):
        if data.get(field_name) is not None and not isinstance(data[field_name], str):
            raise ConfigError(f"{where}: providers.{name}.{field_name} must be a string.")
    return ProviderConfig(
        kind=kind,
        base_url=data.get("base_url"),
        api_key_env=data.get("api_key_env"),
        timeout_s=timeout,
        limits=limits,
        headers=MappingProxyType({str(k): str(v) for k, v in headers.items()}),
        options=MappingProxyType({"transport": transport} if transport else {}),
    )
