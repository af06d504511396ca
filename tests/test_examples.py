"""The shipped examples run, validate, and have the shapes the meta-agent design describes."""

from __future__ import annotations

import importlib.util
import sys

import pytest

import agentplex as ap


@pytest.mark.parametrize(
    ("name", "nodes", "layers"),
    [
        ("compare_languages", 5, [3, 1, 1]),
        ("business_plan", 9, [4, 2, 2, 1]),
        ("software_architecture", 15, [6, 6, 1, 1, 1]),
    ],
)
def test_meta_agent_examples_have_the_documented_shape(examples, name, nodes, layers) -> None:
    compiled = ap.load_workflow(examples / f"{name}.yaml").compile()
    assert len(compiled) == nodes
    assert [len(layer) for layer in compiled.layers()] == layers


def test_plan_example_matches_the_named_version(examples) -> None:
    plan = ap.load_workflow(examples / "plans" / "compare_languages_plan.json").compile()
    assert [len(layer) for layer in plan.layers()] == [3, 1, 1]
    assert plan.nodes["analyzer_3"].literal_task


def load_claims_pipeline(examples, monkeypatch):
    monkeypatch.syspath_prepend(
        str(examples)
    )  # as when the script is run: its folder is importable
    spec = importlib.util.spec_from_file_location(
        "claims_pipeline", examples / "claims_pipeline.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "claims_pipeline", module)
    spec.loader.exec_module(module)
    return module


def test_claims_pipeline_runs_function_map_process_and_fan_out_nodes(examples, monkeypatch) -> None:
    module = load_claims_pipeline(examples, monkeypatch)
    wf = module.build().compile()
    outputs = None
    for strategy in ("dataflow", "sequential"):
        result = ap.run(wf, inputs={"source": "coffee"}, strategy=strategy)
        assert result.ok, {n: r.error for n, r in result.nodes.items() if r.error}
        assert outputs is None or result.outputs == outputs
        outputs = result.outputs
    tally = outputs["tally"]
    assert tally["claims_checked"] == len(outputs["checks"]) > 0
    assert sum(tally["verdicts"].values()) == tally["claims_checked"]
    assert tally["top_keywords"][0] == ("coffee", 5)
    assert len(outputs["perspectives"]) == 3


def test_media_intelligence_runs_real_steps_on_the_sample_data(examples, tmp_path) -> None:
    wf = ap.load_workflow(examples / "media_intelligence.yaml").compile()
    assert [len(layer) for layer in wf.layers()] == [1, 1, 5, 2, 1]
    memory = tmp_path / "memory"
    result = ap.run(wf, inputs={"episode": "episode_017", "memory_dir": str(memory)})
    assert result.ok, result.counts()
    claims = result.outputs["extract_claims"]
    assert len(claims) == 5
    assert any("1.4 bikes per person" in c for c in claims)
    assert len(result.outputs["verify"]) == len(claims)  # one fact-check per claim
    assert result.outputs["store_memory"]["stored"] == 7  # one chunk per caption cue
    assert (memory / "memory.jsonl").exists()
    assert (memory / "graph.json").exists()
    again = ap.run(wf, inputs={"episode": "episode_017", "memory_dir": str(memory)})
    assert again.outputs["store_memory"]["stored"] == 0  # a memory does not repeat itself


def test_media_intelligence_as_a_batch_over_episodes(examples, tmp_path) -> None:
    wf = ap.load_workflow(examples / "media_intelligence.yaml").compile()
    items = [{"episode": e, "memory_dir": str(tmp_path)} for e in ("episode_017", "episode_018")]
    result = ap.run_batch(wf, items)
    assert result.ok
    stored = sum(item.outputs["store_memory"]["stored"] for item in result.values())
    assert stored == 7 + 5  # both episodes landed in the one shared memory


def test_executive_delegation_posts_to_one_board_and_models_in_a_process(examples, tmp_path):
    wf = ap.load_workflow(examples / "executive_delegation.yaml").compile()
    assert [len(layer) for layer in wf.layers()] == [1, 3, 4, 1]
    board = tmp_path / "board.md"
    result = ap.run(wf, inputs={"board": str(board)})
    assert result.ok, result.counts()
    posts = [
        line.split(" (")[0] for line in board.read_text().splitlines() if line.startswith("## C")
    ]
    assert sorted(posts) == ["## CFO", "## COO", "## CTO"]
    model = result.outputs["runway_model"]
    assert model["p10_months"] <= model["median_months"] <= model["p90_months"]
    assert wf.nodes["runway_model"].resolved_executor() == "process"
