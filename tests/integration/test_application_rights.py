"""What each database role may write (the baseline schema's rights), and day close against
books whose settlement records and entries disagree.

`medswitch serve` works as medswitch_app: it writes nothing directly, only
through the owner's functions. The operator's commands work as
medswitch_operator: the direct writes of import and end of day, and none
of what only the switch records. Close clears from what the ledger posted
and refuses a day whose records and entries disagree, changing nothing.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from ledger import accounts, db
from ledger.endofday import EndOfDayError, close_day
from ledger.store import Ledger
from tests.cli import medswitch
from tests.integration.ledger_helpers import DAY, INSTITUTION, OTHER_INSTITUTION, debit, settle

CARD = "C3303990001"
APP, OPERATOR = "app", "operator"

# A direct write on each table, and who is refused it: APP only (the
# operator's commands make that write) or both roles. Every table of the
# schema is here (test_every_table_is_covered).
_FORGED_SETTLEMENT = (
    "INSERT INTO settlements (settlement_id, institution_code, request_id, fingerprint, status,"
    " member_id, business_date, total_fen, pooled_fund_fen, answer)"
    f" VALUES ('S20261120forged', '{INSTITUTION}', 'forged-1', '\\x00', 'SETTLED', 'M0001',"
    " '2026-11-20', 9000000, 9000000, '{}')"
)
WRITES: list[tuple[str, str, tuple[str, ...]]] = [
    ("settlements", _FORGED_SETTLEMENT, (APP, OPERATOR)),
    (
        "settlements",
        "UPDATE settlements SET pooled_fund_fen = pooled_fund_fen + 1",
        (APP, OPERATOR),
    ),
    (
        "cancellations",
        "INSERT INTO cancellations (reversal_id, institution_code, request_id, fingerprint,"
        f" original_request_id, business_date) VALUES ('R1', '{INSTITUTION}', 'c1', '\\x00',"
        " 'r1', '2026-11-20')",
        (APP, OPERATOR),
    ),
    ("cancellations", "DELETE FROM cancellations", (APP, OPERATOR)),
    ("members", "UPDATE members SET status = 'ACTIVE' WHERE status = 'DECEASED'", (APP, OPERATOR)),
    ("members", "UPDATE members SET card_status = 'ACTIVE'", (APP, OPERATOR)),
    ("members", "UPDATE members SET pin_failures = 0", (APP, OPERATOR)),
    ("members", "DELETE FROM members WHERE member_id = 'M0001'", (APP, OPERATOR)),
    (
        "members",
        "INSERT INTO members SELECT 'M9999', '\\x01', name_enc, id_number_enc, birth_date,"
        " category, status, card_status, region, account_id, pin_hash FROM members LIMIT 1",
        (APP,),
    ),
    ("institutions", "UPDATE institutions SET status = 'ACTIVE'", (APP, OPERATOR)),
    (
        "institutions",
        "INSERT INTO institutions VALUES ('H9', 'x', 'HOSPITAL', 'L1', '330399', 'ACTIVE')",
        (APP,),
    ),
    ("member_year", "DELETE FROM member_year", (APP, OPERATOR)),
    (
        "member_year",
        "INSERT INTO member_year (member_id, year) VALUES ('M0001', 2027)",
        (APP, OPERATOR),
    ),
    ("member_year", "UPDATE member_year SET basic_pooled_fen = 0", (APP, OPERATOR)),
    ("pharmacy_daily", "DELETE FROM pharmacy_daily", (APP, OPERATOR)),
    ("inpatient_stays", "DELETE FROM inpatient_stays", (APP, OPERATOR)),
    ("member_special_diseases", "DELETE FROM member_special_diseases", (APP, OPERATOR)),
    (
        "member_special_diseases",
        "INSERT INTO member_special_diseases VALUES ('M0001', 'E11', '2026-01-01', '2026-12-31')",
        (APP,),
    ),
    ("policies", "INSERT INTO policies VALUES ('forged', '2026-01-01', '')", (APP,)),
    ("policies", "DELETE FROM policies", (APP, OPERATOR)),
    ("catalog_versions", "INSERT INTO catalog_versions VALUES (99, '2026-01-01')", (APP,)),
    ("catalog_items", "UPDATE catalog_items SET price_cap_fen = NULL", (APP, OPERATOR)),
    (
        "catalog_items",
        "INSERT INTO catalog_items SELECT 99, code, name, kind, item_class, preselfpay_bp,"
        " price_cap_fen, rx, restrictions FROM catalog_items",
        (APP,),
    ),
    (
        "accounts",
        "INSERT INTO accounts (account_key, kind, normal_side)"
        " VALUES ('institution:H9:payable', 'INSTITUTION_PAYABLE', 'CREDIT')",
        (APP,),
    ),
    ("accounts", "UPDATE accounts SET account_key = account_key || 'x'", (APP, OPERATOR)),
    ("account_balances", "UPDATE account_balances SET balance_fen = 1", (APP, OPERATOR)),
    ("chain_lanes", "UPDATE chain_lanes SET last_seq = 0", (APP, OPERATOR)),
    (
        "entries",
        "INSERT INTO entries (entry_id, lane, lane_seq, business_date, kind, prev_hash, hash)"
        " VALUES (987654321, 0, 987654321, '2026-11-20', 'SETTLEMENT', '', '')",
        (APP, OPERATOR),
    ),
    (
        "postings",
        "INSERT INTO postings (entry_id, seq, account_id, amount_fen) VALUES (1, 99, 1, 5)",
        (APP, OPERATOR),
    ),
    ("business_days", "UPDATE business_days SET closed_at = now()", (APP,)),
    (
        "business_days",
        "INSERT INTO business_days (business_date, status) VALUES ('2030-01-01', 'OPEN')",
        (APP,),
    ),
    (
        "day_clearing",
        "INSERT INTO day_clearing VALUES ('2026-11-20', 'H33039900001', 'x', 900, 0, 0, 1, 0, 0,"
        " 900, NULL)",
        (APP,),
    ),
    (
        "payout_exports",
        "INSERT INTO payout_exports VALUES ('2026-11-20', now(), 'F', 0, 0)",
        (APP,),
    ),
    (
        "payout_export_entries",
        "INSERT INTO payout_export_entries VALUES ('MS20261120H1', '2026-11-20', 1)",
        (APP,),
    ),
    (
        "bank_statements",
        "INSERT INTO bank_statements (sha256, business_date, account_id, format, statement_id,"
        " source_name) VALUES ('x', '2026-11-20', 'F', 'csv', 's', 's')",
        (APP,),
    ),
    (
        "bank_statement_lines",
        "INSERT INTO bank_statement_lines (sha256, business_date, line_no, status, end_to_end_id,"
        " institution_code, bank_reference) VALUES ('x', '2026-11-20', 1, 'MATCHED', 'e', 'H1',"
        " 'r')",
        (APP,),
    ),
    (
        "bank_posting_keys",
        "INSERT INTO bank_posting_keys VALUES ('k', 'x', 1, '2026-11-20')",
        (APP,),
    ),
    (
        "schema_version",
        "INSERT INTO schema_version (version, name) VALUES (999, 'x')",
        (APP, OPERATOR),
    ),
    # Encounters (0002) change only through the owner's ms_encounter_* functions.
    (
        "encounters",
        "INSERT INTO encounters (encounter_id, institution_code, member_id, request_id,"
        " admission_date, department, admission_diagnoses, injury_cause, accident_case_id)"
        f" VALUES ('E1', '{INSTITUTION}', 'M0001', 'a1', '2026-11-01', 'x', '{{K35.8}}', 'NONE',"
        " '')",
        (APP, OPERATOR),
    ),
    ("encounters", "UPDATE encounters SET settlement_id = NULL", (APP, OPERATOR)),
    ("encounter_lines", "UPDATE encounter_lines SET voided_by = NULL", (APP, OPERATOR)),
    ("encounter_lines", "DELETE FROM encounter_lines", (APP, OPERATOR)),
    ("encounter_requests", "DELETE FROM encounter_requests", (APP, OPERATOR)),
]


@pytest.mark.parametrize(
    ("table", "sql", "refused"), WRITES, ids=[f"{t}:{s.split()[0]}" for t, s, _ in WRITES]
)
async def test_each_table_refuses_the_direct_writes_its_role_does_not_make(
    app_pool: asyncpg.Pool,
    operator_pool: asyncpg.Pool,
    table: str,
    sql: str,
    refused: tuple[str, ...],
) -> None:
    pools = {APP: app_pool, OPERATOR: operator_pool}
    for role in refused:
        with pytest.raises(
            asyncpg.InsufficientPrivilegeError, match=f"permission denied for table {table}"
        ):
            await pools[role].execute(sql)


async def test_every_table_is_covered_and_the_switch_may_write_none(
    app_pool: asyncpg.Pool,
) -> None:
    tables = await app_pool.fetch(
        "SELECT c.relname,"
        " has_table_privilege($1, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE') AS writes"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')",
        db.APP_ROLE,
    )
    assert {r["relname"] for r in tables} == {table for table, _, _ in WRITES}
    assert [r["relname"] for r in tables if r["writes"]] == []


# What the switch calls, all it may call, and which of it runs as the owner
# (all that writes or locks members' rows).
SWITCH_FUNCTIONS = {
    "ms_load_states": False,
    "ms_record_checked": True,
    "ms_load_cancel": True,
    "ms_record_cancellation": True,
    "ms_record_request_cancelled": True,
    "ms_pin_check": True,
    # encounters (0002): the reads run as the switch, the calls that write as the owner
    "ms_encounter_standing": False,
    "ms_encounter_json": False,
    "ms_encounter_get": False,
    "ms_encounter_claimable": False,
    "ms_encounter_refuse_closed": False,
    "ms_encounter_admit": True,
    "ms_encounter_cancel_admission": True,
    "ms_encounter_upload": True,
    "ms_encounter_void": True,
    "ms_encounter_discharge": True,
    "ms_encounter_settle_intent": True,
}


async def test_the_switch_calls_only_its_own_functions(app_pool: asyncpg.Pool) -> None:
    callable_ = await app_pool.fetch(
        "SELECT p.proname, p.prosecdef,"
        " coalesce('search_path=public, pg_temp' = ANY(p.proconfig), false) AS pinned"
        " FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname = 'public' AND has_function_privilege($1, p.oid, 'EXECUTE')",
        db.APP_ROLE,
    )
    assert {r["proname"] for r in callable_} == SWITCH_FUNCTIONS.keys()
    for r in callable_:
        assert r["prosecdef"] == SWITCH_FUNCTIONS[r["proname"]], r["proname"]
        assert r["pinned"] or not r["prosecdef"], r["proname"]  # no caller's object in its way
    for sql in (  # any entry at all, say a fund's money credited to a member
        "SELECT ms_post_set('ADJUSTMENT', ARRAY['x'], ARRAY[1, 1],"
        " ARRAY['fund:pooled', 'member:M0001'], ARRAY[100, -100]::bigint[])",
        "SELECT ms_post('ADJUSTMENT', 'x', ARRAY['fund:pooled', 'member:M0001'],"
        " ARRAY[100, -100]::bigint[])",
        "SELECT ms_append_entries('ADJUSTMENT', ARRAY['x'], ARRAY[1::bigint], ARRAY[''])",
        "SELECT ms_close_day()",
        # the unchecked recording forms (fixtures): records without the state check
        "SELECT ms_record_batch('{}', '{}', '{}', '{}')",
        "SELECT ms_record_rows(current_date, '{}', '{}', '{}', '{}')",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await app_pool.execute(sql)


async def test_a_function_made_later_runs_for_no_role_until_granted(reference_db: str) -> None:
    owner = await asyncpg.connect(reference_db)  # who migrates
    try:
        await owner.execute(
            "CREATE FUNCTION ms_made_later() RETURNS integer LANGUAGE sql AS 'SELECT 1'"
        )
        for role in db.ROLES:
            assert not await owner.fetchval(
                "SELECT has_function_privilege($1, 'ms_made_later()', 'EXECUTE')", role
            ), role
    finally:
        await owner.close()


async def test_a_forged_settlement_row_cannot_be_inserted(
    ledger: Ledger, app_pool: asyncpg.Pool
) -> None:
    await settle(ledger, (INSTITUTION, "t0"), b"f", CARD, debit(100))
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
        await app_pool.execute(_FORGED_SETTLEMENT)
    async with app_pool.acquire() as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await conn.copy_records_to_table(
                "settlements",
                records=[("S20261120forged", INSTITUTION, "forged-2", b"\x00", "SETTLED")],
                columns=(
                    "settlement_id",
                    "institution_code",
                    "request_id",
                    "fingerprint",
                    "status",
                ),
            )
    assert await app_pool.fetchval("SELECT count(*) FROM settlements") == 1


async def test_the_switchs_writers_check_what_they_are_asked(
    ledger: Ledger, app_pool: asyncpg.Pool
) -> None:
    settled = await settle(ledger, (INSTITUTION, "t0"), b"f", CARD, debit(100))
    rejected = await settle(ledger, (INSTITUTION, "t1"), b"f", CARD, debit(10**9))
    assert rejected.status == "REJECTED"
    cancel = "SELECT ms_record_cancellation($1, $2, $3, '\\x00', $4, NULL, '')"
    for reversal, institution, target in (
        ("R1", OTHER_INSTITUTION, settled.settlement_id),  # not its settlement
        ("R2", INSTITUTION, rejected.settlement_id),  # nothing to reverse
        ("R3", INSTITUTION, "S-nope"),
    ):
        with pytest.raises(asyncpg.ObjectNotInPrerequisiteStateError, match="cannot cancel"):
            await app_pool.execute(cancel, reversal, institution, f"c-{reversal}", target)
    with pytest.raises(asyncpg.ObjectNotInPrerequisiteStateError, match="was settled"):
        await app_pool.execute(  # a request cancelled before it arrived would hide a settlement
            "SELECT ms_record_request_cancelled('R4', $1, 'c4', '\\x00', 't0', '')", INSTITUTION
        )
    assert await app_pool.fetchval("SELECT count(*) FROM cancellations") == 0
    # PIN failures move by one, or back to none, and by nothing else; not at all
    # on a locked card (NULL)
    member = "SELECT pin_failures FROM members WHERE member_id = 'M0002'"
    assert [
        await app_pool.fetchval("SELECT ms_pin_check('M0002', $1, 3)", ok)
        for ok in (False, False, True, False, False, False, False, True)
    ] == [1, 2, 0, 1, 2, 3, None, None]
    assert await app_pool.fetchval(member) == 3


# --- day close against books that disagree -------------------------------------------------

_PAYABLE = accounts.institution_payable(INSTITUTION)
TAMPERS: list[tuple[str, str, str]] = [
    (  # a settlement row no entry backs: what the application role could insert
        "settlement_without_entry",
        _FORGED_SETTLEMENT,
        "settlement S20261120forged: its amounts are not what its entry posts",
    ),
    (  # and its mirror: money posted for no settlement
        "entry_without_settlement",
        "SELECT ms_post_set('SETTLEMENT', ARRAY['S20261120phantom'], ARRAY[1, 1],"
        f" ARRAY['fund:pooled', '{_PAYABLE}'], ARRAY[700000, -700000]::bigint[])",
        "entry for 'S20261120phantom' that no settlement or cancellation records",
    ),
    (
        "amount_changed",
        "UPDATE settlements SET individual_account_fen = individual_account_fen + 1"
        " WHERE request_id = 't0'",
        "its amounts are not what its entry posts (member:M0001: 101 stated, 100 posted)",
    ),
    (  # every entry matches its record; the day's clearing does not
        "settled_entry_of_a_rejection",
        "UPDATE settlements SET status = 'REJECTED' WHERE request_id = 't1'",
        f"institution {INSTITUTION}: its records on {DAY} say 400 fen (pooled fund 0, serious"
        " illness 0, individual accounts 400), the ledger posted 600 fen",
    ),
    (
        "cancellation_without_entry",
        "INSERT INTO cancellations (reversal_id, institution_code, request_id, fingerprint,"
        " settlement_id, business_date) SELECT 'R-forged', institution_code, 'c-forged', '\\x00',"
        " settlement_id, business_date FROM settlements WHERE request_id = 't0'",
        "cancellation R-forged: its entry does not reverse the settlement's",
    ),
]


async def _state(conn: asyncpg.Connection) -> list[Any]:
    return [
        await conn.fetch("SELECT * FROM business_days ORDER BY business_date"),
        await conn.fetchval("SELECT count(*) FROM day_clearing"),
        await conn.fetchval("SELECT count(*) FROM entries"),
        await conn.fetchval("SELECT count(*) FROM accounts"),
        await conn.fetch("SELECT lane, last_seq FROM chain_lanes ORDER BY lane"),
    ]


@pytest.mark.parametrize(("tamper", "sql", "expected"), TAMPERS, ids=[t for t, _, _ in TAMPERS])
async def test_close_refuses_a_day_whose_records_and_entries_disagree(
    ledger: Ledger, reference_db: str, tamper: str, sql: str, expected: str
) -> None:
    for n, fen in enumerate((100, 200, 300)):
        await settle(ledger, (INSTITUTION, f"t{n}"), b"f", CARD, debit(fen))
    admin = await asyncpg.connect(reference_db)  # the database's owner (a superuser)
    operator = await asyncpg.connect(reference_db, server_settings={"role": db.OPERATOR_ROLE})
    try:
        await admin.execute(sql)
        before = await _state(admin)
        with pytest.raises(EndOfDayError, match="records and its ledger entries disagree") as e:
            await close_day(operator)
        assert expected in str(e.value)
        assert "nothing was changed" in str(e.value)
        assert await _state(admin) == before
    finally:
        await operator.close()
        await admin.close()


async def test_the_close_command_refuses_loudly(
    ledger: Ledger, reference_db: str, cli_env: dict[str, str]
) -> None:
    await settle(ledger, (INSTITUTION, "t0"), b"f", CARD, debit(100))
    admin = await asyncpg.connect(reference_db)
    try:
        await admin.execute(_FORGED_SETTLEMENT)
    finally:
        await admin.close()
    env = {**cli_env, "MEDSWITCH_DATABASE_URL": reference_db}
    run = medswitch("day", "close", "--date", str(DAY), env=env)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "S20261120forged" in run.stderr and "nothing was changed" in run.stderr
    assert "Traceback" not in run.stderr
    status = medswitch("day", "status", env=env)
    assert status.stdout.splitlines()[1].split()[:2] == [str(DAY), "OPEN"]


async def test_close_pays_what_the_ledger_posted(ledger: Ledger, reference_db: str) -> None:
    # (with records and entries agreeing, the two are the same: the clearing's
    # split by paying source comes from the entries' legs)
    await settle(ledger, (INSTITUTION, "t0"), b"f", CARD, debit(100, pooled_fen=900))
    await settle(ledger, (OTHER_INSTITUTION, "t1"), b"f", CARD, debit(0))  # pays nothing
    operator = await asyncpg.connect(reference_db, server_settings={"role": db.OPERATOR_ROLE})
    try:
        closed = await close_day(operator)
        rows = await operator.fetch(
            "SELECT institution_code, pooled_fund_fen, individual_account_fen, settlement_count,"
            " payout_fen FROM day_clearing ORDER BY institution_code"
        )
    finally:
        await operator.close()
    assert closed.payout_total_fen == 1000
    assert [tuple(r) for r in rows] == [
        (INSTITUTION, 900, 100, 1, 1000),
        (OTHER_INSTITUTION, 0, 0, 1, 0),
    ]
