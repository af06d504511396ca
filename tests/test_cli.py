from __future__ import annotations

import json
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agentplex.sim.server import SimServer
from tests.cli import MARKER_STEPS, cli, popen_cli, subprocess_cli, wait_for_file

ROOT = Path(__file__).resolve().parent.parent


def test_run_json_prints_one_complete_record(examples) -> None:
    proc = cli(
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
    proc = cli(
        "run", str(examples / "compare_languages.yaml"), "--out", str(tmp_path / "res"), "--quiet"
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "res" / "run.json").read_text())
    assert record["status"] == "succeeded"
    outputs = sorted(p.name for p in (tmp_path / "res" / "outputs").iterdir())
    assert outputs == sorted(f"{n}.md" for n in record["nodes"])
    assert "speedup" in proc.stdout


def test_run_sequential_strategy_and_summary(examples) -> None:
    proc = cli(
        "run",
        str(examples / "software_architecture.yaml"),
        "--strategy",
        "sequential",
        env={"AGENTPLEX_SIM_SCALE": "0.02"},
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
    proc = cli("run", str(examples / "plans" / "compare_languages_plan.json"), "--json")
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
    proc = cli("run", str(wf), "--json")
    # json.loads needs an argument nothing provides: a compile-time error, exit 2
    assert proc.returncode == 2
    wf.write_text(
        "nodes:\n  src: {function: 'os:getcwd'}\n  boom: {function: 'json:loads', depends_on: [src]}\n"
    )
    proc = cli("run", str(wf), "--json")
    assert proc.returncode == 1
    record = json.loads(proc.stdout)
    assert record["nodes"]["boom"]["error_type"] == "JSONDecodeError"


def test_graph_formats(examples) -> None:
    text = cli("graph", str(examples / "business_plan.yaml"))
    assert text.returncode == 0
    assert "9 nodes in 4 layers" in text.stdout
    mermaid = cli("graph", str(examples / "business_plan.yaml"), "--format", "mermaid")
    assert mermaid.stdout.startswith("flowchart TD")
    assert "n_market_size --> n_market_analysis" in mermaid.stdout
    dot = cli("graph", str(examples / "business_plan.yaml"), "--format", "dot")
    assert '"market_size" -> "market_analysis";' in dot.stdout


def test_validate_and_roles(examples) -> None:
    proc = cli("validate", str(examples / "software_architecture.yaml"))
    assert proc.returncode == 0
    assert "15 nodes in 5 layers, up to 6 in parallel" in proc.stdout
    roles = cli("roles")
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
    assert cli("run", str(wf), "--quiet").returncode == 0
    listing = cli("roles", "--workflow", str(wf))
    assert "economist" in listing.stdout
    assert "workflow" in listing.stdout


def test_bad_input_flag_is_a_clean_error(examples) -> None:
    proc = cli("run", str(examples / "business_plan.yaml"), "--input", "query")
    assert proc.returncode == 2
    assert "name=value" in proc.stderr
    proc = cli("run", str(examples / "business_plan.yaml"), "--model", "nope:x")
    assert proc.returncode == 2
    assert "unknown provider 'nope'" in proc.stderr


def test_help_and_module_entry_point() -> None:
    # A real process: this is the check that ``python -m agentplex`` itself works.
    proc = subprocess_cli("--help")
    assert proc.returncode == 0
    for command in ("run", "graph", "validate", "roles"):
        assert command in proc.stdout


def test_ctrl_c_stops_cleanly_and_keeps_what_finished(tmp_path) -> None:
    # A real process: Ctrl-C is a real SIGINT, delivered while the run goes.
    (tmp_path / "steps.py").write_text(MARKER_STEPS)
    wf = tmp_path / "long.yaml"
    wf.write_text(
        "inputs: {marker: null}\n"
        "nodes:\n  quick: {function: 'steps:ready'}\n"
        "  slow: {role: researcher, task: s, latency_s: 30}\n"
    )
    marker = tmp_path / "started"
    proc = popen_cli(
        "run", wf, "--input", f"marker={marker}", "--out", tmp_path / "out",
        env={"AGENTPLEX_SIM_SCALE": "1"},
    )  # fmt: skip
    wait_for_file(marker)
    time.sleep(0.5)  # quick's result is recorded
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
    # A real process: Ctrl-C is a real SIGINT, delivered while the run goes.
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
    env = {"AGENTPLEX_SIM_SCALE": "1", "AGENTPLEX_STORE": str(store)}
    out = tmp_path / "out"
    cmd = ["run", str(wf), "--max-concurrency", str(concurrency)]
    cmd += ["--json", "--out", str(out)]
    proc = popen_cli(*cmd, env=env)
    wait_for_file(tmp_path / "started")
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
    shown = cli("show", record["run_id"], "--store", str(store), "--json")
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
    proc = cli("run", str(wf), "--json")
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
    proc = cli("run", str(wf), "--json")
    assert proc.returncode == 0, proc.stderr
    nodes = json.loads(proc.stdout)["nodes"]
    bullets = [line for line in nodes["claims"]["output"].splitlines() if line.startswith("- ")]
    assert len(nodes["checks"]["output"]) == len(bullets)
    assert all(check.startswith("## Fact check: Check:") for check in nodes["checks"]["output"])


# -- one CLI: flags declared once, one script, --json everywhere ------------------------------

ENGINE_HELP = {
    "--max-concurrency": "Nodes running at once",
    "--max-output-tokens": "Output cap of each model call",
    "--on-truncated": "What to do with an answer cut off",
    "--model": "Model for agents that name none",
    "--seed": "Seed passed to the model",
    "--timeout": "Per-attempt time limit",
    "--retries": "Retries after real errors",
    "--sim-scale": "Multiply simulated latencies",
    "--base-url": "Endpoint of --model's provider",
    "--api-key": "Key of --model's provider",
    "--rpm": "Requests per minute allowed",
    "--tpm": "Tokens per minute allowed",
    "--max-inflight": "Calls in flight allowed",
    "--total-timeout": "Time limit (s) of a node across",
    "--prices": "YAML/JSON price file",
}


@pytest.mark.parametrize("command", ["run", "batch", "bench", "plan", "ask"])
def test_every_command_that_runs_work_lists_the_engine_flags_with_their_help(command: str) -> None:
    shown = cli(command, "--help", env={"COLUMNS": "400"})
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.stdout.split())
    for flag, help_text in ENGINE_HELP.items():
        if command == "plan" and flag == "--max-concurrency":  # a plan is one coordinator call
            assert flag not in text
            continue
        assert flag in text, (command, flag)
        assert help_text in text, (command, flag)
    if command in ("run", "batch"):
        for flag in ("--strategy", "--error-policy", "--executor", "--dask", "--untrusted"):
            assert flag in text, (command, flag)
        assert "$AGENTPLEX_STORE or .agentplex/runs.sqlite" in text  # help is never read as markup


