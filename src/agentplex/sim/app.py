"""The simulator server's endpoints, faults, limits and statistics.

Endpoints (all JSON):

- ``POST /v1/chat/completions``: OpenAI chat completions, streaming with
  ``"stream": true`` (server-sent events, usage in the last chunk when
  ``stream_options.include_usage`` is set);
- ``GET /v1/models``: the OpenAI model list;
- ``POST /v1/messages``: Anthropic messages, streaming too;
- ``GET /stats``: request counts per status and per prompt hash, open
  connections; ``POST /stats/reset`` zeroes them.

A model named ``status-NNN`` always answers HTTP NNN (a 401 echoes the key
it was sent, as OpenAI's does), so tests can reach every status.

Answers come from :func:`agentplex.sim.provider.generate`, so the text, usage and
latency are the in-process ``sim`` provider's for the same model, messages,
seed, output cap and schema. The cap is OpenAI's ``max_completion_tokens`` or
``max_tokens`` and Anthropic's ``max_tokens``: a longer answer is cut there
with ``finish_reason: "length"`` (Anthropic: ``stop_reason: "max_tokens"``)
and the cap as its completion tokens. A schema is OpenAI's ``response_format:
{type: json_schema, json_schema: {schema}}`` (``json_object`` asks for any
object), answered as JSON text; or an Anthropic tool forced with
``tool_choice: {type: tool}`` (or ``any``), answered with a ``tool_use`` block
whose ``input`` is the value and ``stop_reason: "tool_use"``, streamed as the
SDK's ``input_json_delta`` events. OpenAI usage reports
``prompt_tokens_details.cached_tokens`` (always 0, as llama.cpp does) and
Anthropic's its two cache counts, so clients read those fields.

Faults are drawn per request from a seeded generator, before the answer; a
``script`` of statuses answers the first requests of each prompt in order
instead (429s with Retry-After), so a test can ask for "ten 429s, then the
answer" without depending on which request draws what. The enforced RPM/TPM
limits are token buckets holding one second's worth (like real providers, which
enforce per-minute limits over short windows) and answer real 429s with
``retry-after`` and ``retry-after-ms`` when exceeded.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from agentplex.llm.base import Message
from agentplex.result import Usage
from agentplex.sim.http import ConnectionTracker, Drop, HttpRequest, HttpResponse, Stream
from agentplex.sim.provider import MODELS as SIM_MODELS
from agentplex.sim.provider import SimAnswer, generate, stream_pieces

FAULTS = (
    "p429",
    "p429_bare",
    "p500",
    "p503",
    "p529",
    "p_hang",
    "p_drop",
    "p_malformed",
    "p_trickle",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """How the simulator server behaves. Probabilities are per request."""

    latency_s: float | None = None
    """Fixed latency of every answer; None: the sim latency model of the model."""
    scale: float = 1.0
    """Multiplies every latency."""
    p429: float = 0.0
    """429 with a Retry-After header."""
    p429_bare: float = 0.0
    """429 without Retry-After."""
    p500: float = 0.0
    p503: float = 0.0
    p529: float = 0.0
    """Anthropic's 'overloaded' (sent on both APIs)."""
    p_hang: float = 0.0
    """Hold the request for ``hang_s`` (past any sane client timeout), then drop it."""
    p_drop: float = 0.0
    """Close the connection without answering."""
    p_malformed: float = 0.0
    """Answer 200 with a body that is not valid JSON."""
    p_trickle: float = 0.0
    """Send the headers of a 200, then one byte every ``trickle_s``, forever (until the
    client goes): a read timeout that restarts on every byte never fires."""
    trickle_s: float = 2.0
    script: tuple[int, ...] = ()
    """HTTP statuses the first ``len(script)`` requests of each prompt get, in order
    (429s with ``retry_after_s``; 200 answers normally); later requests as usual."""
    retry_after_s: float = 1.0
    """The Retry-After sent with injected 429s."""
    hang_s: float = 3600.0
    rpm: float | None = None
    """Enforced requests per minute (real 429s beyond it)."""
    tpm: float | None = None
    """Enforced tokens per minute."""
    seed: int = 0
    """Seed of the fault draws."""

    def check(self) -> ServerConfig:
        from agentplex.exceptions import ConfigError

        total = 0.0
        for name in FAULTS:
            p = getattr(self, name)
            if not 0 <= p <= 1:
                raise ConfigError(f"sim-server: {name} must be between 0 and 1, got {p}.")
            total += p
        if total > 1:
            raise ConfigError(f"sim-server: fault probabilities add up to {total:g} > 1.")
        if not self.trickle_s > 0:
            raise ConfigError(f"sim-server: trickle_s must be > 0, got {self.trickle_s}.")
        if any(not 200 <= s <= 599 for s in self.script):
            raise ConfigError(f"sim-server: script holds statuses 200-599, got {self.script}.")
        if self.latency_s is not None and self.latency_s < 0:
            raise ConfigError(f"sim-server: latency must be >= 0, got {self.latency_s}.")
        for name in ("rpm", "tpm"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"sim-server: {name} must be > 0, got {value}.")
        return self


