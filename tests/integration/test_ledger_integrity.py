"""The database enforces the ledger's invariants; `verify` finds tampering; migrations behave."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from ledger import chain, db
from ledger.store import Ledger
from tests.cli import medswitch
from tests.integration.ledger_helpers import DAY, INSTITUTION, debit, settle

CARD = "C3303990001"


async def _settle_some(ledger: Ledger, n: int = 4) -> list[int]:
    out = []
    for i in range(n):
        s = await settle(ledger, (INSTITUTION, f"t{i}"), b"f", CARD, debit(100 + i))
        assert s.entry_id is not None
        out.append(s.entry_id)
    return out


async def _verify(url: str) -> chain.VerifyReport:
    conn = await asyncpg.connect(url)
    try:
        return await chain.verify(conn)
    finally:
        await conn.close()


async def _as_superuser_without_triggers(url: str, sql: str, *args: object) -> None:
    """Tamper as the database superuser would: triggers off for this session."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET session_replication_role = replica")
        await conn.execute(sql, *args)
    finally:
        await conn.close()


async def test_the_application_role_cannot_rewrite_history(
    ledger: Ledger, app_pool: asyncpg.Pool, reference_db: str
) -> None:
    await _settle_some(ledger, 1)
    for sql in (
        "UPDATE postings SET amount_fen = amount_fen + 1",
        "DELETE FROM entries",
        "TRUNCATE postings",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app_pool.execute(sql)
    # even the superuser meets the append-only triggers
    admin = await asyncpg.connect(reference_db)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await admin.execute("UPDATE postings SET amount_fen = amount_fen + 1")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await admin.execute("DELETE FROM entries")
    finally:
        await admin.close()


async def _unbalanced_refused_at_commit(conn: asyncpg.Connection, debit: int, credit: int) -> None:
    tx = conn.transaction()
    await tx.start()
    # accepted inside the transaction ...
    await conn.fetchval(
        "SELECT ms_post('ADJUSTMENT', 'x', ARRAY['fund:pooled', 'suspense'],"
        " ARRAY[$1, $2]::bigint[])",
        debit,
        -credit,
    )
    # ... refused when it commits
    with pytest.raises(asyncpg.CheckViolationError, match="unbalanced"):
        await tx.commit()


async def test_an_unbalanced_entry_is_refused_at_commit(operator_pool: asyncpg.Pool) -> None:
    async with operator_pool.acquire() as conn:
        await _unbalanced_refused_at_commit(conn, 100, 99)
    assert (
        await operator_pool.fetchval("SELECT count(*) FROM entries WHERE kind = 'ADJUSTMENT'") == 0
    )


async def test_every_entry_of_a_set_is_checked_at_commit(operator_pool: asyncpg.Pool) -> None:
    # the check runs once per chain-lane advance; it must still see each entry
    async with operator_pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        ids = await conn.fetchval(
            "SELECT ms_post_set('ADJUSTMENT', ARRAY['a', 'b', 'c'], ARRAY[1, 1, 2, 2, 3, 3],"
            " ARRAY['fund:pooled', 'suspense', 'fund:pooled', 'suspense', 'fund:pooled',"
            " 'suspense'], ARRAY[5, -5, 7, -6, 1, -1]::bigint[])"
        )
        await conn.fetchval(  # a second call in the same transaction, balanced
            "SELECT ms_post('ADJUSTMENT', 'd', ARRAY['fund:pooled', 'suspense'],"
            " ARRAY[3, -3]::bigint[])"
        )
        with pytest.raises(asyncpg.CheckViolationError, match=f"entry {ids[1]} is unbalanced"):
            await tx.commit()
    assert (
        await operator_pool.fetchval("SELECT count(*) FROM entries WHERE kind = 'ADJUSTMENT'") == 0
    )


async def test_the_application_role_writes_entries_only_through_the_ledger_functions(
    ledger: Ledger, app_pool: asyncpg.Pool, operator_pool: asyncpg.Pool
) -> None:
    # no posting can join a committed entry, name a missing entry or account, or
    # come without its entry: the roles cannot insert into either table themselves
    [entry_id] = await _settle_some(ledger, 1)
    for sql, args in (
        (
            "INSERT INTO postings (entry_id, seq, account_id, amount_fen) VALUES ($1, 99, 1, 5)",
            (entry_id,),
        ),
        (
            "INSERT INTO postings (entry_id, seq, account_id, amount_fen)"
            " VALUES (987654321, 1, 1, 5), (987654321, 2, 2, -5)",
            (),
        ),
        (
            "INSERT INTO entries (entry_id, lane, lane_seq, business_date, kind, prev_hash, hash)"
            " VALUES (987654321, 0, 987654321, now()::date, 'ADJUSTMENT', '', '')",
            (),
        ),
    ):
        for pool in (app_pool, operator_pool):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                await pool.execute(sql, *args)
    # the functions themselves refuse an unknown account
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="unknown account"):
        await operator_pool.fetchval(
            "SELECT ms_post('ADJUSTMENT', 'x', ARRAY['fund:pooled', 'no:such'],"
            " ARRAY[100, -100]::bigint[])"
        )


