"""The run store: every run, every node result and the event stream, durably.

:class:`RunStore` is the small interface the runner writes to and the CLI
reads from; :class:`MemoryStore` keeps everything in dicts (tests, one-off
runs) and :class:`~agentplex.store.sqlite.SqliteStore` is the embedded
default, one SQLite file in WAL mode, by default ``.agentplex/runs.sqlite``
under the current directory (``AGENTPLEX_STORE`` or ``--store`` elsewhere).

Writes are queued and never block the event loop; :meth:`RunStore.sync`
returns once everything queued so far is durable. The runner awaits it when a
node succeeds, before any successor starts, so a crash can lose only work in
flight. A store holds no secrets: the run's settings are stored with keys
removed, and outputs pass through the same redaction as logs.

A store holds data only. Node outputs are written through :mod:`agentplex.store.codec`
(JSON with tagged types, never a pickle unless opted in), and every record read
back is checked field by field (:mod:`agentplex.store.checks`), so a damaged or
planted store file is a :class:`StoreError` naming the file and the fix, never
code execution and never a traceback.

Owns: the stored records and the RunStore interface (base), the store in dicts
(memory) and in SQLite (sqlite), the registry of store schemes (here:
register_store, open_store), the recorder that writes a run's events to a
store, the checks on every record read back, the codec for stored values,
content keys of nodes (keys) and the result cache (cache).

May import: agentplex.exceptions, agentplex.events, agentplex.result,
agentplex.model, agentplex.llm (the cache keys LLM requests).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from agentplex.exceptions import ConfigError, RunNotFoundError, StoreError, UnstorableOutputError
from agentplex.store.base import (
    SCHEMA_VERSION,
    RunRecord,
    RunStore,
    StoredNode,
    batch_items,
    busy,
    damaged,
    decoded_output,
    final_size,
    fresh_start,
    item_order,
    output_text,
    owner_alive,
    shown_status,
    this_owner,
)
from agentplex.store.memory import MemoryStore

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+")
"""A store scheme: two characters at least, so ``C:/runs`` stays a path."""


def default_store_path() -> Path:
    """``$AGENTPLEX_STORE``, else ``.agentplex/runs.sqlite`` in the current directory."""
    configured = os.environ.get("AGENTPLEX_STORE")
    if configured:
        path = Path(configured)
        return path / "runs.sqlite" if path.suffix == "" else path
    return Path(".agentplex") / "runs.sqlite"


StoreFactory = Callable[[str], RunStore]
"""``factory(where: str) -> RunStore``: ``where`` is the whole ``scheme://...`` string."""


def _sqlite(where: str) -> RunStore:
    from agentplex.store.sqlite import SqliteStore

    path = Path(where.removeprefix("sqlite://"))
    if path.suffix == "" or path.is_dir():
        path = path / "runs.sqlite"
    return SqliteStore(path)


def _memory(where: str) -> RunStore:
    return MemoryStore()


_STORES: dict[str, StoreFactory] = {"sqlite": _sqlite, "memory": _memory}


def register_store(scheme: str, factory: StoreFactory, *, replace: bool = False) -> None:
    """Make :func:`open_store` (and ``--store``) build ``scheme://...`` stores with ``factory``.

    ``factory(where)`` gets the whole string (``"mystore://bucket/runs"``) and
    returns a new :class:`RunStore`. Built in: ``sqlite://PATH`` (the same as a
    plain path) and ``memory://`` (a :class:`MemoryStore`).

    Raises:
        ConfigError: if ``scheme`` is not a plain name (letters, digits, ``+``,
            ``-``, ``.``; at least two characters, so it never reads as a
            drive letter), is taken (pass ``replace=True`` to replace it on
            purpose), or ``factory`` is not callable.
    """
    if not isinstance(scheme, str) or not _SCHEME.fullmatch(scheme):
        raise ConfigError(
            f"store scheme {scheme!r} cannot be registered. Fix: use a name such as "
            "'mystore' (a letter, then letters, digits, '+', '-' or '.'), written "
            "'mystore://...' where a store is named."
        )
    if not callable(factory):
        raise ConfigError(
            f"store scheme {scheme!r}: the factory {factory!r} is not callable. Fix: pass a "
            "function (or RunStore subclass) that takes the 'scheme://...' string."
        )
    if scheme in _STORES and not replace:
        raise ConfigError(
            f"store scheme {scheme!r} is registered already. Fix: choose another scheme, or "
            "pass replace=True to replace it."
        )
    _STORES[scheme] = factory


def store_schemes() -> tuple[str, ...]:
    """Return every registered store scheme, built-in ones first."""
    return tuple(_STORES)


def open_store(where: str | Path | RunStore | None = None) -> RunStore:
    """Return the store ``where`` names.

    ``where`` may be a store (returned as is), ``scheme://...`` (built by the
    factory registered for ``scheme``, see :func:`register_store`), or a path
    to a SQLite store (a folder gets ``runs.sqlite`` in it); None is
    :func:`default_store_path`.

    Raises:
        StoreError: if ``where`` is of another type, the scheme is not registered, the factory returns no
            store, or the file is not a usable store.
    """
    if isinstance(where, RunStore):
        return where
    if where is not None and not isinstance(where, str | Path):
        raise StoreError(
            f"a store is named by a path, a 'scheme://...' string or a RunStore, not "
            f"{type(where).__name__} {where!r}. Fix: pass e.g. '.agentplex/runs.sqlite'."
        )
    text = str(where) if where is not None else str(default_store_path())
    scheme, sep, _ = text.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme):
        return _sqlite(text)
    factory = _STORES.get(scheme)
    if factory is None:
        raise StoreError(
            f"no store is registered for {scheme}:// (in {text!r}); known schemes: "
            f"{', '.join(_STORES)}. Fix: register one with agentplex.register_store(), or "
            "name a SQLite file by its path."
        )
    store = factory(text)
    if not isinstance(store, RunStore):
        raise StoreError(
            f"the store factory for {scheme}:// returned {type(store).__name__}, not a "
            "RunStore. Fix: return an instance of an agentplex.RunStore subclass."
        )
    return store


__all__ = [
    "SCHEMA_VERSION",
    "MemoryStore",
    "RunNotFoundError",
    "RunRecord",
    "RunStore",
    "StoreError",
    "StoreFactory",
    "StoredNode",
    "UnstorableOutputError",
    "batch_items",
    "busy",
    "damaged",
    "decoded_output",
    "default_store_path",
    "final_size",
    "fresh_start",
    "item_order",
    "open_store",
    "output_text",
    "owner_alive",
    "register_store",
    "shown_status",
    "store_schemes",
    "this_owner",
]
