"""Unit tests start no server (tests/unit/conftest.py): one that tries is told
to move to tests/integration, and nothing is started."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from tests.cli import medswitch


def test_a_grpc_server_is_refused() -> None:
    for make in (grpc.aio.server, grpc.server):
        with pytest.raises(AssertionError, match="move it to tests/integration"):
            make()


def test_the_embedded_postgresql_is_refused_in_this_process(tmp_path: Path) -> None:
    from ledger import db

    with pytest.raises((ImportError, AssertionError), match="tests/integration"):
        db.embedded_url(tmp_path)
    assert not (tmp_path / "pg" / "PG_VERSION").exists()


def test_the_embedded_postgresql_is_refused_in_a_command_the_test_runs(tmp_path: Path) -> None:
    run = medswitch("db", "start", env={"MEDSWITCH_DATA_DIR": str(tmp_path)})
    assert run.returncode != 0
    assert "move the test to tests/integration" in run.stderr
    assert not (tmp_path / "pg" / "PG_VERSION").exists()