async def test_only_the_operators_role_may_call_the_posting_functions(
    reference_db: str,
) -> None:
    # they run with the owner's rights; a read-only role must not post with them
    # (nor may the switch's: tests/integration/test_application_rights.py)
    admin = await asyncpg.connect(reference_db)
    try:
        await admin.execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ms_reader')"
            " THEN CREATE ROLE ms_reader NOLOGIN; END IF; END $$"
        )
        await admin.execute("GRANT USAGE ON SCHEMA public TO ms_reader")
        await admin.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO ms_reader")
        async with admin.transaction():
            await admin.execute("SET LOCAL ROLE ms_reader")
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                await admin.fetchval(
                    "SELECT ms_post_set('ADJUSTMENT', ARRAY['x'], ARRAY[1, 1],"
                    " ARRAY['fund:pooled', 'suspense'], ARRAY[-5, 5]::bigint[])"
                )
    finally:
        await admin.close()


async def test_an_opening_entry_is_checked_and_moves_balances(operator_pool: asyncpg.Pool) -> None:
    # the import's opening entry goes through ms_post, as every entry does
    member_account = "member:M0002"
    opening = "equity:opening"
    before = await operator_pool.fetchval(
        "SELECT b.balance_fen FROM account_balances b JOIN accounts a USING (account_id)"
        " WHERE a.account_key = $1",
        member_account,
    )

    async def stage(rows: list[tuple[str, int]]) -> int:
        entry: int = await operator_pool.fetchval(
            "SELECT ms_post('OPENING', 'test', $1, $2)",
            [account for account, _ in rows],
            [amount for _, amount in rows],
        )
        return entry

    with pytest.raises(asyncpg.ForeignKeyViolationError, match="unknown account"):
        await stage([(member_account, 500), ("member:NOBODY", -500)])
    with pytest.raises(asyncpg.CheckViolationError, match="at least two postings"):
        await stage([(member_account, 0)])
    with pytest.raises(asyncpg.CheckViolationError, match="unbalanced"):
        await stage([(opening, 700), (member_account, -699)])
    await stage([(opening, 700), (member_account, -700)])  # a credit of 7 yuan
    after = await operator_pool.fetchval(
        "SELECT b.balance_fen FROM account_balances b JOIN accounts a USING (account_id)"
        " WHERE a.account_key = $1",
        member_account,
    )
    assert after == before + 700
    # and it cannot be used to overdraw: the balance row refuses
    with pytest.raises(asyncpg.CheckViolationError):
        await stage([(member_account, after + 1), (opening, -(after + 1))])


async def _views_over_a_function_of_the_callers(conn: asyncpg.Connection) -> None:
    """Temporary views named like the tables the owner's functions read, each
    running a function of the caller's that names who runs it."""
    await conn.execute(
        "CREATE FUNCTION pg_temp.evil() RETURNS TABLE (seq integer, account_id bigint,"
        " amount_fen bigint) LANGUAGE plpgsql AS"
        " $$ BEGIN RAISE EXCEPTION 'the caller''s function ran as %', current_user; END $$"
    )
    for name in (
        "ms_staged_postings",
        "accounts",
        "postings",
        "account_balances",
        "business_days",
        "members",
        "settlements",
        "cancellations",
    ):
        await conn.execute(f"CREATE TEMPORARY VIEW {name} AS SELECT * FROM pg_temp.evil()")


