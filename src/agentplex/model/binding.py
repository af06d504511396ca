"""How a function node's parameters are filled.

Parameters are matched by name, in this order: a dependency's output, the map
``item`` / ``index``, ``ctx`` (the node context), a workflow input. A
``**kwargs`` parameter receives every dependency output and input that no
other parameter took. If exactly
one required parameter and exactly one dependency are left unmatched, they are
paired, so ``def count(text): ...`` works whatever the dependency is called.
The plan is computed once, at compile time; applying it is a dict lookup per
parameter.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Source = Literal["dep", "input", "ctx", "item", "index", "all"]


@dataclass(frozen=True, slots=True)
class Binding:
    """Where each parameter of one function comes from."""

    params: tuple[tuple[str, Source, str], ...]
    """``(parameter, source kind, source name)``; ``all`` marks a ``**kwargs`` parameter."""
    unbound: tuple[str, ...] = ()
    """Required parameters nothing matched (an error at compile or run time)."""
    positional_only: tuple[str, ...] = ()
    """Parameters that must be passed by position, in order."""
    taken: frozenset[str] = frozenset()
    """Dependencies and inputs bound to named parameters (kept out of ``**kwargs``)."""

    takes_all: bool = False
    """Whether a ``**kwargs`` parameter receives every dependency output."""
    needs_ctx: bool = False
    """Whether the function takes the node context."""

    def input_names(self) -> list[str]:
        """Return the workflow inputs this function reads."""
        return [name for _p, kind, name in self.params if kind == "input"]

    def arguments(
        self,
        deps: Mapping[str, Any],
        inputs: Mapping[str, Any],
        extra: Mapping[str, Any],
    ) -> tuple[list[Any], dict[str, Any]]:
        """Return ``(args, kwargs)`` for one call.

        ``deps`` maps dependency ids to outputs; it may hold more than this
        node's dependencies unless :attr:`takes_all`.
        """
        kwargs: dict[str, Any] = {}
        taken = self.taken
        for param, kind, name in self.params:
            if kind == "dep":
                kwargs[param] = deps[name]
            elif kind == "input":
                if name in inputs:
                    kwargs[param] = inputs[name]
            elif kind == "all":
                for key, value in {**inputs, **deps}.items():
                    if key not in taken:
                        kwargs.setdefault(key, value)
            else:
                kwargs[param] = extra[kind]
        args = [kwargs.pop(p) for p in self.positional_only if p in kwargs]
        return args, kwargs


def plan_binding(
    fn: Callable[..., Any],
    deps: Sequence[str],
    *,
    inputs: Sequence[str] | None,
    extra: Sequence[Source] = (),
) -> Binding:
    """Plan how to call ``fn`` given dependency ids, known inputs and extra names.

    ``inputs=None`` means the workflow did not declare its inputs: any
    unmatched parameter is then assumed to be an input, checked at run time.
    """
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature: pass deps by name
        return Binding(params=tuple((d, "dep", d) for d in deps), taken=frozenset(deps))
    params: list[tuple[str, Source, str]] = []
    positional_only: list[str] = []
    unbound: list[str] = []
    free_deps = [d for d in deps if d not in signature.parameters]
    for param in signature.parameters.values():
        name = param.name
        if param.kind is param.VAR_POSITIONAL:
            continue
        if param.kind is param.VAR_KEYWORD:
            params.append((name, "all", ""))
            continue
        if param.kind is param.POSITIONAL_ONLY:
            positional_only.append(name)
        if name in deps:
            params.append((name, "dep", name))
        elif name in extra:
            params.append((name, name, name))  # type: ignore[arg-type]
        elif name == "ctx":
            params.append((name, "ctx", name))
        elif inputs is not None and name in inputs:
            params.append((name, "input", name))
        elif param.default is not param.empty:
            continue
        else:
            unbound.append(name)
    if "item" in extra and "item" not in {p for p, _k, _n in params} and unbound:
        # A map body's first free parameter takes the item whatever its name.
        first = unbound.pop(0)
        params.append((first, "item", "item"))
    if len(unbound) == 1 and len(free_deps) == 1:
        params.append((unbound.pop(), "dep", free_deps[0]))
    if inputs is None:
        params += [(name, "input", name) for name in unbound]
        unbound = []
    taken = frozenset(name for _p, kind, name in params if kind in ("dep", "input"))
    kinds = {kind for _p, kind, _n in params}
    return Binding(
        tuple(params),
        tuple(unbound),
        tuple(positional_only),
        taken,
        takes_all="all" in kinds,
        needs_ctx="ctx" in kinds,
    )