def test_batch_takes_untrusted_and_lenient_like_run(tmp_path: Path, examples: Path) -> None:
    named = tmp_path / "steps.yaml"
    named.write_text("inputs: {topic: null}\nnodes:\n  a: {function: 'os:getcwd'}\n")
    topics = tmp_path / "topics.txt"
    topics.write_text("tea\n")
    refused = cli("batch", named, "--inputs", topics, "--untrusted", "-q")
    assert refused.exit_code == 2, refused.output
    assert "untrusted" in refused.stderr
    lenient = cli("batch", examples / "content_pipeline.yaml", "--inputs", topics, "--lenient")
    assert lenient.exit_code == 0, lenient.output
    assert "1 items: 1 succeeded" in lenient.stdout


def test_json_on_every_command_is_one_document_on_stdout(tmp_path: Path, examples: Path) -> None:
    flow = examples / "business_plan.yaml"
    ran = cli("run", flow, "--json", "--out", tmp_path / "out")
    assert ran.exit_code == 0, ran.output
    run_id = json.loads(ran.stdout)["run_id"]
    assert "wrote" in ran.stderr  # where it is kept goes to stderr, never into the JSON
    valid = json.loads(cli("validate", flow, "--json").stdout)
    assert (valid["valid"], valid["nodes"], valid["layers"]) == (True, 9, 4)
    graph = json.loads(cli("graph", flow, "--json").stdout)
    assert "market_size" in graph["nodes"]["market_analysis"]["depends_on"]
    assert len(graph["layers"]) == 4
    roles = {r["role"]: r["origin"] for r in json.loads(cli("roles", "--json").stdout)}
    assert roles["researcher"] == "built-in"
    html = tmp_path / "r.html"
    report = json.loads(cli("report", run_id, "--html", html, "--json").stdout)
    assert report["report"] == str(html)
    assert html.exists()
    [listed] = json.loads(cli("runs", "--json").stdout)
    assert listed["run_id"] == run_id
    assert json.loads(cli("show", run_id, "--json").stdout)["status"] == "succeeded"


