"""The result cache: a real SQLite file, exercised over real HTTP against the simulator server.

The suite runs with ``AGENTPLEX_CACHE=off`` (see conftest); every test here turns
it on with the ``result_cache`` fixture, as a user's default run has it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import agentplex as ap
from agentplex.exceptions import StoreError
from agentplex.store.cache import ResultCache, cache_enabled, content_key
from tests.cli import cli

if TYPE_CHECKING:
    from agentplex.sim.server import SimServer

pytestmark = pytest.mark.usefixtures("result_cache")


def calls(server: SimServer) -> int:
    return int(server.stats()["by_status"].get("200", 0))


def flow(rust: str = "Research Rust") -> ap.Workflow:
    wf = ap.Workflow("cached")
    wf.agent("researcher", "Research Go", id="go")
    wf.agent("researcher", rust, id="rust")
    wf.agent("writer", "Compare them", id="compare", depends_on=["go", "rust"])
    return wf


def over(
    server: SimServer, wf: ap.Workflow, model: str = "openai:sim", **kw: object
) -> ap.RunResult:
    base_url = server.root if model.startswith("anthropic:") else server.url
    result = ap.run(wf, model=model, base_url=base_url, api_key="k", **kw)
    assert result.ok, result
    return result


# -- the cache itself ------------------------------------------------------------------------


def test_put_get_roundtrip_and_misses(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "c.sqlite")
    key = content_key("llm", "openai", "gpt", [["user", "hi"]])
    assert cache.get(key) == (False, None)
    cache.put(key, "answer")
    cache.put(content_key("fn", 1), {"rows": [1, 2]})
    assert cache.get(key) == (True, "answer")
    assert cache.get(content_key("fn", 1)) == (True, {"rows": [1, 2]})
    assert (cache.hits, cache.misses) == (2, 1)
    assert cache.info()["entries"] == 2
    cache.close()
    reopened = ResultCache(tmp_path / "c.sqlite")  # a real file: entries outlive the process
    assert reopened.get(key) == (True, "answer")
    assert reopened.clear() == 2
    assert reopened.get(key) == (False, None)
    reopened.close()


def test_keys_cover_every_part_of_the_call() -> None:
    base = content_key("llm", "openai", "http://x", "gpt", [["user", "hi"]], [["temperature", "0"]])
    for changed in (
        content_key(
            "llm", "anthropic", "http://x", "gpt", [["user", "hi"]], [["temperature", "0"]]
        ),
        content_key("llm", "openai", "http://y", "gpt", [["user", "hi"]], [["temperature", "0"]]),
        content_key("llm", "openai", "http://x", "gpt2", [["user", "hi"]], [["temperature", "0"]]),
        content_key("llm", "openai", "http://x", "gpt", [["user", "ho"]], [["temperature", "0"]]),
        content_key("llm", "openai", "http://x", "gpt", [["user", "hi"]], [["temperature", "1"]]),
    ):
        assert changed != base
    assert base == content_key(
        "llm", "openai", "http://x", "gpt", [["user", "hi"]], [["temperature", "0"]]
    )


def test_prune_by_age_then_least_recently_used_by_size(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    cache = ResultCache(path)
    for i in range(10):
        cache.put(f"k{i}", "x" * 100_000)  # ~100 kB each
        time.sleep(0.002)  # distinct "last used" times
    with sqlite3.connect(path) as db:  # k0 is 40 days old
        db.execute("UPDATE entries SET created = ? WHERE key = 'k0'", (time.time() - 40 * 86400,))
    assert cache.prune() == 1
    assert cache.get("k0") == (False, None)
    time.sleep(0.01)
    cache.get("k1")  # k1 is now the most recently used: it survives the size cut
    assert cache.prune(max_mb=0.45) == 5  # nine ~100 kB entries: four fit
    assert {k for k in (f"k{i}" for i in range(10)) if cache.get(k)[0]} == {"k1", "k7", "k8", "k9"}
    cache.close()


def test_limits_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTPLEX_CACHE_MAX_MB", "2")
    monkeypatch.setenv("AGENTPLEX_CACHE_MAX_AGE_DAYS", "7")
    cache = ResultCache(tmp_path / "c.sqlite")
    assert (cache.max_mb, cache.max_age_days) == (2.0, 7.0)
    cache.close()
    monkeypatch.setenv("AGENTPLEX_CACHE_MAX_MB", "lots")
    with pytest.raises(StoreError, match=r"AGENTPLEX_CACHE_MAX_MB='lots'.*Fix"):
        ResultCache(tmp_path / "c.sqlite")


def test_a_corrupt_cache_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=r"result cache .*c\.sqlite.*--no-cache"):
        ResultCache(path)


def test_values_are_data_and_a_bad_entry_is_a_miss_that_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    cache = ResultCache(path)
    cache.put("k", {"rows": (1, b"x")})
    cache.put("not data", object())  # not cached: no error, no entry
    assert cache.get("k") == (True, {"rows": (1, b"x")})
    assert cache.info()["entries"] == 1
    with sqlite3.connect(path) as db:
        db.execute('UPDATE entries SET value=\'{"$t": "bytes", "v": 5}\' WHERE key=\'k\'')
    assert cache.get("k") == (False, None)
    assert cache.info()["entries"] == 0
    cache.close()


def test_a_file_that_is_not_a_cache_is_refused_and_left_alone(tmp_path: Path) -> None:
    store = tmp_path / "runs.sqlite"
    from agentplex.store.sqlite import SqliteStore

    SqliteStore(store).close()
    with pytest.raises(StoreError, match=r"not an agentplex result cache \(a run store\?\)"):
        ResultCache(store)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:  # someone else's table that happens to be called cache
        db.execute("CREATE TABLE cache (url TEXT, body BLOB)")
        db.execute("INSERT INTO cache VALUES ('u', x'00')")
    with pytest.raises(StoreError, match="not an agentplex result cache"):
        ResultCache(other)
    with sqlite3.connect(other) as db:
        assert db.execute("SELECT COUNT(*) FROM cache").fetchone() == (1,)


def test_off_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    assert cache_enabled()
    for value in ("off", "OFF", "0", "false"):
        monkeypatch.setenv("AGENTPLEX_CACHE", value)
        assert not cache_enabled()


# -- runs over real HTTP -----------------------------------------------------------------------


@pytest.mark.parametrize("model", ["openai:sim", "anthropic:sim"])
def test_a_second_run_pays_for_nothing(server: SimServer, model: str) -> None:
    first = over(server, flow(), model)
    assert calls(server) == 3
    assert first.usage.total_tokens > 0
    assert first.usage.cached_calls == 0
    second = over(server, flow(), model)
    assert calls(server) == 3  # the server saw no new request
    assert second.outputs == first.outputs
    assert second.usage.cached_calls == 3
    assert second.usage.total_tokens == 0
    assert second.to_dict()["usage"]["cached_calls"] == 3


def test_no_cache_calls_every_model_again(server: SimServer) -> None:
    first = over(server, flow())
    again = over(server, flow(), cache=False)
    assert calls(server) == 6
    assert again.outputs == first.outputs
    assert again.usage.cached_calls == 0


def test_a_changed_prompt_or_model_misses(server: SimServer) -> None:
    over(server, flow())
    result = over(server, flow("Research Zig"))  # go is unchanged; compare sees a new input
    assert calls(server) == 3 + 2
    assert result.nodes["go"].usage is not None
    assert result.nodes["go"].usage.cached_calls == 1
    over(server, flow(), "openai:other-model")
    assert calls(server) == 5 + 3


def test_a_node_can_opt_out(server: SimServer, tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(
        "name: brainstorm\nnodes:\n"
        "  facts: {role: researcher, task: 'Facts about Go'}\n"
        "  ideas: {role: writer, task: 'Fresh ideas on Go', cache: false}\n"
    )
    over(server, ap.load_workflow(path))
    second = over(server, ap.load_workflow(path))
    assert calls(server) == 3  # facts once, ideas twice
    assert second.nodes["facts"].usage.cached_calls == 1  # type: ignore[union-attr]
    assert second.nodes["ideas"].usage.cached_calls == 0  # type: ignore[union-attr]


def test_the_simulator_is_never_cached(result_cache: Path) -> None:
    ap.run(flow())
    again = ap.run(flow())
    assert again.usage.cached_calls == 0
    assert not result_cache.exists() or ResultCache(result_cache).info()["entries"] == 0


def test_environment_off_switch_skips_the_cache(
    server: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    over(server, flow())
    monkeypatch.setenv("AGENTPLEX_CACHE", "off")
    over(server, flow())
    assert calls(server) == 6


# -- function nodes ----------------------------------------------------------------------------

CALLS: list[int] = []


def square(n: int) -> int:
    CALLS.append(n)
    return n * n


def function_flow(cache: bool | None) -> ap.Workflow:
    wf = ap.Workflow("fn", inputs=["n"])
    wf.function(square, id="sq", cache=cache, executor="thread")
    return wf


@pytest.mark.parametrize(("cache", "expected_calls"), [(True, 1), (None, 2), (False, 2)])
def test_functions_are_cached_only_when_they_opt_in(
    cache: bool | None, expected_calls: int
) -> None:
    CALLS.clear()
    first = ap.run(function_flow(cache), inputs={"n": 4})
    second = ap.run(function_flow(cache), inputs={"n": 4})
    assert first.outputs["sq"] == second.outputs["sq"] == 16
    assert len(CALLS) == expected_calls
    assert (
        ap.run(function_flow(cache), inputs={"n": 5}).outputs["sq"] == 25
    )  # other arguments: a miss
    assert len(CALLS) == expected_calls + 1


# -- the CLI -----------------------------------------------------------------------------------


def test_cli_run_no_cache_info_prune_clear(server: SimServer, tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(
        "name: two\nnodes:\n  a: {role: researcher, task: 'A'}\n"
        "  b: {role: writer, task: 'B', depends_on: [a]}\n"
    )
    common = ["--model", "openai:sim", "--base-url", server.url, "--api-key", "k"]
    first = cli("run", str(path), *common, "--json")
    assert first.returncode == 0, first.stderr
    second = cli("run", str(path), *common)
    assert second.returncode == 0, second.stderr
    assert "2 call(s) from the cache" in second.stdout
    assert calls(server) == 2
    third = cli("run", str(path), *common, "--no-cache", "--json")
    assert third.returncode == 0, third.stderr
    assert calls(server) == 4
    assert json.loads(third.stdout)["usage"]["cached_calls"] == 0

    info = cli("cache", "info", "--json")
    assert info.returncode == 0, info.stderr
    data = json.loads(info.stdout)
    assert data["entries"] == 2
    assert data["enabled"]
    assert data["path"] == os.environ["AGENTPLEX_CACHE"]
    assert "2 cached result(s)" in cli("cache").stdout
    pruned = json.loads(cli("cache", "prune", "--max-age-days", "30", "--json").stdout)
    assert pruned["dropped"] == 0
    assert pruned["entries"] == 2
    cleared = cli("cache", "clear")
    assert cleared.returncode == 0
    assert "dropped 2 cached result(s)" in cleared.stdout
    assert json.loads(cli("cache", "info", "--json").stdout)["entries"] == 0
    assert cli("run", str(path), *common, "-q").returncode == 0
    assert calls(server) == 6  # after clear the answers are paid for again

    bad = cli("cache", "wipe")
    assert bad.returncode == 2
    assert "unknown cache action 'wipe'" in bad.stderr
