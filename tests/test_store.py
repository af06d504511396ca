"""The run store: one contract for both stores, integrity errors, and resume semantics."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import agentplex as ap
from agentplex.exceptions import RunNotFoundError, StoreError, UnstorableOutputError
from agentplex.store import (
    MemoryStore,
    RunRecord,
    RunStore,
    StoredNode,
    open_store,
    owner_alive,
    shown_status,
)
from agentplex.store.sqlite import SqliteStore

STORES: dict[str, Callable[[Path], RunStore]] = {
    "memory": lambda folder: MemoryStore(),
    "sqlite": lambda folder: SqliteStore(folder / "r.sqlite"),
}
"""Every store the contract below runs on; tests/test_plugins.py runs it on a custom one."""


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunStore]:
    made = STORES[request.param](tmp_path)
    yield made
    made.close()


def record(run_id: str = "r1", **changes: object) -> RunRecord:
    now = time.time()
    base = RunRecord(run_id, "wf", "running", now, now, inputs={"q": "x"}, total_nodes=3)
    import dataclasses

    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


# -- the contract ----------------------------------------------------------------


def test_contract_runs_nodes_events_roundtrip(store: RunStore) -> None:
    store.begin_run(record("r1", settings={"model": "sim:default"}))
    store.put_node(
        "r1", StoredNode("a", "k-a", "succeeded", "text A", {"attempts": 1, "output": "text A"})
    )
    store.put_node(
        "r1", StoredNode("b", "k-b", "succeeded", {"n": [1, 2]}, {"output": {"n": [1, 2]}})
    )
    store.put_node("r1", StoredNode("c", "k-c", "failed", None, {"error": "boom"}))
    store.put_events("r1", [(1, 0.0, "RunStarted", None, "{}"), (2, 0.1, "NodeStarted", "a", "{}")])
    asyncio.run(store.sync())
    run = store.get_run("r1")
    assert (run.workflow, run.status, run.total_nodes, run.done_nodes) == ("wf", "running", 3, 2)
    assert run.inputs == {"q": "x"}
    assert run.settings == {"model": "sim:default"}
    nodes = store.get_nodes("r1")
    assert nodes["a"].output == "text A"
    assert nodes["b"].output == {"n": [1, 2]}
    assert nodes["c"].record["error"] == "boom"
    assert [e["kind"] for e in store.get_events("r1")] == ["RunStarted", "NodeStarted"]
    store.put_node("r1", StoredNode("c", "k-c", "succeeded", "fixed", {"output": "fixed"}))
    store.end_run("r1", "succeeded", {"cost_usd": 0.5})
    asyncio.run(store.sync())
    assert store.get_nodes("r1")["c"].status == "succeeded"  # a later result replaces
    ended = store.get_run("r1")
    assert ended.status == "succeeded"
    assert ended.cost_usd == 0.5
    assert ended.owner is None


def test_contract_unclaimed_begin_is_queued_and_keeps_created(store: RunStore) -> None:
    store.begin_run(record("b.0", created=1000.0, batch_id="b", item_key="x"), claim=False)
    store.put_node("b.0", StoredNode("a", "k-a", "succeeded", "A", {"output": "A"}))
    asyncio.run(store.sync())
    item = store.get_run("b.0")
    assert (item.status, item.batch_id, item.item_key, item.created) == (
        "running",
        "b",
        "x",
        1000.0,
    )
    store.end_run("b.0", "failed", {})
    # Re-opened (a resume): running again, the first start time kept, nodes kept.
    store.begin_run(record("b.0", created=2000.0, batch_id="b", item_key="x"), claim=False)
    asyncio.run(store.sync())
    again = store.get_run("b.0")
    assert (again.status, again.created) == ("running", 1000.0)
    assert store.get_nodes("b.0")["a"].output == "A"
    assert [r.run_id for r in store.list_runs()] == []  # items are listed under their batch


def test_contract_lists_newest_first_and_names_missing_runs(store: RunStore) -> None:
    for i in range(3):
        store.begin_run(record(f"r{i}", created=1000.0 + i))
    asyncio.run(store.sync())
    assert [r.run_id for r in store.list_runs()] == ["r2", "r1", "r0"]
    assert [r.run_id for r in store.list_runs(limit=1)] == ["r2"]
    with pytest.raises(RunNotFoundError, match="agentplex runs"):
        store.get_run("nope")
    with pytest.raises(RunNotFoundError):
        store.get_nodes("nope")


def set_owner(store: RunStore, run_id: str, owner: str) -> None:
    """Make ``run_id`` look as if process ``owner`` (host:pid) were writing it.

    A store that keeps its records in a ``runs`` dict (MemoryStore, the custom
    store of tests/test_plugins.py) is edited there; SQLite in its file.
    """
    runs = getattr(store, "runs", None)
    if isinstance(runs, dict):
        import dataclasses

        runs[run_id] = dataclasses.replace(runs[run_id], owner=owner)
    else:
        connection = sqlite3.connect(store.location)  # type: ignore[attr-defined]
        connection.execute("UPDATE runs SET owner=? WHERE run_id=?", (owner, run_id))
        connection.commit()
        connection.close()


def test_contract_refuses_a_run_another_live_process_writes(store: RunStore) -> None:
    store.begin_run(record("r1"))
    # Pretend a live process (our parent) owns the running run.
    other = f"{os.uname().nodename}:{os.getppid()}"
    set_owner(store, "r1", other)
    with pytest.raises(StoreError, match="being written by process"):
        store.begin_run(record("r1"))
    # A dead owner (a crash) does not hold the run.
    dead = f"{os.uname().nodename}:999999"
    set_owner(store, "r1", dead)
    store.begin_run(record("r1"))


def test_contract_outputs_come_back_as_the_values_they_were(store: RunStore) -> None:
    store.begin_run(record("r1"))
    output = {"pair": (1, "a"), "raw": b"\x00\xff", 3: {"tags": {"x"}}, "nan": float("inf")}
    store.put_node("r1", StoredNode("a", "k-a", "succeeded", output, {"output": repr(output)}))
    asyncio.run(store.sync())
    [stored] = store.get_nodes("r1").values()
    assert stored.output == output
    assert stored.record["output"] == output  # the record carries the value, as the store has it


def test_contract_an_unstorable_output_names_the_node_and_stores_nothing(
    store: RunStore,
) -> None:
    store.begin_run(record("r1"))
    node = StoredNode("embed", "k", "succeeded", {"vectors": [object()]}, {})
    with pytest.raises(
        UnstorableOutputError, match=r"node 'embed'.*\['vectors'\]\[0\].*Fix: return str"
    ) as caught:
        store.put_node("r1", node)
    assert caught.value.node_id == "embed"
    asyncio.run(store.sync())
    assert store.get_nodes("r1") == {}


def test_contract_the_last_node_completes_the_run_in_the_same_write(store: RunStore) -> None:
    store.begin_run(record("r1", total_nodes=2))
    store.put_node("r1", StoredNode("a", "k-a", "succeeded", "A", {}))
    asyncio.run(store.sync())
    assert store.get_run("r1").status == "running"
    store.put_node("r1", StoredNode("b", "k-b", "succeeded", "B", {}), completes=True)
    asyncio.run(store.sync())
    assert store.get_run("r1").status == "succeeded"  # before end_run writes the summary
    store.end_run("r1", "succeeded", {"cost_usd": 0.25})
    asyncio.run(store.sync())
    assert store.get_run("r1").cost_usd == 0.25


def test_a_writer_whose_pid_was_given_to_another_process_is_not_alive() -> None:
    parent = os.getppid()
    with open(f"/proc/{parent}/stat") as handle:
        started = handle.read().rpartition(")")[2].split()[19]
    host = socket.gethostname()
    assert owner_alive(f"{host}:{parent}@{started}")  # the same process: alive
    assert not owner_alive(f"{host}:{parent}@{int(started) + 1}")  # its pid, a later process
    assert owner_alive(f"{host}:{parent}")  # no start time known: the pid decides
    assert not owner_alive(f"{host}:0")  # never the caller's own process group


# -- SQLite integrity ----------------------------------------------------------------


def test_a_newer_schema_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    SqliteStore(path).close()
    connection = sqlite3.connect(path)
    connection.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    connection.commit()
    connection.close()
    with pytest.raises(StoreError, match=r"newer agentplex \(schema 99"):
        SqliteStore(path)


def test_a_corrupt_file_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    path.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreError, match=r"not a usable agentplex run store.*Fix"):
        SqliteStore(path)


def test_a_truncated_store_is_one_clear_line_from_every_command(
    tmp_path: Path, examples: Path
) -> None:
    env = {**os.environ, "AGENTPLEX_SIM_SCALE": "0", "AGENTPLEX_STORE": str(tmp_path / "st")}
    cli = [sys.executable, "-m", "agentplex"]
    wf = str(examples / "business_plan.yaml")
    assert subprocess.run([*cli, "run", wf, "-q"], env=env, capture_output=True).returncode == 0
    path = tmp_path / "st" / "runs.sqlite"
    data = path.read_bytes()  # the process ended: everything is in the main file
    path.write_bytes(data[:4096] + b"\x00" * 100 + data[8192:9000])
    for args in (["runs"], ["show", "x"], ["resume", "x"], ["report", "x"]):
        done = subprocess.run([*cli, *args], capture_output=True, text=True, env=env)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        line = done.stderr.strip()
        assert "\n" not in line
        assert str(path) in line
        assert "Fix: move the file aside to start a fresh store: mv" in line


def test_a_locked_database_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    store = SqliteStore(path)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        import agentplex.store.sqlite as impl

        original = impl._connect
        impl._connect = lambda p, timeout=0.2: original(p, timeout=timeout)  # type: ignore[assignment]
        try:
            with pytest.raises(StoreError, match="locked by another process"):
                store.begin_run(record("r1"))
        finally:
            impl._connect = original  # type: ignore[assignment]
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def test_results_survive_the_process(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    code = (
        "import agentplex as ap\n"
        "wf = ap.Workflow('w')\n"
        "wf.agent('researcher', 'A', id='a')\n"
        "wf.agent('writer', 'B', id='b', depends_on=['a'])\n"
        f"r = ap.run(wf, store={str(path)!r}, run_id='fixed')\n"
        "import os; os._exit(0)\n"  # no clean shutdown: what was awaited must be on disk
    )
    subprocess.run(
        [sys.executable, "-c", code], check=True, env={**os.environ, "AGENTPLEX_SIM_SCALE": "0"}
    )
    store = SqliteStore(path)
    assert store.get_run("fixed").status == "succeeded"
    assert set(store.get_nodes("fixed")) == {"a", "b"}


# -- runs, keys and resume ---------------------------------------------------------


def flaky_workflow(fail: dict[str, int]) -> ap.Workflow:
    wf = ap.Workflow("flaky")

    def check(a: str) -> str:
        fail["n"] -= 1
        if fail["n"] >= 0:
            raise ValueError("not this time")
        return a[:10]

    wf.agent("researcher", "Research A", id="a")
    wf.agent("researcher", "Research B", id="b")
    wf.function(check, id="check", depends_on=["a"])
    wf.agent("writer", "Write", id="write", depends_on=["check", "b"])
    return wf


def test_a_node_that_finished_while_its_sibling_failed_is_not_rerun() -> None:
    store = MemoryStore()
    counts = {"n": 1}
    wf = flaky_workflow(counts)
    first = ap.run(wf, store=store, error_policy="continue")
    assert first.nodes["b"].status == "succeeded"
    assert first.nodes["check"].status == "failed"
    started: list[str] = []
    resumed = ap.resume(
        first.run_id,
        store=store,
        workflow=wf,
        observers=[
            lambda e: started.append(e.node_id) if type(e).__name__ == "NodeStarted" else None
        ],
    )
    assert resumed.ok
    assert sorted(started) == ["check", "write"]  # a and b were kept
    assert {n for n, r in resumed.nodes.items() if r.reused} == {"a", "b"}
    assert resumed.outputs["b"] == first.outputs["b"]
    assert store.get_run(first.run_id).status == "succeeded"


def test_editing_one_task_reruns_that_node_and_its_descendants_only(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    text = (
        "name: edit\nnodes:\n"
        "  a: {role: researcher, task: Research A}\n"
        "  b: {role: researcher, task: Research B}\n"
        "  c: {role: analyzer, task: Compare, depends_on: [a, b]}\n"
        "  d: {role: writer, task: Write, depends_on: [c]}\n"
        "  e: {role: critic, task: Critique B, depends_on: [b]}\n"
    )
    path.write_text(text)
    store = MemoryStore()
    first = ap.run(ap.load_workflow(path), store=store)
    assert first.ok
    path.write_text(text.replace("Research A}", "Research A in depth}"))
    started: list[str] = []
    resumed = ap.resume(
        first.run_id,
        store=store,
        observers=[
            lambda e: started.append(e.node_id) if type(e).__name__ == "NodeStarted" else None
        ],
    )
    assert sorted(started) == ["a", "c", "d"]
    assert resumed.outputs["a"] != first.outputs["a"]
    assert resumed.outputs["e"] == first.outputs["e"]


def test_resume_needs_the_workflow_of_a_python_run_and_a_known_id(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "r.sqlite")
    wf = ap.Workflow("py")
    wf.agent("researcher", "A", id="a")
    first = ap.run(wf, store=store)
    with pytest.raises(ap.exceptions.ConfigError, match=r"built in Python.*workflow="):
        ap.resume(first.run_id, store=store)
    with pytest.raises(RunNotFoundError):
        ap.resume("missing", store=store)
    store.close()


def test_secrets_never_reach_the_store(tmp_path: Path, sim_server: object) -> None:
    secret = "sk-live-NeverStoreMe0123456789"
    path = tmp_path / "r.sqlite"
    wf = ap.Workflow("s")
    wf.agent("researcher", "A", id="a")
    ap.run(
        wf,
        store=path,
        model="openai:status-401",
        base_url=sim_server.url,  # type: ignore[attr-defined]
        api_key=secret,
        retries=0,
    )
    assert secret.encode() not in path.read_bytes()
    for extra in path.parent.glob("r.sqlite*"):
        assert secret.encode() not in extra.read_bytes()


def test_cli_runs_show_resume_report_and_json(tmp_path: Path, examples: Path) -> None:
    env = {**os.environ, "AGENTPLEX_SIM_SCALE": "0", "AGENTPLEX_STORE": str(tmp_path / "st")}
    cli = [sys.executable, "-m", "agentplex"]
    run = subprocess.run(
        [*cli, "run", str(examples / "business_plan.yaml"), "-q"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    listed = json.loads(
        subprocess.run([*cli, "runs", "--json"], capture_output=True, text=True, env=env).stdout
    )
    assert listed[0]["workflow"] == "business_plan"
    assert listed[0]["status"] == "succeeded"
    run_id = listed[0]["run_id"]
    shown = subprocess.run(
        [*cli, "show", run_id, "--json"], capture_output=True, text=True, env=env
    )
    assert set(json.loads(shown.stdout)["nodes"]) >= {"market_size", "business_plan"}
    again = subprocess.run(
        [*cli, "resume", run_id, "--json"], capture_output=True, text=True, env=env
    )
    assert again.returncode == 0, again.stderr
    assert all(n["reused"] for n in json.loads(again.stdout)["nodes"].values())
    html = tmp_path / "r.html"
    report = subprocess.run(
        [*cli, "report", run_id, "--html", str(html)], capture_output=True, text=True, env=env
    )
    assert report.returncode == 0, report.stderr
    assert "market_size" in html.read_text()
    missing = subprocess.run([*cli, "show", "nope"], capture_output=True, text=True, env=env)
    assert missing.returncode == 2
    assert "agentplex runs" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_open_store_uses_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTPLEX_STORE", str(tmp_path / "elsewhere"))
    store = open_store()
    assert store.location == str(tmp_path / "elsewhere" / "runs.sqlite")
    store.close()


FULL_DISK = """
import sys
import agentplex.store.sqlite as impl

