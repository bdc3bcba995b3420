"""The schema the migrations make is, object by object, the committed snapshot
(ledger/schema.snapshot), as the generated proto code is the .proto's; and the
migration mechanism takes later migrations and refuses databases it did not make.

After an intended schema change (a new migration), regenerate the snapshot
with `python -m tests.schema_catalog --write` and review its diff.
"""

from __future__ import annotations

import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from ledger import db
from tests import schema_catalog
from tests.cli import ROOT, medswitch

REFERENCE_DIR = ROOT / "shared" / "reference"

# The migrations 0001..0012 of the unreleased builds before the baseline.
PRE_BASELINE = (
    "ledger",
    "end_of_day",
    "set_wise_settle",
    "statement_per_day",
    "no_clear_name_part",
    "typed_settle",
    "owner_functions_hardened",
    "business_days_forward_only",
    "sequences_forward_only",
    "one_posting_function",
    "settle_unit_of_work",
    "application_rights",
)


async def _describe(url: str) -> schema_catalog.Description:
    conn = await asyncpg.connect(url)
    try:
        return await schema_catalog.describe(conn)
    finally:
        await conn.close()


async def test_a_migrated_database_is_the_committed_snapshot(
    make_db: Callable[[str], Awaitable[str]],
) -> None:
    url = await make_db("template0")  # an empty database, migrated as --write does
    conn = await asyncpg.connect(url)
    try:
        await db.migrate(conn, first_day=schema_catalog.FIRST_DAY)
        found = schema_catalog.differences(
            schema_catalog.load(), await schema_catalog.describe(conn)
        )
    finally:
        await conn.close()
    assert not found, (
        f"the migrated schema differs from ledger/schema.snapshot, first at {found[0]}"
        f" ({len(found)} differences); if the change is intended: {schema_catalog.REGENERATE}"
    )


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (
            "ALTER FUNCTION ms_post(text, text, text[], bigint[]) SECURITY DEFINER",
            "function ms_post(text,text,text[],bigint[]): security_definer is true",
        ),
        (
            "ALTER FUNCTION ms_open_day() SET work_mem = '64MB'",
            'function ms_open_day(): config is ["work_mem=64MB"]',
        ),
        (
            "CREATE OR REPLACE FUNCTION ms_day_share() RETURNS void LANGUAGE plpgsql AS"
            " $$ BEGIN END $$",
            "function ms_day_share(): body is",
        ),
        ("GRANT INSERT ON settlements TO medswitch_app", "table settlements: rights is"),
        (
            "GRANT EXECUTE ON FUNCTION ms_post_set(text, text[], integer[], text[], bigint[])"
            " TO medswitch_app",
            "function ms_post_set(",
        ),
        (
            "ALTER DEFAULT PRIVILEGES GRANT EXECUTE ON FUNCTIONS TO PUBLIC",
            "default privileges of <owner> on functions: missing",
        ),
        (
            "ALTER TABLE members ALTER COLUMN pin_failures DROP DEFAULT",
            "column members.pin_failures: default",
        ),
        ("ALTER TABLE members SET (fillfactor = 100)", "table members: options"),
        (
            "ALTER TABLE settlements DROP CONSTRAINT settlements_amounts_not_negative",
            "constraint settlements.settlements_amounts_not_negative: missing",
        ),
        ("DROP INDEX entries_day", "index entries_day: missing"),
        (
            "ALTER TABLE members DISABLE TRIGGER members_state_seq",
            "trigger members.members_state_seq: enabled",
        ),
        ("ALTER TYPE ms_settle_row ADD ATTRIBUTE extra integer", "type ms_settle_row: attributes"),
        ("ALTER ROLE medswitch_operator CREATEDB", "role medswitch_operator: create_db is true"),
        (
            "INSERT INTO accounts (account_key, kind, normal_side)"
            " VALUES ('x', 'SUSPENSE', 'DEBIT')",
            "rows accounts: count is 8",
        ),
    ],
)
async def test_the_description_names_a_changed_object(
    empty_db: str, change: str, named: str
) -> None:
    before = await _describe(empty_db)
    conn = await asyncpg.connect(empty_db)
    try:
        await conn.execute(change)
        found = schema_catalog.differences(before, await schema_catalog.describe(conn))
    finally:
        if "ROLE" in change:  # the server's, not the database's: put back
            await conn.execute("ALTER ROLE medswitch_operator NOCREATEDB")
        await conn.close()
    assert found and found[0].startswith(named), found


async def test_a_later_migration_is_applied_after_the_baseline(
    empty_db: str, tmp_path: Path
) -> None:
    """How a migration written after the release lands: the next number, applied once."""
    for migration in db.MIGRATIONS_DIR.glob("*.sql"):
        shutil.copy(migration, tmp_path)
    later = len(db.migrations()) + 1
    (tmp_path / f"{later:04d}_referrals.sql").write_text(
        "CREATE TABLE referrals (referral_id text PRIMARY KEY);\n"
        "GRANT SELECT ON referrals TO medswitch_app;\n",
        "utf-8",
    )
    before = await _describe(empty_db)
    conn = await asyncpg.connect(empty_db)
    try:
        assert await db.migrate(conn, directory=tmp_path) == [later]
        assert await db.migrate(conn, directory=tmp_path) == []
        found = schema_catalog.differences(before, await schema_catalog.describe(conn))
        assert found == [
            "column referrals.referral_id: not expected",
            "constraint referrals.referrals_pkey: not expected",
            "index referrals_pkey: not expected",
            "table referrals: not expected",
        ]
        with pytest.raises(db.SchemaTooNew):  # the code without it
            await db.migrate(conn)
    finally:
        await conn.close()


async def test_a_database_from_before_the_baseline_is_refused_and_left_alone(
    make_db: Callable[[str], Awaitable[str]], cli_env: dict[str, str]
) -> None:
    """A database the unreleased 0001..0012 chain made is not migrated on top of:
    the commands say how to start from a new one, and nothing in it changes."""
    url = await make_db("template0")
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "CREATE TABLE schema_version (version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        await conn.executemany(
            "INSERT INTO schema_version (version, name) VALUES ($1, $2)",
            list(enumerate(PRE_BASELINE, start=1)),
        )
        with pytest.raises(
            db.SchemaDiverged, match="migration 1 is 'ledger' but this code's is 'baseline'"
        ):
            await db.migrate(conn)
        assert await conn.fetchval("SELECT to_regclass('accounts')") is None
        assert await db.schema_version(conn) == len(PRE_BASELINE)
    finally:
        await conn.close()
    env = {**cli_env, "MEDSWITCH_DATABASE_URL": url}
    for command in (("db", "start"), ("import-reference", str(REFERENCE_DIR))):
        done = medswitch(*command, env=env)
        assert done.returncode == 1, done
        assert "start from a new database" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr, done.stderr
