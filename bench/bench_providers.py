"""Provider-layer benchmark against the simulator server (a separate process on loopback).

Prints, side by side from one invocation:

(a) calls per second through agentplex's ``openai`` and ``anthropic``
    providers (one workflow of independent agent nodes) next to a bare loop of
    the same SDK making the same calls with the same concurrency, both against
    a zero-latency server, alternating rounds; the ratio is agentplex's
    overhead (target <= 15%);
(b) makespan of 1,000 concurrent calls at 1 s latency (target <= 1.5 s),
    next to the same calls from the bare SDK, from a raw asyncio HTTP client
    (the server's own floor) and through the in-process ``sim`` provider (the
    engine's floor), so a miss can be placed;
(c) the rate limit: the server enforces 600 RPM; agentplex is *not* told the
    limit and has to find it from the 429s. After the first 10 s the success
    rate should be >= 90% of the limit with fewer than 5% of responses 429;
(d) the fault mix of the acceptance test (20% 429, 5% 5xx, 2% hangs, 1%
    drops) on a 300-node workflow: outputs identical to a fault-free run,
    at most one successful call per node, and the time it took next to the
    fault-free run.

    python bench/bench_providers.py             # everything, about 2 minutes
    python bench/bench_providers.py --quick     # smaller and shorter
    python bench/bench_providers.py --only c    # one part
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from importlib.util import find_spec
from typing import Any

import agentplex as ap
from agentplex.llm.limits import _LIMITERS, reset_limiters
from agentplex.model.roles import BUILTIN_ROLES

KEY = "sk-bench-0000000000000000"


@contextlib.contextmanager
def server(*flags: str) -> Iterator[str]:
    """Run ``agentplex sim-server`` in its own process; yield its root URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "agentplex", "sim-server", "--port", "0", *flags],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        port = int(line.split("http://127.0.0.1:")[1].split()[0])
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def stats(root: str, *, timeline: bool = False) -> dict[str, Any]:
    with urllib.request.urlopen(f"{root}/stats{'?timeline=1' if timeline else ''}") as response:
        data: dict[str, Any] = json.load(response)
    return data


def reset(root: str) -> None:
    request = urllib.request.Request(f"{root}/stats/reset", method="POST", data=b"")
    urllib.request.urlopen(request).close()


def flat(n: int, prefix: str = "call") -> ap.Workflow:
    wf = ap.Workflow(f"{n} independent calls")
    for i in range(n):
        wf.agent("researcher", f"{prefix} {i}", id=f"n{i}")
    return wf


def url_of(root: str, kind: str) -> str:
    return f"{root}/v1" if kind == "openai" else root


# -- (a) overhead over the bare SDK -------------------------------------------------


async def bare_sdk(kind: str, root: str, n: int, concurrency: int, *, raw: bool = False) -> float:
    """The same calls with the SDK alone: one client, a semaphore, gather.

    The client uses the transport agentplex uses (aiohttp when installed).
    ``raw``: through the client's raw ``post`` with a JSON body, as agentplex
    does, instead of the typed ``create`` method.
    """
    import httpx2

    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    transport = "DefaultAioHttpClient" if find_spec("aiohttp") else "DefaultAsyncHttpxClient"
    system = BUILTIN_ROLES["researcher"].system_prompt
    semaphore = asyncio.Semaphore(concurrency)
    if kind == "openai":
        import openai

        client: Any = openai.AsyncOpenAI(
            base_url=url_of(root, kind),
            api_key=KEY,
            max_retries=0,
            http_client=getattr(openai, transport)(limits=limits),
        )

        async def one(i: int) -> str:
            messages = [
                {"role": "system", "content": system},
                {"role": "user", "content": f"call {i}"},
            ]
            async with semaphore:
                if raw:
                    body = {"model": "sim", "seed": 0, "messages": messages}
                    response = await client.post(
                        "/chat/completions", body=body, cast_to=httpx2.Response
                    )
                    return str(json.loads(response.content)["choices"][0]["message"]["content"])
                r = await client.chat.completions.create(model="sim", seed=0, messages=messages)
                return str(r.choices[0].message.content)
    else:
        import anthropic

        client = anthropic.AsyncAnthropic(
            base_url=url_of(root, kind),
            api_key=KEY,
            max_retries=0,
            http_client=getattr(anthropic, transport)(limits=limits),
        )

        async def one(i: int) -> str:
            messages = [{"role": "user", "content": f"call {i}"}]
            async with semaphore:
                if raw:
                    body = {"model": "sim", "max_tokens": 1024, "system": system}
                    response = await client.post(
                        "/v1/messages", body={**body, "messages": messages}, cast_to=httpx2.Response
                    )
                    return str(json.loads(response.content)["content"][0]["text"])
                r = await client.messages.create(
                    model="sim", max_tokens=1024, system=system, messages=messages
                )
                return str(r.content[0].text)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    elapsed = time.perf_counter() - t0
    await client.close()
    return elapsed


