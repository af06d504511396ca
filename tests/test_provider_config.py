"""Provider configuration end to end: bad settings fail before the run, keys never show,
limits and prices come from flags, files and Python, and nodes can mix models."""

from __future__ import annotations

import json
import logging
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

import agentplex as ap
from agentplex.events import Event, NodeText, RunStarted
from agentplex.exceptions import ConfigError, InvalidWorkflowError, MissingExtraError
from agentplex.llm.limits import _LIMITERS
from agentplex.sim.server import SimServer
from tests.cli import cli

SECRET = "sk-live-DoNotLeakThis0123456789abcdef"


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def tiny() -> ap.Workflow:
    wf = ap.Workflow("tiny")
    wf.agent("researcher", "Research Go", id="go")
    wf.agent("researcher", "Research Rust", id="rust")
    wf.agent("writer", "Compare them", id="compare", depends_on=["go", "rust"])
    return wf


BAD = [
    # (id, run keywords, what the message must say)
    ("unknown-provider", {"model": "foo:bar"}, "unknown provider 'foo'"),
    ("invalid-model", {"model": "openai:"}, "provider:model"),
    ("no-colon", {"model": "gpt-4o"}, "provider:model"),
    ("missing-openai-key", {"model": "openai:gpt-4o-mini"}, "OPENAI_API_KEY"),
    ("missing-anthropic-key", {"model": "anthropic:claude-3-5-haiku-latest"}, "ANTHROPIC_API_KEY"),
    ("unreachable", {"model": "openai:sim", "base_url": "UNREACHABLE"}, "cannot reach"),
    (
        "unset-key-variable",
        {
            "model": "mine:sim",
            "providers": {
                "mine": ap.ProviderConfig(
                    kind="openai", base_url="https://llm.example.com/v1", api_key_env="MY_LLM_KEY"
                )
            },
        },
        "MY_LLM_KEY",
    ),
]


@pytest.mark.parametrize(("case", "kwargs", "says"), BAD, ids=[c[0] for c in BAD])
def test_bad_configuration_fails_before_anything_runs(
    case: str, kwargs: dict[str, Any], says: str
) -> None:
    if kwargs.get("base_url") == "UNREACHABLE":
        kwargs = {**kwargs, "base_url": f"http://127.0.0.1:{free_port()}/v1"}
    events: list[Event] = []
    with pytest.raises(ConfigError) as info:
        ap.run(tiny(), observers=[events.append], **kwargs)
    message = str(info.value)
    assert says in message
    assert "Fix" in message or "known providers" in message or "e.g." in message
    assert not any(isinstance(e, RunStarted) for e in events)  # nothing started


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--model", "foo:bar"], "unknown provider 'foo'"),
        (["--model", "openai:gpt-4o-mini"], "export OPENAI_API_KEY"),
        (["--model", "anthropic:claude-3-5-haiku-latest"], "export ANTHROPIC_API_KEY"),
        (["--model", "openai:sim", "--base-url", "UNREACHABLE"], "cannot reach"),
        (["--model", "openai:"], "provider:model"),
        (["--model", "openai:sim", "--rpm", "0"], "rpm"),
    ],
)
def test_cli_bad_configuration_exits_2_with_the_fix(
    examples: Path, tmp_path: Path, flags: list[str], says: str
) -> None:
    flags = [f"http://127.0.0.1:{free_port()}/v1" if f == "UNREACHABLE" else f for f in flags]
    out = tmp_path / "out"
    proc = cli("run", str(examples / "business_plan.yaml"), *flags, "--out", str(out))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert says in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists() or not any(out.rglob("*.md"))  # no node ran


def test_a_missing_sdk_names_the_extra_to_install(
    server: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "anthropic", None)  # import anthropic now fails
    with pytest.raises(MissingExtraError, match=r"pip install 'agentplex\[anthropic\]'"):
        ap.run(tiny(), model="anthropic:sim", base_url=server.root, api_key="k")
    assert server.stats()["requests"] == 0


def test_workflow_file_provider_errors_name_the_file_and_line(tmp_path: Path) -> None:
    for body, says in [
        ("providers:\n  openai:\n    api_key: sk-abc\n", "api_key_env"),
        ("providers:\n  local:\n    base_url: http://127.0.0.1:1/v1\n", "must say its kind"),
        ("providers:\n  openai:\n    rpm: -5\n", "rpm"),
        ("providers:\n  openai:\n    colour: blue\n", "unknown field(s) colour"),
        ("prices:\n  my-model: {input: 1, output: 2, cached: 3}\n", "prices.my-model"),
        ("prices:\n  my-model: {input: cheap}\n", "prices"),
    ]:
        path = tmp_path / "wf.yaml"
        path.write_text(f"name: bad\n{body}nodes:\n  a: {{role: researcher, task: Research Go}}\n")
        with pytest.raises(InvalidWorkflowError) as info:
            ap.load_workflow(path).compile()
        message = str(info.value)
        assert says in message, message
        assert "wf.yaml:" in message  # file and line
        assert message.count("Fix:") == 1
        assert "sk-abc" not in message


