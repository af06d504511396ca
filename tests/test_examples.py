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
