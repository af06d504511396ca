"""Executors benchmark: a CPU-bound step where each executor runs it, side by side.

(a) 200 items, each 50 ms of pure-Python work (calibrated on this machine),
    as one map node run inline, in threads, in the process pool and on a
    local Dask cluster (one single-threaded worker per core), in one run.
    Target: process and Dask at least 1.7x faster than inline.
(b) A zero-latency batch of 5,000 calls against the simulator server (one
    agent per item, openai provider over HTTP): from one process, and sharded
    over the two workers of the same cluster. The ratio is reported.
(c) The cluster-wide budget: one item of 32 parallel calls under
    max_inflight 8, from one process and sharded (one worker busy, one
    idle). The sharded run should match one process: the idle worker's
    share is lent, and the server's peak of calls at once shows it.

    python bench/bench_dask.py            # about 2 minutes
    python bench/bench_dask.py --only a
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import agentplex as ap

sys.path.insert(0, str(Path(__file__).parent))
from cpu_work import calibrate, spin

ITEMS = 200


def items(n: int) -> list[int]:
    return list(range(n))


def flow(executor: str) -> ap.Workflow:
    wf = ap.Workflow(f"cpu-{executor}", inputs=["n", "loops"])
    wf.function(items, id="items", executor="inline")
    wf.map("items", fn=spin, id="work", executor=executor)  # type: ignore[arg-type]
    return wf


def part_b(address: str, calls: int) -> list[str]:
    from agentplex.sim.server import ServerConfig, SimServer

    wf = ap.Workflow("one-call", inputs=["topic"])
    wf.agent("researcher", "Research {topic}", id="research")
    compiled = wf.compile()
    inputs = [{"topic": f"topic {i}"} for i in range(calls)]
    walls: dict[str, float] = {}
    with SimServer(ServerConfig(scale=0.0)) as server:
        kw = {"model": "openai:sim", "base_url": server.url, "api_key": "k", "cache": False}
        for label, extra in (("one process", {}), ("sharded x2", {"shard": True})):
            server.reset()
            t0 = time.perf_counter()
            result = ap.run_batch(
                compiled, inputs, max_concurrency=256, dask=address, **extra, **kw
            )
            walls[label] = time.perf_counter() - t0
            assert result.ok
            assert server.stats()["by_status"]["200"] == calls
    one, sharded = walls["one process"], walls["sharded x2"]
    return [
        f"(b) {calls:,} calls at zero latency against the simulator server, concurrency 256",
        f"    one process {one:6.2f}s ({calls / one:5.0f} calls/s) | sharded over 2 workers "
        f"{sharded:6.2f}s ({calls / sharded:5.0f} calls/s) | ratio {one / sharded:.2f}x",
        "    (the server shares the same 2 cores with the workers)",
    ]


def part_c(address: str, width: int = 32, limit: int = 8, latency: float = 0.25) -> list[str]:
    """One wide item on a two-worker cluster under max_inflight: the live budget lends the
    idle worker's share to the busy one (a static 1/W split would cap it at limit/W)."""
    from agentplex.sim.server import ServerConfig, SimServer

    wf = ap.Workflow("wide", inputs=["topic"])
    for i in range(width):
        wf.agent("researcher", f"Research angle {i} of {{topic}}", id=f"angle{i}")
    compiled = wf.compile()
    walls: dict[str, float] = {}
    peaks: dict[str, int] = {}
    with SimServer(ServerConfig(latency_s=latency)) as server:
        kw = {"model": "openai:sim", "base_url": server.url, "api_key": "k", "cache": False}
        for label, extra in (("one process", {}), ("sharded x2", {"shard": True})):
            server.reset()
            t0 = time.perf_counter()
            result = ap.run_batch(
                compiled, [{"topic": "t"}], max_inflight=limit, dask=address, **extra, **kw
            )
            walls[label] = time.perf_counter() - t0
            assert result.ok
            peaks[label] = server.stats()["answering"]["peak"]
    one, sharded = walls["one process"], walls["sharded x2"]
    floor = width / limit * latency
    return [
        f"(c) one item of {width} parallel calls at {latency:g}s, max_inflight {limit} for the "
        "cluster",
        f"    one process {one:5.2f}s (peak {peaks['one process']} at once) | sharded over 2 "
        f"workers {sharded:5.2f}s (peak {peaks['sharded x2']} at once) | ratio "
        f"{one / sharded:.2f}x",
        f"    (the limit allows {floor:.2f}s; a static 1/W split would allow "
        f"{limit // 2} at once, {2 * floor:.2f}s)",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=ITEMS)
    parser.add_argument("--calls", type=int, default=5_000)
    parser.add_argument("--only", default="abc")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    print(f"agentplex {ap.__version__}, Python {sys.version.split()[0]}, {cores} cpus")
    loops = calibrate(0.050)
    inputs = {"n": args.items, "loops": loops}
    import dask
    import distributed

    walls: dict[str, float] = {}
    with (
        dask.config.set({"distributed.scheduler.worker-saturation": float("inf")}),
        distributed.LocalCluster(
            n_workers=cores,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",  # loopback only
            silence_logs=40,
        ) as cluster,
    ):
        if "b" in args.only:
            for line in part_b(cluster.scheduler_address, args.calls):
                print(line, flush=True)
        if "c" in args.only:
            for line in part_c(cluster.scheduler_address):
                print(line, flush=True)
        if "a" not in args.only:
            return
        runs = {
            "inline": {},
            "thread": {},
            "process": {},
            "dask": {"dask": cluster.scheduler_address},
            "dask+start": {},
        }
        for label, extra in runs.items():
            executor = label.split("+")[0]
            t0 = time.perf_counter()
            result = ap.run(flow(executor), inputs=inputs, max_concurrency=64, **extra)
            walls[label] = time.perf_counter() - t0
            assert result.ok, result.nodes["work"].error
            assert len(result.outputs["work"]) == args.items
    base = walls["inline"]
    print(f"(a) {args.items} items x 50 ms of pure-Python work, one map node, concurrency 64")
    notes = {
        "process": "(includes starting the pool)",
        "dask": f"(a running cluster: {cores} single-threaded worker processes)",
        "dask+start": "(includes starting that local cluster)",
    }
    for label, wall in walls.items():
        print(
            f"    {label:10s} {wall:6.2f}s  {base / wall:4.2f}x over inline {notes.get(label, '')}"
        )
    print(
        f"    process {base / walls['process']:.2f}x, dask {base / walls['dask']:.2f}x "
        f"(target >= 1.7x each); dask starting its own cluster {base / walls['dask+start']:.2f}x"
    )


if __name__ == "__main__":
    main()