def test_a_bad_configuration_with_json_is_exit_2_with_an_error_document(examples: Path) -> None:
    done = cli("run", examples / "business_plan.yaml", "--model", "nope:x", "--json")
    assert done.exit_code == 2
    error = json.loads(done.stdout)
    assert error["status"] == "error"
    assert error["error"]["type"] == "ConfigError"
    assert "unknown provider 'nope'" in error["error"]["message"]
    assert len(done.stderr.strip().splitlines()) == 1  # and one clear line for people


def test_an_invalid_workflow_with_json_lists_every_problem(tmp_path: Path) -> None:
    flow = tmp_path / "bad.yaml"
    flow.write_text(
        "nodes:\n  a: {role: nobody, task: x}\n  b: {role: writer, task: y, depends_on: [ghost]}\n"
    )
    done = cli("validate", flow, "--json")
    assert done.exit_code == 2
    error = json.loads(done.stdout)["error"]
    assert error["type"] == "InvalidWorkflowError"
    assert len(error["problems"]) == 2
    assert any("ghost" in p for p in error["problems"])
    assert str(flow) in done.stderr


def test_piped_tables_keep_every_character_of_a_long_node_id(tmp_path: Path) -> None:
    long_id = "a_node_whose_id_is_far_longer_than_any_eighty_column_terminal_" + "x" * 60
    flow = tmp_path / "long.yaml"
    flow.write_text(
        f"nodes:\n  {long_id}: {{role: researcher, task: hi}}\n"
        f"  after: {{role: writer, task: more, depends_on: [{long_id}]}}\n"
    )
    done = cli("run", flow)  # CliRunner's stdout is a pipe, not a terminal
    assert done.exit_code == 0, done.output
    rows = [line for line in done.stdout.splitlines() if long_id in line]
    assert any("researcher" in row and "succeeded" in row for row in rows), done.stdout
    assert "…" not in done.stdout
    shown = cli("show", json.loads(cli("runs", "--json").stdout)[0]["run_id"])
    assert any(long_id in line and "succeeded" in line for line in shown.stdout.splitlines())


@pytest.mark.parametrize(
    ("args", "module", "extra"),
    [
        (
            ["bench", "{flow}", "--inputs", "{topics}", "--plot", "{tmp}/b.png"],
            "matplotlib",
            "plot",
        ),
        (["run", "{flow}", "--export", "md,pptx", "--out", "{tmp}/o"], "pptx", "export"),
        (["batch", "{flow}", "--inputs", "{topics}", "--export", "pdf"], "reportlab", "export"),
        (["run", "{flow}", "--executor", "dask"], "distributed", "dask"),
        (["batch", "{flow}", "--inputs", "{topics}", "--shard"], "distributed", "dask"),
    ],
)
def test_a_missing_extra_is_exit_2_before_any_work_starts(
    tmp_path: Path,
    examples: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    module: str,
    extra: str,
) -> None:
    import agentplex.batch.benchmark
    import agentplex.batch.driver
    import agentplex.engine.runner

    def never(*_: object, **__: object) -> None:
        raise AssertionError("work started although an extra is missing")

    for owner, name in [
        (agentplex.batch.benchmark, "benchmark"),
        (agentplex.batch.driver, "arun_batch"),
        (agentplex.engine.runner, "arun"),
    ]:
        monkeypatch.setattr(owner, name, never)
    monkeypatch.setitem(sys.modules, module, None)  # find_spec now says: not installed
    topics = tmp_path / "topics.txt"
    topics.write_text("tea\n")
    values = {"flow": str(examples / "content_pipeline.yaml"), "topics": str(topics)}
    values["tmp"] = str(tmp_path)
    done = cli(*(a.format(**values) for a in args))
    assert done.exit_code == 2, done.output
    assert f"pip install 'agentplex[{extra}]'" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stdout == ""
    assert not (tmp_path / "o").exists()


