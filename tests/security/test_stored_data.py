"""Stored data is data: a planted or damaged store or cache file never runs code.

The store and cache files here are real SQLite files written by real runs; the
attacks are written into them with ``sqlite3``, as someone handing over a
``.agentplex/`` folder would. The commands are the real CLI, run in process.
A planted pickle's ``__reduce__`` would create a marker file: the marker must
never appear, and each command prints one clear line and exits 2 (the cache
instead drops the entry and the run goes on).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import math
import os
import pickle
import sqlite3
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import agentplex as ap
from agentplex.exceptions import DecodeError, EncodeError, StoreError
from agentplex.store.codec import canonical, decode, encode
from agentplex.store.sqlite import SqliteStore
from tests.cli import Done, cli

if TYPE_CHECKING:
    from agentplex.sim.server import SimServer

PIPELINE = (
    "name: pipe\ninputs: {topic: null}\nnodes:\n"
    "  research: {role: researcher, task: 'Research {topic}'}\n"
    "  write: {role: writer, task: 'Write on {topic}', depends_on: [research]}\n"
)


class Planted:
    """Unpickling this opens (creates) the marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


def payload(marker: Path) -> bytes:
    return pickle.dumps(Planted(marker))


def pickle_tag(data: bytes) -> str:
    return json.dumps({"$t": "pickle", "v": base64.b64encode(data).decode()})


def one_clear_line(done: Done) -> str:
    """Assert the command failed as promised: exit 2, one line on stderr, no traceback."""
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    line = done.stderr.strip()
    assert line, done.stderr
    assert "\n" not in line, done.stderr
    return line


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "AGENTPLEX_STORE": str(tmp_path / "store" / "runs.sqlite"),
        "AGENTPLEX_SIM_SCALE": "0",
    }


@pytest.fixture
def stored_run(tmp_path: Path, env: dict[str, str]) -> str:
    """A real run recorded by the CLI; returns its id."""
    wf = tmp_path / "pipe.yaml"
    wf.write_text(PIPELINE)
    done = cli("run", str(wf), "--input", "topic=tea", "-q", env=env)
    assert done.returncode == 0, done.stderr
    [run] = json.loads(cli("runs", "--json", env=env).stdout)
    return str(run["run_id"])


def store_file(env: dict[str, str]) -> Path:
    return Path(env["AGENTPLEX_STORE"])


def write(path: Path, *statements: tuple[str, tuple[Any, ...]]) -> None:
    db = sqlite3.connect(path)
    for sql, params in statements:
        db.execute(sql, params)
    db.commit()
    db.close()


def plant_pickles_in_store(path: Path, marker: Path) -> None:
    """Put the payload everywhere a store of any schema could unpickle a node's output."""
    db = sqlite3.connect(path)
    columns = {row[1] for row in db.execute("PRAGMA table_info(nodes)")}
    if "blob" not in columns:  # the column schema 1 unpickled
        db.execute("ALTER TABLE nodes ADD COLUMN blob BLOB")
    db.execute("UPDATE nodes SET blob=?, output=?", (payload(marker), pickle_tag(payload(marker))))
    db.commit()
    db.close()


# -- pickles planted in the store ------------------------------------------------------------


@pytest.mark.parametrize("command", ["show", "show --json", "resume", "report --html"])
def test_a_pickle_planted_in_the_store_runs_nothing(
    tmp_path: Path, env: dict[str, str], stored_run: str, command: str
) -> None:
    marker = tmp_path / "pwned"
    plant_pickles_in_store(store_file(env), marker)
    args = {" ".join(a[:1] + a[2:3]): a for a in commands(stored_run, tmp_path)}[command]
    done = cli(*args, env=env)
    assert not marker.exists()  # the payload never ran
    line = one_clear_line(done)
    assert "pickle" in line
    assert "AGENTPLEX_STORE_PICKLE=1" in line
    assert "node 'research'" in line or "node 'write'" in line


def test_a_schema_1_store_is_refused_with_the_way_to_start_fresh(
    tmp_path: Path, env: dict[str, str], stored_run: str
) -> None:
    marker = tmp_path / "pwned"
    path = store_file(env)
    plant_pickles_in_store(path, marker)
    write(path, ("UPDATE meta SET value='1' WHERE key='schema_version'", ()))
    for args in (("runs",), ("show", stored_run), ("resume", stored_run)):
        done = cli(*args, env=env)
        assert not marker.exists()  # the payload never ran
        line = one_clear_line(done)
        assert "older agentplex (schema 1" in line
        assert f"mv {path} {path.with_name('runs.old.sqlite')}" in line


