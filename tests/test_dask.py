"""The Dask executor on a real cluster: a scheduler and two worker processes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import agentplex as ap
from agentplex.executors.dask import DaskExecutor
from tests.cli import cli
from tests.helpers import burn, pid_and_square, sleep_then_pid

if TYPE_CHECKING:
    from agentplex.sim.server import SimServer

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",  # loopback only
        silence_logs=40,
    ) as local:
        yield local


def items(n: int) -> list[int]:
    return list(range(n))


def square(item: int) -> tuple[int, int]:
    return pid_and_square(item)


def total(squares: list[tuple[int, int]]) -> int:
    return sum(s for _pid, s in squares)


def ap_flow_with_n(n: int) -> ap.Workflow:
    wf = ap.Workflow("cpu", inputs=["n"])
    wf.function(items, id="items", executor="inline")
    wf.map("items", fn=square, id="squares", cpu_bound=True)
    wf.function(burn, id="burn", cpu_bound=True, depends_on=["items"])
    wf.function(total, id="total", depends_on=["squares"], executor="inline")
    return wf


def test_a_workflow_runs_on_the_cluster_with_the_outputs_of_a_local_run(cluster: Any) -> None:
    local = ap.run(ap_flow_with_n(6), inputs={"n": 6})
    remote = ap.run(ap_flow_with_n(6), inputs={"n": 6}, dask=cluster.scheduler_address)
    assert local.ok
    assert remote.ok
    assert [s for _p, s in remote.outputs["squares"]] == [s for _p, s in local.outputs["squares"]]
    assert remote.outputs["total"] == local.outputs["total"] == sum(i * i for i in range(6))
    assert remote.outputs["burn"] == local.outputs["burn"]
    with distributed.Client(cluster) as client:
        workers = set(client.run(os.getpid).values())
    assert {pid for pid, _s in remote.outputs["squares"]} <= workers  # ran on the workers
    assert os.getpid() not in workers


def test_an_unreachable_scheduler_fails_before_the_run_starts() -> None:
    started: list[Any] = []
    with pytest.raises(
        ap.exceptions.ConfigError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:9"
    ):
        ap.run(
            ap_flow_with_n(2),
            inputs={"n": 2},
            dask="tcp://127.0.0.1:9",
            observers=[started.append],
        )
    assert started == []


def test_cancelling_a_node_cancels_its_task_on_the_cluster(cluster: Any) -> None:
    async def main() -> None:
        executor = DaskExecutor(address=cluster.scheduler_address)
        tasks = [asyncio.create_task(executor.submit(sleep_then_pid, 3.0)) for _ in range(4)]
        await asyncio.sleep(0.8)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        client = await executor.client()
        deadline = time.monotonic() + 5
        left = -1
        while time.monotonic() < deadline:
            left = await client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))
            if left == 0:
                break
            await asyncio.sleep(0.1)
        assert left == 0  # queued tasks never ran; running ones were released
        await executor.aclose()

    asyncio.run(main())


def test_a_worker_killed_mid_run_loses_nothing(cluster: Any) -> None:
    """Dask reschedules a dead worker's tasks (at most allowed-failures times)."""
    wf = ap.Workflow("sleepy", inputs=["n"])
    wf.function(items, id="items", executor="inline")
    wf.map("items", fn=slow_item, id="slow", cpu_bound=True)
    client = distributed.Client(cluster)

    def kill_a_worker() -> None:
        time.sleep(0.7)
        pids = client.run(os.getpid)
        os.kill(next(iter(pids.values())), 9)

    import threading

    killer = threading.Thread(target=kill_a_worker)
    killer.start()
    result = ap.run(wf, inputs={"n": 6}, dask=cluster.scheduler_address)
    killer.join()
    assert result.ok, result.nodes["slow"].error
    assert [x for _pid, x in result.outputs["slow"]] == list(range(6))  # none lost, none twice
    client.wait_for_workers(2, timeout=30)  # the nanny restarts the dead worker
    client.close()


def slow_item(item: int) -> tuple[int, int]:
    return sleep_then_pid(0.5, item)


