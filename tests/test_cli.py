from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_validation import run_cli

ROOT = Path(__file__).resolve().parent.parent


def test_run_json_prints_one_complete_record(examples) -> None:
    proc = run_cli(
        "run",
        str(examples / "business_plan.yaml"),
        "--input",
        "query=a bakery in Lyon",
        "--max-concurrency",
        "2",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    for key in ("status", "wall_s", "sequential_s", "critical_path_s", "speedup", "nodes"):
        assert key in record
    assert record["status"] == "succeeded"
    assert record["inputs"] == {"query": "a bakery in Lyon"}
    assert record["max_concurrency"] == 2
    node = record["nodes"]["business_plan"]
    for key in ("status", "output", "started_s", "finished_s", "attempts", "error"):
        assert key in node
    assert "a bakery in Lyon" in node["output"]


def test_run_out_writes_record_and_outputs(tmp_path, examples) -> None:
    proc = run_cli(
        "run", str(examples / "compare_languages.yaml"), "--out", str(tmp_path / "res"), "--quiet"
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "res" / "run.json").read_text())
    assert record["status"] == "succeeded"
    outputs = sorted(p.name for p in (tmp_path / "res" / "outputs").iterdir())
    assert outputs == sorted(f"{n}.md" for n in record["nodes"])
    assert "speedup" in proc.stdout


def test_run_sequential_strategy_and_summary(examples) -> None:
    proc = run_cli(
        "run",
        str(examples / "software_architecture.yaml"),
        "--strategy",
        "sequential",
        sim_scale="0.02",
    )
    assert proc.returncode == 0, proc.stderr
    assert "layer 0 (6 in parallel)" in proc.stdout
    # Sequential: no two nodes overlap, so the sum of node times never exceeds
    # the wall time (it falls short of it by the engine's gaps between nodes).
    speedup = float(re.search(r"speedup (\d+\.\d+)x", proc.stdout).group(1))  # type: ignore[union-attr]
    assert speedup <= 1.0
    assert "critical path:" in proc.stdout
    assert "output of documentation" in proc.stdout


def test_run_plan_file(examples) -> None:
    proc = run_cli("run", str(examples / "plans" / "compare_languages_plan.json"), "--json")
    assert proc.returncode == 0, proc.stderr
    assert list(json.loads(proc.stdout)["nodes"]) == [
        "researcher_0",
        "researcher_1",
        "researcher_2",
        "analyzer_3",
        "synthesizer_4",
    ]


def test_failed_run_exits_1(tmp_path) -> None:
    wf = tmp_path / "fail.yaml"
    wf.write_text("nodes:\n  boom: {function: 'json:loads'}\n")
    (tmp_path / "x").mkdir()
    proc = run_cli("run", str(wf), "--json")
    # json.loads needs an argument nothing provides: a compile-time error, exit 2
    assert proc.returncode == 2
    wf.write_text(
        "nodes:\n  src: {function: 'os:getcwd'}\n  boom: {function: 'json:loads', depends_on: [src]}\n"
    )
    proc = run_cli("run", str(wf), "--json")
    assert proc.returncode == 1
    record = json.loads(proc.stdout)
    assert record["nodes"]["boom"]["error_type"] == "JSONDecodeError"


def test_graph_formats(examples) -> None:
    text = run_cli("graph", str(examples / "business_plan.yaml"))
    assert text.returncode == 0
    assert "9 nodes in 4 layers" in text.stdout
    mermaid = run_cli("graph", str(examples / "business_plan.yaml"), "--format", "mermaid")
    assert mermaid.stdout.startswith("flowchart TD")
    assert "n_market_size --> n_market_analysis" in mermaid.stdout
    dot = run_cli("graph", str(examples / "business_plan.yaml"), "--format", "dot")
    assert '"market_size" -> "market_analysis";' in dot.stdout


def test_validate_and_roles(examples) -> None:
    proc = run_cli("validate", str(examples / "software_architecture.yaml"))
    assert proc.returncode == 0
    assert "15 nodes in 5 layers, up to 6 in parallel" in proc.stdout
    roles = run_cli("roles")
    for role in (
        "researcher",
        "analyzer",
        "synthesizer",
        "planner",
        "writer",
        "critic",
        "coordinator",
        "reviewer",
        "presenter",
        "fact_checker",
    ):
        assert role in roles.stdout


def test_roles_defined_in_a_file_are_usable(tmp_path) -> None:
    wf = tmp_path / "custom.yaml"
    wf.write_text(
        "roles:\n  economist: {description: Models prices., system_prompt: You are an economist.}\n"
        "nodes:\n  a: {role: economist, task: Price a croissant}\n"
    )
    assert run_cli("run", str(wf), "--quiet").returncode == 0
    listing = run_cli("roles", "--workflow", str(wf))
    assert "economist" in listing.stdout
    assert "workflow" in listing.stdout