def test_a_failing_step_says_how_to_see_its_traceback_and_verbose_shows_it(tmp_path) -> None:
    flow = tmp_path / "fail.yaml"
    flow.write_text(
        "nodes:\n  src: {function: 'os:getcwd'}\n"
        "  boom: {function: 'json:loads', depends_on: [src]}\n"
        "  ask: {role: researcher, task: 'Say hello to the reviewer'}\n"
    )
    plain = cli("run", flow, "-q")
    assert plain.exit_code == 1
    assert "boom failed: JSONDecodeError" in plain.stdout
    assert "(run with --verbose for the traceback)" in plain.stdout
    assert "Traceback" not in plain.output
    verbose = cli("run", flow, "-q", "--verbose", "--json")
    assert verbose.exit_code == 1
    assert json.loads(verbose.stdout)["nodes"]["boom"]["status"] == "failed"  # stdout: JSON only
    assert "traceback of node 'boom'" in verbose.stderr
    assert "Traceback (most recent call last)" in verbose.stderr
    assert 'raise JSONDecodeError("Expecting value"' in verbose.stderr
    assert "request of node 'ask' (attempt 1) to sim:default" in verbose.stderr
    assert "[user] Say hello to the reviewer" in verbose.stderr


def test_ctrl_c_in_ask_keeps_the_partial_run_and_exits_130(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import agentplex as ap
    import agentplex.planning.ask
    from agentplex.events import RunFinished

    wf = ap.Workflow("ask")
    wf.agent("researcher", "Research", id="coordinator")
    partial = ap.run(wf)

    async def interrupted(question: str, *, observers: list, **_: object) -> None:
        for observe in observers:
            observe(RunFinished(run_id=partial.run_id, t=1.0, result=partial))
        raise KeyboardInterrupt  # as asyncio.run raises it after cancelling the run

    monkeypatch.setattr(agentplex.planning.ask, "aask", interrupted)
    done = cli("ask", "Compare A and B", "--json", "--out", tmp_path / "out")
    assert done.exit_code == 130, done.output
    record = json.loads(done.stdout)
    assert record["question"] == "Compare A and B"
    assert record["nodes"]["coordinator"]["status"] == "succeeded"  # what finished is kept
    assert json.loads((tmp_path / "out" / "ask.json").read_text())["run_id"] == partial.run_id
    assert "interrupted" in done.stderr
    human = cli("ask", "Compare A and B")
    assert human.exit_code == 130
    assert "interrupted: what finished is kept" in human.stdout


def test_sim_server_prints_its_address_as_json_and_exits_130_on_ctrl_c(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import agentplex.sim.server

    async def serve(config: object, port: int, *, ready: Callable[[int], None]) -> None:
        ready(4321)
        raise KeyboardInterrupt

    monkeypatch.setattr(agentplex.sim.server, "serve", serve)
    done = cli("sim-server", "--port", "0", "--p500", "0.1", "--json")
    assert done.exit_code == 130
    where = json.loads(done.stdout)
    assert where["openai_base_url"] == "http://127.0.0.1:4321/v1"
    assert where["anthropic_base_url"] == "http://127.0.0.1:4321"
    bad = cli("sim-server", "--p500", "2")
    assert bad.exit_code == 2
    assert "p500" in bad.stderr


def test_the_flag_groups_reject_a_field_they_do_not_have() -> None:
    from agentplex.cli.flags import EngineFlags, takes

    with pytest.raises(TypeError, match="no field"):
        takes(EngineFlags, "engine", only=("max_concurency",))
    with pytest.raises(TypeError, match="no parameter 'engine'"):
        takes(EngineFlags, "engine")(lambda other: None)


def test_last_stands_for_the_newest_run_in_show_resume_and_report(
    tmp_path: Path, examples: Path
) -> None:
    empty = cli("show", "last")
    assert empty.exit_code == 2
    assert "no runs yet" in empty.stderr
    first = json.loads(cli("run", examples / "compare_languages.yaml", "--json").stdout)
    newest = json.loads(cli("run", examples / "business_plan.yaml", "--json").stdout)
    assert first["run_id"] != newest["run_id"]
    shown = json.loads(cli("show", "last", "--json").stdout)
    assert shown["run_id"] == newest["run_id"]
    resumed = cli("resume", "last", "--json")
    assert resumed.exit_code == 0, resumed.stderr
    assert json.loads(resumed.stdout)["run_id"] == newest["run_id"]
    report = cli("report", "last", "--html", tmp_path / "r.html")
    assert report.exit_code == 0, report.stderr
    assert newest["run_id"] in (tmp_path / "r.html").read_text()


def test_rate_limit_retries_is_a_flag_and_bounds_the_429s_a_node_waits_out(
    tmp_path: Path, server: SimServer
) -> None:
    wf = tmp_path / "one.yaml"
    wf.write_text("nodes:\n  a: {role: researcher, task: t}\n")
    server.configure(script=(429,) * 3, retry_after_s=0.01)
    flags = ["--model", "openai:sim", "--base-url", server.url, "--api-key", "sk-test-0"]
    failed = cli("run", wf, *flags, "--rate-limit-retries", "2", "--json")
    assert failed.exit_code == 1
    assert json.loads(failed.stdout)["nodes"]["a"]["attempts"] == 3  # the first and two retries
    server.configure(script=(429,) * 3, retry_after_s=0.01)
    server.reset()
    ok = cli("run", wf, *flags, "--rate-limit-retries", "3", "--json")
    assert ok.exit_code == 0, ok.stderr


def test_ctrl_c_does_not_wait_for_a_python_step_still_running_in_a_thread(
    tmp_path: Path,
) -> None:
    # A real process: Ctrl-C is a real SIGINT. The step would run for ten minutes; a
    # thread cannot be stopped, and the command must not wait for it at exit.
    (tmp_path / "steps.py").write_text(
        MARKER_STEPS + "\n\ndef forever(marker: str = '') -> str:\n"
        "    ready(marker)\n    import time\n    time.sleep(600)\n    return 'late'\n"
    )
    marker = tmp_path / "started"
    wf = tmp_path / "stuck.yaml"
    wf.write_text(
        "inputs: {marker: null}\n"
        "nodes:\n  stuck: {function: 'steps:forever', executor: thread}\n"
        "  quick: {role: researcher, task: q, latency_s: 0}\n"
    )
    proc = popen_cli("run", wf, "--input", f"marker={marker}", "--json")
    wait_for_file(marker)
    time.sleep(0.5)  # quick is done and recorded
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)  # far less than the step's ten minutes
    assert proc.returncode == 130, stderr
    record = json.loads(stdout)
    assert record["nodes"]["quick"]["status"] == "succeeded"
    assert record["nodes"]["stuck"]["status"] == "cancelled"


def test_json_mode_always_leaves_one_document_on_stdout_even_for_usage_errors(
    examples: Path,
) -> None:
    # A real process: usage errors are the command line's own, before any command runs.
    for args in (["--bogus"], ["--strategy", "bogus"], ["--out", str(examples / "topics.txt")]):
        proc = subprocess_cli("run", examples / "compare_languages.yaml", *args, "--json")
        assert proc.returncode == 2, proc.stderr
        document = json.loads(proc.stdout)
        assert (document["status"], document["exit_code"]) == ("error", 2)


def test_bad_ports_and_plot_paths_are_refused_before_any_work(
    tmp_path: Path, examples: Path
) -> None:
    for port in ("99999", "-5"):
        refused = cli("sim-server", "--port", port)
        assert refused.exit_code == 2
        assert "Traceback" not in refused.output
    plot = cli(
        "bench", examples / "due_diligence.yaml", "--inputs", examples / "companies.txt",
        "--plot", tmp_path / "bench.txt",
    )  # fmt: skip
    assert plot.exit_code == 2
    assert "--plot bench.png" in plot.stderr


def test_verbose_shows_the_requests_of_plan_and_bench_too(examples: Path) -> None:
    planned = cli("plan", "Compare A, B and C", "--verbose")
    assert planned.exit_code == 0, planned.stderr
    assert "request of node 'coordinator'" in planned.stderr
    benched = cli(
        "bench", examples / "due_diligence.yaml", "--inputs", examples / "companies.txt",
        "--designs", "dataflow", "--sim-scale", "0", "-v",
    )  # fmt: skip
    assert benched.exit_code == 0, benched.stderr
    assert "request of node 'legal_research'" in benched.stderr


def test_commands_that_only_read_the_store_never_create_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "nowhere" / "runs.sqlite"
    monkeypatch.setenv("AGENTPLEX_STORE", str(store))
    listed = cli("runs")
    assert listed.exit_code == 0
    assert "no runs yet" in listed.stdout
    assert json.loads(cli("runs", "--json").stdout) == []
    for args in (["show", "last"], ["resume", "some-id"], ["report", "last"]):
        assert cli(*args).exit_code == 2
    assert not store.parent.exists()
