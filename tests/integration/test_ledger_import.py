"""`medswitch import-reference`: everything in one transaction, or nothing with file/line/field."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from tests.cli import medswitch
from tests.integration.conftest import REFERENCE_DIR


def _copy(tmp_path: Path) -> Path:
    target = tmp_path / "ref"
    shutil.copytree(REFERENCE_DIR, target)
    return target


def _edit(path: Path, change: Callable[[list[str]], None]) -> None:
    lines = path.read_text("utf-8").splitlines()
    change(lines)
    path.write_text("\n".join(lines) + "\n", "utf-8")


async def _count(url: str, table: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        value: int = await conn.fetchval(f"SELECT count(*) FROM {table}")
        return value
    finally:
        await conn.close()


async def test_import_loads_all_files_and_books_opening_balances(
    empty_db: str, cli_env: dict[str, str]
) -> None:
    env = {**cli_env, "MEDSWITCH_DATABASE_URL": empty_db}
    run = medswitch("import-reference", str(REFERENCE_DIR), env=env)
    assert run.returncode == 0, run.stderr
    assert "20 members" in run.stdout
    assert await _count(empty_db, "members") == 20
    assert await _count(empty_db, "institutions") == 9
    assert await _count(empty_db, "member_special_diseases") == 6
    assert await _count(empty_db, "catalog_items") == 48
    conn = await asyncpg.connect(empty_db)
    try:
        total = await conn.fetchval(
            "SELECT sum(amount_fen) FROM postings p JOIN accounts a USING (account_id)"
            " WHERE a.account_key = 'equity:opening'"
        )
        csv_total = sum(
            int(line.split(",")[9])
            for line in (REFERENCE_DIR / "members.csv").read_text("utf-8").splitlines()[1:]
            if line
        )
        assert total == csv_total
        assert await conn.fetchval("SELECT version FROM policies") == "2026.1"
    finally:
        await conn.close()
    assert medswitch("ledger", "verify", env=env).returncode == 0
    again = medswitch("import-reference", str(REFERENCE_DIR), env=env)
    assert again.returncode == 2 and "already holds members" in again.stderr


@pytest.mark.parametrize(
    ("file", "line_no", "edit", "field"),
    [
        ("members.csv", 3, lambda cells: cells.__setitem__(5, "1955-13-08"), "birth_date"),
        ("members.csv", 4, lambda cells: cells.__setitem__(6, "STUDENT"), "category"),
        ("members.csv", 2, lambda cells: cells.__setitem__(9, "12.50"), "balance_fen"),
        (
            "members.csv",
            3,
            lambda cells: cells.__setitem__(9, "9223372036854775808"),  # past bigint
            "balance_fen",
        ),
        ("members.csv", 5, lambda cells: cells.__setitem__(1, "C3303990001"), "card_no"),
        ("members.csv", 6, lambda cells: cells.__setitem__(0, "M0001"), "member_id"),
        ("institutions.csv", 3, lambda cells: cells.__setitem__(5, "OPEN"), "status"),
        ("institutions.csv", 2, lambda cells: cells.__setitem__(3, "L9"), "level"),
        (
            "member_special_diseases.csv",
            3,
            lambda cells: cells.__setitem__(0, "M9999"),
            "member_id",
        ),
        (
            "member_special_diseases.csv",
            2,
            lambda cells: cells.__setitem__(3, "2025-01-01"),
            "valid_to",
        ),
        ("catalog.csv", 4, lambda cells: cells.__setitem__(3, "Z"), "class"),
        # NUL reached the database, which refused it without file, line or field.
        ("institutions.csv", 3, lambda cells: cells.__setitem__(1, "Bad\x00Name"), "name"),
        ("members.csv", 4, lambda cells: cells.__setitem__(4, "33\x0003"), "id_number"),
        ("members.csv", 5, lambda cells: cells.__setitem__(0, "M\x0099"), "member_id"),
        # a control character the database takes, the payout XML cannot
        ("institutions.csv", 2, lambda cells: cells.__setitem__(1, "Bad\x01Name"), "name"),
        # over the csv module's field limit: a _csv.Error traceback before
        ("members.csv", 2, lambda cells: cells.__setitem__(3, "x" * 140_000), ""),
    ],
)
async def test_bad_input_names_file_line_and_field_and_imports_nothing(
    empty_db: str,
    cli_env: dict[str, str],
    tmp_path: Path,
    file: str,
    line_no: int,
    edit: Callable[[list[str]], None],
    field: str,
) -> None:
    ref = _copy(tmp_path)

    def change(lines: list[str]) -> None:
        cells = lines[line_no - 1].split(",")
        edit(cells)
        lines[line_no - 1] = ",".join(cells)

    _edit(ref / file, change)
    run = medswitch(
        "import-reference", str(ref), env={**cli_env, "MEDSWITCH_DATABASE_URL": empty_db}
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert f"{file}:{line_no}" in run.stderr and field in run.stderr, run.stderr
    assert "nothing was imported" in run.stderr
    for table in ("members", "institutions", "catalog_items", "policies", "postings"):
        assert await _count(empty_db, table) == 0


async def test_a_repeated_approval_is_named_at_its_own_line_and_a_bad_birth_date_is_not_shown(
    empty_db: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**cli_env, "MEDSWITCH_DATABASE_URL": empty_db}
    ref = _copy(tmp_path)

    def repeat_line_2_at_line_3(lines: list[str]) -> None:
        lines[2] = lines[1]

    _edit(ref / "member_special_diseases.csv", repeat_line_2_at_line_3)
    run = medswitch("import-reference", str(ref), env=env)
    assert run.returncode == 2
    assert "member_special_diseases.csv:3: disease_code: duplicate approval" in run.stderr

    ref = _copy(tmp_path / "again")

    def bad_birth_date(lines: list[str]) -> None:
        cells = lines[2].split(",")
        cells[5] = "1955-13-08"
        lines[2] = ",".join(cells)

    _edit(ref / "members.csv", bad_birth_date)
    run = medswitch("import-reference", str(ref), env=env)
    assert run.returncode == 2 and "members.csv:3: birth_date" in run.stderr, run.stderr
    assert "1955-13-08" not in run.stdout + run.stderr  # personal data stays out of logs


async def test_a_bad_policy_and_a_missing_file_are_refused(
    empty_db: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**cli_env, "MEDSWITCH_DATABASE_URL": empty_db}
    ref = _copy(tmp_path)
    _edit(
        ref / "policy.toml",
        lambda lines: lines.__setitem__(
            next(i for i, x in enumerate(lines) if x.startswith("max_purchases_per_day")),
            'max_purchases_per_day = "three"',
        ),
    )
    run = medswitch("import-reference", str(ref), env=env)
    assert run.returncode == 2 and "policy.toml" in run.stderr
    assert "max_purchases_per_day" in run.stderr
    (ref / "members.csv").unlink()
    run = medswitch("import-reference", str(ref), env=env)
    assert run.returncode == 2 and "members.csv" in run.stderr and "missing" in run.stderr
    assert await _count(empty_db, "policies") == 0