# -- pickles planted in the cache ------------------------------------------------------------


def cache_keys(path: Path) -> list[str]:
    db = sqlite3.connect(path)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    table = "entries" if "entries" in tables else "cache"
    keys = [row[0] for row in db.execute(f"SELECT key FROM {table}")]
    db.close()
    return keys


def calls(server: SimServer) -> int:
    return int(server.stats()["by_status"].get("200", 0))


def cached_run(server: SimServer, tmp_path: Path, env: dict[str, str]) -> list[str]:
    wf = tmp_path / "pipe.yaml"
    wf.write_text(PIPELINE)
    common = ["--model", "openai:sim", "--base-url", server.url, "--api-key", "k"]
    return ["run", str(wf), "--input", "topic=tea", *common, "-q"]


def test_a_pickle_planted_in_the_cache_runs_nothing_and_the_run_goes_on(
    server: SimServer, tmp_path: Path, env: dict[str, str], result_cache: Path
) -> None:
    env = {**env, "AGENTPLEX_CACHE": str(result_cache)}
    marker = tmp_path / "pwned"
    command = cached_run(server, tmp_path, env)
    assert cli(*command, env=env).returncode == 0
    assert calls(server) == 2
    db = sqlite3.connect(result_cache)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "cache" in tables:  # schema 1 unpickled this column
        db.execute("UPDATE cache SET value=?", (payload(marker),))
    if "entries" in tables:
        db.execute("UPDATE entries SET value=?", (pickle_tag(payload(marker)),))
    db.commit()
    db.close()
    again = cli(*command, env=env)
    assert again.returncode == 0, again.stderr
    assert not marker.exists()
    assert calls(server) == 4  # the planted entries were misses: both answers asked again
    third = cli(*command, env=env)
    assert third.returncode == 0, third.stderr
    assert calls(server) == 4  # ... and cached afresh, as data


def test_a_schema_1_cache_is_discarded_and_rebuilt(
    server: SimServer, tmp_path: Path, env: dict[str, str], result_cache: Path
) -> None:
    env = {**env, "AGENTPLEX_CACHE": str(result_cache)}
    marker = tmp_path / "pwned"
    command = cached_run(server, tmp_path, env)
    assert cli(*command, env=env).returncode == 0
    keys = cache_keys(result_cache)
    assert len(keys) == 2
    for extra in result_cache.parent.glob(result_cache.name + "*"):
        extra.unlink()
    old = sqlite3.connect(result_cache)  # a cache as schema 1 wrote it: pickles under the keys
    old.execute(
        "CREATE TABLE cache (key TEXT PRIMARY KEY, value BLOB NOT NULL, size INTEGER NOT NULL, "
        "created REAL NOT NULL, used REAL NOT NULL)"
    )
    for key in keys:
        old.execute("INSERT INTO cache VALUES (?,?,?,?,?)", (key, payload(marker), 10, 1e12, 1e12))
    old.commit()
    old.close()
    again = cli(*command, env=env)
    assert again.returncode == 0, again.stderr
    assert not marker.exists()
    assert calls(server) == 4
    assert sorted(cache_keys(result_cache)) == sorted(keys)  # rebuilt, as data


# -- tampered stores: one clear line, exit 2 ------------------------------------------------

RUN = "UPDATE runs SET {} WHERE batch_id IS NULL"
TAMPERED_RUN = {
    "bad JSON in the settings": RUN.format("settings='{\"model\": '"),
    "settings that are not an object": RUN.format("settings='[1, 2]'"),
    "a summary field of the wrong type": RUN.format('summary=\'{"wall_s": "slow"}\''),
    "a start time that is text": RUN.format("created='yesterday'"),
    "a node count that is text": RUN.format("total_nodes='many'"),
    "an unknown status": RUN.format("status='pwned'"),
    "inputs that are not an object": RUN.format("inputs='\"tea\"'"),
}
TAMPERED_NODES = {
    "bad JSON in a node record": "UPDATE nodes SET record='{\"attempts\": '",
    "a node record field of the wrong type": 'UPDATE nodes SET record=\'{"attempts": "two"}\'',
    "bad base64 in a node output": 'UPDATE nodes SET output=\'{"$t": "bytes", "v": "%%"}\'',
    "an unknown tag in a node output": 'UPDATE nodes SET output=\'{"$t": "os.system", "v": 1}\'',
    "a node output nested past any limit": "UPDATE nodes SET output='"
    + "[" * 100_000
    + "]" * 100_000
    + "'",
    "a node output that is not text": "UPDATE nodes SET output=x'00ff'",
}


