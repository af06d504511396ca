"""Fixtures of the security tests: the CLI in process, and a planted marker file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli import Done
from tests.cli import cli as run_cli


@pytest.fixture
def cli() -> Callable[..., Done]:
    """Run ``agentplex ARGS...`` in this process (:func:`tests.cli.cli`)."""
    return run_cli


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    """A file that hostile code would create; the tests assert it never appears."""
    return tmp_path / "PWNED"
