"""The simulator server on loopback, spoken to with plain HTTP (no SDK in between)."""

from __future__ import annotations

import http.client
import json
import signal
import time
from typing import Any

import jsonschema
import pytest

from agentplex.llm.base import Message
from agentplex.sim.provider import generate
from agentplex.sim.server import FAULTS, ServerConfig, SimServer, prompt_hash

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Go vs Rust"},
]


def post(
    server: SimServer, path: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request(
            "POST",
            path,
            json.dumps(body),
            {
                "content-type": "application/json",
                "authorization": "Bearer sk-test",
                **(headers or {}),
            },
        )
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def chat(server: SimServer, **extra: Any) -> tuple[int, dict[str, str], bytes]:
    return post(server, "/v1/chat/completions", {"model": "default", "messages": MESSAGES, **extra})


def test_openai_answer_is_the_in_process_simulators(server: SimServer) -> None:
    status, _, body = chat(server, seed=3)
    assert status == 200
    data = json.loads(body)
    expected = generate(
        "default", [Message("system", "You are terse."), Message("user", "Go vs Rust")], 3
    )
    assert data["choices"][0]["message"]["content"] == expected.text
    assert data["usage"]["prompt_tokens"] == expected.usage.input_tokens
    assert data["usage"]["completion_tokens"] == expected.usage.output_tokens


def test_anthropic_answer_puts_the_system_prompt_first(server: SimServer) -> None:
    body = {
        "model": "default",
        "max_tokens": 100,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Go vs Rust"}]}],
    }
    status, _, raw = post(server, "/v1/messages", body, {"x-api-key": "k-123456"})
    assert status == 200
    data = json.loads(raw)
    expected = generate(
        "default", [Message("system", "You are terse."), Message("user", "Go vs Rust")], 0
    )
    assert data["content"][0]["text"] == expected.text
    assert data["usage"]["output_tokens"] == expected.usage.output_tokens


def test_anthropic_requires_max_tokens(server: SimServer) -> None:
    status, _, raw = post(server, "/v1/messages", {"model": "default", "messages": MESSAGES[1:]})
    assert status == 400
    assert b"max_tokens" in raw


def test_models_and_unknown_routes(server: SimServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", "/v1/models")
    models = json.loads(conn.getresponse().read())
    assert {m["id"] for m in models["data"]} >= {"default", "fast", "instant"}
    conn.request("GET", "/v1/nothing")
    response = conn.getresponse()
    response.read()
    assert response.status == 404
    conn.close()


def test_missing_key_is_401(server: SimServer) -> None:
    status, _, _ = post(
        server, "/v1/chat/completions", {"model": "m", "messages": MESSAGES}, {"authorization": ""}
    )
    assert status == 401


def test_openai_stream_is_server_sent_events_with_usage(server: SimServer) -> None:
    status, headers, raw = chat(server, stream=True, stream_options={"include_usage": True})
    assert status == 200
    assert headers["content-type"] == "text/event-stream"
    events = [line[6:] for line in raw.decode().split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == json.loads(chat(server)[2])["choices"][0]["message"]["content"]
    assert chunks[-1]["usage"]["completion_tokens"] > 0


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("p429", "429"),
        ("p429_bare", "429"),
        ("p500", "500"),
        ("p503", "503"),
        ("p529", "529"),
        ("p_malformed", "malformed"),
    ],
)
def test_each_answered_fault(server: SimServer, fault: str, expected: str) -> None:
    server.configure(**{fault: 1.0}, retry_after_s=7)
    status, headers, raw = chat(server)
    if expected == "malformed":
        assert status == 200
        with pytest.raises(json.JSONDecodeError):
            json.loads(raw)
    else:
        assert status == int(expected)
    assert ("retry-after" in headers) == (fault == "p429")
    if fault == "p429":
        assert headers["retry-after"] == "7"
    assert server.stats()["by_status"] == {expected: 1}


def test_dropped_connection_sends_nothing(server: SimServer) -> None:
    server.configure(p_drop=1.0)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        chat(server)
    assert server.stats()["by_status"] == {"drop": 1}


def test_hang_lasts_until_the_client_gives_up(server: SimServer) -> None:
    server.configure(p_hang=1.0)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=0.3)
    conn.request(
        "POST",
        "/v1/chat/completions",
        json.dumps({"model": "m", "messages": MESSAGES}),
        {"authorization": "Bearer k"},
    )
    with pytest.raises(TimeoutError):
        conn.getresponse()
    conn.close()
    deadline = time.monotonic() + 5
    while server.app.tracker.open and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.app.tracker.open == 0  # the server noticed and let go


def test_status_models_answer_that_status_and_a_401_echoes_the_key(server: SimServer) -> None:
    status, _, raw = post(
        server,
        "/v1/chat/completions",
        {"model": "status-401", "messages": MESSAGES},
        {"authorization": "Bearer sk-echo-me-123"},
    )
    assert status == 401
    assert b"sk-echo-me-123" in raw
    status, _, _ = post(
        server, "/v1/chat/completions", {"model": "status-409", "messages": MESSAGES}
    )
    assert status == 409


