"""Fixtures of the security tests: the CLI in process, and a planted marker file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result


@pytest.fixture
def cli() -> Callable[..., Result]:
    """Run ``agentplex ARGS...`` in this process; the result has exit_code, stdout, stderr."""
    from agentplex.cli.main import app

    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(app, [str(a) for a in args])

    return invoke


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    """A file that hostile code would create; the tests assert it never appears."""
    return tmp_path / "PWNED"
