from __future__ import annotations

import io
import json

from rich.console import Console

import agentplex as ap
from agentplex.report.terminal import LiveView, dot, mermaid, render_layers, render_summary


def test_live_view_shows_running_and_finished_nodes() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=100)
    view = LiveView(console)
    frames: list[str] = []

    def snapshot(event: ap.events.Event) -> None:
        view(event)
        if isinstance(event, ap.events.NodeStarted) and event.node_id == "b":
            capture = Console(file=io.StringIO(), width=100)
            capture.print(view.render())
            frames.append(capture.file.getvalue())  # type: ignore[attr-defined]

    wf = ap.Workflow("live")
    wf.agent("researcher", "a", id="a", latency_s=0)
    wf.agent("writer", "b", id="b", depends_on=["a"], latency_s=0)
    ap.run(wf, observers=[snapshot])
    assert view.live is None  # stopped when the run finished
    (frame,) = frames
    assert "running 1" in frame
    assert "done 1/2" in frame
    assert "> b (writer)" in frame


def test_layers_summary_and_diagrams() -> None:
    wf = ap.Workflow("views")
    wf.agent("researcher", "a", id="a", latency_s=0)
    wf.agent("researcher", "b", id="b", latency_s=0)
    wf.agent("synthesizer", "c", id="c", depends_on=["a", "b"], latency_s=0)
    compiled = wf.compile()
    console = Console(file=io.StringIO(), width=120)
    console.print(render_layers(compiled))
    result = ap.run(compiled)
    console.print(render_summary(result))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "layer 0 (2 in parallel): a (researcher), b (researcher)" in text
    assert "speedup" in text
    assert "critical path:" in text
    assert "n_a --> n_c" in mermaid(compiled)
    assert '"b" -> "c";' in dot(compiled)
    assert json.loads(result.to_json())["nodes"]["c"]["role"] == "synthesizer"


def test_roles_defined_in_python() -> None:
    economist = ap.Role("Economist", "Models prices.", "You are an economist.")
    wf = ap.Workflow("roles", roles=[economist])
    wf.add_role(ap.Role("Baker", "Bakes.", "You are a baker."))
    wf.agent("ECONOMIST", "Price a croissant", id="price")
    wf.agent("baker", "Bake it", id="bake", depends_on=["price"])
    result = ap.run(wf)
    assert result.nodes["price"].role == "economist"
    assert "price (economist)" in result.outputs["bake"]


def test_plan_latency_pins_are_honoured(tmp_path) -> None:
    plan = {"agents": [{"role": "researcher", "task": "x", "depends_on": [], "latency_s": 0.3}]}
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    result = ap.run(ap.load_workflow(path), sim_scale=1.0)
    assert 0.29 < result.nodes["researcher_0"].duration_s < 0.6