def test_enforced_rpm_answers_real_429s_with_a_precise_retry_after(server: SimServer) -> None:
    server.configure(rpm=60)  # a bucket of one request, refilled once a second
    assert chat(server)[0] == 200
    status, headers, _ = chat(server)
    assert status == 429
    assert 0 < int(headers["retry-after-ms"]) <= 1000
    assert headers["retry-after"] == "1"


def test_enforced_tpm(server: SimServer) -> None:
    server.configure(tpm=60)  # one token a second: the first call runs into debt
    assert chat(server)[0] == 200
    assert chat(server)[0] == 429


def test_stats_count_per_status_and_prompt(server: SimServer) -> None:
    chat(server)
    chat(server)
    post(server, "/v1/chat/completions", {"model": "other", "messages": MESSAGES})
    stats = server.stats()
    key = prompt_hash(
        "default", [Message("system", "You are terse."), Message("user", "Go vs Rust")]
    )
    assert stats["by_prompt"][key] == {"200": 2}
    assert stats["requests"] == 3
    assert stats["by_status"] == {"200": 3}
    server.reset()
    assert server.stats()["requests"] == 0


def test_stats_count_the_completions_answered_at_once(server: SimServer) -> None:
    import threading

    server.configure(latency_s=0.3, scale=1.0)
    calls = [threading.Thread(target=chat, args=(server,)) for _ in range(5)]
    for call in calls:
        call.start()
    for call in calls:
        call.join()
    answering = server.stats()["answering"]
    assert answering == {"now": 0, "peak": 5}
    server.reset()
    chat(server)
    assert server.stats()["answering"] == {"now": 0, "peak": 1}


def test_config_checks() -> None:
    from agentplex.exceptions import ConfigError

    with pytest.raises(ConfigError, match="p500"):
        ServerConfig(p500=2).check()
    with pytest.raises(ConfigError, match="add up"):
        ServerConfig(**dict.fromkeys(FAULTS, 0.2)).check()