async def test_the_owners_functions_read_no_object_of_the_callers_temporary_schema(
    app_pool: asyncpg.Pool, operator_pool: asyncpg.Pool
) -> None:
    # they run with the owner's rights: a temporary view named like a table they
    # read, over a function of the caller's, would run that function as the owner
    async with operator_pool.acquire() as conn:
        await _views_over_a_function_of_the_callers(conn)
        async with conn.transaction():
            await conn.fetchval(
                "SELECT ms_post_set('OPENING', ARRAY['x'], ARRAY[1, 1],"
                " ARRAY['equity:opening', 'member:M0002'], ARRAY[5, -5]::bigint[])"
            )
            await conn.fetchval(
                "SELECT ms_post('ADJUSTMENT', 'y', ARRAY['equity:opening', 'member:M0002'],"
                " ARRAY[5, -5]::bigint[])"
            )
        # the import's staging function, which read `ms_staged_postings`, is gone,
        # and so is its replacement: the opening entry goes through ms_post_set
        with pytest.raises(asyncpg.UndefinedFunctionError):
            await conn.fetchval("SELECT ms_post_staged('OPENING', 'z')")
        with pytest.raises(asyncpg.UndefinedFunctionError):
            await conn.fetchval("SELECT ms_post_ids('OPENING', 'z', '{}', '{}')")
    # and the switch's own: PIN counts, cancellations
    async with app_pool.acquire() as conn:
        await _views_over_a_function_of_the_callers(conn)
        async with conn.transaction():
            assert await conn.fetchval("SELECT ms_pin_check('M0002', false)") == 1
            await conn.fetchval("SELECT ms_load_cancel($1, 'c1', NULL, 'r1')", INSTITUTION)
            booked = await conn.fetchval(
                "SELECT ms_record_request_cancelled('R1', $1, 'c1', '\\x00', 'r1', '')", INSTITUTION
            )
            assert booked == DAY


async def test_balance_rows_and_lane_heads_move_only_through_the_ledger_functions(
    app_pool: asyncpg.Pool, operator_pool: asyncpg.Pool
) -> None:
    member = await app_pool.fetchval(
        "SELECT account_id FROM accounts WHERE account_key = 'member:M0002'"
    )
    for sql in (
        "UPDATE account_balances SET balance_fen = balance_fen + 1000000"
        f" WHERE account_id = {member}",
        "INSERT INTO account_balances (account_id, normal_sign, balance_fen)"
        " SELECT account_id, -1, 1000000 FROM accounts WHERE account_key = 'suspense'",
        f"DELETE FROM account_balances WHERE account_id = {member}",
        "UPDATE chain_lanes SET last_seq = last_seq + 1",
        "SELECT setval('entries_entry_id_seq', 1)",  # ids would collide: the switch stops
        "SELECT setval('settlement_seq', 1)",
    ):
        for pool in (app_pool, operator_pool):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                await pool.execute(sql)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
        await app_pool.execute("SELECT setval('accounts_account_id_seq', 1)")  # import reserves
    # a member account opened by the import gets its limit with it ...
    opened = await operator_pool.fetchval(
        "INSERT INTO accounts (account_key, kind, normal_side)"
        " VALUES ('member:M9999', 'MEMBER_INDIVIDUAL', 'CREDIT') RETURNING account_id"
    )
    assert (
        await operator_pool.fetchval(
            "SELECT balance_fen FROM account_balances WHERE account_id = $1", opened
        )
        == 0
    )
    with pytest.raises(asyncpg.CheckViolationError):  # ... so it cannot be debited
        await operator_pool.fetchval(
            "SELECT ms_post('ADJUSTMENT', 'x', ARRAY['member:M9999', 'suspense'],"
            " ARRAY[1, -1]::bigint[])"
        )
    # and no account can have the wrong normal side (debits raising a member's balance)
    with pytest.raises(asyncpg.CheckViolationError, match="accounts_normal_side"):
        await operator_pool.execute(
            "INSERT INTO accounts (account_key, kind, normal_side)"
            " VALUES ('member:M9998', 'MEMBER_INDIVIDUAL', 'DEBIT')"
        )


async def test_a_set_of_entries_is_refused_whole_when_one_is_malformed(
    operator_pool: asyncpg.Pool,
) -> None:
    post_set = "SELECT ms_post_set('ADJUSTMENT', $1::text[], $2::int[], $3::text[], $4::bigint[])"
    with pytest.raises(asyncpg.CheckViolationError, match=r"at least two postings \(entry 2"):
        await operator_pool.fetchval(
            post_set, ["a", "b"], [1, 1, 2], ["fund:pooled", "suspense", "suspense"], [5, -5, 5]
        )
    pair = ["fund:pooled", "suspense"] * 2
    with pytest.raises(asyncpg.CheckViolationError, match=r"at least two postings \(entry 2 of 3"):
        await operator_pool.fetchval(post_set, ["a", "b", "c"], [1, 1, 3, 3], pair, [5, -5, 5, -5])
    with pytest.raises(asyncpg.CheckViolationError, match="at least two postings"):
        await operator_pool.fetchval(post_set, ["a", "b"], [1, 1, 5, 5], pair, [5, -5, 5, -5])
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="unknown account"):
        await operator_pool.fetchval(
            post_set, ["a"], [1, 1], ["fund:pooled", "no:such:account"], [5, -5]
        )
    assert (
        await operator_pool.fetchval("SELECT count(*) FROM entries WHERE kind = 'ADJUSTMENT'") == 0
    )


