"""A local HTTP server that behaves like a real, imperfect LLM provider.

``agentplex sim-server`` speaks the OpenAI chat completions and Anthropic
messages APIs on 127.0.0.1 with the simulator's deterministic answers, and
injects faults and enforces limits on request (see :mod:`agentplex.sim.app`).
Tests start one in a background thread with :class:`SimServer`; the CLI runs
one in the foreground with :func:`serve`.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from typing import Any

from agentplex.sim.app import FAULTS, ServerConfig, SimApp, prompt_hash
from agentplex.sim.http import serve_connection

HOST = "127.0.0.1"


async def start(app: SimApp, port: int = 0) -> asyncio.Server:
    """Start serving ``app`` on 127.0.0.1:``port`` (0: any free port)."""

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_connection(reader, writer, app.handle, app.tracker)

    return await asyncio.start_server(on_connect, HOST, port, limit=64 * 1024, backlog=4096)


async def serve(config: ServerConfig, port: int, *, ready: Any = None) -> None:
    """Serve until cancelled; call ``ready(port)`` once listening."""
    app = SimApp(config)
    server = await start(app, port)
    if ready is not None:
        ready(server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()


class SimServer:
    """The simulator server on a background thread with its own event loop.

    Use as a context manager; ``url`` is the OpenAI-style base URL
    (``http://127.0.0.1:PORT/v1``) and ``root`` the Anthropic one.
    """

    def __init__(self, config: ServerConfig | None = None, *, port: int = 0) -> None:
        self.app = SimApp(config or ServerConfig())
        self._port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name="agentplex-sim-server", daemon=True)
        self._ready = threading.Event()
        self._server: asyncio.Server | None = None
        self._error: BaseException | None = None
        self.port = 0

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(start(self.app, self._port))
            self.port = self._server.sockets[0].getsockname()[1]
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    @property
    def root(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.root}/v1"

    def start(self) -> SimServer:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        """Stop listening, close every connection (ending hung requests) and the loop."""
        if not self._thread.is_alive():
            return

        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for writer in list(self.app.tracker.writers):
                writer.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def configure(self, **changes: Any) -> None:
        """Change the fault/limit settings (from the test thread)."""
        import dataclasses

        config = dataclasses.replace(self.app.config, **changes)

        def apply() -> None:
            fresh = SimApp(config)
            self.app.config, self.app.rng = fresh.config, fresh.rng
            self.app._rpm, self.app._tpm = fresh._rpm, fresh._tpm

        self._loop.call_soon_threadsafe(apply)
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), self._loop).result(5)

    def stats(self, *, timeline: bool = False) -> dict[str, Any]:
        """Return ``/stats`` (read over HTTP, like any client would)."""
        suffix = "?timeline=1" if timeline else ""
        with urllib.request.urlopen(f"{self.root}/stats{suffix}", timeout=10) as response:
            data: dict[str, Any] = json.load(response)
        return data

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.root}/stats/reset", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["FAULTS", "HOST", "ServerConfig", "SimApp", "SimServer", "prompt_hash", "serve", "start"]