def commands(run_id: str, tmp_path: Path) -> list[list[str]]:
    """Every command that reads a run's nodes: show (text and JSON), resume, report."""
    return [
        ["show", run_id],
        ["show", run_id, "--json"],
        ["resume", run_id],
        ["report", run_id, "--html", str(tmp_path / "r.html")],
    ]


@pytest.mark.parametrize("tampering", sorted(TAMPERED_RUN))
def test_a_tampered_run_record_is_one_clear_line(
    tmp_path: Path, env: dict[str, str], stored_run: str, tampering: str
) -> None:
    write(store_file(env), (TAMPERED_RUN[tampering], ()))
    for args in [["runs"], ["runs", "--json"], *commands(stored_run, tmp_path)]:
        line = one_clear_line(cli(*args, env=env))
        assert "damaged record" in line, line
        assert stored_run in line, line
        assert "Fix: move the file aside" in line


@pytest.mark.parametrize("tampering", sorted(TAMPERED_NODES))
def test_a_tampered_node_row_is_one_clear_line(
    tmp_path: Path, env: dict[str, str], stored_run: str, tampering: str
) -> None:
    write(store_file(env), (TAMPERED_NODES[tampering], ()))
    assert cli("runs", env=env).returncode == 0  # listing reads no node rows
    for args in commands(stored_run, tmp_path):
        line = one_clear_line(cli(*args, env=env))
        assert "damaged record" in line, line
        assert "node '" in line, line


@pytest.fixture
def stored_batch(tmp_path: Path, env: dict[str, str]) -> str:
    wf = tmp_path / "pipe.yaml"
    wf.write_text(PIPELINE)
    topics = tmp_path / "topics.txt"
    topics.write_text("tea\ncoffee\n")
    done = cli("batch", str(wf), "--inputs", str(topics), "-q", env=env)
    assert done.returncode == 0, done.stderr
    [batch] = json.loads(cli("runs", "--json", env=env).stdout)
    return str(batch["run_id"])


TAMPERED_BATCH = {
    "items that are not a list": "UPDATE runs SET inputs='{\"items\": 5}' WHERE batch_id IS NULL",
    "an item key that is not text": (
        "UPDATE runs SET inputs=json_set(inputs, '$.items[0].key', 7) WHERE batch_id IS NULL"
    ),
    "a batch row of the wrong type": (
        "UPDATE runs SET summary=json_set(summary, '$.items[1].wall_s', 'slow') "
        "WHERE batch_id IS NULL"
    ),
    "a batch row naming a run the store does not hold": "DELETE FROM runs WHERE run_id LIKE '%.1'",
}


@pytest.mark.parametrize("tampering", sorted(TAMPERED_BATCH))
def test_a_tampered_batch_is_one_clear_line(
    tmp_path: Path, env: dict[str, str], stored_batch: str, tampering: str
) -> None:
    write(store_file(env), (TAMPERED_BATCH[tampering], ()))
    checked = commands(stored_batch, tmp_path)
    if tampering.startswith("a batch row"):  # resume reads the items, not the ended rows
        checked = [args for args in checked if args[0] != "resume"]
    for args in checked:
        line = one_clear_line(cli(*args, env=env))
        assert "damaged record" in line, line
        assert stored_batch in line, line


# -- what a function may return -----------------------------------------------------------


def returns_a_lock() -> Any:
    import threading

    return {"handle": threading.Lock()}


def test_an_unstorable_output_fails_only_its_node_naming_it(tmp_path: Path) -> None:
    wf = ap.Workflow("f")
    wf.function(returns_a_lock, id="connect", executor="inline")
    wf.agent("researcher", "Research on the side", id="side")
    wf.agent("writer", "Write", id="after", depends_on=["connect"])
    result = ap.run(wf, store=tmp_path / "r.sqlite", error_policy="continue")
    failed = result.nodes["connect"]
    assert failed.status == "failed"
    assert failed.error_type == "UnstorableOutputError"
    assert failed.error is not None
    assert "node 'connect'" in failed.error
    assert "['handle']" in failed.error
    assert "_thread.lock" in failed.error
    assert "Fix: return str" in failed.error
    assert failed.output is None
    assert result.nodes["side"].status == "succeeded"
    assert result.nodes["after"].status == "skipped"
    store = SqliteStore(tmp_path / "r.sqlite")
    nodes = store.get_nodes(result.run_id)
    assert nodes["connect"].status == "failed"  # recorded as the node's error
    assert "Fix: return str" in nodes["connect"].record["error"]
    store.close()


