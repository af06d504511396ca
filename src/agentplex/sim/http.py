"""Just enough HTTP/1.1 on asyncio streams for the simulator server.

Keep-alive, ``Content-Length`` request bodies, plain and chunked (streamed)
responses. Written by hand rather than on a web framework because the server
must misbehave on purpose at the wire level (drop a connection, hang, send a
broken body) and must not add a dependency to the core package.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

_MAX_HEAD = 64 * 1024
_MAX_BODY = 32 * 1024 * 1024


@dataclass(slots=True)
class HttpRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    reader: asyncio.StreamReader | None = None

    async def disconnected(self, timeout_s: float) -> bool:
        """Wait until the client closes the connection, or ``timeout_s``; return whether it did."""
        if self.reader is None:
            await asyncio.sleep(timeout_s)
            return False
        try:
            await asyncio.wait_for(self.reader.read(1), timeout_s)
        except TimeoutError:
            return False
        return True  # end of file (or a stray byte): the client is done with this answer

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass(slots=True)
class HttpResponse:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> HttpResponse:
        return cls(status, json.dumps(payload).encode(), headers or {})


class Drop(Exception):
    """Raised by a handler to close the connection without answering."""


class Stream:
    """A chunked response written piece by piece (server-sent events)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    async def send(self, data: bytes) -> None:
        if data:
            self._writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await self._writer.drain()

    async def end(self) -> None:
        self._writer.write(b"0\r\n\r\n")
        await self._writer.drain()


Handler = Callable[
    [HttpRequest, Callable[[int, dict[str, str]], Awaitable[Stream]]],
    Awaitable[HttpResponse | None],
]
"""``handler(request, start_stream)``: return a response, or start a stream and return None."""


class ConnectionTracker:
    """Counts open connections, so tests can prove clients closed theirs."""

    def __init__(self) -> None:
        self.open = 0
        self.peak = 0
        self.total = 0
        self.writers: set[asyncio.StreamWriter] = set()


def _head(status: int, headers: dict[str, str]) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Overloaded" if status == 529 else "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _read_request(reader: asyncio.StreamReader) -> HttpRequest | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None  # the client closed the connection between requests
    except asyncio.LimitOverrunError:
        raise ValueError("request head too large") from None
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    method, path, _version = request_line.split(" ", 2)
    headers: dict[str, str] = {}
    for line in header_lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    if length > _MAX_BODY:
        raise ValueError("request body too large")
    body = await reader.readexactly(length) if length else b""
    return HttpRequest(method.upper(), path, headers, body, reader)


async def serve_connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    handler: Handler,
    tracker: ConnectionTracker,
) -> None:
    """Serve requests on one connection until the client closes it."""
    tracker.open += 1
    tracker.total += 1
    tracker.peak = max(tracker.peak, tracker.open)
    tracker.writers.add(writer)
    try:
        while True:
            try:
                request = await _read_request(reader)
            except (ValueError, asyncio.IncompleteReadError):
                writer.write(_head(400, {"content-length": "0", "connection": "close"}))
                break
            if request is None:
                break
            streamed = False

            async def start_stream(status: int, headers: dict[str, str]) -> Stream:
                nonlocal streamed
                streamed = True
                writer.write(_head(status, {**headers, "transfer-encoding": "chunked"}))
                await writer.drain()
                return Stream(writer)

            try:
                response = await handler(request, start_stream)
            except Drop:
                break
            if not streamed:
                assert response is not None
                headers = {
                    "content-type": response.content_type,
                    "content-length": str(len(response.body)),
                    **response.headers,
                }
                writer.write(_head(response.status, headers) + response.body)
                await writer.drain()
            if request.headers.get("connection", "").lower() == "close":
                break
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        tracker.open -= 1
        tracker.writers.discard(writer)
        writer.close()