async def test_verify_is_sound_on_untouched_books(
    ledger: Ledger, reference_db: str, cli_env: dict[str, str]
) -> None:
    await _settle_some(ledger)
    report = await _verify(reference_db)
    assert report.sound, report.problems
    assert report.entries == 5 and report.balances == 20
    run = medswitch("ledger", "verify", env={**cli_env, "MEDSWITCH_DATABASE_URL": reference_db})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "sound" in run.stdout


@pytest.mark.parametrize(
    "tamper",
    ["changed_posting", "changed_entry", "inserted_entry", "deleted_middle", "deleted_last"],
)
async def test_verify_names_the_first_tampered_entry(
    ledger: Ledger, reference_db: str, cli_env: dict[str, str], tamper: str
) -> None:
    entries = await _settle_some(ledger)
    target = entries[1]
    if tamper == "changed_posting":
        sql = "UPDATE postings SET amount_fen = amount_fen - 1 WHERE entry_id = $1 AND seq = 1"
        await _as_superuser_without_triggers(reference_db, sql, target)
        await _as_superuser_without_triggers(
            reference_db,
            "UPDATE postings SET amount_fen = amount_fen + 1 WHERE entry_id = $1 AND seq = 2",
            target,
        )  # still balanced: only the hash can tell
        expected = f"entry {target}"
    elif tamper == "changed_entry":
        await _as_superuser_without_triggers(
            reference_db, "UPDATE entries SET ref = 'forged' WHERE entry_id = $1", target
        )
        expected = f"entry {target}"
    elif tamper == "inserted_entry":
        await _as_superuser_without_triggers(
            reference_db,
            "INSERT INTO entries (entry_id, lane, lane_seq, business_date, kind, ref, prev_hash,"
            " hash) SELECT 999999, lane, lane_seq + 1000, business_date, 'ADJUSTMENT', 'x',"
            " hash, hash FROM entries WHERE entry_id = $1",
            target,
        )
        expected = "entry 999999"
    elif tamper == "deleted_middle":
        await _as_superuser_without_triggers(
            reference_db, "DELETE FROM postings WHERE entry_id = $1", target
        )
        await _as_superuser_without_triggers(
            reference_db, "DELETE FROM entries WHERE entry_id = $1", target
        )
        expected = f"entry {entries[2]}"
    else:
        last = entries[-1]
        await _as_superuser_without_triggers(
            reference_db, "DELETE FROM postings WHERE entry_id = $1", last
        )
        await _as_superuser_without_triggers(
            reference_db, "DELETE FROM entries WHERE entry_id = $1", last
        )
        expected = "head says"
    report = await _verify(reference_db)
    assert not report.sound
    assert expected in report.problems[0], report.problems
    if tamper == "changed_posting":
        run = medswitch("ledger", "verify", env={**cli_env, "MEDSWITCH_DATABASE_URL": reference_db})
        assert run.returncode == 1
        assert f"BAD: entry {target}" in run.stdout.splitlines()[0]


async def test_verify_recomputes_member_balances(ledger: Ledger, reference_db: str) -> None:
    await _settle_some(ledger, 1)
    admin = await asyncpg.connect(reference_db)
    try:
        await admin.execute(
            "UPDATE account_balances SET balance_fen = balance_fen + 100000"
            " WHERE account_id = (SELECT account_id FROM members WHERE member_id = 'M0003')"
        )
    finally:
        await admin.close()
    report = await _verify(reference_db)
    assert any("member:M0003" in p for p in report.problems), report.problems


async def test_migrations_run_twice_and_refuse_a_newer_schema(empty_db: str) -> None:
    conn = await asyncpg.connect(empty_db)
    try:
        assert await db.migrate(conn) == []  # the template is already current
        assert await db.schema_version(conn) == len(db.migrations())
        await conn.execute("INSERT INTO schema_version (version, name) VALUES (999, 'future')")
        with pytest.raises(db.SchemaTooNew, match="999"):
            await db.migrate(conn)
    finally:
        await conn.close()


async def test_a_new_database_is_migrated_and_opens_one_day(pg: Any) -> None:
    admin = await asyncpg.connect(pg.url("postgres"))
    try:
        await admin.execute("CREATE DATABASE ms_fresh_migrate")
    finally:
        await admin.close()
    conn = await asyncpg.connect(pg.url("ms_fresh_migrate"))
    try:
        assert await db.migrate(conn, first_day=DAY) == [m.version for m in db.migrations()]
        assert await db.migrate(conn) == []
        assert await conn.fetchval("SELECT count(*) FROM business_days WHERE status = 'OPEN'") == 1
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(
                "INSERT INTO business_days (business_date, status) VALUES ('2030-01-01', 'OPEN')"
            )
        await db.check_durability(conn)
    finally:
        await conn.close()
        admin = await asyncpg.connect(pg.url("postgres"))
        await admin.execute("DROP DATABASE ms_fresh_migrate WITH (FORCE)")
        await admin.close()


