"""The one way tests run the ``agentplex`` command: in this process, through typer's runner.

``cli("run", path, "--json")`` returns a :class:`Done` with the exit code,
stdout and stderr apart. ``env`` is laid over the test's environment (the
fixtures of ``conftest.py`` already give every test a private store, no
cache and no provider keys); ``cwd`` runs the command in another folder.

Only what needs a real process keeps one (and says why where it does):
Ctrl-C (a real SIGINT), a crash, ``python -m agentplex`` itself, and the
start-up time of ``--help``. Those use :func:`subprocess_cli`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.testing import CliRunner


@dataclass(frozen=True)
class Done:
    """How a command ended: its exit code and what it wrote to stdout and stderr."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def returncode(self) -> int:
        return self.exit_code

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def cli(*args: Any, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Done:
    """Run ``agentplex ARGS...`` in this process and return how it ended.

    A Python exception that escapes the command (a bug, not a clean exit) is
    raised here, so a test never mistakes a traceback for an answer.
    """
    from agentplex.cli.main import app

    runner = CliRunner()
    with contextlib.chdir(cwd) if cwd is not None else contextlib.nullcontext():
        result = runner.invoke(
            app, [str(a) for a in args], env=dict(env or {}), catch_exceptions=False
        )
    return Done(result.exit_code, result.stdout, result.stderr)


def popen_cli(*args: Any, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``python -m agentplex ARGS...`` in a real process, for a test that sends it SIGINT.

    The child gets SIGINT at its default: a process started from a background
    job (a CI runner, ``pytest &``) inherits SIGINT ignored, and Ctrl-C would
    then never reach the command under test.
    """
    return subprocess.Popen(
        [sys.executable, "-m", "agentplex", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_for_file(path: Path, timeout: float = 60) -> None:
    """Wait until ``path`` exists (a step of the command under test writes it)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.05)


MARKER_STEPS = """\
from pathlib import Path


def ready(marker: str = "") -> str:
    Path(marker).write_text("x")
    return "go"
"""
"""A module for workflows of Ctrl-C tests: ``ready`` writes the file named by its
``marker`` input, so the test sends SIGINT once the run is really going."""


def subprocess_cli(
    *args: Any, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m agentplex ARGS...`` in a real process (for the few tests that need one)."""
    return subprocess.run(
        [sys.executable, "-m", "agentplex", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
