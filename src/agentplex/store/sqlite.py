"""The SQLite run store: one file, WAL mode, one writer thread with group commit.

Every write goes onto a queue; a single writer thread takes everything
queued, writes it in one transaction and commits, then wakes whoever awaited
:meth:`SqliteStore.sync`. Many nodes finishing at once therefore cost one
commit, and the event loop never waits on the disk. ``synchronous=NORMAL``
with WAL keeps commits durable across a process crash (the case resume is
for); a power cut may lose the last commits, never corrupt the file.

Reads open their own short-lived connection, so ``agentplex runs`` works
while a run is writing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import pickle
import queue
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agentplex.store import (
    SCHEMA_VERSION,
    RunRecord,
    RunStore,
    StoredNode,
    StoreError,
    busy,
    final_size,
    item_order,
    owner_alive,
    this_owner,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, workflow TEXT NOT NULL, status TEXT NOT NULL,
    created REAL NOT NULL, updated REAL NOT NULL, source TEXT, inputs TEXT NOT NULL,
    settings TEXT NOT NULL, total_nodes INTEGER NOT NULL, cost_usd REAL,
    batch_id TEXT, item_key TEXT, owner TEXT, summary TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS runs_created ON runs (created);
CREATE INDEX IF NOT EXISTS runs_batch ON runs (batch_id);
CREATE TABLE IF NOT EXISTS nodes (
    run_id TEXT NOT NULL, node_id TEXT NOT NULL, key TEXT NOT NULL, status TEXT NOT NULL,
    output TEXT, blob BLOB, record TEXT NOT NULL, PRIMARY KEY (run_id, node_id)
);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, t REAL NOT NULL, kind TEXT NOT NULL,
    node_id TEXT, data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_run ON events (run_id, seq);
"""

_Op = tuple[str, Any, Any]


def _connect(path: Path, *, timeout: float = 5.0) -> sqlite3.Connection:
    connection = sqlite3.connect(
        path, timeout=timeout, isolation_level=None, check_same_thread=False
    )
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
    return connection


def _explain(path: Path, exc: sqlite3.Error) -> StoreError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return StoreError(
            f"the run store {path} is locked by another process ({text}). "
            "Fix: wait for it, or pass --store to use another file."
        )
    return StoreError(
        f"{path} is not a usable agentplex run store ({text}). "
        "Fix: move the file away (it will be recreated), or pass --store PATH."
    )


class _Wake:
    """A waiter for the next commit; the first of a commit's waiters settles them all."""

    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
        self.loop = loop
        self.future = future

    def __call__(self, wakes: list[_Wake]) -> None:
        def settle() -> None:
            for wake in wakes:
                if not wake.future.done():
                    wake.future.set_result(None)

        self.loop.call_soon_threadsafe(settle)