async def test_personal_data_is_not_stored_in_clear(app_pool: asyncpg.Pool) -> None:
    row = await app_pool.fetchrow("SELECT * FROM members WHERE member_id = 'M0001'")
    stored = b"".join(v if isinstance(v, bytes) else str(v).encode() for v in row.values())
    for secret in ("张", "330399198503120011", "C3303990001", "135790"):
        assert secret.encode() not in stored  # not even the first character of the name


@pytest.mark.parametrize(
    ("tamper", "sql", "expected"),
    [
        (
            "orphan_posting",
            "INSERT INTO postings (entry_id, seq, account_id, amount_fen)"
            " SELECT 987654321, 1, account_id, 1 FROM accounts WHERE account_key = 'suspense'",
            "postings belong to no entry",
        ),
        (
            "posting_of_no_account",
            "INSERT INTO postings (entry_id, seq, account_id, amount_fen)"
            " SELECT entry_id, 99, 987654321, 1 FROM entries ORDER BY entry_id DESC LIMIT 1",
            "name an account that does not exist",
        ),
        (
            "settlement_of_no_entry",
            "UPDATE settlements SET entry_id = 987654321"
            " WHERE settlement_id = (SELECT max(settlement_id) FROM settlements)",
            "its entry 987654321 does not exist",
        ),
        (
            "settlement_amount_changed",
            "UPDATE settlements SET pooled_fund_fen = pooled_fund_fen + 900000"
            " WHERE settlement_id = (SELECT max(settlement_id) FROM settlements)",
            "its amounts are not what its entry posts (fund:pooled:",
        ),
        (
            "settlement_moved_to_another_institution",
            "UPDATE settlements SET institution_code = 'H33039900099'"
            " WHERE settlement_id = (SELECT max(settlement_id) FROM settlements)",
            "its amounts are not what its entry posts (institution:H33039900099:payable:",
        ),
        (
            "settlement_borrowing_anothers_entry",  # only the owner may insert settlements
            "INSERT INTO settlements (settlement_id, institution_code, request_id, fingerprint,"
            " status, member_id, business_date, service_date, benefit_year, total_fen,"
            " pooled_fund_fen, serious_illness_fen, individual_account_fen, answer, entry_id)"
            " SELECT 'S20991231dup', institution_code, request_id || '-dup', fingerprint, status,"
            " member_id, business_date, service_date, benefit_year, total_fen, pooled_fund_fen,"
            " serious_illness_fen, individual_account_fen, answer, entry_id FROM settlements"
            " WHERE settlement_id = (SELECT max(settlement_id) FROM settlements)",
            "claimed by 2 records",
        ),
        (
            "settlement_entry_of_no_settlement",  # and call this
            "SELECT ms_post_set('SETTLEMENT', ARRAY['S20991231phantom'], ARRAY[1, 1],"
            f" ARRAY['member:M0001', 'institution:{INSTITUTION}:payable'],"
            " ARRAY[500, -500]::bigint[])",
            "a SETTLEMENT entry for 'S20991231phantom' that no settlement or cancellation records",
        ),
        (
            "entry_of_no_day",
            "UPDATE entries SET business_date = '1999-01-01'"
            " WHERE entry_id = (SELECT max(entry_id) FROM entries)",
            "business day that does not exist",
        ),
    ],
)
async def test_verify_finds_what_no_foreign_key_refuses(
    ledger: Ledger, reference_db: str, tamper: str, sql: str, expected: str
) -> None:
    # the ledger functions never write these; verify finds them when someone else does
    await _settle_some(ledger, 2)
    await _as_superuser_without_triggers(reference_db, sql)
    report = await _verify(reference_db)
    assert not report.sound
    assert any(expected in p for p in report.problems), report.problems


async def test_verify_finds_a_well_formed_entry_in_a_lane_of_its_own(
    ledger: Ledger, reference_db: str
) -> None:
    # chained from the genesis hash, hashed right and balanced: only the lane's
    # missing head gives it away
    await _settle_some(ledger, 1)
    admin = await asyncpg.connect(reference_db)
    try:
        ids = [
            await admin.fetchval("SELECT account_id FROM accounts WHERE account_key = $1", key)
            for key in ("fund:pooled", f"institution:{INSTITUTION}:payable")
        ]
        postings = [(1, ids[0], 8_000_000), (2, ids[1], -8_000_000)]
        forged = chain.entry_hash(
            chain.GENESIS_HASH, 999999, 100, 1, DAY, "ADJUSTMENT", "x", postings
        )
        async with admin.transaction():
            await admin.execute(
                "INSERT INTO entries (entry_id, lane, lane_seq, business_date, kind, ref,"
                " prev_hash, hash) VALUES (999999, 100, 1, $1, 'ADJUSTMENT', 'x', $2, $3)",
                DAY,
                chain.GENESIS_HASH,
                forged,
            )
            await admin.executemany(
                "INSERT INTO postings (entry_id, seq, account_id, amount_fen)"
                " VALUES (999999, $1, $2, $3)",
                postings,
            )
    finally:
        await admin.close()
    report = await _verify(reference_db)
    assert report.problems == ["lane 100 has entries but no head (its entries were inserted)"]


