"""The `medswitch` command's configuration: environment or --option, and one-line errors."""

from __future__ import annotations

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


def test_options_after_the_end_of_options_marker_are_the_commands_own() -> None:
    from switch.cli import take_config_options

    assert take_config_options(["adjudicate", "--", "--data-dir"]) == [
        "adjudicate",
        "--",
        "--data-dir",
    ]


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
