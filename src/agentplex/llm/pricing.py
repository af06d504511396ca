"""What calls cost: a price table in US dollars per million tokens, which users extend.

Prices are looked up by ``provider:model`` first, then by model name alone, then
by the longest known model-name prefix (so ``gpt-4o-mini-2024-07-18`` is priced
as ``gpt-4o-mini``). The simulator and local servers (``ollama``) cost nothing.
A model with no known price has cost ``None``, shown as unknown, never as 0.

The built-in table holds list prices for standard (non-batch) use as
published by the providers; they change, so pass your own with ``prices=``
(Python), a ``prices:`` section in the workflow file or ``--prices FILE``
(YAML or JSON: ``{model: {input: 0.15, output: 0.60}}``, optionally with
``cache_read`` and ``cache_write``).

Prompt tokens read from a provider's prompt cache, and those written to it,
are priced apart (see :class:`~agentplex.result.Usage`): at the model's
``cache_read`` / ``cache_write`` price when it has one, else as its provider
prices them by default: Anthropic reads at 0.1 x and writes (five-minute
entries) at 1.25 x the input price, OpenAI reads at 0.5 x (its cheapest
published ratio for older models; newer ones list their own) and has no
write surcharge.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from agentplex.exceptions import ConfigError
from agentplex.result import Usage


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per million input and output tokens, and per million cached prompt
    tokens read and written (None: the provider's usual ratio to ``input``)."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None

    def cost(self, usage: Usage, kind: str = "openai") -> float:
        """What ``usage`` cost on a provider of ``kind`` (``openai``, ``anthropic``...)."""
        read_ratio, write_ratio = _CACHE_RATIOS.get(kind, (1.0, 1.0))
        read = self.cache_read if self.cache_read is not None else self.input * read_ratio
        write = self.cache_write if self.cache_write is not None else self.input * write_ratio
        fresh = max(0, usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens)
        return (
            fresh * self.input
            + usage.cache_read_tokens * read
            + usage.cache_write_tokens * write
            + usage.output_tokens * self.output
        ) / 1e6


_CACHE_RATIOS: Mapping[str, tuple[float, float]] = MappingProxyType(
    {"openai": (0.5, 1.0), "anthropic": (0.1, 1.25)}
)
"""(read, write) price of a cached prompt token over a fresh one, by provider kind,
for models whose price has no cache_read / cache_write."""

FREE = Price(0.0, 0.0)

BUILTIN_PRICES: Mapping[str, Price] = MappingProxyType(
    {
        "gpt-4o": Price(2.50, 10.00, cache_read=1.25),
        "gpt-4o-mini": Price(0.15, 0.60, cache_read=0.075),
        "gpt-4.1": Price(2.00, 8.00, cache_read=0.50),
        "gpt-4.1-mini": Price(0.40, 1.60, cache_read=0.10),
        "gpt-4.1-nano": Price(0.10, 0.40, cache_read=0.025),
        "o3-mini": Price(1.10, 4.40, cache_read=0.55),
        "o4-mini": Price(1.10, 4.40, cache_read=0.275),
        "claude-3-5-haiku": Price(0.80, 4.00),
        "claude-3-5-sonnet": Price(3.00, 15.00),
        "claude-3-7-sonnet": Price(3.00, 15.00),
        "claude-sonnet-4": Price(3.00, 15.00),
        "claude-opus-4": Price(15.00, 75.00),
        "claude-3-haiku": Price(0.25, 1.25),
    }
)

_FREE_KINDS = ("sim", "ollama")


class PriceTable:
    """Built-in prices plus the user's own (which win)."""

    def __init__(self, extra: Mapping[str, Price] | None = None) -> None:
        self._prices = {**BUILTIN_PRICES, **(extra or {})}
        self._by_length = sorted(self._prices, key=len, reverse=True)

    def price(self, provider_kind: str, provider: str, model: str) -> Price | None:
        """Return the price of ``model`` on ``provider`` (of ``provider_kind``), or None."""
        prices = self._prices
        found = prices.get(f"{provider}:{model}") or prices.get(model)
        if found is not None:
            return found
        if provider_kind in _FREE_KINDS:
            return FREE
        for name in self._by_length:
            if ":" not in name and model.startswith(name):
                return prices[name]
        return None

    def cost(self, provider_kind: str, provider: str, model: str, usage: Usage) -> float | None:
        price = self.price(provider_kind, provider, model)
        return None if price is None else price.cost(usage, provider_kind)


_CACHE_KEYS = ("cache_read", "cache_write")
_PRICE_KEYS = frozenset({"input", "output", *_CACHE_KEYS})


def prices_from_data(data: Any, where: str) -> dict[str, Price]:
    """Read ``{model: {input: x, output: y}}`` (dollars per million tokens)."""
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{where}: prices must map model names to {{input: ..., output: ...}} "
            "(US dollars per million tokens)."
        )
    prices: dict[str, Price] = {}
    for model, entry in data.items():
        if not isinstance(entry, Mapping) or set(entry) - _PRICE_KEYS:
            raise ConfigError(
                f"{where}: prices.{model} must be {{input: <$/Mtok>, output: <$/Mtok>}}, "
                "optionally with cache_read and cache_write."
            )
        try:
            price = Price(
                float(entry.get("input", 0)),
                float(entry.get("output", 0)),
                *(None if entry.get(k) is None else float(entry[k]) for k in _CACHE_KEYS),
            )
        except (TypeError, ValueError):
            raise ConfigError(
                f"{where}: prices.{model}: input, output, cache_read and cache_write must "
                "be numbers."
            ) from None
        if min(price.input, price.output, price.cache_read or 0, price.cache_write or 0) < 0:
            raise ConfigError(f"{where}: prices.{model}: prices cannot be negative.")
        prices[str(model)] = price
    return prices


def load_prices(path: str | Path) -> dict[str, Price]:
    """Read a YAML or JSON price file."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read prices file {path}: {exc.strerror or exc}.") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML/JSON: {exc}") from None
    return prices_from_data(data, str(path))