def test_cli_executor_dask_starts_a_local_cluster(examples: Path, tmp_path: Path) -> None:
    flow = examples / "executive_delegation.yaml"
    sim = {"AGENTPLEX_SIM_SCALE": "0"}
    # cwd: the example's board file goes there
    done = cli("run", flow, "--executor", "dask", "--json", "--no-store", env=sim, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    unreachable = cli(
        "run", flow, "--dask", "tcp://127.0.0.1:9", "--no-store", env=sim, cwd=tmp_path
    )
    assert unreachable.returncode == 2
    assert "cannot reach the Dask scheduler" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr


# -- sharded batches ---------------------------------------------------------------------------


def topics(n: int) -> list[dict[str, str]]:
    return [{"topic": f"topic {i}"} for i in range(n)]


def against(server: SimServer) -> dict[str, Any]:
    """Run options for the simulator server over HTTP, without the result cache."""
    return {"model": "openai:sim", "base_url": server.url, "api_key": "k", "cache": False}


def pipeline(examples: Path) -> ap.CompiledWorkflow:
    return ap.load_workflow(examples / "content_pipeline.yaml").compile()


def test_a_sharded_batch_matches_a_local_one_and_resumes_from_the_store(
    cluster: Any, server: SimServer, examples: Path, tmp_path: Path
) -> None:
    wf = pipeline(examples)
    kw = against(server)
    local = ap.run_batch(wf, topics(12), **kw)
    store = tmp_path / "runs.sqlite"
    sharded = ap.run_batch(
        wf, topics(12), shard=True, dask=cluster.scheduler_address, store=store, **kw
    )
    assert local.ok
    assert sharded.ok
    assert list(sharded) == list(local)  # every item once, in input order
    assert all(sharded[k].run.outputs == local[k].run.outputs for k in local)  # type: ignore[union-attr]
    first = next(iter(local))
    assert sharded[first].run.run_id == f"{sharded.batch_id}.0"  # type: ignore[union-attr]
    calls = server.stats()["by_status"]["200"]
    assert calls == 2 * 12 * 4
    resumed = ap.resume(  # a stored run never names its endpoints: they are given again
        sharded.batch_id,
        store=store,
        base_url=server.url,
        api_key="k",
        dask=cluster.scheduler_address,
    )
    assert resumed.ok
    assert server.stats()["by_status"]["200"] == calls  # the driver recorded every item


def test_the_rate_limit_holds_across_workers(
    cluster: Any, server: SimServer, examples: Path
) -> None:
    """Two workers share rpm=600: together they stay within what the server allows."""
    server.configure(rpm=600)  # 10 a second, enforced with 429s
    t0 = time.perf_counter()
    result = ap.run_batch(
        pipeline(examples),
        topics(10),
        shard=True,
        dask=cluster.scheduler_address,
        rpm=600,
        **against(server),
    )
    took = time.perf_counter() - t0
    assert result.ok
    counts = server.stats()["by_status"]
    assert counts["200"] == 40
    assert counts.get("429", 0) <= 2  # phase noise between the two paced workers at most
    assert took >= (40 - 10) / 10 * 0.9  # paced: no faster than the limit allows


def test_a_worker_killed_mid_sharded_batch_loses_and_duplicates_nothing(
    cluster: Any, server: SimServer, examples: Path
) -> None:
    server.configure(latency_s=0.15, scale=1.0)
    client = distributed.Client(cluster)

    def kill_a_worker() -> None:
        time.sleep(1.0)
        os.kill(next(iter(client.run(os.getpid).values())), 9)

    import threading

    killer = threading.Thread(target=kill_a_worker)
    killer.start()
    wf = pipeline(examples)
    kw = against(server)
    sharded = ap.run_batch(wf, topics(16), shard=True, dask=cluster.scheduler_address, **kw)
    killer.join()
    assert sharded.ok
    assert len(sharded) == 16
    server.configure(latency_s=0.0)
    local = ap.run_batch(wf, topics(16), **kw)
    assert all(sharded[k].run.outputs == local[k].run.outputs for k in local)  # type: ignore[union-attr]
    client.wait_for_workers(2, timeout=30)
    client.close()


def test_calls_made_together_share_tasks_and_keep_their_own_outcomes(cluster: Any) -> None:
    from tests.helpers import fails

    async def main() -> None:
        executor = DaskExecutor(address=cluster.scheduler_address)
        await executor.check()  # connected: the eight calls below go out in one turn
        calls = [executor.submit(pid_and_square, i) for i in range(7)] + [executor.submit(fails)]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert [o[1] for o in outcomes[:7]] == [i * i for i in range(7)]  # type: ignore[index]
        error = outcomes[7]
        assert isinstance(error, ValueError)
        assert "in fails" in str(error.__cause__)  # the worker's traceback
        assert executor.statistics().failed == 1
        assert len(executor._waiters) == 0  # every chunk was handed back
        await executor.aclose()

    asyncio.run(main())


def wide(width: int) -> ap.CompiledWorkflow:
    """``width`` independent agents per item: demand for as many calls at once."""
    wf = ap.Workflow("wide", inputs=["topic"])
    for i in range(width):
        wf.agent("researcher", f"Research angle {i} of {{topic}}", id=f"angle{i}")
    return wf.compile()


def test_the_cluster_shares_one_concurrency_budget_lent_where_the_work_is(
    cluster: Any, server: SimServer
) -> None:
    """max_inflight=4 for the cluster. One item: its worker borrows the idle worker's share
    and runs 4 calls at once (a static split would give it 2). Three items over two workers:
    never more than 4 at once."""
    server.configure(latency_s=0.2, scale=1.0)
    kw = {
        **against(server),
        "max_inflight": 4,
        "shard": True,
        "dask": cluster.scheduler_address,
    }
    alone = ap.run_batch(wide(8), topics(1), **kw)
    assert alone.ok
    assert server.stats()["answering"]["peak"] == 4
    server.reset()
    both = ap.run_batch(wide(8), topics(3), **kw)
    assert both.ok
    stats = server.stats()
    assert stats["by_status"] == {"200": 24}
    assert stats["answering"]["peak"] <= 4


def test_node_events_stream_back_to_the_driver_while_shards_run(
    cluster: Any, server: SimServer, examples: Path
) -> None:
    from agentplex import events as ev

    server.configure(latency_s=0.1, scale=1.0)
    seen: list[ev.Event] = []
    result = ap.run_batch(
        pipeline(examples),
        topics(8),
        shard=True,
        dask=cluster.scheduler_address,
        observers=[seen.append],
        **against(server),
    )
    assert result.ok
    first_item_done = next(i for i, e in enumerate(seen) if isinstance(e, ev.ItemFinished))
    first_node = next(i for i, e in enumerate(seen) if isinstance(e, ev.NodeStarted))
    assert first_node < first_item_done  # live, not replayed from the finished shard
    for n, key in enumerate(result):
        run_id = f"{result.batch_id}.{n}"
        mine = [e for e in seen if e.run_id == run_id]
        names = [(type(e).__name__, getattr(e, "node_id", None)) for e in mine]
        assert names == [
            (step, node)
            for node in ("research", "write", "review", "present")
            for step in ("NodeStarted", "NodeFinished")
        ], key
        started = [e for e in seen if isinstance(e, ev.ItemStarted) and e.key == key]
        finished = [e for e in seen if isinstance(e, ev.ItemFinished) and e.key == key]
        assert len(started) == len(finished) == 1
        assert seen.index(started[0]) < seen.index(mine[0]) < seen.index(finished[0])
        usage = sum(e.usage.total_tokens for e in mine if isinstance(e, ev.NodeFinished))  # type: ignore[union-attr]
        assert usage == result[key].usage.total_tokens


def test_cancelling_a_sharded_batch_keeps_what_the_workers_finished(
    cluster: Any, server: SimServer, examples: Path, tmp_path: Path
) -> None:
    """Cancelled (Ctrl-C) mid-shard: the workers stop, the driver records the items and nodes
    they had finished, and resume calls only for the rest."""
    from agentplex import events as ev

    server.configure(latency_s=0.25, scale=1.0)
    store = tmp_path / "runs.sqlite"
    wf = pipeline(examples)
    kw = against(server)
    ids: list[str] = []

    async def main() -> None:
        done = asyncio.Event()

        def watch(event: ev.Event) -> None:
            if isinstance(event, ev.BatchStarted):
                ids.append(event.run_id)
            if isinstance(event, ev.NodeFinished) and event.node_id == "present":
                done.set()  # an item finished on a worker; its shard has not

        batch = asyncio.create_task(
            ap.arun_batch(
                wf,
                topics(16),
                shard=True,
                dask=cluster.scheduler_address,
                store=store,
                observers=[watch],
                max_concurrency=4,
                **kw,
            )
        )
        await asyncio.wait_for(done.wait(), 60)
        batch.cancel()
        with pytest.raises(asyncio.CancelledError):
            await batch

    asyncio.run(main())
    from agentplex.store import open_store

    opened = open_store(store)
    try:
        items = opened.get_items(ids[0])
        kept = sum(
            node.status == "succeeded"
            for item in items
            for node in opened.get_nodes(item.run_id).values()
        )
    finally:
        opened.close()
    assert any(item.status == "succeeded" for item in items)
    assert kept >= 4
    deadline = time.monotonic() + 10
    while server.stats()["answering"]["now"] and time.monotonic() < deadline:
        time.sleep(0.05)  # calls the stopped workers gave up on are still being answered
    server.reset()
    resumed = ap.resume(
        ids[0], store=store, base_url=server.url, api_key="k", dask=cluster.scheduler_address
    )
    assert resumed.ok
    assert server.stats()["by_status"]["200"] == 16 * 4 - kept  # nothing kept is paid twice


def test_shards_are_several_per_worker_but_big_enough_to_fill_the_slots() -> None:
    from agentplex.batch.shard import shard_size

    assert shard_size(5_000, 2, 256) == 625  # four per worker
    assert shard_size(5, 2, 16) == 3  # not five shards of one item run one at a time
    assert shard_size(100, 2, 16) == 16
    assert shard_size(1, 8, 16) == 1
