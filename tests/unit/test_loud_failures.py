"""The tests' own rule (tests/conftest.py): an asyncio failure nobody handled
fails the test that produced it, and names it.

Each case runs a small test file in a pytest of its own, with the project's
conftest and asyncio settings, and reads the outcome.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli import ROOT

SETTINGS = """[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = session
asyncio_default_test_loop_scope = session
"""

LEAKS = {
    "never_retrieved": (
        """
import asyncio

async def test_leaves_a_failed_task():
    async def boom():
        raise ValueError("the worker died")
    task = asyncio.ensure_future(boom())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    del task
""",
        "Task exception was never retrieved",
    ),
    "destroyed_pending": (
        """
import asyncio

async def test_leaves_a_pending_task():
    never = asyncio.Event()
    task = asyncio.ensure_future(never.wait())
    await asyncio.sleep(0)
    del task, never
""",
        "Task was destroyed but it is pending!",
    ),
    "left_by_a_fixture": (
        """
import asyncio
import pytest

@pytest.fixture
async def worker():
    never = asyncio.Event()
    task = asyncio.ensure_future(never.wait())
    yield
    del task, never

async def test_uses_a_fixture_that_leaks(worker):
    pass
""",
        "Task was destroyed but it is pending!",
    ),
}


def _run(tmp_path: Path, test_source: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "pytest.ini").write_text(SETTINGS)
    (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    (tmp_path / "test_case.py").write_text(test_source)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_case.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("case", sorted(LEAKS))
def test_an_unhandled_asyncio_failure_fails_the_test(tmp_path: Path, case: str) -> None:
    source, report = LEAKS[case]
    run = _run(tmp_path, source)
    assert run.returncode == 1, run.stdout + run.stderr
    assert report in run.stdout
    assert "unhandled asyncio error(s)" in run.stdout and "test_case.py::test_" in run.stdout


def test_a_test_that_cleans_up_passes(tmp_path: Path) -> None:
    run = _run(
        tmp_path,
        """
import asyncio

async def test_awaits_what_it_starts():
    task = asyncio.ensure_future(asyncio.sleep(0))
    await task
""",
    )
    assert run.returncode == 0, run.stdout + run.stderr
