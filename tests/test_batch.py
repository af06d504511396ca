"""Batches: input formats and bad rows, failure isolation, shared limits, results, the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

import agentplex as ap
from agentplex.batch.benchmark import benchmark
from agentplex.events import Event, ItemFinished, ItemStarted, NodeStarted
from agentplex.exceptions import ConfigError
from tests.cli import MARKER_STEPS, cli, popen_cli, wait_for_file


def pipeline() -> ap.Workflow:
    wf = ap.Workflow(
        "pipe", inputs=["topic", ap.InputSpec("content_type", default="blog post", required=False)]
    )
    wf.agent("researcher", "Research {topic}", id="research")
    wf.agent("writer", "Write a {content_type} on {topic}", id="write", depends_on=["research"])
    wf.agent("reviewer", "Review it", id="review", depends_on=["write"])
    wf.agent("presenter", "Slides", id="present", depends_on=["review"])
    return wf


def test_every_item_runs_with_its_own_inputs_and_matches_a_single_run() -> None:
    topics = ["Rust", "Go", "Zig"]
    result = ap.run_batch(pipeline(), [{"topic": t} for t in topics], max_concurrency=4)
    assert result.ok
    assert list(result) == ["1-rust", "2-go", "3-zig"]
    for key, item in result.items():
        assert item.success
        assert item.error is None
        single = ap.run(pipeline(), inputs=dict(item.inputs))
        assert item.outputs == single.outputs, key  # same prompts, same answers
    assert result["2-go"].inputs == {"topic": "Go", "content_type": "blog post"}


def test_a_failing_item_never_stops_the_others() -> None:
    wf = ap.Workflow("fragile", inputs=["n"])

    def check(n: str) -> str:
        if n == "3":
            raise ValueError("three is not allowed")
        return n

    wf.function(check, id="check")
    wf.agent("writer", "Write about {n}", id="write", depends_on=["check"])
    result = ap.run_batch(wf, [{"n": str(i)} for i in range(6)], max_concurrency=2)
    assert result.status == "failed"
    assert result.counts() == {"succeeded": 5, "failed": 1}
    (bad,) = result.failed()
    assert bad.inputs == {"n": "3"}
    assert bad.error is not None
    assert "check" in bad.error
    assert "three is not allowed" in bad.error


def test_one_concurrency_limit_across_all_items() -> None:
    running = 0
    peak = 0

    def observe(event: Event) -> None:
        nonlocal running, peak
        if isinstance(event, NodeStarted):
            running += 1
            peak = max(peak, running)
        elif type(event).__name__ in ("NodeFinished", "NodeFailed"):
            running -= 1

    result = ap.run_batch(
        pipeline(), [{"topic": f"t{i}"} for i in range(20)], max_concurrency=5, observers=[observe]
    )
    assert result.ok
    assert peak == 5  # saturated, never exceeded


def test_higher_priority_items_start_first() -> None:
    started: list[str] = []

    def observe(event: Event) -> None:
        if isinstance(event, ItemStarted):
            started.append(event.key)

    items = [{"topic": f"t{i}", "key": f"k{i}", "priority": i % 3} for i in range(9)]
    ap.run_batch(pipeline(), items, max_concurrency=1, max_open=1, observers=[observe])
    assert started == ["k2", "k5", "k8", "k1", "k4", "k7", "k0", "k3", "k6"]


def test_a_row_can_choose_its_model() -> None:
    items = [{"topic": "Go", "key": "fast", "model": "sim:fast"}, {"topic": "Go", "key": "plain"}]
    result = ap.run_batch(pipeline(), items)
    assert result["fast"].run is not None
    assert {n.model for n in result["fast"].run.nodes.values()} == {"sim:fast"}
    assert {n.model for n in result["plain"].run.nodes.values()} == {"sim:default"}  # type: ignore[union-attr]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_text_csv_and_json_lines(tmp_path: Path) -> None:
    txt = write(tmp_path / "topics.txt", "# comment\nRust\n\nGo\n")
    csv_file = write(tmp_path / "jobs.csv", "key,topic,content_type\na,Rust,report\nb,Go,\n")
    jsonl = write(tmp_path / "jobs.jsonl", '{"topic": "Rust", "priority": 2}\n"Go"\n')
    by_txt = ap.run_batch(pipeline(), txt)
    assert [i.inputs["topic"] for i in by_txt.values()] == ["Rust", "Go"]
    assert [i.where for i in by_txt.values()] == [f"{txt}:2", f"{txt}:4"]
    by_csv = ap.run_batch(pipeline(), csv_file)
    assert by_csv["a"].inputs == {"topic": "Rust", "content_type": "report"}
    assert by_csv["b"].inputs["content_type"] == "blog post"  # an empty cell takes the default
    by_jsonl = ap.run_batch(pipeline(), jsonl)
    assert [i.priority for i in by_jsonl.values()] == [2.0, 0.0]
    assert all(r.ok for r in (by_txt, by_csv, by_jsonl))


def test_bad_rows_fail_alone_naming_their_line(tmp_path: Path) -> None:
    jobs = write(
        tmp_path / "jobs.csv",
        "key,topic,priority,model\n"
        "ok1,Rust,,\n"
        "short,Go\n"  # line 3: too few fields
        "ok1,Zig,,\n"  # line 4: duplicate key
        "prio,Zig,high,\n"  # line 5: priority not a number
        "nomodel,Zig,,nowhere:x\n"  # line 6: unknown provider
        ",,,\n"  # blank row: skipped
        "notopic,,,\n"  # line 8: missing required input
        "ok2,Odin,,\n",
    )
    result = ap.run_batch(pipeline(), jobs)
    assert [i.key for i in result.values() if i.success] == ["ok1", "ok2"]
    invalid = {i.where: i.error for i in result.values() if i.status == "invalid"}
    assert set(invalid) == {f"{jobs}:{n}" for n in (3, 4, 5, 6, 8)}
    assert "2 fields where the header has 4" in invalid[f"{jobs}:3"]
    assert "duplicate key 'ok1'" in invalid[f"{jobs}:4"]
    assert "priority 'high' is not a number" in invalid[f"{jobs}:5"]
    assert "unknown provider 'nowhere'" in invalid[f"{jobs}:6"]
    assert "no value for input 'topic'. Fix: fill the 'topic' column" in invalid[f"{jobs}:8"]
    bad_json = write(tmp_path / "jobs.jsonl", '{"topic": "Rust"}\n{"topic": \n[1, 2]\n')
    result = ap.run_batch(pipeline(), bad_json)
    assert result.counts() == {"succeeded": 1, "invalid": 2}
    assert "not valid JSON" in (result.failed()[0].error or "")


def test_file_level_problems_fail_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'colour' are not inputs of workflow 'pipe'"):
        ap.run_batch(pipeline(), write(tmp_path / "a.csv", "topic,colour\nRust,red\n"))
    two = ap.Workflow("two", inputs=["a", "b"])
    two.agent("writer", "{a} {b}", id="w")
    with pytest.raises(ConfigError, match="use a CSV file"):
        ap.run_batch(two, write(tmp_path / "b.txt", "x\n"))
    with pytest.raises(ap.exceptions.WorkflowFileError, match="unknown batch input format"):
        ap.run_batch(pipeline(), write(tmp_path / "c.xlsx", "x"))


def test_out_folder_has_each_item_a_record_and_a_summary(tmp_path: Path) -> None:
    seen: list[str] = []
    out = tmp_path / "results"

    def observe(event: Event) -> None:  # each item's folder exists once it has finished
        if isinstance(event, ItemFinished):
            seen.append(event.key)
            assert (out / "items" / event.key / "run.json").exists()

    result = ap.run_batch(
        pipeline(),
        [{"topic": "Rust"}, {"topic": "Go"}],
        out=out,
        keep_results=False,
        observers=[observe],
    )
    assert sorted(seen) == ["1-rust", "2-go"]
    assert all(item.run is None for item in result.values())  # written, then dropped
    record = json.loads((out / "batch.json").read_text())
    assert record["counts"] == {"succeeded": 2}
    assert [i["key"] for i in record["items"]] == ["1-rust", "2-go"]
    assert set(record["items"][0]) >= {"key", "success", "wall_s", "tokens", "cost_usd", "error"}
    with (out / "summary.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["key"] for r in rows] == ["1-rust", "2-go"]
    assert int(rows[0]["input_tokens"]) > 0
    outputs = sorted(p.name for p in (out / "items" / "2-go" / "outputs").iterdir())
    assert outputs == ["present.md", "research.md", "review.md", "write.md"]


def test_cli_batch_over_the_example_topics(examples: Path, tmp_path: Path) -> None:
    out = tmp_path / "res"
    proc = cli(
        "batch",
        str(examples / "content_pipeline.yaml"),
        "--inputs",
        str(examples / "topics.txt"),
        "--out",
        str(out),
        "--max-concurrency",
        "64",
    )
    assert proc.returncode == 0, proc.stderr
    assert "100 items: 100 succeeded" in proc.stdout
    assert "items 100/100 done (0 failed)" in proc.stderr  # the plain progress line of a log
    assert len(list((out / "items").iterdir())) == 100


def test_cli_batch_reports_bad_rows_and_exits_1(tmp_path: Path, examples: Path) -> None:
    jobs = write(tmp_path / "jobs.csv", "topic,content_type\nRust,report\nGo\n")
    proc = cli("batch", str(examples / "content_pipeline.yaml"), "--inputs", str(jobs))
    assert proc.returncode == 1, proc.stderr
    assert "1 item(s) did not succeed" in proc.stdout
    assert f"{jobs}:3" in proc.stdout
    assert "2 items: 1 invalid, 1 succeeded" in proc.stdout
    bad = cli(
        "batch", str(examples / "content_pipeline.yaml"), "--inputs", str(tmp_path / "no.csv")
    )
    assert bad.returncode == 2
    assert "cannot read batch inputs" in bad.stderr


def test_cli_shows_keys_and_errors_as_text_not_markup(tmp_path: Path, examples: Path) -> None:
    jobs = write(tmp_path / "jobs.csv", 'key,topic\n[/],\n"[bold red]loud",\n')
    proc = cli("batch", str(examples / "content_pipeline.yaml"), "--inputs", str(jobs), "-q")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "[/]" in proc.stdout
    assert "[bold red]loud" in proc.stdout


def test_ctrl_c_keeps_finished_items_and_writes_the_record(tmp_path: Path) -> None:
    import signal
    import time

    jobs = write(
        tmp_path / "jobs.jsonl",
        '{"key": "first", "topic": "q"}\n'
        + "".join(f'{{"key": "slow{i}", "topic": "s{i}"}}\n' for i in range(11)),
    )
    (tmp_path / "steps.py").write_text(MARKER_STEPS)
    marker = tmp_path / "started"
    slow = write(
        tmp_path / "slow.yaml",
        f"inputs: {{topic: null, marker: {{default: {str(marker)!r}}}}}\nnodes:\n"
        "  a: {function: 'steps:ready'}\n"
        "  b: {role: researcher, task: 'more on {topic}', latency_s: 30, depends_on: [a]}\n",
    )
    out = tmp_path / "out"
    # A real process: Ctrl-C is a real SIGINT, delivered while the batch goes.
    proc = popen_cli(
        "batch", slow, "--inputs", jobs, "--out", out, "--max-concurrency", "1",
        "--error-policy", "continue", env={"AGENTPLEX_SIM_SCALE": "1"},
    )  # fmt: skip
    wait_for_file(marker)
    time.sleep(0.5)  # the first item's step is recorded, and its slow agent has started
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted" in stdout
    record = json.loads((out / "batch.json").read_text())
    assert record["status"] == "cancelled"
    statuses = {i["key"]: i["status"] for i in record["items"]}
    assert statuses["first"] == "cancelled"  # its slow second node was cut short
    assert (out / "items" / "first" / "outputs" / "a.md").exists()  # what finished is kept
    # Every item is listed, started or not: at most max_open (8) were admitted.
    assert list(statuses) == ["first"] + [f"slow{i}" for i in range(11)]
    assert set(statuses.values()) == {"cancelled", "pending"}
    assert [statuses[f"slow{i}"] for i in range(7, 11)] == ["pending"] * 4
    assert record["counts"]["pending"] >= 4
    with (out / "summary.csv").open() as handle:
        assert [r["key"] for r in csv.DictReader(handle)] == list(statuses)


def test_benchmark_runs_every_design_on_the_same_items() -> None:
    topics = [{"topic": f"t{i}"} for i in range(12)]
    result = benchmark(pipeline(), topics, max_concurrency=8, sim_scale=0.02)
    assert [r.design for r in result.designs] == ["sequential", "pool4", "layers", "dataflow"]
    for row in result.designs:
        assert row.items == 12
        assert row.failed == 0
        assert row.calls == 48  # 12 items x 4 agents, each called once
        assert row.input_tokens > 0
    assert result["sequential"].speedup == pytest.approx(1.0)
    assert result["pool4"].max_concurrency == 4
    # The designs are not timed against a target here (bench/ does that), but
    # their order is structural: one worker is slower than many.
    assert result.speedup("dataflow") > result.speedup("pool4") > 1.0
    with pytest.raises(ConfigError, match="unknown design"):
        benchmark(pipeline(), topics, designs=["threads"])


def test_cli_bench_prints_the_table_and_draws_the_plot(examples: Path, tmp_path: Path) -> None:
    topics = write(tmp_path / "topics.txt", "Rust\nGo\nZig\nOdin\n")
    png = tmp_path / "bench.png"
    proc = cli(
        "bench",
        str(examples / "content_pipeline.yaml"),
        "--inputs",
        str(topics),
        "--designs",
        "sequential,dataflow",
        "--plot",
        str(png),
    )
    assert proc.returncode == 0, proc.stderr
    assert "sequential" in proc.stdout
    assert "dataflow" in proc.stdout
    assert "pool4 " not in proc.stdout.split("sequential:")[0]  # only the chosen designs ran
    import matplotlib.image

    image = matplotlib.image.imread(png)  # a real PNG
    assert image.shape[0] > 100
    data = cli("bench", str(examples / "content_pipeline.yaml"), "--inputs", str(topics), "--json")
    designs = json.loads(data.stdout)["designs"]
    assert [d["design"] for d in designs] == ["sequential", "pool4", "layers", "dataflow"]


def test_progress_counts_items_nodes_tokens_and_eta() -> None:
    import io

    from rich.console import Console

    from agentplex.report.batch_progress import BatchProgress

    clock = [0.0]
    buffer = io.StringIO()
    progress = BatchProgress(
        Console(file=buffer, width=300), live=False, every_s=1.0, clock=lambda: clock[0]
    )
    seen: list[Event] = []

    def observe(event: Event) -> None:
        seen.append(event)

    ap.run_batch(
        pipeline(), [{"topic": f"t{i}"} for i in range(4)] + [{"key": "bad"}], observers=[observe]
    )
    for event in seen:  # replay with a clock that moves a second per item
        if isinstance(event, ItemFinished):
            clock[0] += 1.0
        progress(event)
    assert progress.total == 5
    assert progress.finished == 5
    assert progress.failed == 1
    assert progress.running == 0
    assert progress.in_flight == 0
    assert progress.tokens > 0
    assert progress.eta_s() == 0
    lines = buffer.getvalue().splitlines()
    assert lines[-1].startswith("items 5/5 done (1 failed), 0 running, 0 queued")
    assert len(lines) >= 3  # a line per second of progress, then the final one