def through_agentplex(kind: str, root: str, wf: ap.CompiledWorkflow, concurrency: int) -> float:
    t0 = time.perf_counter()
    result = ap.run(
        wf,
        model=f"{kind}:sim",
        base_url=url_of(root, kind),
        api_key=KEY,
        max_concurrency=concurrency,
    )
    elapsed = time.perf_counter() - t0
    assert result.ok, result.counts()
    return elapsed


def part_a(n: int, rounds: int, concurrency: int = 16) -> list[str]:
    lines = [
        f"(a) calls/s, zero latency, {n} calls, concurrency {concurrency}, "
        f"median of {rounds} alternating rounds; bare SDK = typed create() / raw post() "
        "(agentplex's own path)"
    ]
    wf = flat(n).compile()
    with server("--latency", "0") as root:
        for kind in ("openai", "anthropic"):
            through_agentplex(kind, root, wf, concurrency)  # warm up every path
            asyncio.run(bare_sdk(kind, root, n, concurrency))
            asyncio.run(bare_sdk(kind, root, n, concurrency, raw=True))
            ours, typed, raw = [], [], []
            for _ in range(rounds):
                ours.append(through_agentplex(kind, root, wf, concurrency))
                typed.append(asyncio.run(bare_sdk(kind, root, n, concurrency)))
                raw.append(asyncio.run(bare_sdk(kind, root, n, concurrency, raw=True)))
            o, t, r = (statistics.median(x) for x in (ours, typed, raw))
            lines.append(
                f"    {kind:9s}: agentplex {n / o:5.0f} calls/s | bare SDK {n / t:5.0f} / "
                f"{n / r:5.0f} calls/s | agentplex overhead {o / t - 1:+.1%} / {o / r - 1:+.1%} "
                "(target <= +15%)"
            )
    return lines


# -- (b) 1,000 concurrent calls at 1 s ----------------------------------------------


async def raw_http(root: str, n: int) -> float:
    """The same calls from a minimal asyncio HTTP/1.1 client: what the server allows."""
    host, port = root.removeprefix("http://").split(":")

    async def one(i: int) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        body = json.dumps(
            {"model": "sim", "messages": [{"role": "user", "content": f"call {i}"}]}
        ).encode()
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()
        headers = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in headers.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        await reader.readexactly(length)
        writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - t0


def part_b(n: int) -> list[str]:
    wf = flat(n).compile()
    with server("--latency", "1.0") as root:
        warm = flat(50).compile()
        through_agentplex("openai", root, warm, 50)
        asyncio.run(bare_sdk("openai", root, 50, 50))
        t0 = time.perf_counter()
        result = ap.run(
            wf,
            model="openai:sim",
            base_url=url_of(root, "openai"),
            api_key=KEY,
            max_concurrency=n,
        )
        makespan = time.perf_counter() - t0
        peak = stats(root)["connections"]["peak"]
        bare = asyncio.run(bare_sdk("openai", root, n, n))
        bare_raw = asyncio.run(bare_sdk("openai", root, n, n, raw=True))
        raw = asyncio.run(raw_http(root, n))
    assert result.ok, result.counts()
    t0 = time.perf_counter()
    sim = ap.run(flat(n).compile(), model="sim:default", sim_scale=0, max_concurrency=n)
    engine = time.perf_counter() - t0 + 1.0  # the same calls with the 1 s latency added back
    assert sim.ok
    transport = "aiohttp" if find_spec("aiohttp") else "httpx"
    return [
        f"(b) {n} concurrent calls at 1.0 s latency (target <= 1.5 s), {transport} transport:",
        f"    agentplex openai provider {makespan:5.2f}s ({peak} connections at peak)",
        f"    bare openai SDK, create() {bare:5.2f}s   agentplex/bare {makespan / bare:.2f}",
        f"    bare openai SDK, post()   {bare_raw:5.2f}s   agentplex/bare {makespan / bare_raw:.2f}",
        f"    raw asyncio HTTP client   {raw:5.2f}s   (the server's floor)",
        f"    in-process sim + 1.0 s    {engine:5.2f}s   (the engine's floor)",
    ]