def test_opt_in_pickle_mode_writes_and_reads_only_when_both_sides_opt_in(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = store_file(env)
    wf = ap.Workflow("exact")
    wf.function(third, id="third", executor="inline")
    monkeypatch.setenv("AGENTPLEX_STORE_PICKLE", "1")
    result = ap.run(wf, store=path)
    assert result.ok
    store = SqliteStore(path)
    output = store.get_nodes(result.run_id)["third"].output
    assert output == {"share": Fraction(1, 3), "rest": (2, 3)}  # the pickled part only
    monkeypatch.delenv("AGENTPLEX_STORE_PICKLE")
    with pytest.raises(StoreError, match=r"node 'third'.*pickle.*AGENTPLEX_STORE_PICKLE=1"):
        store.get_nodes(result.run_id)
    store.close()
    shown = cli("show", result.run_id, env={k: v for k, v in env.items() if "PICKLE" not in k})
    assert "AGENTPLEX_STORE_PICKLE=1" in one_clear_line(shown)


def third() -> dict[str, Any]:
    return {"share": Fraction(1, 3), "rest": (2, 3)}


# -- the codec ------------------------------------------------------------------------------


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (1 == 1.0 == True is not enough)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(
            same(k1, k2) and same(a[k1], b[k2]) for k1, k2 in zip(a, b, strict=True)
        )
    return bool(a == b)


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.text()
    | st.binary(max_size=40)
)
hashables = st.recursive(scalars.filter(lambda v: v == v), lambda inner: st.tuples(inner, inner))
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.lists(inner, max_size=5).map(tuple)
        | st.dictionaries(st.text() | st.just("$t"), inner, max_size=5)
        | st.dictionaries(hashables, inner, max_size=5)
        | st.frozensets(hashables, max_size=5)
        | st.sets(hashables, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_codec_round_trips_nested_values_with_their_types(value: Any) -> None:
    text = encode(value)
    assert text.isascii()  # valid UTF-8 for SQLite, lone surrogates included
    assert same(decode(text), value)
    assert canonical(decode(text)) == canonical(value)


@settings(max_examples=300, deadline=None)
@given(st.text() | st.from_regex(r'\{"\$t": ?"(pickle|bytes|set|dict|tuple|float)", ?"v": .*\}'))
def test_decoding_any_text_gives_a_value_or_a_decode_error(text: str) -> None:
    with contextlib.suppress(DecodeError):
        decode(text)


@dataclasses.dataclass(frozen=True)
class Finding:
    title: str
    scores: tuple[int, ...]
    raw: bytes


def test_a_dataclass_comes_back_as_a_dict_of_its_fields_never_as_the_class() -> None:
    text = encode([Finding("tea", (1, 2), b"\x01")])
    assert "test_stored_data.Finding" in text  # named, for people
    assert decode(text) == [{"title": "tea", "scores": (1, 2), "raw": b"\x01"}]
    planted = json.dumps({"$t": "dataclass", "type": "os.system", "v": {"command": "id"}})
    assert decode(planted) == {"command": "id"}  # the type is never looked up


def test_canonical_encoding_ignores_order_and_never_pickles() -> None:
    assert canonical({"b": 1, "a": {3, 1, 2}}) == canonical({"a": {2, 3, 1}, "b": 1})
    assert canonical({1: "x", "1": "y"}) != canonical({"1": "x", 1: "y"})
    with pytest.raises(EncodeError):
        canonical(Fraction(1, 3))


@pytest.mark.parametrize(
    ("value", "where"),
    [(object(), ""), ({"rows": [1, object()]}, "['rows'][1]"), ((1, {2: lambda: 0}), "[1][2]")],
)
def test_an_unencodable_part_is_named(
    value: Any, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AGENTPLEX_STORE_PICKLE", raising=False)
    with pytest.raises(EncodeError) as caught:
        encode(value, what="the output of node 'n'")
    assert caught.value.where == where
    assert str(caught.value).startswith("the output of node 'n' holds a value of type")


def test_a_function_call_with_arguments_that_are_not_data_is_not_cached(
    result_cache: Path,
) -> None:
    seen: list[int] = []

    def count(handle: Any) -> int:
        seen.append(1)
        return len(seen)

    wf = ap.Workflow("fn", inputs=["handle"])
    wf.function(count, id="count", cache=True, executor="inline")
    for _ in range(2):
        assert ap.run(wf, inputs={"handle": Opaque()}).ok
    assert len(seen) == 2  # no key could be made: called each time, never from the cache


class Opaque:
    """Picklable, but not data: its arguments were hashed by pickling them before."""
