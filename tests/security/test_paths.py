"""Names a user did not write (batch keys, node ids) never choose where files go.

Every test here plants the hostile name in a real batch or run, writes the
real result folder and checks, by snapshotting the temporary tree, that
nothing landed outside ``--out`` and nothing overwrote anything else.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import agentplex as ap
from tests.cli import Done, cli


def pipeline() -> ap.Workflow:
    wf = ap.Workflow("pipe", inputs=["topic"])
    wf.agent("researcher", "Research {topic}", id="research")
    wf.agent("writer", "Write on {topic}", id="write", depends_on=["research"])
    return wf


def snapshot(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if "agentplex-store" not in p.parts}


def item_folders(out: Path) -> dict[str, Path]:
    """The original key of every item folder written under ``out/items``, from its run.json."""
    folders: dict[str, Path] = {}
    for record in (out / "items").glob("*/run.json"):
        key = json.loads(record.read_text(encoding="utf-8"))["key"]
        assert key not in folders, f"two folders claim key {key!r}"
        folders[key] = record.parent
    return folders


def test_traversal_keys_write_nothing_outside_out(tmp_path: Path) -> None:
    out = tmp_path / "sandbox" / "deep" / "out"
    absolute = tmp_path / "absolute-target"
    keys = [
        "../../..",
        "..",
        ".",
        "../escaped",
        "a/../../../b",
        "..\\..\\windows",
        str(absolute),
        str(tmp_path) + "//double",
        "~",
        "CON",
        "nul.txt",
        "trailing.",
    ]
    before = snapshot(tmp_path)
    result = ap.run_batch(pipeline(), [{"key": k, "topic": "t"} for k in keys], out=out)
    assert result.ok, result.failed()
    created = snapshot(tmp_path) - before
    outside = sorted(str(p) for p in created if not p.is_relative_to(out) and p not in out.parents)
    assert outside == [], f"written outside --out: {outside}"
    assert not absolute.exists()
    assert not (tmp_path / "double").exists()
    folders = item_folders(out)
    assert sorted(folders) == sorted(keys)  # one folder per item, each recording its key
    for key, folder in folders.items():
        assert folder.parent == out / "items", key
        assert folder.name not in (".", "..", "")
        assert (folder / "outputs" / "write.md").is_file(), key
    record = json.loads((out / "batch.json").read_text(encoding="utf-8"))
    assert {i["key"]: i["folder"] for i in record["items"]} == {
        k: f.name for k, f in folders.items()
    }
    assert not (out / "run.json").exists()  # key '..' did not write into --out itself
    assert not (out / "items" / "run.json").exists()  # nor '.' into items/


def test_keys_equal_after_sanitising_or_case_never_share_a_folder(tmp_path: Path) -> None:
    keys = ["a/b", "a_b", "A_B", "a?b", "a\\b", "Report", "report", "REPORT"]
    result = ap.run_batch(pipeline(), [{"key": k, "topic": k} for k in keys], out=tmp_path / "o")
    assert result.ok
    folders = item_folders(tmp_path / "o")
    assert sorted(folders) == sorted(keys)
    names = [f.name.lower() for f in folders.values()]
    assert len(set(names)) == len(keys)  # unique even on a case-insensitive file system
    for key, folder in folders.items():  # each folder holds its own item's outputs
        text = (folder / "outputs" / "research.md").read_text(encoding="utf-8")
        single = ap.run(pipeline(), inputs={"topic": key})
        assert text == single.outputs["research"] + "\n"


def test_a_nul_or_overlong_key_makes_only_its_row_invalid(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    long_but_fine = "é" * 200  # 400 bytes: over a file name's 255, folder name shortened
    rows = [
        {"key": "ok", "topic": "a"},
        {"key": "bad\u0000key", "topic": "b"},
        {"key": "k" * 300, "topic": "c"},
        {"key": long_but_fine, "topic": "d"},
        {"key": "esc\u001b[31mred", "topic": "e"},
    ]
    jobs.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out"
    result = ap.run_batch(pipeline(), jobs, out=out)
    assert result.counts() == {"succeeded": 2, "invalid": 3}
    invalid = {i.where: i.error or "" for i in result.values() if i.status == "invalid"}
    assert set(invalid) == {f"{jobs}:2", f"{jobs}:3", f"{jobs}:5"}
    assert "control character" in invalid[f"{jobs}:2"]
    assert "Fix:" in invalid[f"{jobs}:2"]
    assert "300 characters" in invalid[f"{jobs}:3"]
    assert "Fix:" in invalid[f"{jobs}:3"]
    assert "control character" in invalid[f"{jobs}:5"]
    folders = item_folders(out)
    assert sorted(folders) == sorted(["ok", long_but_fine])
    assert len(folders[long_but_fine].name.encode()) <= 120


def test_node_ids_with_slashes_write_inside_outputs(tmp_path: Path) -> None:
    nested = "Build the platform: web (ui (forms, tables), api); data (storage, pipelines)"
    result = ap.ask(nested, max_depth=2, sim_scale=0)
    assert "planner_0/planner_0/researcher_0" in result.run.nodes
    before = snapshot(tmp_path)
    result.run.write(tmp_path / "out")  # what 'agentplex ask --out' calls
    created = snapshot(tmp_path) - before
    assert all(p.is_relative_to(tmp_path / "out") for p in created)
    record = json.loads((tmp_path / "out" / "run.json").read_text(encoding="utf-8"))
    files = record["output_files"]
    assert sorted(files) == sorted(result.run.outputs)  # every output, by its node id
    for node_id, name in files.items():
        path = tmp_path / "out" / name
        assert path.parent == tmp_path / "out" / "outputs", node_id
        output = result.run.outputs[node_id]
        if isinstance(output, str):
            assert path.read_text(encoding="utf-8") == output + "\n"
        else:
            assert json.loads(path.read_text(encoding="utf-8")) == output


# -- the command line: --out, input files, failed writes --------------------------------------


def one_clear_line(proc: Done, *needles: str) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_out_pointing_at_a_file_fails_before_anything_runs(tmp_path: Path, examples: Path) -> None:
    target = tmp_path / "precious.txt"
    target.write_text("keep me", encoding="utf-8")
    topics = tmp_path / "topics.txt"
    topics.write_text("Rust\n", encoding="utf-8")
    store = tmp_path / "store.sqlite"
    runs = [
        ("run", str(examples / "business_plan.yaml"), "--out", str(target)),
        ("run", str(examples / "business_plan.yaml"), "--out", str(target / "sub")),
        ("batch", str(examples / "content_pipeline.yaml"), "--inputs", str(topics)),
    ]
    for args in runs:
        extra = ("--out", str(target)) if args[0] == "batch" else ()
        proc = cli(*args, *extra, "--store", str(store), "-q")
        one_clear_line(proc, str(target), "Fix:")
    assert not store.exists()  # nothing was recorded: nothing ran
    assert target.read_text(encoding="utf-8") == "keep me"
    record = tmp_path / "o"
    assert (
        cli("run", str(examples / "business_plan.yaml"), "--out", str(record), "-q").returncode == 0
    )
    proc = cli("report", str(record / "run.json"), "--html", str(tmp_path))
    one_clear_line(proc, str(tmp_path), "Fix:")


def test_batch_inputs_that_are_not_text_name_the_file_and_line(
    tmp_path: Path, examples: Path
) -> None:
    cases = {
        "latin1.txt": (b"Rust\nGo\ncaf\xe9\n", 3),
        "nul.csv": (b"topic\nRust\nG\x00o\n", 3),
        "nul.jsonl": (b'{"topic": "Rust"}\n{"topic": "a\x00"}\n', 2),
        "garbage.jsonl": (bytes(range(256)) * 4, 1),
        "utf16.csv": ("topic\nRust\n".encode("utf-16"), 1),
    }
    for name, (data, line) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        proc = cli("batch", str(examples / "content_pipeline.yaml"), "--inputs", str(path), "-q")
        one_clear_line(proc, f"{path}:{line}", "Fix:")


def test_a_write_that_fails_gives_one_clear_line(tmp_path: Path, examples: Path) -> None:
    topics = tmp_path / "topics.txt"
    topics.write_text("Rust\nGo\n", encoding="utf-8")
    out = tmp_path / "out"
    (out / "items").mkdir(parents=True)
    (out / "items" / "1-rust").write_text("a file where a folder goes", encoding="utf-8")
    proc = cli(
        "batch",
        str(examples / "content_pipeline.yaml"),
        "--inputs",
        str(topics),
        "--out",
        str(out),
        "-q",
    )
    one_clear_line(proc, str(out / "items" / "1-rust"), "cannot write")
    record = tmp_path / "o"
    assert (
        cli("run", str(examples / "business_plan.yaml"), "--out", str(record), "-q").returncode == 0
    )
    full = cli("report", str(record / "run.json"), "--html", "/dev/full")  # ENOSPC, for real
    one_clear_line(full, "/dev/full", "No space left on device")


def test_links_left_in_out_are_never_written_through(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "important.txt"
    victim.write_text("keep me")
    # A batch row's key names a folder that is already a link out of --out.
    out = tmp_path / "out"
    (out / "items").mkdir(parents=True)
    (out / "items" / "x").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ap.exceptions.OutputError, match="symbolic link"):
        ap.run_batch(pipeline(), [{"key": "x", "topic": "t"}], out=out)
    assert sorted(p.name for p in outside.iterdir()) == ["important.txt"]
    # A run's output file is already a link to a file elsewhere.
    wf = ap.Workflow("one")
    wf.agent("researcher", "Research", id="a")
    result = ap.run(wf)
    run_out = tmp_path / "run-out"
    (run_out / "outputs").mkdir(parents=True)
    (run_out / "outputs" / "a.md").symlink_to(victim)
    with pytest.raises(ap.exceptions.OutputError, match="symbolic link"):
        result.write(run_out)
    assert victim.read_text() == "keep me"
    (run_out / "run.json").symlink_to(victim)
    (run_out / "outputs" / "a.md").unlink()
    with pytest.raises(ap.exceptions.OutputError, match="symbolic link"):
        result.write(run_out)
    assert victim.read_text() == "keep me"