# -- (c) settling under an enforced RPM ---------------------------------------------


def part_c(seconds: float, rpm: int = 600) -> list[str]:
    per_s = rpm / 60
    n = int(per_s * seconds)
    wf = flat(n, "limited").compile()
    reset_limiters()  # start from nothing learned
    with server("--latency", "0.5", "--rpm", str(rpm)) as root:
        t0 = time.perf_counter()
        result = ap.run(
            wf,
            model="openai:sim",
            base_url=url_of(root, "openai"),
            api_key=KEY,
            max_concurrency=64,
            retries=1000,
            backoff_max_s=5,
        )
        wall = time.perf_counter() - t0
        timeline = stats(root, timeline=True)["timeline"]
    assert result.ok, result.counts()
    end = max(t for t, _ in timeline)
    late = [(t, s) for t, s in timeline if 10.0 <= t <= end - 1.0]  # skip the last drain second
    ok = sum(1 for _, s in late if s == "200")
    limited = sum(1 for _, s in late if s == "429")
    span = (end - 1.0) - 10.0
    rate = ok / span / per_s if span > 0 else float("nan")
    share = limited / max(1, len(late))
    early = [s for t, s in timeline if t < 10.0]
    (limiter,) = _LIMITERS.values()
    learned = limiter.statistics()
    return [
        f"(c) server enforces {rpm} RPM, client not told; {n} calls at 0.5 s, concurrency 64, "
        f"{wall:.1f}s in all",
        f"    first 10 s: {early.count('200')} ok, {early.count('429')} x 429",
        f"    after 10 s: success rate {rate:.1%} of the limit (target >= 90%), "
        f"429 share {share:.1%} (target < 5%)",
        f"    the limiter: {learned.decreases} cuts, final pace {learned.pace_rps or 0:.2f}/s "
        f"(the limit is {per_s:.2f}/s)",
    ]


# -- (d) the acceptance fault mix ---------------------------------------------------


def big(n: int, seed: int = 7) -> ap.Workflow:
    rng = random.Random(seed)
    wf = ap.Workflow("faulty")
    for i in range(n):
        deps = sorted({f"n{rng.randrange(i)}" for _ in range(rng.randint(0, 2))}) if i else []
        wf.agent("researcher", f"Topic {i}", id=f"n{i}", depends_on=deps)
    return wf


def part_d(n: int) -> list[str]:
    wf = big(n).compile()
    expected = ap.run(wf, model="sim:sim", sim_scale=0).outputs
    faults = [
        "--p429",
        "0.1",
        "--p429-bare",
        "0.1",
        "--p500",
        "0.025",
        "--p503",
        "0.025",
        "--p-hang",
        "0.02",
        "--p-drop",
        "0.01",
        "--retry-after",
        "0.2",
    ]
    config = ap.ProviderConfig(kind="openai", timeout_s=2.0)
    lines = [f"(d) {n}-node DAG, 20% 429 / 5% 5xx / 2% hang / 1% drop, latency 0.05 s"]
    for label, flags in (("fault-free", []), ("fault mix", faults)):
        with server("--latency", "0.05", *flags) as root:
            t0 = time.perf_counter()
            result = ap.run(
                wf,
                model="openai:sim",
                base_url=url_of(root, "openai"),
                api_key=KEY,
                providers={"openai": config},
                max_concurrency=32,
                retries=20,
                backoff_base_s=0.1,
                backoff_max_s=2.0,
            )
            wall = time.perf_counter() - t0
            data = stats(root)
        twice = sum(1 for c in data["by_prompt"].values() if c.get("200", 0) > 1)
        lines.append(
            f"    {label:10s}: {wall:5.2f}s, all succeeded {result.ok}, outputs identical "
            f"{result.outputs == expected}, nodes answered twice {twice}, "
            f"responses {dict(sorted(data['by_status'].items()))}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="abcd")
    args = parser.parse_args()
    quick = args.quick
    # Every part sends the same requests again and again: with the result cache on
    # (the default, since issue 5) the repeats would be answered from it, and part (a)
    # would time cache hits instead of the provider path it names.
    os.environ["AGENTPLEX_CACHE"] = "off"
    print(f"agentplex {ap.__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} cpus")
    parts = {
        "a": lambda: part_a(300 if quick else 1000, 3 if quick else 5),
        "b": lambda: part_b(1000),
        "c": lambda: part_c(20 if quick else 45),
        "d": lambda: part_d(100 if quick else 300),
    }
    for key in args.only:
        for line in parts[key]():
            print(line, flush=True)


if __name__ == "__main__":
    main()
