"""The result cache: an LLM answer (or a function's result) is paid for once.

Keys are the full content of the call: for an LLM request the provider kind,
endpoint, model, messages and parameters (never the key); for a function the
callable's name and source and its arguments. Hits are free: they cost no
tokens and report none.

- LLM calls are cached unless the run says ``cache=False`` (``--no-cache``)
  or the node says ``cache: false`` (a node meant to vary). The simulator is
  never cached: its latency is what it is for.
- Function calls are cached only for nodes that say ``cache: true``: a
  function may have side effects (writing a file, posting to a board) that a
  cache hit would silently skip.

Entries live in one SQLite file (``.agentplex/cache.sqlite`` by default, or
``$AGENTPLEX_CACHE``; ``AGENTPLEX_CACHE=off`` turns the cache off for every
run), pruned when opened to ``max_age_days`` and
``max_mb`` (least recently used go first); ``agentplex cache clear`` empties it.

Values are :mod:`agentplex.store.codec` JSON, so reading the cache never runs code. A
value the codec cannot hold is simply not cached (with ``AGENTPLEX_STORE_PICKLE=1``
it is kept as a pickle, read back only by a process that opted in too). An
entry that does not decode (damaged, planted, or a pickle this process did not
opt in to) is a miss, and is deleted. A cache from before schema 2 (pickled
values) is discarded when opened and rebuilt as runs go: it only ever saved
calls, so starting empty costs money, never a wrong answer, and its pickles
are never read. Cache errors at run time (a full disk) are misses too: a
cache never fails a node.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from agentplex.exceptions import DecodeError, EncodeError, StoreError
from agentplex.store.codec import decode, encode

MAX_MB = 512.0
"""Default size limit; ``$AGENTPLEX_CACHE_MAX_MB`` overrides it."""
MAX_AGE_DAYS = 30.0
"""Default age limit; ``$AGENTPLEX_CACHE_MAX_AGE_DAYS`` overrides it."""

SCHEMA_VERSION = 2
"""2: values are codec JSON in ``entries``; 1 kept pickles in ``cache`` (discarded on open)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY, value TEXT NOT NULL, size INTEGER NOT NULL,
    created REAL NOT NULL, used REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_used ON entries (used);
