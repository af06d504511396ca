"""The SQLite run store: one file, WAL mode, one writer thread with group commit.

Every write goes onto a queue; a single writer thread takes everything
queued, writes it in one transaction and commits, then wakes whoever awaited
:meth:`SqliteStore.sync`. Many nodes finishing at once therefore cost one
commit, and the event loop never waits on the disk. ``synchronous=NORMAL``
with WAL keeps commits durable across a process crash (the case resume is
for); a power cut may lose the last commits, never corrupt the file.

Reads open their own short-lived connection, so ``agentplex runs`` works
while a run is writing. Every row read back is checked before it is used
(:mod:`agentplex.store.checks`): a damaged or planted file is one
:class:`~agentplex.exceptions.StoreError`, naming the file and how to start fresh.

Schema 2 keeps node outputs as :mod:`agentplex.store.codec` JSON. A schema-1 file
(outputs as pickles) is refused with the one-line way to start fresh: its
pickles are never read. If the disk fills up, the writer stops: what was
committed stays, and every later :meth:`SqliteStore.sync` raises the error.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agentplex.exceptions import StoreError
from agentplex.store import (
    SCHEMA_VERSION,
    RunRecord,
    RunStore,
    StoredNode,
    busy,
    checks,
    damaged,
    decoded_output,
    final_size,
    fresh_start,
    item_order,
    output_text,
    owner_alive,
    this_owner,
)
from agentplex.store.codec import encode

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
    output TEXT NOT NULL, record TEXT NOT NULL, PRIMARY KEY (run_id, node_id)
);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, t REAL NOT NULL, kind TEXT NOT NULL,
    node_id TEXT, data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_run ON events (run_id, seq);
"""

_Op = tuple[str, Any, Any]

# Columns named: a file with extra columns (planted, or from a later agentplex) gets no
# value in the wrong column.
_PUT_NODES = (
    "INSERT OR REPLACE INTO nodes (run_id, node_id, key, status, output, record) "
    "VALUES (?,?,?,?,?,?)"
)
_PUT_EVENTS = "INSERT INTO events (run_id, seq, t, kind, node_id, data) VALUES (?,?,?,?,?,?)"


def _connect(path: Path, *, timeout: float = 5.0) -> sqlite3.Connection:
    connection = sqlite3.connect(
        path, timeout=timeout, isolation_level=None, check_same_thread=False
    )
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
    return connection


def _is_full(exc: BaseException) -> bool:
    return (
        getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
        or getattr(exc, "errno", None) == errno.ENOSPC
        or "database or disk is full" in str(exc)
    )


def _explain(path: Path, exc: BaseException) -> StoreError:
    text = str(exc)
    if _is_full(exc):
        return StoreError(
            f"the disk holding the run store {path} is full ({text}): recording stopped, and "
            "what was committed before is kept. Fix: free some space (or pass --store PATH on "
            "another disk), then 'agentplex resume' the run to go on from there."
        )
    if "locked" in text or "busy" in text:
        return StoreError(
            f"the run store {path} is locked by another process ({text}). "
            "Fix: wait for it, or pass --store to use another file."
        )
    return StoreError(
        f"{path} is not a usable agentplex run store ({text}). "
        f"Fix: move the file aside to start a fresh store: {fresh_start(str(path))} "
        "(or pass --store PATH)."
    )