original = impl._connect

def small(path, *, timeout=5.0):  # the file may grow by a few pages only: SQLITE_FULL
    connection = original(path, timeout=timeout)
    pages = connection.execute("PRAGMA page_count").fetchone()[0]
    connection.execute(f"PRAGMA max_page_count={pages + 6}")
    return connection

impl._connect = small
from agentplex.cli.main import app
sys.argv = ["agentplex", *sys.argv[1:]]
app()
"""


def test_a_full_disk_stops_the_run_with_one_clear_line_and_keeps_what_was_committed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "r.sqlite"
    SqliteStore(path).close()
    wf_path = tmp_path / "chain.yaml"
    wf_path.write_text(
        "name: chain\nnodes:\n"
        + "".join(
            f"  n{i}: {{role: researcher, task: 'Step {i} {'x' * 400}'"
            + (f", depends_on: [n{i - 1}]" if i else "")
            + "}\n"
            for i in range(60)
        )
    )
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK, "run", str(wf_path), "--store", str(path), "-q"],
        capture_output=True,
        text=True,
        env={**os.environ, "AGENTPLEX_SIM_SCALE": "0"},
        timeout=120,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    line = done.stderr.strip()
    assert "\n" not in line
    assert f"the disk holding the run store {path} is full" in line
    assert "agentplex resume" in line
    store = SqliteStore(path)  # no page limit now: what was committed is all there
    [run] = store.list_runs()
    nodes = store.get_nodes(run.run_id)
    kept = sorted(int(n[1:]) for n, node in nodes.items() if node.status == "succeeded")
    assert 0 < len(kept) < 60
    assert kept == list(range(len(kept)))  # a prefix of the chain: nothing after the failure
    assert shown_status(store.get_run(run.run_id)) == "interrupted"
    store.close()


def test_cli_resume_takes_the_endpoint_again_never_from_the_record(
    tmp_path: Path, server: object
) -> None:
    env = {**os.environ, "AGENTPLEX_STORE": str(tmp_path / "st")}
    cli = [sys.executable, "-m", "agentplex"]
    wf = tmp_path / "wf.yaml"
    wf.write_text("name: w\nnodes:\n  a: {role: researcher, task: A}\n")
    url = server.url  # type: ignore[attr-defined]
    common = ["--model", "openai:sim", "--base-url", url, "--api-key", "k"]
    run = subprocess.run([*cli, "run", str(wf), *common, "-q"], env=env, capture_output=True)
    assert run.returncode == 0, run.stderr
    listed = subprocess.run([*cli, "runs", "--json"], env=env, capture_output=True, text=True)
    run_id = json.loads(listed.stdout)[0]["run_id"]
    refused = subprocess.run([*cli, "resume", run_id], env=env, capture_output=True, text=True)
    assert refused.returncode == 2
    assert f"--base-url {url}" in refused.stderr
    again = subprocess.run(
        [*cli, "resume", run_id, "--base-url", url, "--api-key", "k", "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0, again.stderr
    assert all(n["reused"] for n in json.loads(again.stdout)["nodes"].values())
