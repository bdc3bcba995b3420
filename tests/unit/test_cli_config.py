"""The `medswitch` command's configuration: environment or --option, and one-line errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.cli import medswitch


def test_config_options_work_before_or_after_the_command(tmp_path: Path) -> None:
    for args in (
        ("--data-dir", str(tmp_path / "a"), "db", "status"),
        ("db", "status", "--data-dir", str(tmp_path / "a")),
        ("db", "status", f"--data-dir={tmp_path / 'a'}"),
    ):
        run = medswitch(*args, env={"MEDSWITCH_DATA_DIR": str(tmp_path / "elsewhere")})
        assert run.returncode == 0, run.stderr
        assert f"{tmp_path / 'a' / 'pg'}: not running" in run.stdout


def test_a_malformed_database_url_is_one_line_and_exit_2(tmp_path: Path) -> None:
    for args in (("db", "status"), ("ledger", "verify"), ("day", "status")):
        run = medswitch(*args, "--database-url", "db.internal:5432/medswitch")
        assert run.returncode == 2, (args, run.stderr)
        assert "database URL or name is not usable" in run.stderr
        assert "Traceback" not in run.stderr


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


def test_options_after_the_end_of_options_marker_are_the_commands_own() -> None:
    from switch.cli import take_config_options

    assert take_config_options(["adjudicate", "--", "--data-dir"]) == [
        "adjudicate",
        "--",
        "--data-dir",
    ]


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


def test_commands_log_in_as_the_application_role_on_the_embedded_server_only() -> None:
    from switch.config import Settings

    assert Settings.from_env({}).app_login
    assert Settings.from_env({"MEDSWITCH_DATABASE_URL": ""}).app_login  # unset, in effect
    external = Settings.from_env({"MEDSWITCH_DATABASE_URL": "postgresql://db.example/ms"})
    assert not external.app_login


def test_the_plaintext_health_listener_is_off_unless_configured() -> None:
    from switch.config import Settings
    from switch.server import ServerConfig

    assert Settings.from_env({}).health_listen is None
    assert Settings.from_env({"MEDSWITCH_HEALTH_LISTEN": ""}).health_listen is None
    on = Settings.from_env({"MEDSWITCH_HEALTH_LISTEN": "0.0.0.0:8081"})
    assert ServerConfig.from_settings(on).health_listen == "0.0.0.0:8081"
