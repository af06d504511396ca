"""One result schema: typed results to dicts and back, and the store read as typed results."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

import agentplex as ap
from agentplex.batch.result import BatchResult, ItemResult, load_result
from agentplex.exceptions import DecodeError, StoreError
from agentplex.report.html import record_from_store, render_html
from agentplex.result import Status


def pipeline() -> ap.Workflow:
    wf = ap.Workflow("pipe", inputs=["topic"])
    research = wf.agent("researcher", "Research {topic}")
    wf.agent("writer", "Write about {topic}", depends_on=[research])
    return wf


TOPICS = ["tides", "volcanoes", "glaciers"]


def test_a_batch_result_reads_back_as_it_was_written() -> None:
    batch = ap.run_batch(pipeline(), [{"topic": t} for t in TOPICS])
    record = batch.to_dict()
    again = BatchResult.from_dict(record)
    sums = ("sequential_s", "speedup")  # sums of rounded item times: equal to microseconds
    assert {k: v for k, v in again.to_dict().items() if k not in sums} == {
        k: v for k, v in record.items() if k not in sums
    }
    assert BatchResult.from_dict(again.to_dict()).to_dict() == again.to_dict()
    assert again.counts() == batch.counts() == {"succeeded": 3}
    assert again.usage == batch.usage
    assert again.sequential_s == pytest.approx(batch.sequential_s, abs=1e-5)
    assert [item.status for item in again.values()] == [Status.SUCCEEDED] * 3


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"status": "great"}, "status"),
        ({"tokens": {"input": -1, "output": 0}}, "input"),
        ({"started_s": "soon"}, "started_s"),
        ({"key": 7}, "key"),
    ],
)
def test_a_wrong_item_field_is_a_decode_error_naming_it(
    change: dict[str, object], field: str
) -> None:
    row = ItemResult("k", "succeeded", started_s=0.0, finished_s=1.0).to_dict()
    with pytest.raises(DecodeError, match=field):
        ItemResult.from_dict({**row, **change})


DERIVED = ("sequential_s", "speedup", "efficiency")
"""Figures recomputed from stored (rounded) node times: equal to a few microseconds."""


def same_record(got: dict[str, Any], want: dict[str, Any]) -> bool:
    """Whether two run records agree: exactly, but for times recomputed from rounded ones."""
    assert {k: v for k, v in got.items() if k not in (*DERIVED, "nodes")} == {
        k: v for k, v in want.items() if k not in (*DERIVED, "nodes")
    }
    assert [got[k] for k in DERIVED] == pytest.approx([want[k] for k in DERIVED], rel=1e-3)
    assert list(got["nodes"]) == list(want["nodes"])
    for node_id, node in got["nodes"].items():
        other = want["nodes"][node_id]
        assert {k: v for k, v in node.items() if k != "duration_s"} == {
            k: v for k, v in other.items() if k != "duration_s"
        }
        assert node["duration_s"] == pytest.approx(other["duration_s"], abs=2e-6)
    return True


def test_the_store_gives_back_a_run_as_the_typed_result_the_run_returned() -> None:
    store = ap.MemoryStore()
    result = ap.run(pipeline(), inputs={"topic": "tides"}, store=store)
    loaded = ap.load_result(store, result.run_id)
    assert isinstance(loaded, ap.RunResult)
    assert loaded.status == Status.SUCCEEDED
    assert loaded.outputs == result.outputs
    assert same_record(loaded.to_dict(), result.to_dict())
    assert same_record(store.load_run(result.run_id).to_dict(), result.to_dict())
    assert {n: s.result().status for n, s in store.get_nodes(result.run_id).items()} == {
        "researcher": "succeeded",
        "writer": "succeeded",
    }


def test_a_run_whose_writer_died_reads_back_as_interrupted_with_what_it_stored() -> None:
    store = ap.MemoryStore()
    result = ap.run(pipeline(), inputs={"topic": "tides"}, store=store)
    # Make it look as if the run never ended and its writer (a dead pid) crashed.
    run = store.runs[result.run_id]
    store.runs[result.run_id] = dataclasses.replace(
        run, status="running", summary={}, owner="nohost:999999"
    )
    del store.nodes[result.run_id]["writer"]
    loaded = load_result(store, result.run_id)
    assert isinstance(loaded, ap.RunResult)
    assert loaded.status == Status.INTERRUPTED
    assert list(loaded.nodes) == ["researcher"]
    assert loaded.outputs["researcher"] == result.outputs["researcher"]


def test_a_stored_batch_reads_back_with_the_totals_computed_once() -> None:
    store = ap.MemoryStore()
    batch = ap.run_batch(pipeline(), [{"topic": t} for t in TOPICS], store=store)
    loaded = load_result(store, batch.batch_id, item_runs=2)
    assert isinstance(loaded, BatchResult)
    assert loaded.status == batch.status
    assert loaded.counts() == batch.counts()
    assert loaded.usage == batch.usage
    assert list(loaded) == list(batch)
    kept = [key for key, item in loaded.items() if item.run is not None]
    assert len(kept) == 2
    first = loaded[kept[0]]
    assert first.run is not None
    assert first.run.outputs == batch[kept[0]].outputs
    # The report reads the same typed result: its figures are the BatchResult's.
    record, runs = record_from_store(store, batch.batch_id)
    assert record["counts"] == batch.counts()
    assert record["tokens"] == batch.to_dict()["tokens"]
    assert set(runs) == set(batch)  # the report attaches up to 20 item runs
    assert "Batch report" in render_html(record, runs)


def test_an_interrupted_batch_counts_its_items_that_never_started() -> None:
    store = ap.MemoryStore()
    batch = ap.run_batch(pipeline(), [{"topic": t} for t in TOPICS], store=store)
    # As if the driver died after the first item: no summary, one item run, a dead writer.
    record = store.runs[batch.batch_id]
    store.runs[batch.batch_id] = dataclasses.replace(
        record, status="running", summary={}, owner="nohost:999999", updated=time.time()
    )
    for item_run in [r for r in store.runs if r.startswith(f"{batch.batch_id}.")][1:]:
        del store.runs[item_run]
    loaded = load_result(store, batch.batch_id)
    assert isinstance(loaded, BatchResult)
    assert loaded.status == Status.INTERRUPTED
    assert loaded.counts() == {"succeeded": 1, "not started": 2}
    assert loaded.usage == next(iter(batch.values())).usage
    report, _ = record_from_store(store, batch.batch_id)
    assert report["counts"] == loaded.counts()


def test_a_damaged_summary_is_a_store_error_naming_the_run_and_field() -> None:
    store = ap.MemoryStore()
    result = ap.run(pipeline(), inputs={"topic": "tides"}, store=store)
    run = store.runs[result.run_id]
    store.runs[result.run_id] = dataclasses.replace(run, summary={**run.summary, "wall_s": "slow"})
    with pytest.raises(StoreError, match=rf"run '{result.run_id}'.*wall_s.*Fix:"):
        load_result(store, result.run_id)