def test_cli_sim_server_serves_on_loopback_and_stops_on_ctrl_c() -> None:
    from tests.cli import popen_cli

    with popen_cli(
        "sim-server", "--port", "0", "--latency", "0", env={"PYTHONUNBUFFERED": "1"}
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert "http://127.0.0.1:" in line, line
            port = int(line.split("http://127.0.0.1:")[1].split()[0])
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/v1/models")
            assert conn.getresponse().status == 200
            conn.close()
            process.send_signal(signal.SIGINT)
            assert process.wait(10) == 130  # interrupted, like every command
        finally:
            if process.poll() is None:
                process.kill()


def test_trickle_sends_headers_then_one_byte_at_a_time_until_the_client_goes(
    server: SimServer,
) -> None:
    server.configure(p_trickle=1.0, trickle_s=0.05)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request(
        "POST",
        "/v1/chat/completions",
        json.dumps({"model": "m", "messages": MESSAGES}),
        {"authorization": "Bearer k"},
    )
    response = conn.getresponse()
    assert response.status == 200
    assert [response.read(1) for _ in range(4)] == [b" "] * 4  # and so on, forever
    conn.close()
    deadline = time.monotonic() + 5
    while server.app.tracker.open and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.app.tracker.open == 0  # the server noticed and let go
    assert server.stats()["by_status"] == {"trickle": 1}


def test_a_script_answers_the_first_requests_of_each_prompt_in_order(server: SimServer) -> None:
    server.configure(script=(429, 500, 200, 503), retry_after_s=3)
    first = [chat(server) for _ in range(5)]
    assert [status for status, _, _ in first] == [429, 500, 200, 503, 200]
    assert first[0][1]["retry-after"] == "3"
    assert "retry-after" not in first[1][1]
    other_status, _, _ = chat(server, messages=[{"role": "user", "content": "another prompt"}])
    assert other_status == 429  # each prompt has its own script


def test_trickle_and_script_settings_are_checked() -> None:
    from agentplex.exceptions import ConfigError

    with pytest.raises(ConfigError, match="trickle_s"):
        ServerConfig(trickle_s=0).check()
    with pytest.raises(ConfigError, match="script"):
        ServerConfig(script=(42,)).check()


# -- output caps, schemas and cache counts on the wire --------------------------------------

VERDICT = {
    "type": "object",
    "properties": {
        "winner": {"type": "string", "enum": ["Go", "Rust"]},
        "margin": {"type": "integer", "minimum": 1, "maximum": 10},
        "why": {"type": "string", "maxLength": 80},
    },
    "required": ["winner", "margin", "why"],
    "additionalProperties": False,
}
SIM_MESSAGES = [Message("system", "You are terse."), Message("user", "Go vs Rust")]


def anthropic(server: SimServer, **extra: Any) -> tuple[int, dict[str, str], bytes]:
    body = {"model": "default", "max_tokens": 1000, "system": "You are terse."}
    body["messages"] = [{"role": "user", "content": "Go vs Rust"}]
    return post(server, "/v1/messages", {**body, **extra}, {"x-api-key": "k-1"})


def events(raw: bytes) -> list[dict[str, Any]]:
    lines = [line[6:] for line in raw.decode().split("\n") if line.startswith("data: ")]
    return [json.loads(line) for line in lines if line != "[DONE]"]


def test_openai_usage_reports_cached_prompt_tokens_like_llama_cpp(server: SimServer) -> None:
    usage = json.loads(chat(server)[2])["usage"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0}
    raw = chat(server, stream=True, stream_options={"include_usage": True})[2]
    assert events(raw)[-1]["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}
    anthropic_usage = json.loads(anthropic(server)[2])["usage"]
    assert anthropic_usage["cache_read_input_tokens"] == 0
    assert anthropic_usage["cache_creation_input_tokens"] == 0


@pytest.mark.parametrize("param", ["max_tokens", "max_completion_tokens"])
def test_openai_cap_cuts_the_answer_with_finish_reason_length(
    server: SimServer, param: str
) -> None:
    full = generate("default", SIM_MESSAGES, 0)
    data = json.loads(chat(server, **{param: 6})[2])
    choice = data["choices"][0]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["content"] == full.text[:24]
    assert data["usage"]["completion_tokens"] == 6
    roomy = json.loads(chat(server, **{param: full.usage.output_tokens})[2])["choices"][0]
    assert (roomy["finish_reason"], roomy["message"]["content"]) == ("stop", full.text)
    chunks = events(chat(server, stream=True, **{param: 6})[2])
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == full.text[:24]


def test_anthropic_cap_cuts_the_answer_with_stop_reason_max_tokens(server: SimServer) -> None:
    full = generate("default", SIM_MESSAGES, 0)
    data = json.loads(anthropic(server, max_tokens=6)[2])
    assert data["stop_reason"] == "max_tokens"
    assert data["content"][0]["text"] == full.text[:24]
    assert data["usage"]["output_tokens"] == 6
    streamed = events(anthropic(server, max_tokens=6, stream=True)[2])
    delta = next(e for e in streamed if e["type"] == "message_delta")
    assert delta["delta"]["stop_reason"] == "max_tokens"
    assert delta["usage"]["output_tokens"] == 6


@pytest.mark.parametrize(("value", "status"), [(0, 400), (-3, 400), ("10", 400), (None, 200)])
def test_a_cap_that_is_not_a_positive_integer_is_refused(
    server: SimServer, value: Any, status: int
) -> None:
    assert chat(server, max_tokens=value)[0] == status


def test_openai_json_schema_is_answered_with_json_that_follows_it(server: SimServer) -> None:
    form = {"type": "json_schema", "json_schema": {"name": "verdict", "schema": VERDICT}}
    data = json.loads(chat(server, response_format=form)[2])
    content = data["choices"][0]["message"]["content"]
    jsonschema.validate(json.loads(content), VERDICT)
    assert content == generate("default", SIM_MESSAGES, 0, schema=VERDICT).text
    assert data["choices"][0]["finish_reason"] == "stop"
    obj = json.loads(chat(server, response_format={"type": "json_object"})[2])
    assert isinstance(json.loads(obj["choices"][0]["message"]["content"]), dict)
    assert chat(server, response_format={"type": "xml"})[0] == 400


def test_anthropic_forced_tool_is_answered_with_a_tool_use_block(server: SimServer) -> None:
    tools = [
        {"name": "other", "input_schema": {"type": "object"}},
        {"name": "verdict", "input_schema": VERDICT},
    ]
    forced = {"tools": tools, "tool_choice": {"type": "tool", "name": "verdict"}}
    data = json.loads(anthropic(server, **forced)[2])
    [block] = data["content"]
    assert (block["type"], block["name"], data["stop_reason"]) == (
        "tool_use",
        "verdict",
        "tool_use",
    )
    jsonschema.validate(block["input"], VERDICT)
    assert block["input"] == json.loads(generate("default", SIM_MESSAGES, 0, schema=VERDICT).text)
    streamed = events(anthropic(server, stream=True, **forced)[2])
    start = next(e for e in streamed if e["type"] == "content_block_start")
    assert start["content_block"]["type"] == "tool_use"
    deltas = [e["delta"] for e in streamed if e["type"] == "content_block_delta"]
    assert {d["type"] for d in deltas} == {"input_json_delta"}
    assert json.loads("".join(d["partial_json"] for d in deltas)) == block["input"]
    # auto leaves the model free: it answers in text
    auto = json.loads(anthropic(server, tools=tools, tool_choice={"type": "auto"})[2])
    assert (auto["content"][0]["type"], auto["stop_reason"]) == ("text", "end_turn")
    unknown = {"tools": tools, "tool_choice": {"type": "tool", "name": "nope"}}
    assert anthropic(server, **unknown)[0] == 400