class _Bucket:
    """A token bucket holding one second's worth; admits while not in debt."""

    def __init__(self, per_minute: float) -> None:
        self.rate = per_minute / 60
        self.level = self.rate
        self.at = time.monotonic()

    def take(self, amount: float) -> float:
        """Take ``amount`` and return 0, or return how long until it could be taken."""
        now = time.monotonic()
        self.level = min(self.rate, self.level + (now - self.at) * self.rate)
        self.at = now
        need = min(amount, self.rate)
        if self.level >= need:
            self.level -= amount
            return 0.0
        return (need - self.level) / self.rate


@dataclass(slots=True)
class _Stats:
    requests: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_prompt: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    timeline: list[tuple[float, str]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    models: dict[str, str] = field(default_factory=dict)
    """Prompt hash -> model, so /stats can count per model too."""
    peak_answering: int = 0
    """The most completions being answered at once."""


@dataclass(frozen=True, slots=True)
class _Call:
    """What a completion request asks for, in either API."""

    model: str
    messages: list[Message]
    seed: int = 0
    cap: int | None = None
    """The output cap in tokens; None: none sent."""
    schema: dict[str, Any] | None = None
    """The JSON Schema the answer must follow; None: free text."""
    tool: str | None = None
    """Anthropic: the forced tool whose ``input`` is the answer."""
    include_usage: bool = False
    """OpenAI streaming: send a last chunk with the usage."""


def prompt_hash(model: str, messages: list[Message]) -> str:
    """Return the short hash /stats files a request under (model and messages)."""
    payload = json.dumps([model, [[m.role, m.content] for m in messages]]).encode()
    return hashlib.blake2b(payload, digest_size=6).hexdigest()


class SimApp:
    """Request handling of the simulator server."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config.check()
        self.tracker = ConnectionTracker()
        self.rng = random.Random(config.seed)
        self.stats = _Stats()
        self._rpm = _Bucket(config.rpm) if config.rpm else None
        self._tpm = _Bucket(config.tpm) if config.tpm else None
        self._ids = 0
        self.answering = 0
        """Completions being answered now (from their request to their last byte)."""

    def reset(self) -> None:
        """Zero the statistics (the connection peak restarts from what is open now)."""
        self.stats = _Stats(peak_answering=self.answering)
        self.tracker.peak = self.tracker.open
        self.tracker.total = 0

    def _record(self, status: str, key: str | None) -> None:
        stats = self.stats
        stats.requests += 1
        stats.by_status[status] += 1
        if key is not None:
            stats.by_prompt[key][status] += 1
        stats.timeline.append((time.monotonic() - stats.started, status))

    def _by_model(self) -> dict[str, dict[str, int]]:
        stats = self.stats
        out: dict[str, Counter[str]] = defaultdict(Counter)
        for key, counts in stats.by_prompt.items():
            out[stats.models.get(key, "?")].update(counts)
        return {model: dict(counts) for model, counts in out.items()}

    def snapshot(self, *, timeline: bool = False) -> dict[str, Any]:
        stats, tracker = self.stats, self.tracker
        data: dict[str, Any] = {
            "requests": stats.requests,
            "by_status": dict(stats.by_status),
            "by_prompt": {k: dict(v) for k, v in stats.by_prompt.items()},
            "by_model": self._by_model(),
            "connections": {"open": tracker.open, "peak": tracker.peak, "total": tracker.total},
            "answering": {"now": self.answering, "peak": stats.peak_answering},
            "config": asdict(self.config),
        }
        if timeline:
            data["timeline"] = [[round(t, 4), s] for t, s in stats.timeline]
        return data

    # -- routing ----------------------------------------------------------------

    async def handle(
        self, request: HttpRequest, start_stream: Callable[[int, dict[str, str]], Awaitable[Stream]]
    ) -> HttpResponse | None:
        path = request.path.split("?", 1)[0].rstrip("/")
        if request.method == "GET" and path == "/stats":
            return HttpResponse.json(200, self.snapshot(timeline="timeline" in request.path))
        if request.method == "POST" and path == "/stats/reset":
            self.reset()
            return HttpResponse.json(200, {"ok": True})
        if request.method == "GET" and path == "/v1/models":
            models = [{"id": m, "object": "model", "owned_by": "agentplex"} for m in SIM_MODELS]
            return HttpResponse.json(200, {"object": "list", "data": models})
        if request.method == "POST" and path == "/v1/chat/completions":
            return await self._answer(request, start_stream, _OPENAI)
        if request.method == "POST" and path == "/v1/messages":
            return await self._answer(request, start_stream, _ANTHROPIC)
        return HttpResponse.json(404, _OPENAI.error(404, f"no route {request.method} {path}"))

    async def _answer(
        self,
        request: HttpRequest,
        start_stream: Callable[[int, dict[str, str]], Awaitable[Stream]],
        api: _Api,
    ) -> HttpResponse | None:
        """A completion, counted in ``answering`` while it is served."""
        self.answering += 1
        self.stats.peak_answering = max(self.stats.peak_answering, self.answering)
        try:
            return await self._complete(request, start_stream, api)
        finally:
            self.answering -= 1

    async def _complete(
        self,
        request: HttpRequest,
        start_stream: Callable[[int, dict[str, str]], Awaitable[Stream]],
        api: _Api,
    ) -> HttpResponse | None:
        try:
            body = request.json()
            call = api.parse(body)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            self._record("400", None)
            return HttpResponse.json(400, api.error(400, f"invalid request: {exc}"))
        if not api.authorized(request.headers):
            self._record("401", None)
            return HttpResponse.json(401, api.error(401, "missing API key"))
        model, messages = call.model, call.messages
        key = prompt_hash(model, messages)
        self.stats.models[key] = model
        if model.startswith("status-") and model[7:].isdigit():
            return self._forced(int(model[7:]), key, api, request)
        scripted = self._scripted(key)
        if scripted is not None:
            return self._status(scripted, key, api)
        fault = self._draw_fault()
        if fault == "p_trickle":
            return await self._trickle(key, request, body, start_stream)
        if fault is not None:
            return await self._fault(fault, key, api, request)
        answer = generate(
            model, messages, call.seed, max_output_tokens=call.cap, schema=call.schema
        )
        limited = self._over_limit(answer.usage.input_tokens + answer.usage.output_tokens)
        if limited is not None:
            self._record("429", key)
            wait_ms = max(1, math.ceil(limited * 1000))
            headers = {"retry-after": str(math.ceil(limited)), "retry-after-ms": str(wait_ms)}
            return HttpResponse.json(429, api.error(429, "rate limit exceeded"), headers)
        config = self.config
        latency = config.latency_s if config.latency_s is not None else answer.latency_s
        latency *= config.scale
        self._ids += 1
        ident = f"{self._ids:08d}"
        if body.get("stream"):
            self._record("200", key)
            stream = await start_stream(200, {"content-type": "text/event-stream"})
            pieces = stream_pieces(answer.text)
            await asyncio.sleep(latency * 0.3)
            gap = latency * 0.7 / max(1, len(pieces))
            for chunk in api.stream(ident, call, answer, pieces):
                await stream.send(chunk)
                if gap > 0:
                    await asyncio.sleep(gap)
            await stream.end()
            return None
        if latency > 0:
            await asyncio.sleep(latency)
        self._record("200", key)
        return HttpResponse.json(200, api.answer(ident, call, answer))

    def _forced(self, status: int, key: str, api: _Api, request: HttpRequest) -> HttpResponse:
        """Answer a ``status-NNN`` model with HTTP NNN; a 401 echoes the key, as OpenAI does."""
        self._record(str(status), key)
        message = f"simulated {status}"
        if status == 401:
            sent = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            message = f"Incorrect API key provided: {sent or request.headers.get('x-api-key')}"
        return HttpResponse.json(status, api.error(status, message), {"retry-after": "0"})

    def _scripted(self, key: str) -> int | None:
        """The status the script gives this request of prompt ``key``, or None (answer it)."""
        script = self.config.script
        if not script:
            return None
        seen = sum(self.stats.by_prompt[key].values()) if key in self.stats.by_prompt else 0
        status = script[seen] if seen < len(script) else None
        return None if status == 200 else status

    def _status(self, status: int, key: str, api: _Api) -> HttpResponse:
        """An error answer of ``status`` (429s carry ``retry_after_s``)."""
        self._record(str(status), key)
        headers = {"retry-after": f"{self.config.retry_after_s:g}"} if status == 429 else {}
        return HttpResponse.json(status, api.error(status, f"simulated {status}"), headers)

    async def _trickle(
        self,
        key: str,
        request: HttpRequest,
        body: Any,
        start_stream: Callable[[int, dict[str, str]], Awaitable[Stream]],
    ) -> HttpResponse | None:
        """Start a 200 and send one space every ``trickle_s`` until the client goes."""
        self._record("trickle", key)
        kind = "text/event-stream" if body.get("stream") else "application/json"
        stream = await start_stream(200, {"content-type": kind})
        while True:
            await stream.send(b" ")  # JSON and SSE both allow it; neither ever ends
            if await request.disconnected(self.config.trickle_s):
                raise Drop

    def _draw_fault(self) -> str | None:
        draw = self.rng.random()
        for name in FAULTS:
            p = getattr(self.config, name)
            if draw < p:
                return name
            draw -= p
        return None

    def _over_limit(self, tokens: int) -> float | None:
        waits = [b.take(n) for b, n in ((self._rpm, 1), (self._tpm, tokens)) if b is not None]
        wait = max(waits, default=0.0)
        return wait if wait > 0 else None

    async def _fault(self, fault: str, key: str, api: _Api, request: HttpRequest) -> HttpResponse:
        config = self.config
        if fault == "p_drop":
            self._record("drop", key)
            raise Drop
        if fault == "p_hang":
            self._record("hang", key)
            await request.disconnected(config.hang_s)  # until the client gives up
            raise Drop
        if fault == "p_malformed":
            self._record("malformed", key)
            return HttpResponse(200, b'{"id": "broken", "choices": [{"message": {"content": "')
        status = {"p429": 429, "p429_bare": 429, "p500": 500, "p503": 503, "p529": 529}[fault]
        self._record(str(status), key)
        headers = {"retry-after": f"{config.retry_after_s:g}"} if fault == "p429" else {}
        return HttpResponse.json(status, api.error(status, f"simulated {status}"), headers)


class _Api:
    """What differs between the OpenAI and Anthropic wire formats."""

    def parse(self, body: Any) -> _Call:
        raise NotImplementedError

    def authorized(self, headers: dict[str, str]) -> bool:
        raise NotImplementedError

    def error(self, status: int, message: str) -> dict[str, Any]:
        raise NotImplementedError

    def answer(self, ident: str, call: _Call, answer: SimAnswer) -> dict[str, Any]:
        raise NotImplementedError

    def stream(self, ident: str, call: _Call, answer: SimAnswer, pieces: list[str]) -> list[bytes]:
        raise NotImplementedError


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


def _cap(body: Any, *names: str) -> int | None:
    """The output cap the request sets under the first of ``names`` it uses."""
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if type(value) is not int or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        return value
    return None


class _OpenAIApi(_Api):
    def parse(self, body: Any) -> _Call:
        model = body["model"]
        messages = [Message(m["role"], _text(m["content"])) for m in body["messages"]]
        if not isinstance(model, str) or not messages:
            raise ValueError("'model' and 'messages' are required")
        seed = body.get("seed", 0)
        return _Call(
            model,
            messages,
            seed if type(seed) is int else 0,
            _cap(body, "max_completion_tokens", "max_tokens"),
            self._schema(body.get("response_format")),
            include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
        )

    @staticmethod
    def _schema(form: Any) -> dict[str, Any] | None:
        if form is None:
            return None
        kind = form.get("type")
        if kind == "text":
            return None
        if kind == "json_object":
            return {"type": "object"}
        if kind == "json_schema":
            spec = form["json_schema"]
            schema = spec.get("schema", {})
            if not isinstance(schema, dict):
                raise ValueError("response_format.json_schema.schema must be an object")
            return schema
        raise ValueError(f"response_format.type must be text, json_object or json_schema: {kind!r}")

    def authorized(self, headers: dict[str, str]) -> bool:
        return headers.get("authorization", "").removeprefix("Bearer ").strip() != ""

    def error(self, status: int, message: str) -> dict[str, Any]:
        kind = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found"}
        return {
            "error": {
                "message": message,
                "type": kind.get(status, "server_error"),
                "code": "rate_limit_exceeded" if status == 429 else None,
            }
        }

    @staticmethod
    def _usage(usage: Usage) -> dict[str, Any]:
        return {
            "prompt_tokens": usage.input_tokens,
            "completion_tokens": usage.output_tokens,
            "total_tokens": usage.total_tokens,
            "prompt_tokens_details": {"cached_tokens": 0},
        }

    def answer(self, ident: str, call: _Call, answer: SimAnswer) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{ident}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": call.model,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "length" if answer.truncated else "stop",
                    "message": {"role": "assistant", "content": answer.text},
                }
            ],
            "usage": self._usage(answer.usage),
        }

    def stream(self, ident: str, call: _Call, answer: SimAnswer, pieces: list[str]) -> list[bytes]:
        base = {
            "id": f"chatcmpl-{ident}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": call.model,
        }
        chunks = []
        for i, piece in enumerate(pieces):
            delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
            chunks.append(
                _sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
            )
        finish = "length" if answer.truncated else "stop"
        chunks.append(
            _sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        )
        if call.include_usage:
            chunks.append(_sse({**base, "choices": [], "usage": self._usage(answer.usage)}))
        chunks.append(b"data: [DONE]\n\n")
        return chunks


class _AnthropicApi(_Api):
    def parse(self, body: Any) -> _Call:
        model = body["model"]
        system = body.get("system")
        messages = [Message("system", _text(system))] if system else []
        messages += [Message(m["role"], _text(m["content"])) for m in body["messages"]]
        if not isinstance(model, str) or not body["messages"]:
            raise ValueError("'model' and 'messages' are required")
        if not isinstance(body.get("max_tokens"), int):
            raise ValueError("max_tokens: Field required")
        tool, schema = self._forced_tool(body)
        return _Call(model, messages, 0, _cap(body, "max_tokens"), schema, tool)

    @staticmethod
    def _forced_tool(body: Any) -> tuple[str | None, dict[str, Any] | None]:
        """The tool ``tool_choice`` forces and its ``input_schema``; (None, None) for text."""
        tools = body.get("tools") or []
        choice = body.get("tool_choice") or {}
        by_name = {t["name"]: t for t in tools}
        if choice.get("type") == "tool":
            name = choice["name"]
            if name not in by_name:
                raise ValueError(f"tool_choice names {name!r}, which is not in tools")
        elif choice.get("type") == "any" and tools:
            name = tools[0]["name"]
        else:
            return None, None  # auto or none: a text answer
        schema = by_name[name].get("input_schema")
        if not isinstance(schema, dict):
            raise ValueError(f"tools: {name!r} needs an input_schema object")
        return name, schema

    def authorized(self, headers: dict[str, str]) -> bool:
        bearer = headers.get("authorization", "").removeprefix("Bearer ").strip()
        return bool(headers.get("x-api-key", "").strip() or bearer)

    def error(self, status: int, message: str) -> dict[str, Any]:
        kind = {
            400: "invalid_request_error",
            401: "authentication_error",
            404: "not_found_error",
            429: "rate_limit_error",
            529: "overloaded_error",
        }
        return {
            "type": "error",
            "error": {"type": kind.get(status, "api_error"), "message": message},
        }

    @staticmethod
    def _stop(call: _Call, answer: SimAnswer) -> str:
        if answer.truncated:
            return "max_tokens"
        return "tool_use" if call.tool else "end_turn"

    @staticmethod
    def _usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
        return {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }

    def answer(self, ident: str, call: _Call, answer: SimAnswer) -> dict[str, Any]:
        if call.tool is not None:
            try:  # a tool call cut off by the cap has no complete input
                value = json.loads(answer.text) if not answer.truncated else {}
            except ValueError:
                value = {}
            content = [
                {"type": "tool_use", "id": f"toolu_{ident}", "name": call.tool, "input": value}
            ]
        else:
            content = [{"type": "text", "text": answer.text}]
        usage = answer.usage
        return {
            "id": f"msg_{ident}",
            "type": "message",
            "role": "assistant",
            "model": call.model,
            "content": content,
            "stop_reason": self._stop(call, answer),
            "stop_sequence": None,
            "usage": self._usage(usage.input_tokens, usage.output_tokens),
        }

    def stream(self, ident: str, call: _Call, answer: SimAnswer, pieces: list[str]) -> list[bytes]:
        usage = answer.usage
        start: dict[str, Any] = {
            "id": f"msg_{ident}",
            "type": "message",
            "role": "assistant",
            "model": call.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": self._usage(usage.input_tokens, 1),
        }
        if call.tool is not None:
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": f"toolu_{ident}",
                "name": call.tool,
                "input": {},
            }
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces]
        else:
            block = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in pieces]
        chunks = [
            _sse({"type": "message_start", "message": start}, "message_start"),
            _sse(
                {"type": "content_block_start", "index": 0, "content_block": block},
                "content_block_start",
            ),
        ]
        chunks += [
            _sse({"type": "content_block_delta", "index": 0, "delta": d}, "content_block_delta")
            for d in deltas
        ]
        chunks += [
            _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
            _sse(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": self._stop(call, answer), "stop_sequence": None},
                    "usage": {"output_tokens": usage.output_tokens},
                },
                "message_delta",
            ),
            _sse({"type": "message_stop"}, "message_stop"),
        ]
        return chunks


def _text(content: Any) -> str:
    """Flatten a message's content (a string or a list of text blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    raise TypeError(f"unsupported message content {type(content).__name__}")


_OPENAI = _OpenAIApi()
_ANTHROPIC = _AnthropicApi()

__all__ = ["FAULTS", "ServerConfig", "SimApp", "prompt_hash"]
