"""What calls cost: a price table in US dollars per million tokens, which users extend.

Prices are looked up by ``provider:model`` first, then by model name alone, then
by the longest known model-name prefix (so ``gpt-4o-mini-2024-07-18`` is priced
as ``gpt-4o-mini``). The simulator and local servers (``ollama``) cost nothing.
A model with no known price has cost ``None``, shown as unknown, never as 0.

The built-in table holds list prices for standard (non-batch, uncached) use
as published by the providers; they change, so pass your own with
``prices=`` (Python), a ``prices:`` section in the workflow file or
``--prices FILE`` (YAML or JSON: ``{model: {input: 0.15, output: 0.60}}``).
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
    """US dollars per million input and output tokens."""

    input: float
    output: float

    def cost(self, usage: Usage) -> float:
        return (usage.input_tokens * self.input + usage.output_tokens * self.output) / 1e6


FREE = Price(0.0, 0.0)

BUILTIN_PRICES: Mapping[str, Price] = MappingProxyType(
    {
        "gpt-4o": Price(2.50, 10.00),
        "gpt-4o-mini": Price(0.15, 0.60),
        "gpt-4.1": Price(2.00, 8.00),
        "gpt-4.1-mini": Price(0.40, 1.60),
        "gpt-4.1-nano": Price(0.10, 0.40),
        "o3-mini": Price(1.10, 4.40),
        "o4-mini": Price(1.10, 4.40),
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
        return None if price is None else price.cost(usage)


def prices_from_data(data: Any, where: str) -> dict[str, Price]:
    """Read ``{model: {input: x, output: y}}`` (dollars per million tokens)."""
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{where}: prices must map model names to {{input: ..., output: ...}} "
            "(US dollars per million tokens)."
        )
    prices: dict[str, Price] = {}
    for model, entry in data.items():
        if not isinstance(entry, Mapping) or set(entry) - {"input", "output"}:
            raise ConfigError(
                f"{where}: prices.{model} must be {{input: <$/Mtok>, output: <$/Mtok>}}."
            )
        try:
            price = Price(float(entry.get("input", 0)), float(entry.get("output", 0)))
        except (TypeError, ValueError):
            raise ConfigError(
                f"{where}: prices.{model}: input and output must be numbers."
            ) from None
        if price.input < 0 or price.output < 0:
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