class SqliteStore(RunStore):
    """See the module docstring."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            connection = _connect(self.path)
            with connection:
                version = self._schema(connection)
            connection.close()
        except sqlite3.Error as exc:
            raise _explain(self.path, exc) from None
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the run store {self.path} was written by a newer agentplex (schema {version}; "
                f"this one reads up to {SCHEMA_VERSION}). Fix: upgrade agentplex, or pass "
                "--store to use another file."
            )
        self._queue: queue.SimpleQueue[_Op] = queue.SimpleQueue()
        self._failure: StoreError | None = None
        self._writer: threading.Thread | None = None
        self._lock = threading.Lock()

    @staticmethod
    def _schema(connection: sqlite3.Connection) -> int:
        connection.executescript(SCHEMA)  # idempotent; two processes may open a new file at once
        connection.execute(
            "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )
        row = connection.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return int(row[0])

    # -- the writer thread -------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_loop, name="agentplex-store", daemon=True
                )
                self._writer.start()

    def _put(self, op: _Op) -> None:
        if self._failure is not None:
            raise self._failure
        self._start()
        self._queue.put(op)

    def _write_loop(self) -> None:
        connection = _connect(self.path)
        stop = False
        while not stop:
            ops = [self._queue.get()]
            while True:
                try:
                    ops.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            # One statement per kind of row per commit: every sqlite call hands the GIL
            # back and forth with the event loop's thread, so fewer calls is less waiting.
            nodes: list[tuple[Any, ...]] = []
            events: list[tuple[Any, ...]] = []
            runs: list[tuple[str, Any]] = []
            wakes: list[_Wake] = []
            for kind, first, second in ops:
                if kind == "node":
                    nodes.append(self._node_row(first, second))
                elif kind == "events":
                    events.extend((first, *row) for row in second)
                elif kind == "one":
                    runs.append((first, second))
                elif kind == "wake":
                    wakes.append(first)
                elif kind == "stop":
                    stop = True
            try:
                connection.execute("BEGIN")
                if nodes:
                    connection.executemany(
                        "INSERT OR REPLACE INTO nodes VALUES (?,?,?,?,?,?,?)", nodes
                    )
                if events:
                    connection.executemany("INSERT INTO events VALUES (?,?,?,?,?,?)", events)
                for sql, params in runs:
                    connection.execute(sql, params)
                connection.execute("COMMIT")
            except sqlite3.Error as exc:
                self._failure = _explain(self.path, exc)
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
            by_loop: dict[int, list[_Wake]] = {}
            for wake in wakes:
                by_loop.setdefault(id(wake.loop), []).append(wake)
            for group in by_loop.values():
                group[0](group)  # one hop to each event loop per commit, not one per waiter
        connection.close()

    async def sync(self) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._put(("wake", _Wake(loop, done), None))
        await done
        if self._failure is not None:
            raise self._failure

    def close(self) -> None:
        if self._writer is not None:
            self._queue.put(("stop", None, None))
            self._writer.join()
            self._writer = None

    # -- writes --------------------------------------------------------------

    _BEGIN = (
        "INSERT INTO runs VALUES (?,?,'running',?,?,?,?,?,?,NULL,?,?,?,'{}') "
        "ON CONFLICT (run_id) DO UPDATE SET workflow=excluded.workflow, status='running', "
        "updated=excluded.updated, source=excluded.source, inputs=excluded.inputs, "
        "settings=excluded.settings, total_nodes=excluded.total_nodes, cost_usd=NULL, "
        "batch_id=excluded.batch_id, item_key=excluded.item_key, owner=excluded.owner, "
        "summary='{}'"
    )
    """Insert a run, or re-open it keeping its ``created`` time."""

    def begin_run(self, record: RunRecord, *, claim: bool = True) -> None:
        params = (
            record.run_id,
            record.workflow,
            record.created,
            time.time(),
            record.source,
            json.dumps(dict(record.inputs), default=repr),
            json.dumps(dict(record.settings), default=repr),
            record.total_nodes,
            record.batch_id,
            record.item_key,
            this_owner(),
        )
        if not claim:
            self._put(("one", self._BEGIN, params))
            return
        try:
            connection = _connect(self.path)
            try:
                connection.execute("BEGIN IMMEDIATE")
                row = connection.execute(
                    "SELECT status, owner FROM runs WHERE run_id=?", (record.run_id,)
                ).fetchone()
                if row is not None and row[0] == "running" and owner_alive(row[1]):
                    connection.execute("ROLLBACK")
                    raise busy(record.run_id, row[1])
                connection.execute(self._BEGIN, params)
                connection.execute("COMMIT")
            finally:
                connection.close()
        except sqlite3.Error as exc:
            raise _explain(self.path, exc) from None

    def put_node(self, run_id: str, node: StoredNode) -> None:
        # Encoded by the writer thread (see _node_row), off the event loop.
        self._put(("node", run_id, node))

    @staticmethod
    def _node_row(run_id: str, node: StoredNode) -> tuple[Any, ...]:
        output = node.output
        blob = None
        if output is not None and not isinstance(output, str):
            try:
                blob = pickle.dumps(output, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:
                blob = None
        text = json.dumps(node.record.get("output"), ensure_ascii=False, default=repr)
        record = {k: v for k, v in node.record.items() if k != "output"}
        return (run_id, node.node_id, node.key, node.status, text, blob, json.dumps(record))

    def put_events(self, run_id: str, rows: list[tuple[int, float, str, str | None, str]]) -> None:
        self._put(("events", run_id, rows))

    def end_run(self, run_id: str, status: str, summary: Mapping[str, Any]) -> None:
        self._put(
            (
                "one",
                "UPDATE runs SET status=?, updated=?, summary=?, cost_usd=?, owner=NULL, "
                "total_nodes=COALESCE(?, total_nodes) WHERE run_id=?",
                (
                    status,
                    time.time(),
                    json.dumps(dict(summary)),
                    summary.get("cost_usd"),
                    final_size(summary),
                    run_id,
                ),
            )
        )

    # -- reads ---------------------------------------------------------------

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            connection = _connect(self.path)
            try:
                return connection.execute(sql, params).fetchall()
            finally:
                connection.close()
        except sqlite3.Error as exc:
            raise _explain(self.path, exc) from None

    _RUN_COLUMNS = (
        "r.run_id, r.workflow, r.status, r.created, r.updated, r.source, r.inputs, r.settings, "
        "r.total_nodes, (SELECT COUNT(*) FROM nodes n WHERE n.run_id=r.run_id "
        "AND n.status='succeeded') + (SELECT COUNT(*) FROM runs i WHERE i.batch_id=r.run_id "
        "AND i.status='succeeded'), r.cost_usd, r.batch_id, r.item_key, r.owner, r.summary"
    )

    @staticmethod
    def _run(row: tuple[Any, ...]) -> RunRecord:
        return RunRecord(
            run_id=row[0],
            workflow=row[1],
            status=row[2],
            created=row[3],
            updated=row[4],
            source=row[5],
            inputs=json.loads(row[6]),
            settings=json.loads(row[7]),
            total_nodes=row[8],
            done_nodes=row[9],
            cost_usd=row[10],
            batch_id=row[11],
            item_key=row[12],
            owner=row[13],
            summary=json.loads(row[14]),
        )

    def get_run(self, run_id: str) -> RunRecord:
        rows = self._read(f"SELECT {self._RUN_COLUMNS} FROM runs r WHERE r.run_id=?", (run_id,))
        if not rows:
            raise self.not_found(run_id)
        return self._run(rows[0])

    def list_runs(self, limit: int = 20) -> list[RunRecord]:
        rows = self._read(
            f"SELECT {self._RUN_COLUMNS} FROM runs r WHERE r.batch_id IS NULL "
            "ORDER BY r.created DESC LIMIT ?",
            (limit,),
        )
        return [self._run(row) for row in rows]

    def get_items(self, batch_id: str) -> list[RunRecord]:
        self.get_run(batch_id)
        rows = self._read(f"SELECT {self._RUN_COLUMNS} FROM runs r WHERE r.batch_id=?", (batch_id,))
        return sorted((self._run(row) for row in rows), key=item_order)

    def get_nodes(self, run_id: str) -> dict[str, StoredNode]:
        self.get_run(run_id)
        rows = self._read(
            "SELECT node_id, key, status, output, blob, record FROM nodes WHERE run_id=?",
            (run_id,),
        )
        nodes = {}
        for node_id, key, status, text, blob, record in rows:
            output = pickle.loads(blob) if blob is not None else json.loads(text)
            data = json.loads(record)
            data["output"] = output
            nodes[node_id] = StoredNode(node_id, key, status, output, data)
        return nodes

    def get_events(self, run_id: str) -> list[dict[str, Any]]:
        self.get_run(run_id)
        rows = self._read(
            "SELECT seq, t, kind, node_id, data FROM events WHERE run_id=? ORDER BY rowid",
            (run_id,),
        )
        return [
            {"seq": s, "t": t, "kind": k, "node_id": n, "data": json.loads(d)}
            for s, t, k, n, d in rows
        ]
