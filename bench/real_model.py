"""The real-model acceptance record: the stock examples and ``ask`` on llama.cpp's server.

Starts llama.cpp's own server with SmolLM2-135M-Instruct (``tests/realmodel.py``:
one slot, one thread, a recording proxy in front) and runs, each in a fresh
``python -m agentplex`` process with default settings and no result cache:

- ``agentplex run examples/compare_languages.yaml``
- ``agentplex run examples/business_plan.yaml``
- ``agentplex ask "Compare Python and Rust for web servers"``

It prints one Markdown row per run: its status, the process's wall time and
the run's own ``wall_s``, the model calls, the tokens as agentplex counted them
(from ``--json``) beside the server's two counts (the ``usage`` it reported for
each call, and its ``/metrics`` counters), the largest prompt (what the
server's context must hold), the answers cut off at their cap, and for ``ask``
the coordinator's plan attempts. About eleven minutes on two cores, most of
them business_plan's.

    .venv/bin/python bench/real_model.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.realmodel import Tokens

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "Compare Python and Rust for web servers"
RUNS: dict[str, list[str]] = {
    "run compare_languages": ["run", "examples/compare_languages.yaml"],
    "run business_plan": ["run", "examples/business_plan.yaml"],
    f'ask "{QUESTION}"': ["ask", QUESTION],
}
HEADER = (
    "| command | status | wall s (process) | wall s (run) | calls | tokens in/out (agentplex) "
    "| tokens in/out (server usage) | tokens in/out (server /metrics) | largest prompt | truncated "
    "| plan attempts |"
)


def main() -> int:
    argparse.ArgumentParser(description=__doc__).parse_args()
    sys.path.insert(0, str(ROOT))  # tests/ is not installed; its server code is shared
    from tests.realmodel import NO_TOKENS, running

    rows: list[str] = []
    with running() as server, tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "AGENTPLEX_CACHE": "off", "AGENTPLEX_STORE": f"{tmp}/runs.sqlite"}
        endpoint = ["--model", f"openai:{server.model}", "--base-url", server.base_url, "--json"]
        for label, args in RUNS.items():
            server.forget()
            before = server.metrics()
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "agentplex", *args, *endpoint],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
            )
            took = time.perf_counter() - started
            try:
                record: dict[str, Any] = json.loads(done.stdout)
            except ValueError:
                print(f"{label}: exit {done.returncode}, no JSON\n{done.stderr}", file=sys.stderr)
                record = {"status": f"exit {done.returncode}"}
            usages = [c.usage for c in server.exchanges if c.usage is not None]
            reported = sum(usages, start=NO_TOKENS)
            counted = server.metrics() - before
            rows.append(row(label, record, took, len(server.exchanges), reported, counted, usages))
            print(rows[-1], file=sys.stderr, flush=True)  # progress: each row as it is measured
    print(HEADER)
    print("|" + " --- |" * (HEADER.count("|") - 1))
    print("\n".join(rows))
    return 0


def row(
    label: str,
    record: dict[str, Any],
    took: float,
    calls: int,
    reported: Tokens,
    counted: Tokens,
    usages: list[Tokens],
) -> str:
    """One Markdown row: what agentplex's ``--json`` record says beside the server's counts."""
    usage = record.get("usage") or {}
    nodes = (record.get("nodes") or {}).values()
    attempts = (record.get("planning") or {}).get("attempts")
    cells = [
        f"`{label}`",
        str(record.get("status")),
        f"{took:.1f}",
        f"{record.get('wall_s', 0):.1f}",
        str(calls),
        f"{usage.get('input_tokens', 0)} / {usage.get('output_tokens', 0)}",
        f"{reported.prompt} / {reported.completion}",
        f"{counted.prompt} / {counted.completion}",
        str(max((u.prompt for u in usages), default=0)),
        str(sum(1 for n in nodes if n.get("truncated"))),
        str(len(attempts)) if attempts is not None else "-",
    ]
    return "| " + " | ".join(cells) + " |"


if __name__ == "__main__":
    sys.exit(main())