"""
_SIZE = "CAST(size AS INTEGER)"
"""Sizes as numbers even in a tampered file."""


_OFF = ("off", "0", "false", "no", "none")


def cache_enabled() -> bool:
    """False when ``$AGENTPLEX_CACHE`` says ``off`` (every run behaves as ``--no-cache``)."""
    return os.environ.get("AGENTPLEX_CACHE", "").strip().lower() not in _OFF


def default_cache_path() -> Path:
    """``$AGENTPLEX_CACHE``, else ``cache.sqlite`` beside the run store."""
    configured = os.environ.get("AGENTPLEX_CACHE", "").strip()
    if configured and configured.lower() not in _OFF:
        return Path(configured)
    from agentplex.store import default_store_path

    return default_store_path().with_name("cache.sqlite")


def content_key(*parts: Any) -> str:
    """A key for the JSON-able ``parts`` (anything else by its repr)."""
    payload = json.dumps(parts, sort_keys=True, default=repr, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def _limit(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise StoreError(f"{name}={raw!r} is not a positive number. Fix: set it to e.g. {default}.")
    return value


class ResultCache:
    """See the module docstring.

    ``max_mb`` and ``max_age_days`` default to ``$AGENTPLEX_CACHE_MAX_MB`` and
    ``$AGENTPLEX_CACHE_MAX_AGE_DAYS``, else 512 MB and 30 days.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        max_mb: float | None = None,
        max_age_days: float | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self.max_mb = max_mb if max_mb is not None else _limit("AGENTPLEX_CACHE_MAX_MB", MAX_MB)
        self.max_age_days = (
            max_age_days
            if max_age_days is not None
            else _limit("AGENTPLEX_CACHE_MAX_AGE_DAYS", MAX_AGE_DAYS)
        )
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=5.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            # A cache may lose its last entries to a power cut; it must not fsync per answer.
            self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                self._open()
                self.prune()
            except BaseException:
                self._db.close()
                raise
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(
                f"the result cache {self.path} cannot be used ({exc}). "
                "Fix: remove the file, or run with --no-cache."
            ) from None
        self.hits = 0
        self.misses = 0

    def _open(self) -> None:
        """Create the tables, or check them; a schema-1 cache (pickles) is discarded."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")  # two processes may open a new file at once
        try:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            version = None
            if "meta" in tables:
                row = db.execute("SELECT value FROM meta WHERE key='cache_schema'").fetchone()
                version = row[0] if row is not None else None
                if version is None:
                    raise StoreError(
                        f"{self.path} is an SQLite file but not an agentplex result cache "
                        "(a run store?). Fix: point AGENTPLEX_CACHE at another file, or run "
                        "with --no-cache."
                    )
            elif tables - {"cache"} or ("cache" in tables and not self._is_schema_1()):
                raise StoreError(
                    f"{self.path} is an SQLite file but not an agentplex result cache. Fix: "
                    "point AGENTPLEX_CACHE at another file, or run with --no-cache."
                )
            if version is not None and (
                not str(version).isdigit() or int(version) > SCHEMA_VERSION
            ):
                raise StoreError(
                    f"the result cache {self.path} was written by a newer agentplex (schema "
                    f"{version!r}; this one reads {SCHEMA_VERSION}). Fix: upgrade agentplex, "
                    "point AGENTPLEX_CACHE at another file, or run with --no-cache."
                )
            db.execute("DROP TABLE IF EXISTS cache")  # schema 1: pickled values, never read
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('cache_schema', ?)", (str(SCHEMA_VERSION),)
            )
            db.commit()
        except BaseException:
            db.rollback()
            raise
        if "cache" in tables:
            with contextlib.suppress(sqlite3.Error):
                db.execute("VACUUM")  # give the discarded pickles' space back

    def _is_schema_1(self) -> bool:
        """Whether the ``cache`` table is agentplex's own from schema 1 (safe to discard)."""
        columns = [row[1] for row in self._db.execute("PRAGMA table_info(cache)")]
        return columns == ["key", "value", "size", "created", "used"]

    def get(self, key: str) -> tuple[bool, Any]:
        """Return ``(True, value)`` on a hit, ``(False, None)`` on a miss.

        An entry that does not decode is a miss, and is deleted; so is a read
        the database refuses (the cache never fails the call it was to save).
        """
        try:
            with self._lock:
                row = self._db.execute("SELECT value FROM entries WHERE key=?", (key,)).fetchone()
                if row is not None:
                    self._db.execute("UPDATE entries SET used=? WHERE key=?", (time.time(), key))
                    self._db.commit()
            value = decode(row[0], what="a cached value") if row is not None else None
        except DecodeError:
            self._drop(key)
            row = None
        except sqlite3.Error:
            row = None
        if row is None:
            self.misses += 1
            return False, None
        self.hits += 1
        return True, value

    def _drop(self, key: str) -> None:
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._db.execute("DELETE FROM entries WHERE key=?", (key,))
            self._db.commit()

    def put(self, key: str, value: Any) -> None:
        """Keep ``value`` under ``key``; a value the codec cannot hold is not cached."""
        try:
            text = encode(value, what="a cached value")
        except EncodeError:
            return
        now = time.time()
        with self._lock:
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO entries VALUES (?,?,?,?,?)",
                    (key, text, len(text), now, now),
                )
                self._db.commit()
            except sqlite3.Error:  # a full disk: the answer is not cached, the call stands
                with contextlib.suppress(sqlite3.Error):
                    self._db.rollback()

    async def aget(self, key: str) -> tuple[bool, Any]:
        return await asyncio.to_thread(self.get, key)

    async def aput(self, key: str, value: Any) -> None:
        await asyncio.to_thread(self.put, key, value)

    def prune(self, *, max_mb: float | None = None, max_age_days: float | None = None) -> int:
        """Drop entries older than ``max_age_days``, then the least recently used over ``max_mb``.

        Returns how many entries were dropped. The limits default to the cache's own.
        """
        max_mb = self.max_mb if max_mb is None else max_mb
        max_age_days = self.max_age_days if max_age_days is None else max_age_days
        with self._lock:
            before = self._db.total_changes
            self._db.execute(
                "DELETE FROM entries WHERE created < ?", (time.time() - max_age_days * 86400,)
            )
            budget = int(max_mb * 1024 * 1024)
            total = self._db.execute(f"SELECT COALESCE(SUM({_SIZE}), 0) FROM entries").fetchone()[0]
            if total > budget:
                for key, size in self._db.execute(
                    f"SELECT key, {_SIZE} FROM entries ORDER BY used"
                ).fetchall():
                    if total <= budget:
                        break
                    self._db.execute("DELETE FROM entries WHERE key=?", (key,))
                    total -= size
            self._db.commit()
            return self._db.total_changes - before

    def clear(self) -> int:
        with self._lock:
            count = self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
            self._db.execute("DELETE FROM entries")
            self._db.commit()
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("VACUUM")
            return int(count)

    def info(self) -> dict[str, Any]:
        with self._lock:
            count, size = self._db.execute(
                f"SELECT COUNT(*), COALESCE(SUM({_SIZE}), 0) FROM entries"
            ).fetchone()
        return {
            "path": str(self.path),
            "enabled": cache_enabled(),
            "entries": count,
            "bytes": size,
            "max_mb": self.max_mb,
            "max_age_days": self.max_age_days,
        }

    def close(self) -> None:
        with self._lock:
            self._db.close()
