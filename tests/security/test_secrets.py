"""A key that a model echoes, or a step returns, never reaches anything written.

A real loopback endpoint answers with the user's keys inside its text (plain
and streamed, split across chunks); a function step returns the key it read
from the environment. Every byte the run leaves behind (``--json``, ``--out``,
the SQLite store and its WAL, the result cache, the HTML report) is searched
for each key, long and short.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .servers import RecordingServer

LONG_KEY = "sk-user-0123456789abcdefghij"
SHORT_KEY = "k3y"  # a local server's key: short, and still never written


def _everything_written(*roots: Path) -> bytes:
    blobs = []
    for root in roots:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        blobs += [p.read_bytes() for p in files]
    return b"\n".join(blobs)


@pytest.mark.parametrize("stream", [False, True])
def test_keys_in_model_and_function_output_are_masked_everywhere(
    stream: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    private_store: Path,
    result_cache: Path,
    cli,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", LONG_KEY)
    (tmp_path / "leaky_steps.py").write_text(
        "import os\n\n"
        "def leak(echo):\n"
        "    key = os.environ['OPENAI_API_KEY']\n"
        "    return {'key': key, 'nested': [f'my key is {key}'], key: 'as a dict key'}\n"
    )
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "nodes:\n"
        "  echo: {role: researcher, task: 'say hi'}\n"
        "  leak: {function: 'leaky_steps:leak', depends_on: [echo]}\n"
    )
    answer = f"Here is the key {LONG_KEY} and the local one {SHORT_KEY}, as asked."
    pieces = [answer[i : i + 4] for i in range(0, len(answer), 4)]  # keys split over chunks
    with RecordingServer(answer, pieces) as server:
        out = tmp_path / "out"
        args = ["run", flow, "--model", "openai:m", "--base-url", server.url]
        args += ["--api-key", SHORT_KEY, "--json", "--out", out]
        args += ["--stream"] if stream else ["--no-stream"]
        result = cli(*args)
        assert result.exit_code == 0, result.output
        assert server.requests, "the endpoint was never called"
        assert server.requests[0]["body"].get("stream", False) is stream
        run = json.loads(result.stdout)
        report = tmp_path / "report.html"
        assert cli("report", run["run_id"], "--html", report).exit_code == 0
    echo = run["nodes"]["echo"]["output"]
    assert echo == "Here is the key *** and the local one ***, as asked."
    assert run["nodes"]["leak"]["output"]["key"] == "***"
    written = _everything_written(out, private_store, result_cache.parent, report)
    written += result.stdout.encode() + result.stderr.encode()
    for key in (LONG_KEY, SHORT_KEY):
        assert key.encode() not in written, f"{key!r} was written"
    assert b"***" in written


def test_short_keys_are_masked_as_words_not_inside_other_words() -> None:
    from agentplex.llm.config import Secret, mask_secrets

    Secret("ab1")
    assert mask_secrets("key ab1, not xab1y") == "key ***, not xab1y"


def test_stream_mask_holds_a_key_split_across_pieces() -> None:
    from agentplex.llm.config import Secret, StreamMask

    Secret("sk-stream-secret-value-42")
    sent: list[str] = []
    mask = StreamMask(sent.append)
    for piece in ["a sk-str", "eam-secret-v", "alue-42 b", " c"]:
        mask(piece)
    mask.flush()
    assert "".join(sent) == "a *** b c"
    assert not any("sk-str" in s for s in sent)


def test_keys_are_masked_in_every_kind_of_step_output_and_in_step_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import collections
    import dataclasses
    from types import MappingProxyType

    import agentplex as ap

    key = "sk-env-key-for-steps-0123456789"
    monkeypatch.setenv("ANTHROPIC_API_KEY", key)  # not used by this run: masked all the same
    pair = collections.namedtuple("pair", "name value")

    @dataclasses.dataclass
    class Checked:
        value: str
        late: str = dataclasses.field(init=False, default="")

        def __post_init__(self) -> None:
            if "*" in self.value:
                raise ValueError("no stars")

    def shapes() -> list[object]:
        return [key.encode(), bytearray(key.encode()), MappingProxyType({"k": key})]

    def more() -> list[object]:
        checked = Checked(key)
        checked.late = key
        return [pair(key, 1), checked, {key}]

    def raises() -> None:
        raise RuntimeError(f"could not use {key}")

    wf = ap.Workflow("leaks")
    wf.function(shapes)
    wf.function(more)
    wf.function(raises)
    result = ap.run(wf, error_policy="continue")
    blob, byte_array, mapping = result.nodes["shapes"].output
    assert blob == b"***"
    assert byte_array == bytearray(b"***")
    assert mapping == {"k": "***"}
    named, checked, keys = result.nodes["more"].output
    assert named == pair("***", 1)
    assert (checked.value, checked.late) == ("***", "***")
    assert keys == {"***"}
    assert key not in result.nodes["raises"].error
    assert key not in result.to_json()


def test_a_cached_answer_that_is_not_text_is_a_miss(
    tmp_path: Path, result_cache: Path, cli
) -> None:
    import sqlite3

    flow = tmp_path / "flow.yaml"
    flow.write_text("nodes:\n  a: {role: researcher, task: hi}\n")
    with RecordingServer("a real answer") as server:
        args = ["run", flow, "--model", "openai:m", "--base-url", server.url, "--api-key", "k"]
        assert cli(*args, "--no-store").exit_code == 0
        with sqlite3.connect(result_cache) as db:  # a planted entry: a list, not text
            db.execute("UPDATE entries SET value = ?", (json.dumps([1, 2, {"x": None}]),))
        result = cli(*args, "--no-store", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["nodes"]["a"]["output"] == "a real answer"
        assert len(server.requests) == 2  # the planted entry was not used
