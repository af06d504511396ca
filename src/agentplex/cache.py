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
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import pickle
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from agentplex.store import StoreError

MAX_MB = 512.0
"""Default size limit; ``$AGENTPLEX_CACHE_MAX_MB`` overrides it."""
MAX_AGE_DAYS = 30.0
"""Default age limit; ``$AGENTPLEX_CACHE_MAX_AGE_DAYS`` overrides it."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY, value BLOB NOT NULL, size INTEGER NOT NULL,
    created REAL NOT NULL, used REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS cache_used ON cache (used);
"""


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
            self._db.executescript(_SCHEMA)
            self.prune()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(
                f"the result cache {self.path} cannot be used ({exc}). "
                "Fix: remove the file, or run with --no-cache."
            ) from None
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> tuple[bool, Any]:
        """Return ``(True, value)`` on a hit, ``(False, None)`` on a miss."""
        with self._lock:
            row = self._db.execute("SELECT value FROM cache WHERE key=?", (key,)).fetchone()
            if row is not None:
                self._db.execute("UPDATE cache SET used=? WHERE key=?", (time.time(), key))
                self._db.commit()
        if row is None:
            self.misses += 1
            return False, None
        self.hits += 1
        return True, pickle.loads(row[0])

    def put(self, key: str, value: Any) -> None:
        try:
            blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            return
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO cache VALUES (?,?,?,?,?)", (key, blob, len(blob), now, now)
            )
            self._db.commit()

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
                "DELETE FROM cache WHERE created < ?", (time.time() - max_age_days * 86400,)
            )
            budget = int(max_mb * 1024 * 1024)
            total = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM cache").fetchone()[0]
            if total > budget:
                for key, size in self._db.execute(
                    "SELECT key, size FROM cache ORDER BY used"
                ).fetchall():
                    if total <= budget:
                        break
                    self._db.execute("DELETE FROM cache WHERE key=?", (key,))
                    total -= size
            self._db.commit()
            return self._db.total_changes - before

    def clear(self) -> int:
        with self._lock:
            count = self._db.execute("SELECT COUNT(*) FROM cache").fetchone()[0]
            self._db.execute("DELETE FROM cache")
            self._db.commit()
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("VACUUM")
            return int(count)

    def info(self) -> dict[str, Any]:
        with self._lock:
            count, size = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM cache"
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
