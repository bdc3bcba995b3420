"""Static checks are part of the tests: ruff on the whole project, mypy strict
on the engine, the ledger and the switch (configured in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys

from tests.cli import ROOT


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, cwd=ROOT, timeout=300
    )


def test_ruff_finds_nothing() -> None:
    run = _run("ruff", "check", "--no-cache", ".")
    assert run.returncode == 0, run.stdout + run.stderr


def test_ruff_format_is_applied() -> None:
    run = _run("ruff", "format", "--check", "--no-cache", ".")
    assert run.returncode == 0, run.stdout + run.stderr


def test_mypy_strict_on_the_project() -> None:
    run = _run("mypy", "--no-incremental")
    assert run.returncode == 0, run.stdout + run.stderr
