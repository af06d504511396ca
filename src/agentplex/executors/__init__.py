"""Executors: where function nodes run; see :mod:`agentplex.executors.base`.

Every executor, built-in or not, is found through one registry of factories:
:func:`register_executor` adds one (``agentplex.register_executor``), and
:func:`create_executor` builds one by name. A factory is called as
``factory(max_workers=..., address=...)``; an :class:`Executor` subclass whose
``__init__`` takes those keywords is its own factory.

Owns: the executor contract (base), the registry of executors, and the inline,
thread, process and Dask executors.

May import: agentplex.exceptions.
"""

from __future__ import annotations

from collections.abc import Callable

from agentplex.exceptions import ConfigError
from agentplex.executors.base import Executor, ExecutorStatistics
from agentplex.executors.dask import DaskExecutor
from agentplex.executors.inline import InlineExecutor
from agentplex.executors.pools import ProcessExecutor, ThreadExecutor

ExecutorFactory = Callable[..., Executor]
"""``factory(*, max_workers: int | None, address: str | None) -> Executor``."""

_EXECUTORS: dict[str, ExecutorFactory] = {
    "inline": InlineExecutor,
    "thread": ThreadExecutor,
    "process": ProcessExecutor,
    "dask": DaskExecutor,
}
BUILTIN_EXECUTORS = tuple(_EXECUTORS)
"""The executors agentplex ships; the names ``auto`` resolves to."""


def register_executor(name: str, factory: ExecutorFactory, *, replace: bool = False) -> None:
    """Make ``executor=name`` run function nodes on executors ``factory`` builds.

    ``factory(max_workers=..., address=...)`` returns a new
    :class:`~agentplex.executors.base.Executor` (a subclass that takes those
    keywords is its own factory); each run builds one on first use and closes
    it at the end.

    Raises:
        ConfigError: if ``name`` is not a plain name, is ``auto``, is taken
            (pass ``replace=True`` to replace it on purpose), or ``factory`` is
            not callable.
    """
    if not isinstance(name, str) or not name.isidentifier() or name == "auto":
        raise ConfigError(
            f"executor name {name!r} cannot be registered. Fix: use a plain name such as "
            "'gpu' (letters, digits and _; not 'auto', which picks a built-in)."
        )
    if not callable(factory):
        raise ConfigError(
            f"executor {name!r}: the factory {factory!r} is not callable. Fix: pass the "
            "Executor subclass itself, or a function that returns a new executor."
        )
    if name in _EXECUTORS and not replace:
        raise ConfigError(
            f"executor {name!r} is registered already. Fix: choose another name, or pass "
            "replace=True to replace it."
        )
    _EXECUTORS[name] = factory


def executor_names() -> tuple[str, ...]:
    """Return the names of every registered executor, built-in ones first."""
    return tuple(_EXECUTORS)


def create_executor(
    name: str, *, max_workers: int | None = None, dask: str | None = None
) -> Executor:
    """Return a new executor of the kind ``name``.

    ``dask`` is the run's Dask scheduler address, passed to every factory as
    ``address`` (the Dask executor's; None starts a local cluster).

    Raises:
        ConfigError: if ``name`` is not a registered executor, or its factory
            does not return an :class:`Executor`.
    """
    try:
        factory = _EXECUTORS[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown executor {name!r}; choose one of {', '.join(_EXECUTORS)}. Fix: use one "
            "of those, or register yours first with agentplex.register_executor()."
        ) from None
    executor = factory(max_workers=max_workers, address=dask)
    if not isinstance(executor, Executor):
        raise ConfigError(
            f"executor {name!r}: its factory returned {type(executor).__name__}, not an "
            "Executor. Fix: return an instance of an agentplex.Executor subclass."
        )
    return executor


__all__ = [
    "BUILTIN_EXECUTORS",
    "DaskExecutor",
    "Executor",
    "ExecutorFactory",
    "ExecutorStatistics",
    "InlineExecutor",
    "ProcessExecutor",
    "ThreadExecutor",
    "create_executor",
    "executor_names",
    "register_executor",
]
