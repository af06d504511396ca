"""Executors: where function nodes run; see :mod:`agentplex.executors.base`.

Owns: the executor contract (base), and the inline, thread, process and Dask
executors.

May import: agentplex.exceptions.
"""

from __future__ import annotations

from agentplex.exceptions import ConfigError
from agentplex.executors.base import Executor, ExecutorStatistics
from agentplex.executors.dask import DaskExecutor
from agentplex.executors.inline import InlineExecutor
from agentplex.executors.pools import ProcessExecutor, ThreadExecutor

EXECUTORS: dict[str, type[Executor]] = {
    "inline": InlineExecutor,
    "thread": ThreadExecutor,
    "process": ProcessExecutor,
    "dask": DaskExecutor,
}


def create_executor(
    name: str, *, max_workers: int | None = None, dask: str | None = None
) -> Executor:
    """Return a new executor of the kind ``name`` (``dask``: the scheduler's address,
    for the Dask executor; None starts a local cluster).

    Raises:
        ConfigError: if ``name`` is not a known executor.
    """
    try:
        cls = EXECUTORS[name]
    except KeyError:
        raise ConfigError(
            f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}."
        ) from None
    if cls is DaskExecutor:
        return DaskExecutor(max_workers=max_workers, address=dask)
    return cls(max_workers=max_workers)


__all__ = [
    "EXECUTORS",
    "DaskExecutor",
    "Executor",
    "ExecutorStatistics",
    "InlineExecutor",
    "ProcessExecutor",
    "ThreadExecutor",
    "create_executor",
]