def _settle(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():  # a waiter cancelled meanwhile
            future.set_result(None)


def _rows_sql(count: int) -> str:
    return _PUT_NODES + ",(?,?,?,?,?,?)" * (count - 1)


_CHUNKS = (64, 32, 16, 8, 4, 2, 1)
"""Rows per node insert: one statement for up to 64 rows, so few distinct statements."""
_ROWS_SQL = {count: _rows_sql(count) for count in _CHUNKS}


class SqliteStore(RunStore):
    """See the module docstring."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = _connect(self.path)
            try:
                version = self._schema(connection)
            finally:
                connection.close()
        except sqlite3.Error as exc:
            raise _explain(self.path, exc) from None
        except OSError as exc:
            raise StoreError(
                f"the run store {self.path} cannot be opened ({exc}). "
                "Fix: pass --store PATH to a folder you can write."
            ) from None
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the run store {self.path} was written by a newer agentplex (schema {version}; "
                f"this one reads up to {SCHEMA_VERSION}). Fix: upgrade agentplex, or pass "
                "--store to use another file."
            )
        if version < SCHEMA_VERSION:
            raise StoreError(
                f"the run store {self.path} is from an older agentplex (schema {version}, which "
                "kept node outputs as pickles; they are never read now, since reading a pickle "
                f"can run code). Fix: move it aside to start a fresh store: "
                f"{fresh_start(self.location)}"
            )
        self._queue: queue.SimpleQueue[_Op] = queue.SimpleQueue()
        self._failure: StoreError | None = None
        self._writer: threading.Thread | None = None
        self._lock = threading.Lock()
        self._waiting: list[asyncio.Future[None]] = []
        """Futures of :meth:`sync` callers, settled by the next commit (taken under the lock
        together with the queue's contents, so each waits for everything queued before it)."""

    def _schema(self, connection: sqlite3.Connection) -> int:
        """The file's schema version; an empty file becomes a new store first."""
        version = self._version(connection)
        if version is None:
            connection.execute("BEGIN IMMEDIATE")  # two processes may create one file at once
            try:
                version = self._version(connection)
                if version is None:
                    for statement in SCHEMA.split(";"):
                        if statement.strip():
                            connection.execute(statement)
                    connection.execute(
                        "INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                    )
                    version = SCHEMA_VERSION
                connection.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
                raise
        return version

    def _version(self, connection: sqlite3.Connection) -> int | None:
        """The stored schema version; None for an empty file.

        Raises:
            StoreError: if the file holds tables but is not an agentplex store.
        """
        tables = {
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if not tables:
            return None
        row = None
        if "meta" in tables:
            row = connection.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            raise StoreError(
                f"{self.path} is an SQLite file, but not an agentplex run store (no schema "
                f"version). Fix: pass --store PATH for the store, or move the file aside: "
                f"{fresh_start(self.location)}"
            )
        if type(row[0]) is not str or not row[0].isdigit():
            raise damaged(self.location, "meta", f"schema version {row[0]!r} is not a number")
        return int(row[0])

    # -- the writer thread -------------------------------------------------------

    def _start(self) -> None:
        if self._writer is not None:  # the common case, without the lock
            return
        with self._lock:
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_loop, name="agentplex-store", daemon=True
                )
                self._writer.start()

    def _put(self, op: _Op) -> None:
        if self._failure is not None:
            return  # recording stopped; sync() and close() report why
        self._start()
        self._queue.put(op)

    def _write_loop(self) -> None:
        try:
            connection = _connect(self.path)
        except sqlite3.Error as exc:
            self._failure = _explain(self.path, exc)
            connection = None
        stop = False
        while not stop:
            ops = [self._queue.get()]
            # Drained and the waiters taken in one step: a waiter that sync() adds
            # after this waits for the next commit, and everything it queued before
            # adding itself is in this one.
            with self._lock:
                while True:
                    try:
                        ops.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                waiting, self._waiting = self._waiting, []
            stop = any(op[0] == "stop" for op in ops)
            if self._failure is None and connection is not None:
                self._commit(connection, ops)
            by_loop: dict[int, list[asyncio.Future[None]]] = {}
            for future in waiting:
                by_loop.setdefault(id(future.get_loop()), []).append(future)
            for futures in by_loop.values():  # one hop to each event loop per commit
                futures[0].get_loop().call_soon_threadsafe(_settle, futures)
        if connection is not None:
            connection.close()

    def _commit(self, connection: sqlite3.Connection, ops: list[_Op]) -> None:
        """Write ``ops`` in one transaction; on failure, stop recording (nothing half-written)."""
        # One statement per kind of row per commit: every sqlite call hands the GIL
        # back and forth with the event loop's thread, so fewer calls is less waiting.
        nodes: list[tuple[Any, ...]] = []
        events: list[tuple[Any, ...]] = []
        runs: list[tuple[str, Any]] = []
        completed: list[tuple[float, str]] = []
        try:
            for kind, first, second in ops:
                if kind == "node":
                    node, text, completes = second
                    nodes.extend(self._node_row(first, node, text))
                    if completes:
                        completed.append((time.time(), first))
                elif kind == "events":
                    events.extend((first, *row) for row in second)
                elif kind == "one":
                    runs.append((first, second))
            if not (nodes or events or runs):
                return  # only waiters (or the stop): nothing to commit
            connection.execute("BEGIN")
            self._put_nodes(connection, nodes)
            if events:
                connection.executemany(_PUT_EVENTS, events)
            for sql, params in runs:
                connection.execute(sql, params)
            if completed:  # in the same commit as the run's last node: never one without the other
                connection.executemany(
                    "UPDATE runs SET status='succeeded', updated=? "
                    "WHERE run_id=? AND status='running'",
                    completed,
                )
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            self._failure = _explain(self.path, exc)
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
        except Exception as exc:  # a value SQLite cannot bind (text that is not UTF-8...)
            self._failure = StoreError(
                f"the run store {self.path} cannot record a value ({type(exc).__name__}: "
                f"{exc}): recording stopped, and what was committed before is kept. "
                "Fix: report this as a bug in agentplex; run with --no-store meanwhile."
            )
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")

    @staticmethod
    def _put_nodes(connection: sqlite3.Connection, values: list[Any]) -> None:
        """Insert node rows (``values`` flat, six per row) in statements of up to 64 rows.

        One statement per row (``executemany``) hands the GIL to the event loop's
        thread and back for every row; a multi-row statement does it once per 64.
        """
        rows, start = len(values) // 6, 0
        for count in _CHUNKS:
            sql = _ROWS_SQL[count]
            while rows >= count:
                end = start + 6 * count
                connection.execute(sql, values[start:end])
                start, rows = end, rows - count

    async def sync(self) -> None:
        """Return once everything queued so far is committed.

        Raises:
            StoreError: if a commit failed (a full disk...); nothing is recorded after it.
        """
        if self._failure is not None:
            raise self._failure
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._lock:
            first = not self._waiting
            self._waiting.append(done)
        if first:  # the writer may be asleep on an empty queue: one marker per commit wakes it
            self._start()
            self._queue.put(("wake", None, None))
        await done
        if self._failure is not None:
            raise self._failure

    @property
    def failure(self) -> StoreError | None:
        """Why recording stopped, or None."""
        return self._failure

    def close(self) -> None:
        if self._writer is not None:
            self._queue.put(("stop", None, None))
            self._writer.join()
            self._writer = None

    # -- writes --------------------------------------------------------------

    _BEGIN = (
        "INSERT INTO runs (run_id, workflow, status, created, updated, source, inputs, "
        "settings, total_nodes, cost_usd, batch_id, item_key, owner, summary) "
        "VALUES (?,?,'running',?,?,?,?,?,?,NULL,?,?,?,'{}') "
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
                # The writer holds the run until end_run, also once its last node
                # marked it succeeded.
                if row is not None and owner_alive(row[1]):
                    connection.execute("ROLLBACK")
                    raise busy(record.run_id, row[1])
                connection.execute(self._BEGIN, params)
                connection.execute("COMMIT")
            finally:
                connection.close()
        except sqlite3.Error as exc:
            raise _explain(self.path, exc) from None

    def put_node(self, run_id: str, node: StoredNode, *, completes: bool = False) -> None:
        # An output that may not encode is encoded here, so an unstorable one fails its
        # node at once. Text and None always encode: the writer thread does those, and
        # every record (see _node_row), off the event loop.
        output = node.output
        text = None if output is None or type(output) is str else output_text(run_id, node)
        self._put(("node", run_id, (node, text, completes)))

    @staticmethod
    def _node_row(run_id: str, node: StoredNode, text: str | None) -> tuple[Any, ...]:
        if text is None:
            text = encode(node.output)
        record = node.record
        if "output" in record:  # a record written elsewhere (a shard's); the recorder's has none
            record = {k: v for k, v in record.items() if k != "output"}
        return (run_id, node.node_id, node.key, node.status, text, json.dumps(record))

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

    def _object(self, text: Any, subject: str, name: str) -> dict[str, Any]:
        """A JSON object column, or a StoreError naming the run and the column."""
        try:
            value = json.loads(text) if isinstance(text, str) else None
        except (ValueError, RecursionError) as exc:
            raise damaged(self.location, subject, f"column {name!r} is not JSON ({exc})") from None
        if type(value) is not dict:
            raise damaged(self.location, subject, f"column {name!r} is not a JSON object")
        return value

    def _run(self, row: tuple[Any, ...]) -> RunRecord:
        """A run row as a record, every field checked (the file may be damaged or planted)."""
        subject = f"run {row[0]!r}"
        columns = dict(zip(checks.RUN_COLUMNS, row, strict=True))
        problem = checks.problem_in(columns, checks.RUN_ROW)
        if problem is not None:
            raise damaged(self.location, subject, problem.replace("field", "column", 1))
        inputs = self._object(row[6], subject, "inputs")
        settings = self._object(row[7], subject, "settings")
        summary = self._object(row[14], subject, "summary")
        problem = checks.settings_problem(settings) or checks.summary_problem(summary)
        if problem is None and settings.get("kind") == "batch":
            problem = checks.batch_inputs_problem(inputs)
        if problem is not None:
            raise damaged(self.location, subject, problem)
        return RunRecord(
            run_id=row[0],
            workflow=row[1],
            status=row[2],
            created=row[3],
            updated=row[4],
            source=row[5],
            inputs=inputs,
            settings=settings,
            total_nodes=row[8],
            done_nodes=row[9],
            cost_usd=row[10],
            batch_id=row[11],
            item_key=row[12],
            owner=row[13],
            summary=summary,
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
            "SELECT node_id, key, status, output, record FROM nodes WHERE run_id=?", (run_id,)
        )
        nodes = {}
        for node_id, key, status, text, record in rows:
            subject = f"run {run_id!r}, node {node_id!r}"
            problem = checks.problem_in(
                {"node_id": node_id, "key": key, "status": status}, checks.NODE_ROW
            )
            if problem is not None:
                raise damaged(self.location, subject, problem.replace("field", "column", 1))
            data = self._object(record, subject, "record")
            problem = checks.node_problem(data)
            if problem is not None:
                raise damaged(self.location, subject, problem)
            output = decoded_output(self.location, run_id, node_id, text)
            data["output"] = output
            nodes[node_id] = StoredNode(node_id, key, status, output, data)
        return nodes

    def get_events(self, run_id: str) -> list[dict[str, Any]]:
        self.get_run(run_id)
        rows = self._read(
            "SELECT seq, t, kind, node_id, data FROM events WHERE run_id=? ORDER BY rowid",
            (run_id,),
        )
        events = []
        for seq, t, kind, node_id, data in rows:
            subject = f"run {run_id!r}, event {seq!r}"
            problem = checks.problem_in(
                {"seq": seq, "t": t, "kind": kind, "node_id": node_id}, checks.EVENT_ROW
            )
            if problem is not None:
                raise damaged(self.location, subject, problem.replace("field", "column", 1))
            values = self._object(data, subject, "data")
            events.append({"seq": seq, "t": t, "kind": kind, "node_id": node_id, "data": values})
        return events
