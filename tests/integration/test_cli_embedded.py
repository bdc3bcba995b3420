"""The `medswitch` command and its embedded PostgreSQL, as an operator runs them.

These start real PostgreSQL servers (pgserver), each in a data directory of
its own: integration tests (unit tests start no server).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.cli import medswitch


def _without_runtime_dir(**env: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}, **env}


@pytest.mark.parametrize("runtime_dir", ["unset", "/tmp"], ids=["no-XDG_RUNTIME_DIR", "shared-tmp"])
def test_a_fresh_install_prints_no_warning(tmp_path: Path, runtime_dir: str) -> None:
    """A service, a container or `su` has no XDG_RUNTIME_DIR (or a shared one):
    platformdirs printed a RuntimeDirWarning on every command that touched the
    embedded PostgreSQL. A clean run prints nothing on stderr."""
    data_dir = Path(tempfile.mkdtemp(prefix="mswarn-"))  # short: the socket lives there
    env = _without_runtime_dir(MEDSWITCH_DATA_DIR=str(data_dir))
    if runtime_dir != "unset":
        env["XDG_RUNTIME_DIR"] = runtime_dir  # mode 1777: not a private runtime dir
    try:
        for args in (("db", "start"), ("db", "status"), ("day", "status"), ("db", "stop")):
            run = subprocess.run(
                [sys.executable, "-m", "switch.cli", *args],
                env={**env, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert run.returncode == 0, (args, run.stderr)
            assert run.stderr == "", (args, run.stderr)
    finally:
        medswitch("db", "stop", env=env)
        shutil.rmtree(data_dir, ignore_errors=True)


def test_the_operator_chooses_the_first_business_day(tmp_path: Path) -> None:
    env = {"MEDSWITCH_DATA_DIR": str(tmp_path)}
    try:
        bad = medswitch("db", "start", "--first-day", "2026-13-01", env=env)
        assert bad.returncode == 2 and "not a date" in bad.stderr
        assert medswitch("db", "start", "--first-day", "2026-12-01", env=env).returncode == 0
        day = medswitch("day", "status", env=env)
        assert day.returncode == 0, day.stderr
        assert "2026-12-01" in day.stdout
    finally:
        medswitch("db", "stop", env=env)


def test_a_process_that_started_the_embedded_server_can_stop_it(tmp_path: Path) -> None:
    # embedded_url's handle is made not to stop the server; stop_embedded must, even
    # in the process that holds that handle (benchmarks left clusters running)
    from ledger import db

    data_dir = Path(tempfile.mkdtemp(prefix="msstop-"))  # short: the socket lives there
    try:
        assert db.embedded_url(data_dir) is not None
        assert db.stop_embedded(data_dir)
        assert db.embedded_url(data_dir, start=False) is None  # no postmaster.pid
    finally:
        db.stop_embedded(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


def test_db_stop_stops_the_server_while_another_process_uses_it() -> None:
    # a running `medswitch serve` holds a handle to the embedded server;
    # pgserver stops a server only when the last handle goes, so `db stop`
    # printed "stopped" and left it running
    data_dir = Path(tempfile.mkdtemp(prefix="msstop-"))  # short: the socket lives there
    env = {"MEDSWITCH_DATA_DIR": str(data_dir)}
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from ledger import db;"
            " db.embedded_url(Path(sys.argv[1])); print('up', flush=True); time.sleep(120)",
            str(data_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "up"
        assert "not running" not in medswitch("db", "status", env=env).stdout
        stop = medswitch("db", "stop", env=env)
        assert stop.returncode == 0 and stop.stdout.strip() == "stopped", stop.stderr
        status = medswitch("db", "status", env=env)
        assert status.returncode == 0, status.stderr
        assert "not running" in status.stdout
    finally:
        holder.kill()
        holder.wait()
        medswitch("db", "stop", env=env)
        shutil.rmtree(data_dir, ignore_errors=True)
