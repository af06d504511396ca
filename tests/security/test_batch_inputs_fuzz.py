"""Whatever bytes a batch input file holds, reading it gives items and bad rows, or a typed error.

Never another exception, and never a hang: each example has a deadline.
The items that come back are safe to use: unique keys without control
characters, and folder names that stay one segment inside ``items/``.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agentplex as ap
from agentplex.batch.inputs import BatchItem, item_folders, read_items
from agentplex.exceptions import AgentplexError
from agentplex.model.workflow import CompiledWorkflow

SUFFIXES = (".txt", ".csv", ".jsonl")
FUZZ = settings(
    max_examples=120,
    deadline=2000,  # ms: generous on a loaded 2-core machine; a hang fails it
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


def workflow() -> CompiledWorkflow:
    wf = ap.Workflow(
        "fuzz", inputs=["topic", ap.InputSpec("content_type", default="post", required=False)]
    )
    wf.agent("writer", "Write a {content_type} on {topic}", id="write")
    return wf.compile()


COMPILED = workflow()


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def check(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        items = read_items(path, COMPILED)
    except AgentplexError as exc:
        message = str(exc)
    else:
        message = ""
    if message:
        return  # a typed error with a message: the whole file is refused
    assert isinstance(items, list)
    keys = [item.key for item in items]
    assert len(set(keys)) == len(keys), keys
    for item in items:
        assert isinstance(item, BatchItem)
        assert item.key, item
        assert not any(ord(c) < 32 or ord(c) == 127 for c in item.key), item
        assert item.error is None or item.error.startswith(str(path)), item.error
        if item.error is None:
            assert "topic" in item.inputs
    folders = item_folders(items)
    assert len({f.lower() for f in folders.values()}) == len(items)
    for name in folders.values():
        assert name not in ("", ".", "..")
        assert "/" not in name
        assert "\\" not in name
        assert len(name.encode()) <= 120


lines = st.lists(
    st.one_of(
        st.text(max_size=60),
        st.sampled_from(
            [
                "key,topic,priority,model",
                "topic,content_type",
                "topic",
                '{"key": "../..", "topic": "x"}',
                '{"topic": "x", "priority": "nan"}',
                '{"topic": "x", "priority": 1e999}',
                '{"topic": "x", "key": [1, 2]}',
                '{"topic": {"a": 1}}',
                '"just a string"',
                '"a","b,c","d""e"',
                '"unterminated,quote',
                "#comment",
                "",
                "\r",
                "\x00",
                "\ufeff",
            ]
        ),
    ),
    max_size=30,
)


@FUZZ
@given(data=st.binary(max_size=3000), suffix=st.sampled_from(SUFFIXES))
def test_any_bytes(folder: Path, data: bytes, suffix: str) -> None:
    check(folder / f"in{suffix}", data)


@FUZZ
@given(rows=lines, suffix=st.sampled_from(SUFFIXES), crlf=st.booleans())
def test_near_valid_text(folder: Path, rows: list[str], suffix: str, crlf: bool) -> None:
    text = ("\r\n" if crlf else "\n").join(rows)
    check(folder / f"near{suffix}", text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(
    size=st.integers(0, 400_000),
    char=st.sampled_from(["a", "[", "{", '"', ",", "é", "1"]),
    suffix=st.sampled_from(SUFFIXES),
)
def test_huge_lines(folder: Path, size: int, char: str, suffix: str) -> None:
    head = "topic\n" if suffix == ".csv" else ""
    check(folder / f"huge{suffix}", (head + char * size + "\n").encode())


@FUZZ
@given(
    values=st.lists(
        st.dictionaries(
            st.sampled_from(["key", "topic", "priority", "model", "content_type"]),
            st.recursive(
                st.none()
                | st.booleans()
                | st.integers()
                | st.floats(allow_nan=True)
                | st.text(max_size=30),
                lambda inner: (
                    st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=3)
                ),
                max_leaves=8,
            ),
        ),
        max_size=12,
    )
)
def test_json_objects_of_any_shape(folder: Path, values: list[dict[str, object]]) -> None:
    text = "".join(json.dumps(v) + "\n" for v in values)
    check(folder / "objects.jsonl", text.encode())