async def test_verify_finds_a_cancellation_that_does_not_reverse_its_settlement(
    ledger: Ledger, reference_db: str
) -> None:
    await _settle_some(ledger, 2)
    cancelled = await ledger.cancel(
        (INSTITUTION, "c1"), b"c", original_request_id="t0", reason="test"
    )
    assert cancelled.entry_id is not None
    assert (await _verify(reference_db)).sound
    await _as_superuser_without_triggers(  # now it points at the other settlement's entry
        reference_db,
        "UPDATE cancellations SET entry_id = (SELECT entry_id FROM settlements"
        " WHERE request_id = 't1') WHERE reversal_id = $1",
        cancelled.reversal_id,
    )
    report = await _verify(reference_db)
    assert any(
        f"cancellation {cancelled.reversal_id}: its entry does not reverse" in p
        for p in report.problems
    ), report.problems


async def test_a_temporary_table_cannot_stand_in_for_the_ledger_at_commit(
    reference_db: str,
) -> None:
    # the commit-time check runs as the committing role; pg_temp must not shadow it
    conn = await asyncpg.connect(reference_db, server_settings={"role": db.OPERATOR_ROLE})
    try:
        await conn.execute(
            "CREATE TEMPORARY TABLE entries (entry_id bigint, lane smallint, lane_seq bigint)"
        )
        await conn.execute(
            "CREATE TEMPORARY TABLE postings (entry_id bigint, seq integer, amount_fen bigint)"
        )
        await _unbalanced_refused_at_commit(conn, 500_000, 1)
    finally:
        await conn.close()
    admin = await asyncpg.connect(reference_db)
    try:
        assert await admin.fetchval("SELECT count(*) FROM entries WHERE kind = 'ADJUSTMENT'") == 0
    finally:
        await admin.close()


def _settle_row(settlement_id: str, request_id: str, entry_no: int | None) -> tuple[Any, ...]:
    """An ms_settle_row of a settlement without state changes (fields in the type's order)."""
    head = (settlement_id, INSTITUTION, request_id, b"\x00", "SETTLED", "M0001", DAY, 2026, "", 0)
    amounts = (100, 0, 0, 100)
    return (*head, *amounts, "{}", None, entry_no, *(None,) * 16)


@pytest.mark.parametrize(
    ("entry_nos", "entry_of"),
    [([1, 1], [1, 1, 2, 2]), ([1, None], [1, 1, 2, 2]), ([2, 3], [1, 1, 2, 2])],
    ids=["repeated", "one_missing", "not_from_1"],
)
async def test_each_settlement_of_a_batch_owns_its_own_entry(
    reference_db: str, entry_nos: list[int | None], entry_of: list[int]
) -> None:
    rows = [_settle_row(f"SX{i}", f"x{i}", n) for i, n in enumerate(entry_nos)]
    keys = ["member:M0001", f"institution:{INSTITUTION}:payable"] * 2
    owner = await asyncpg.connect(reference_db)  # the unchecked form is the owner's (fixtures)
    try:
        with pytest.raises(asyncpg.CheckViolationError, match="entry numbers"):
            await owner.fetchrow(
                "SELECT * FROM ms_record_batch($1, $2, $3, $4)",
                rows,
                entry_of,
                keys,
                [100, -100, 100, -100],
            )
        assert await owner.fetchval("SELECT count(*) FROM settlements") == 0
    finally:
        await owner.close()


@pytest.mark.parametrize(
    "changes",
    [{"member_id": "M0001"}, {"member_id": "M0002", "benefit_year": 2026}],
    ids=["no_benefit_year", "another_member"],
)
async def test_the_single_settlement_form_refuses_changes_it_cannot_file(
    reference_db: str, changes: dict[str, Any]
) -> None:
    owner = await asyncpg.connect(reference_db)  # the unchecked form is the owner's (fixtures)
    try:
        with pytest.raises(asyncpg.CheckViolationError, match="changes must name"):
            await owner.fetchval(
                "SELECT ms_record_settlement('SY1', $1, 'y1', '\\x00', 'SETTLED', 'M0001', $2,"
                " 2026, '', 0, 100, 0, 0, 100, '{}'::jsonb, $3::jsonb,"
                " ARRAY['member:M0001', $4], ARRAY[100, -100]::bigint[], NULL)",
                INSTITUTION,
                DAY,
                json.dumps(changes),
                f"institution:{INSTITUTION}:payable",
            )
        assert await owner.fetchval("SELECT count(*) FROM settlements") == 0
    finally:
        await owner.close()