def test_bad_input_flag_is_a_clean_error(examples) -> None:
    proc = run_cli("run", str(examples / "business_plan.yaml"), "--input", "query")
    assert proc.returncode == 2
    assert "name=value" in proc.stderr
    proc = run_cli("run", str(examples / "business_plan.yaml"), "--model", "nope:x")
    assert proc.returncode == 2
    assert "unknown provider 'nope'" in proc.stderr


def test_help_and_module_entry_point() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0
    for command in ("run", "graph", "validate", "roles"):
        assert command in proc.stdout


def test_ctrl_c_stops_cleanly_and_keeps_what_finished(tmp_path) -> None:
    wf = tmp_path / "long.yaml"
    wf.write_text(
        "nodes:\n  quick: {role: researcher, task: q, latency_s: 0.1}\n"
        "  slow: {role: researcher, task: s, latency_s: 30}\n"
    )
    env = {**os.environ, "AGENTPLEX_SIM_SCALE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentplex", "run", str(wf), "--out", str(tmp_path / "out")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted" in stdout
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["status"] == "cancelled"
    assert record["nodes"]["quick"]["status"] == "succeeded"
    assert record["nodes"]["slow"]["status"] == "cancelled"
    assert (tmp_path / "out" / "outputs" / "quick.md").exists()


@pytest.mark.parametrize("concurrency", [1, 2])
def test_ctrl_c_on_a_large_dag_at_low_concurrency_keeps_json_out_and_store(
    tmp_path: Path, concurrency: int
) -> None:
    (tmp_path / "steps.py").write_text(
        "from pathlib import Path\n\n"
        "def ready():\n"
        f"    Path({str(tmp_path / 'started')!r}).write_text('x')\n"
        "    return 'go'\n"
    )
    lines = ["nodes:", "  start: {function: 'steps:ready'}"]
    for i in range(600):
        deps = ["start"] + ([f"n{i - 10}"] if i >= 10 else [])  # ten chains: more ready than slots
        lines.append(
            f"  n{i}: {{role: researcher, task: step {i}, latency_s: 0.05, depends_on: {deps}}}"
        )
    wf = tmp_path / "large.yaml"
    wf.write_text("\n".join(lines) + "\n")
    store = tmp_path / "runs.sqlite"
    env = {**os.environ, "AGENTPLEX_SIM_SCALE": "1", "AGENTPLEX_STORE": str(store)}
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "agentplex", "run", str(wf), "--max-concurrency", str(concurrency)]
    cmd += ["--json", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    while not (tmp_path / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # a few agents finish
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    record = json.loads(stdout)
    assert record["status"] == "cancelled"
    kept = {n for n, node in record["nodes"].items() if node["status"] == "succeeded"}
    assert "start" in kept
    assert len(record["nodes"]) == 601
    assert json.loads((out / "run.json").read_text())["status"] == "cancelled"
    shown = run_cli("show", record["run_id"], "--store", str(store), "--json")
    assert shown.returncode == 0, shown.stderr
    stored = json.loads(shown.stdout)
    stored_ok = {n for n, node in stored["nodes"].items() if node["status"] == "succeeded"}
    assert stored_ok == kept


def test_file_functions_are_imported_from_beside_the_file_and_run_in_processes(tmp_path) -> None:
    (tmp_path / "my_steps.py").write_text(
        "import os\n\n"
        "def words(text):\n    return len(text.split())\n\n"
        "def where(words):\n    return [words, os.getpid()]\n"
    )
    wf = tmp_path / "flow.yaml"
    wf.write_text(
        "nodes:\n"
        "  draft: {role: writer, task: Write about queues}\n"
        "  words: {function: 'my_steps:words', depends_on: [draft], cpu_bound: true}\n"
        "  where: {function: 'my_steps:where', depends_on: [words], executor: thread}\n"
    )
    proc = run_cli("run", str(wf), "--json")
    assert proc.returncode == 0, proc.stderr
    nodes = json.loads(proc.stdout)["nodes"]
    count, _pid = nodes["where"]["output"]
    assert count == nodes["words"]["output"] == len(nodes["draft"]["output"].split())


def test_yaml_map_node_runs_one_agent_per_item(tmp_path) -> None:
    wf = tmp_path / "map.yaml"
    wf.write_text(
        "nodes:\n"
        "  claims: {role: researcher, task: List claims about tea}\n"
        "  checks: {map: claims, role: fact_checker, task: 'Check: {item}'}\n"
    )
    proc = run_cli("run", str(wf), "--json")
    assert proc.returncode == 0, proc.stderr
    nodes = json.loads(proc.stdout)["nodes"]
    bullets = [line for line in nodes["claims"]["output"].splitlines() if line.startswith("- ")]
    assert len(nodes["checks"]["output"]) == len(bullets)
    assert all(check.startswith("## Fact check: Check:") for check in nodes["checks"]["output"])