def test_a_workflow_file_mixes_providers_models_limits_and_prices(
    server: SimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEAM_LLM_KEY", SECRET)
    path = tmp_path / "mixed.yaml"
    path.write_text(
        f"""
name: mixed
providers:
  strong:
    kind: openai
    base_url: {server.url}
    api_key_env: TEAM_LLM_KEY
    rpm: 6000
    max_concurrency: 3
  cheap:
    kind: anthropic
    base_url: {server.root}
    api_key_env: TEAM_LLM_KEY
    tpm: 1000000
prices:
  strong:big-model: {{input: 5, output: 15}}
  small-model: {{input: 0.25, output: 1.25}}
nodes:
  go: {{role: researcher, task: Research Go, model: "cheap:small-model"}}
  rust: {{role: researcher, task: Research Rust, model: "cheap:small-model"}}
  compare:
    role: writer
    task: Compare them
    depends_on: [go, rust]
    model: strong:big-model
"""
    )
    result = ap.run(ap.load_workflow(path))
    assert result.ok
    assert {n: r.model for n, r in result.nodes.items()} == {
        "go": "cheap:small-model",
        "rust": "cheap:small-model",
        "compare": "strong:big-model",
    }
    assert server.stats()["by_status"] == {"200": 3}
    # Usage is what the server reported; cost is usage times the file's prices.
    compare = result.nodes["compare"]
    assert compare.usage is not None
    assert compare.usage.total_tokens > 0
    expected = (compare.usage.input_tokens * 5 + compare.usage.output_tokens * 15) / 1e6
    assert compare.cost_usd == pytest.approx(expected)
    assert result.cost_usd == pytest.approx(sum(r.cost_usd or 0 for r in result.nodes.values()))
    assert set(result.usage_by_model()) == {"cheap:small-model", "strong:big-model"}
    assert result.unpriced_models == []
    # The file's limits reached the process-wide limiters, one per provider and model.
    limits = {key.split("|")[0]: lim.limits for key, lim in _LIMITERS.items()}
    assert limits["openai"].rpm == 6000
    assert limits["openai"].max_concurrency == 3
    assert limits["anthropic"].tpm == 1000000
    assert SECRET not in json.dumps(result.to_json())


def test_flags_set_the_default_providers_limits(server: SimServer) -> None:
    result = ap.run(
        tiny(),
        model="openai:sim",
        base_url=server.url,
        api_key="k",
        rpm=1200,
        tpm=90000,
        max_inflight=2,
    )
    assert result.ok
    (limiter,) = _LIMITERS.values()
    assert (limiter.limits.rpm, limiter.limits.tpm, limiter.limits.max_concurrency) == (
        1200,
        90000,
        2,
    )
    assert limiter.statistics().calls == 3


def test_an_unpriced_model_is_named_not_guessed(server: SimServer) -> None:
    result = ap.run(tiny(), model="openai:my-finetune", base_url=server.url, api_key="k")
    assert result.ok
    assert result.cost_usd is None
    assert result.unpriced_models == ["openai:my-finetune"]
    priced = ap.run(
        tiny(),
        model="openai:my-finetune",
        base_url=server.url,
        api_key="k",
        prices={"my-finetune": ap.Price(1.0, 2.0)},
        cache=False,  # the same prompts again: a cache hit would cost nothing
    )
    assert priced.cost_usd is not None
    assert priced.cost_usd > 0
    assert priced.unpriced_models == []


def test_builtin_prices_and_the_free_simulator() -> None:
    from agentplex.llm.pricing import PriceTable
    from agentplex.result import Usage

    table = PriceTable()
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    mini = table.cost("openai", "openai", "gpt-4o-mini-2024-07-18", usage)  # a dated snapshot
    assert mini == pytest.approx(0.15 + 0.60)
    assert table.cost("sim", "sim", "default", usage) == 0.0
    assert table.cost("ollama", "ollama", "llama3.2:1b", usage) == 0.0
    assert table.cost("openai", "openai", "no-such-model", usage) is None
    own = PriceTable({"openai:gpt-4o-mini": ap.Price(1.0, 1.0)})  # provider-specific wins
    assert own.cost("openai", "openai", "gpt-4o-mini", usage) == pytest.approx(2.0)


def test_a_refused_key_never_reaches_results_events_logs_or_files(
    server: SimServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    events: list[Event] = []
    result = ap.run(
        tiny(),
        model="openai:status-401",  # the server answers 401 and echoes the key it got
        base_url=server.url,
        api_key=SECRET,
        observers=[events.append],
    )
    assert not result.ok
    error = result.nodes["go"].error or ""
    assert "401" in error
    assert "Fix" in error
    assert result.nodes["go"].attempts == 1  # never retried
    seen = [json.dumps(result.to_json()), caplog.text, *map(repr, events), error]
    assert not [s for s in seen if SECRET in s]
    assert SECRET[-12:] not in "".join(seen)


def test_cli_never_prints_or_stores_the_key(
    examples: Path, tmp_path: Path, server: SimServer
) -> None:
    out = tmp_path / "out"
    for model in ("openai:status-401", "openai:sim"):
        proc = cli(
            "run",
            str(examples / "business_plan.yaml"),
            "--model",
            model,
            "--base-url",
            server.url,
            "--api-key",
            SECRET,
            "--out",
            str(out),
            "--json",
        )
        assert proc.returncode == (1 if "401" in model else 0), proc.stderr
        assert SECRET not in proc.stdout + proc.stderr
    stored = [p.read_text() for p in out.rglob("*") if p.is_file()]
    assert stored  # the record and outputs were written
    assert not [s for s in stored if SECRET in s]


def test_the_key_comes_from_the_environment(
    server: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    result = ap.run(tiny(), model="openai:sim")
    assert result.ok
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.root)
    assert ap.run(tiny(), model="anthropic:sim").ok
    assert server.stats()["by_status"] == {"200": 6}


def test_ollama_is_openai_on_localhost(server: SimServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", server.root.removeprefix("http://"))
    result = ap.run(tiny(), model="ollama:llama3.2:1b")  # no key needed, model keeps its colon
    assert result.ok
    assert result.nodes["go"].model == "ollama:llama3.2:1b"
    assert result.cost_usd == 0.0


@pytest.mark.parametrize("kind", ["sim", "openai", "anthropic"])
def test_streamed_text_arrives_as_events_and_adds_up(server: SimServer, kind: str) -> None:
    texts: dict[str, list[str]] = {}

    def observe(event: Event) -> None:
        if isinstance(event, NodeText):
            texts.setdefault(event.node_id, []).append(event.text)

    extra: dict[str, Any] = {}
    if kind != "sim":
        extra = {"base_url": server.url if kind == "openai" else server.root, "api_key": "k"}
    result = ap.run(tiny(), model=f"{kind}:default", stream=True, observers=[observe], **extra)
    assert result.ok
    assert set(texts) == {"go", "rust", "compare"}
    for node_id, pieces in texts.items():
        assert len(pieces) > 1  # more than one piece: really streamed
        assert "".join(pieces) == result.outputs[node_id]
    plain = ap.run(tiny(), model=f"{kind}:default", **extra)
    assert plain.outputs == result.outputs  # streaming changes how, not what


def test_total_timeout_bounds_a_node_across_its_retries(server: SimServer) -> None:
    server.configure(p503=1.0, retry_after_s=0.2)  # every call fails, retryably
    result = ap.run(
        tiny(),
        model="openai:sim",
        base_url=server.url,
        api_key="k",
        retries=100,
        backoff_base_s=0.05,
        backoff_max_s=0.1,
        total_timeout_s=0.6,
    )
    go = result.nodes["go"]
    assert go.status == "failed"
    assert "total" in (go.error or "")
    assert 1 < go.attempts < 100  # retried, then stopped by the total limit, not the count


def test_the_cli_surfaces_cost_and_tokens(examples: Path, server: SimServer) -> None:
    proc = cli(
        "run",
        str(examples / "business_plan.yaml"),
        "--model",
        "openai:gpt-4o-mini",
        "--base-url",
        server.url,
        "--api-key",
        "k",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["cost_usd"] > 0
    assert record["usage_by_model"]["openai:gpt-4o-mini"]["input_tokens"] > 0
    text = cli(
        "run",
        str(examples / "business_plan.yaml"),
        "--model",
        "openai:my-finetune",
        "--base-url",
        server.url,
        "--api-key",
        "k",
        env={"AGENTPLEX_SIM_SCALE": "0"},
    )
    assert text.returncode == 0, text.stderr
    assert "no price for openai:my-finetune" in text.stdout


def test_a_local_server_still_starting_is_waited_for_before_the_run_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading

    from agentplex.sim.server import ServerConfig, SimServer

    monkeypatch.setattr("agentplex.llm.LOCAL_START_S", 10.0)
    port = free_port()
    late = SimServer(ServerConfig(scale=0.0), port=port)
    starter = threading.Timer(0.5, late.start)  # as `agentplex sim-server &` then a run
    starter.start()
    try:
        result = ap.run(tiny(), model="openai:sim", base_url=f"http://127.0.0.1:{port}/v1")
        assert result.ok, {k: n.error for k, n in result.nodes.items()}
        assert late.stats()["requests"] >= 1
    finally:
        starter.join()
        late.stop()


def test_a_remote_endpoint_that_refuses_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    monkeypatch.setattr("agentplex.llm.LOCAL_START_S", 10.0)
    monkeypatch.setattr("agentplex.llm.is_local", lambda url: False)
    attempts: list[tuple[str, int]] = []

    async def refuse(host: str, port: int, **kwargs: object) -> None:
        attempts.append((host, port))
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(asyncio, "open_connection", refuse)
    with pytest.raises(ap.exceptions.ConfigError, match="cannot reach"):
        ap.run(tiny(), model="openai:sim", base_url="http://127.0.0.1:9/v1")
    assert len(attempts) == 1  # only this machine's servers are waited for