async def test_verify_is_sound_while_settlements_commit(ledger: Ledger, reference_db: str) -> None:
    # the lane heads and the entries are read in one snapshot
    stop = asyncio.Event()

    async def settle_until_stopped(w: int) -> int:
        n = 0
        while not stop.is_set():
            await settle(ledger, (INSTITUTION, f"live-{w}-{n}"), b"f", CARD, debit(1))
            n += 1
        return n

    writers = [asyncio.create_task(settle_until_stopped(w)) for w in range(3)]
    try:
        reports = [await _verify(reference_db) for _ in range(12)]
    finally:
        stop.set()
        settled = await asyncio.gather(*writers)
    assert sum(settled) > 12
    assert all(r.sound for r in reports), [r.problems for r in reports if not r.sound]


async def test_a_server_too_old_or_not_durable_is_refused_in_one_line(
    reference_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = await asyncpg.connect(reference_db, server_settings={"synchronous_commit": "off"})
    try:
        with pytest.raises(db.ConfigError, match="synchronous_commit is 'off'"):
            await db.check_durability(conn)
        # this server (16) stands for one older than the oldest MedSwitch accepts
        monkeypatch.setattr(db, "SERVER_VERSION_NUM_MIN", 990000)
        version = await conn.fetchval("SHOW server_version")
        with pytest.raises(db.ConfigError, match=f"PostgreSQL {version} is too old"):
            await db.migrate(conn)
    finally:
        await conn.close()


async def test_on_the_embedded_server_the_switch_logs_in_as_the_application_role(
    reference_db: str,
) -> None:
    # taking the role as a connection parameter leaves the owner's rights one
    # RESET ROLE away for any statement sent on the connection
    pool = await db.open_database(reference_db, app_login=True, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT session_user") == db.APP_ROLE
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("SET ROLE postgres")
            await conn.execute("RESET ROLE")
            assert await conn.fetchval("SELECT current_user") == db.APP_ROLE
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                await conn.execute("UPDATE account_balances SET balance_fen = balance_fen + 1")
            # and it still does its work
            assert await conn.fetchval("SELECT count(*) FROM members") > 0
    finally:
        await pool.close()
    # the operators' commands (day, payouts, recon) connect the same way, as their role
    conn = await db.connect_app(reference_db, role=db.OPERATOR_ROLE, app_login=True)
    try:
        assert await conn.fetchval("SELECT session_user") == db.OPERATOR_ROLE
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("SET ROLE postgres")
    finally:
        await conn.close()


async def _rewrite_lane_from(url: str, entry_id: int, *, ref: str, drop: bool) -> None:
    """As a superuser who knows the chain's rule: change (or drop) an entry, then
    re-hash every later entry of its lane and move the lane's head to match."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET session_replication_role = replica")
        lane, seq, prev = await conn.fetchrow(
            "SELECT lane, lane_seq, prev_hash FROM entries WHERE entry_id = $1", entry_id
        )
        if drop:  # the last entry of its lane only: nothing to renumber
            # and everything that would give it away: its settlement, its balances
            await conn.execute(
                "UPDATE account_balances b SET balance_fen = b.balance_fen"
                " - b.normal_sign * p.amount_fen FROM postings p"
                " WHERE p.entry_id = $1 AND p.account_id = b.account_id",
                entry_id,
            )
            await conn.execute("DELETE FROM settlements WHERE entry_id = $1", entry_id)
            await conn.execute("DELETE FROM postings WHERE entry_id = $1", entry_id)
            await conn.execute("DELETE FROM entries WHERE entry_id = $1", entry_id)
            await conn.execute(
                "UPDATE chain_lanes SET last_seq = $2, last_hash = $3 WHERE lane = $1",
                lane,
                seq - 1,
                prev,
            )
            return
        await conn.execute("UPDATE entries SET ref = $2 WHERE entry_id = $1", entry_id, ref)
        rows = await conn.fetch(
            "SELECT e.entry_id, e.lane_seq, e.business_date, e.kind, e.ref,"
            " (SELECT array_agg(ARRAY[p.seq, p.account_id, p.amount_fen] ORDER BY p.seq)"
            "  FROM postings p WHERE p.entry_id = e.entry_id) AS legs"
            " FROM entries e WHERE e.lane = $1 AND e.lane_seq >= $2 ORDER BY e.lane_seq",
            lane,
            seq,
        )
        for r in rows:
            digest = chain.entry_hash(
                bytes(prev),
                r["entry_id"],
                lane,
                r["lane_seq"],
                r["business_date"],
                r["kind"],
                r["ref"],
                [(int(s), int(a), int(m)) for s, a, m in r["legs"]],
            )
            await conn.execute(
                "UPDATE entries SET prev_hash = $2, hash = $3 WHERE entry_id = $1",
                r["entry_id"],
                prev,
                digest,
            )
            prev = digest
        await conn.execute("UPDATE chain_lanes SET last_hash = $2 WHERE lane = $1", lane, prev)
    finally:
        await conn.close()


@pytest.mark.parametrize("rewrite", ["changed_and_rehashed", "last_dropped_head_rewound"])
async def test_an_anchor_kept_outside_the_database_catches_a_rewritten_lane(
    ledger: Ledger,
    operator_pool: asyncpg.Pool,
    reference_db: str,
    cli_env: dict[str, str],
    tmp_path: Any,
    rewrite: str,
) -> None:
    await _settle_some(ledger)
    # an entry no settlement or cancellation cross-checks: only its chain vouches for it
    adjustment = await operator_pool.fetchval(
        "SELECT ms_post('ADJUSTMENT', 'fix-1', ARRAY['fund:pooled', 'suspense'],"
        " ARRAY[500, -500]::bigint[])"
    )
    env = {**cli_env, "MEDSWITCH_DATABASE_URL": reference_db}
    anchor = tmp_path / "anchors.json"
    first = medswitch("ledger", "verify", "--anchor", str(anchor), "--first-anchor", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "anchored the ends of" in first.stdout and anchor.exists()
    await _rewrite_lane_from(
        reference_db, adjustment, ref="fix-2", drop=rewrite == "last_dropped_head_rewound"
    )
    # the chain alone cannot tell: every hash and the head agree again
    assert (await _verify(reference_db)).sound
    kept = anchor.read_text()
    second = medswitch("ledger", "verify", "--anchor", str(anchor), env=env)
    assert second.returncode == 1, second.stdout + second.stderr
    expected = (
        "is not the entry anchored there"
        if rewrite.startswith("changed")
        else ("before its anchor")
    )
    assert expected in second.stdout, second.stdout
    assert anchor.read_text() == kept  # an unsound run moves no anchor


def test_a_missing_or_malformed_anchor_file_is_one_line_and_exit_2(
    cli_env: dict[str, str], tmp_path: Any
) -> None:
    anchor = tmp_path / "anchors.json"
    # a missing file is no first run unless said so: a deleted or mistyped
    # anchor must not pass as a fresh start
    run = medswitch("ledger", "verify", "--anchor", str(anchor), env=cli_env)
    assert run.returncode == 2 and "--first-anchor" in run.stderr, run.stderr
    assert not anchor.exists()
    anchor.write_text('{"format": "something else"}')
    run = medswitch("ledger", "verify", "--anchor", str(anchor), env=cli_env)
    assert run.returncode == 2
    assert "not a ledger anchors file" in run.stderr and "Traceback" not in run.stderr
    run = medswitch("ledger", "verify", "--anchor", str(anchor), "--first-anchor", env=cli_env)
    assert run.returncode == 2 and "already exists" in run.stderr, run.stderr


async def test_business_days_only_move_forward(
    app_pool: asyncpg.Pool, operator_pool: asyncpg.Pool
) -> None:
    today = await app_pool.fetchval("SELECT business_date FROM business_days WHERE status = 'OPEN'")
    async with operator_pool.acquire() as conn, conn.transaction():  # what end of day does
        await conn.execute(
            "UPDATE business_days SET status = 'CLOSED', closed_at = now()"
            " WHERE business_date = $1",
            today,
        )
        await conn.execute(
            "INSERT INTO business_days (business_date, status) VALUES ($1::date + 1, 'OPEN')",
            today,
        )
    for sql in (
        "UPDATE business_days SET status = 'OPEN', closed_at = NULL WHERE business_date = $1",
        "UPDATE business_days SET business_date = business_date - 30 WHERE business_date = $1",
        "DELETE FROM business_days WHERE business_date = $1",
        "INSERT INTO business_days (business_date, status) VALUES ($1::date - 1, 'OPEN')",
    ):
        for pool in (app_pool, operator_pool):  # no grant, or the rules
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match=r"business.day"):
                await pool.execute(sql, today)
    assert await app_pool.fetch(
        "SELECT business_date, status FROM business_days ORDER BY business_date"
    ) == [(today, "CLOSED"), (today + timedelta(days=1), "OPEN")]
