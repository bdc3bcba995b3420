"""End of day against a real PostgreSQL: close, clear, export, reconcile.

Settlements are written with the ledger's own database function for
fixtures (`ms_record_settlement`, as the owner), cancellations with the one
the switch calls (`ms_record_cancellation`, as the application role), so
these tests need no gRPC server; end of day runs as the operator's role, as
the commands do.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, timedelta
from pathlib import Path

import asyncpg
import pytest
from lxml import etree

from ledger import accounts, db
from ledger.bankfiles import CREDIT, DEBIT, DebtorAccount, StatementEntry, schema
from ledger.bankfiles.simulate import camt053_statement, csv_statement
from ledger.endofday import (
    EndOfDayError,
    close_day,
    expected_payouts,
    export_payouts,
    record_reconciliation,
)
from ledger.recon import match_statement
from tests.waiting import wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
FIRST_DAY = date(2026, 11, 20)
FUND_ACCOUNT = "6222020200112233445"
FUND = DebtorAccount(FUND_ACCOUNT, "Region 330399 medical insurance fund")
H1, H2, H3 = "H33039900001", "H33039900002", "H33039900003"
_ids = itertools.count(1)


@pytest.fixture
async def conn(reference_db: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(reference_db)
    await connection.execute(f"SET ROLE {db.OPERATOR_ROLE}")
    try:
        yield connection
    finally:
        await connection.close()


@asynccontextmanager
async def as_role(conn: asyncpg.Connection, role: str) -> AsyncIterator[None]:
    """In a transaction on `conn`, `role` (NONE: the owner), whatever role `conn` has."""
    async with conn.transaction():
        await conn.execute(f"SET LOCAL ROLE {role}")
        yield


async def settle(
    conn: asyncpg.Connection,
    institution: str,
    pooled: int,
    serious: int = 0,
    account: int = 0,
    member: str = "M0001",
) -> str:
    sid = f"T{next(_ids):012d}"
    postings = accounts.settlement_postings(
        member,
        institution,
        pooled_fund_fen=pooled,
        serious_illness_fen=serious,
        individual_account_fen=account,
    )
    async with as_role(conn, "NONE"):
        await conn.fetchval(
            "SELECT ms_record_settlement($1, $2, $3, $4, 'SETTLED', $5, $6, 2026, '', 0, $7, $8,"
            " $9, $10, '{}'::jsonb, NULL, $11::text[], $12::bigint[], NULL)",
            sid,
            institution,
            sid,
            b"fp",
            member,
            FIRST_DAY,
            pooled + serious + account + 100,
            pooled,
            serious,
            account,
            [k for k, _ in postings],
            [a for _, a in postings],
        )
    return sid


async def cancel(conn: asyncpg.Connection, institution: str, settlement_id: str) -> None:
    rid = f"R{next(_ids):012d}"
    async with as_role(conn, db.APP_ROLE):
        await conn.fetchval(
            "SELECT ms_record_cancellation($1, $2, $3, $4, $5, NULL, 'test')",
            rid,
            institution,
            rid,
            b"fp",
            settlement_id,
        )


async def balance(conn: asyncpg.Connection, key: str) -> int:
    value = await conn.fetchval(
        "SELECT coalesce(sum(p.amount_fen), 0) FROM postings p JOIN accounts a USING (account_id)"
        " WHERE a.account_key = $1",
        key,
    )
    return int(value)


async def entry_count(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM entries"))


async def test_close_clears_each_institution_and_opens_the_next_day(conn) -> None:
    await settle(conn, H1, 1000, 200, 30)
    s2 = await settle(conn, H1, 500)
    await settle(conn, H2, 70)
    await cancel(conn, H1, s2)
    result = await close_day(conn, expected_date=FIRST_DAY)
    assert (result.closed_date, result.opened_date) == (FIRST_DAY, FIRST_DAY + timedelta(days=1))
    rows = await conn.fetch(
        "SELECT institution_code, pooled_fund_fen, serious_illness_fen, individual_account_fen,"
        " settlement_count, payout_fen FROM day_clearing WHERE business_date = $1"
        " ORDER BY institution_code",
        FIRST_DAY,
    )
    assert [tuple(r) for r in rows] == [(H1, 1000, 200, 30, 1, 1230), (H2, 70, 0, 0, 1, 70)]
    assert result.payout_total_fen == 1300
    # The clearing agrees with the ledger: what the day's settlement and
    # cancellation entries credited to each institution's payable.
    from_ledger = await conn.fetch(
        "SELECT a.account_key, -sum(p.amount_fen)::bigint AS fen FROM postings p"
        " JOIN accounts a USING (account_id) JOIN entries e USING (entry_id)"
        " WHERE e.business_date = $1 AND e.kind IN ('SETTLEMENT', 'CANCELLATION')"
        " AND a.kind = 'INSTITUTION_PAYABLE' GROUP BY 1 ORDER BY 1",
        FIRST_DAY,
    )
    assert [(r["account_key"], r["fen"]) for r in from_ledger] == [
        (accounts.institution_payable(H1), 1230),
        (accounts.institution_payable(H2), 70),
    ]
    days = await conn.fetch("SELECT business_date, status FROM business_days ORDER BY 1")
    assert [tuple(d) for d in days] == [(FIRST_DAY, "CLOSED"), (FIRST_DAY + timedelta(1), "OPEN")]
    # A settlement now lands in the new day.
    sid = await settle(conn, H3, 5)
    booked = await conn.fetchval(
        "SELECT business_date FROM settlements WHERE settlement_id=$1", sid
    )
    assert booked == FIRST_DAY + timedelta(days=1)


async def test_close_refuses_a_date_that_is_not_the_open_day(conn) -> None:
    with pytest.raises(EndOfDayError, match="open business day is 2026-11-20"):
        await close_day(conn, expected_date=date(2026, 11, 19))
    assert await conn.fetchval("SELECT count(*) FROM business_days") == 1


async def test_a_negative_day_is_carried_forward_against_the_next_payout(conn) -> None:
    big = await settle(conn, H1, 5000)
    await close_day(conn)  # day 1: H1 is owed 5000
    # Day 2: an adjustment reverses day 1's settlement: H1's day is -5000.
    await cancel(conn, H1, big)
    await settle(conn, H1, 1200)
    day2 = await close_day(conn)
    assert day2.payout_count == 0 and day2.receivables_fen == {H1: 3800}
    assert await balance(conn, accounts.institution_receivable(H1)) == 3800
    await settle(conn, H1, 4000)
    day3 = await close_day(conn)
    assert day3.payout_total_fen == 200 and day3.receivables_fen == {}
    assert await balance(conn, accounts.institution_receivable(H1)) == 0
    exported = await export_payouts(conn, day3.closed_date, debtor=FUND, created_at=_at())
    (payout,) = exported.payouts
    assert (payout.amount_fen, payout.offset_fen) == (200, 3800)


def _at():
    from datetime import datetime, timezone

    return datetime(2026, 11, 21, 9, 0, tzinfo=timezone(timedelta(hours=8)))


async def test_export_moves_payouts_into_transit_once(conn) -> None:
    await settle(conn, H1, 1000)
    await settle(conn, H2, 2500, 100)
    with pytest.raises(EndOfDayError, match="still open"):
        await export_payouts(conn, FIRST_DAY, debtor=FUND, created_at=_at())
    await close_day(conn)
    first = await export_payouts(conn, FIRST_DAY, debtor=FUND, created_at=_at())
    assert first.posted and [p.amount_fen for p in first.payouts] == [1000, 2600]
    assert await balance(conn, accounts.PAYOUTS_IN_TRANSIT) == -3600
    assert await balance(conn, accounts.institution_payable(H1)) == 0
    assert await balance(conn, accounts.institution_payable(H2)) == 0
    before = await entry_count(conn)
    again = await export_payouts(
        conn, FIRST_DAY, debtor=FUND, created_at=_at() + timedelta(hours=5)
    )
    assert not again.posted and again.created_at == first.created_at
    assert await entry_count(conn) == before
    with pytest.raises(EndOfDayError, match="were exported from account"):
        await export_payouts(
            conn, FIRST_DAY, debtor=DebtorAccount("OTHER", "Fund"), created_at=_at()
        )


def _entry(e2e: str, fen: int, direction: str = DEBIT, ref: str = "") -> StatementEntry:
    return StatementEntry(
        "", FIRST_DAY + timedelta(1), None, direction, fen, e2e, ref or f"B-{e2e}-{fen}", "", ""
    )


async def _closed_and_exported(conn) -> list[str]:
    await settle(conn, H1, 1000)
    await settle(conn, H2, 2000)
    await settle(conn, H3, 3000)
    await close_day(conn)
    result = await export_payouts(conn, FIRST_DAY, debtor=FUND, created_at=_at())
    return [p.end_to_end_id for p in result.payouts]


async def test_reconciling_settles_matches_and_parks_exceptions_in_suspense(conn) -> None:
    e1, e2, e3 = await _closed_and_exported(conn)
    entries = [
        _entry(e1, 1000),
        _entry(e2, 1999),  # AMOUNT_MISMATCH
        _entry(e1, 1000, ref="DUP"),  # DUPLICATE_IN_BANK
        _entry(e1, 1000, CREDIT, ref="RET"),  # RETURNED
        _entry("", 15, ref="FEE"),  # UNEXPECTED_IN_BANK
    ]  # e3: MISSING_IN_BANK
    data = camt053_statement(
        account_id=FUND_ACCOUNT, entries=entries, opening_balance_fen=10**7, created_at=_at()
    )
    from ledger.bankfiles import read_statement

    statement = read_statement(data, source="s.xml", fund_account_id=FUND_ACCOUNT)
    recon = match_statement(FIRST_DAY, await expected_payouts(conn, FIRST_DAY), statement.entries)
    record = await record_reconciliation(
        conn, recon, statement, source_name="s.xml", account_id=FUND_ACCOUNT
    )
    assert record.entries_posted == 5 and not record.already_recorded
    # e1 settled; e2 and e3 still in transit; bank movements mirrored.
    assert await balance(conn, accounts.PAYOUTS_IN_TRANSIT) == -(2000 + 3000)
    assert await balance(conn, accounts.SETTLED_AT_BANK) == -(1000 + 1999 + 1000 - 1000 + 15)
    assert await balance(conn, accounts.SUSPENSE) == 1999 + 1000 - 1000 + 15
    before = await entry_count(conn)
    again = await record_reconciliation(
        conn, recon, statement, source_name="s.xml", account_id=FUND_ACCOUNT
    )
    assert again.already_recorded and await entry_count(conn) == before
    # The same bank entry in a later, different statement moves nothing again.
    later = read_statement(
        csv_statement([entries[0], _entry(e3, 3000)]),
        source="s2.csv",
        fund_account_id=FUND_ACCOUNT,
    )
    recon2 = match_statement(FIRST_DAY, await expected_payouts(conn, FIRST_DAY), later.entries)
    record2 = await record_reconciliation(
        conn, recon2, later, source_name="s2.csv", account_id=FUND_ACCOUNT
    )
    assert record2.entries_posted == 1  # only e3
    assert await balance(conn, accounts.PAYOUTS_IN_TRANSIT) == -2000


async def test_one_statement_with_two_days_of_payouts_settles_both(conn) -> None:
    """A bank books Friday's and Saturday's payouts on Monday: one statement, two days."""
    from ledger.bankfiles import read_statement

    (d1_e1, d1_e2, d1_e3) = await _closed_and_exported(conn)
    day2 = FIRST_DAY + timedelta(1)
    await settle(conn, H1, 4000)
    await close_day(conn)
    (d2_e1,) = [
        p.end_to_end_id
        for p in (await export_payouts(conn, day2, debtor=FUND, created_at=_at())).payouts
    ]
    entries = [_entry(d1_e1, 1000), _entry(d1_e2, 2000), _entry(d1_e3, 3000), _entry(d2_e1, 4000)]
    data = camt053_statement(
        account_id=FUND_ACCOUNT, entries=entries, opening_balance_fen=10**7, created_at=_at()
    )
    statement = read_statement(data, source="monday.xml", fund_account_id=FUND_ACCOUNT)

    async def reconcile(day: date) -> tuple[list[str], int]:
        recon = match_statement(day, await expected_payouts(conn, day), statement.entries)
        record = await record_reconciliation(
            conn, recon, statement, source_name="monday.xml", account_id=FUND_ACCOUNT
        )
        return [line.status for line in recon.lines], record.entries_posted

    statuses, posted = await reconcile(FIRST_DAY)
    assert sorted(statuses) == ["MATCHED"] * 3 + ["UNEXPECTED_IN_BANK"] and posted == 4
    assert await balance(conn, accounts.SUSPENSE) == 4000  # day 2's payout, not yet known
    statuses, posted = await reconcile(day2)
    assert statuses.count("MATCHED") == 1 and posted == 1
    # everything paid is settled at the bank; nothing is left in transit or suspense
    assert await balance(conn, accounts.PAYOUTS_IN_TRANSIT) == 0
    assert await balance(conn, accounts.SUSPENSE) == 0
    assert await balance(conn, accounts.SETTLED_AT_BANK) == -10_000
    before = await entry_count(conn)
    for day in (FIRST_DAY, day2):  # and running either again changes nothing
        assert (await reconcile(day))[1] == 0
    assert await entry_count(conn) == before


async def test_a_statement_issued_again_moves_nothing_twice(conn) -> None:
    """Entries without a bank reference are known by content, not by the file."""
    from ledger.bankfiles import read_statement

    e1, e2, _ = await _closed_and_exported(conn)

    def unreferenced(e2e: str, fen: int) -> StatementEntry:
        return StatementEntry("", FIRST_DAY + timedelta(1), None, DEBIT, fen, e2e, "", "", "")

    entries = [
        unreferenced(e1, 1000),
        unreferenced(e2, 1999),  # AMOUNT_MISMATCH: to suspense
        unreferenced("", 15),  # a fee: UNEXPECTED_IN_BANK
        unreferenced("", 15),  # and an identical second fee
    ]
    posted = []
    for hour in (9, 17):  # the bank issues the same statement again, later
        created = _at().replace(hour=hour)
        data = camt053_statement(
            account_id=FUND_ACCOUNT, entries=entries, opening_balance_fen=10**7, created_at=created
        )
        statement = read_statement(data, source=f"s{hour}.xml", fund_account_id=FUND_ACCOUNT)
        recon = match_statement(
            FIRST_DAY, await expected_payouts(conn, FIRST_DAY), statement.entries
        )
        record = await record_reconciliation(
            conn, recon, statement, source_name=f"s{hour}.xml", account_id=FUND_ACCOUNT
        )
        assert not record.already_recorded  # another file ...
        posted.append(record.entries_posted)
    assert posted == [4, 0]  # ... but the same bank entries: nothing moves twice
    assert await balance(conn, accounts.SUSPENSE) == 1999 + 15 + 15


async def test_reconcile_needs_an_exported_day(conn) -> None:
    with pytest.raises(EndOfDayError, match="not exported"):
        await expected_payouts(conn, FIRST_DAY)


# --- the commands, as an operator runs them -----------------------------------------------


def _recon(env: dict[str, str], statement: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return _cli(
        env,
        "recon",
        "bank",
        "--date",
        "2026-11-20",
        "--statement",
        str(statement),
        "--out",
        str(out),
    )


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "switch.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )


@pytest.fixture
def env(cli_env: dict[str, str], reference_db: str) -> dict[str, str]:
    return {
        **cli_env,
        "MEDSWITCH_DATABASE_URL": reference_db,
        "MEDSWITCH_FUND_ACCOUNT": FUND_ACCOUNT,
        "MEDSWITCH_FUND_NAME": FUND.owner_name,
        "PYTHONPATH": str(REPO_ROOT),
    }


async def test_operator_closes_exports_and_reconciles_with_the_commands(
    env: dict[str, str], reference_db: str, tmp_path: Path
) -> None:
    conn = await asyncpg.connect(reference_db)
    try:
        await settle(conn, H1, 12345, 600, 29)
        await settle(conn, H2, 800)
    finally:
        await conn.close()

    closed = _cli(env, "day", "close", "--date", "2026-11-20")
    assert closed.returncode == 0, closed.stderr
    assert "closed 2026-11-20" in closed.stdout and "opened 2026-11-21" in closed.stdout
    refused = _cli(env, "day", "close", "--date", "2026-11-20")
    assert refused.returncode == 2 and "open business day is 2026-11-21" in refused.stderr

    out = tmp_path / "out"
    exported = _cli(env, "payouts", "export", "--date", "2026-11-20", "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    csv_lines = (out / "payouts-20261120.csv").read_text().splitlines()
    assert csv_lines[1:] == [
        f"2026-11-20,MS20261120{H1},{H1},市第一人民医院 (First People's Hospital),"
        "12974,12345,600,29,1",
        f"2026-11-20,MS20261120{H2},{H2},区中医院 (District TCM Hospital),800,800,0,0,1",
    ]
    xml = etree.parse(str(out / "payouts-20261120.xml"))
    assert schema("pain.001.001.03").validate(xml)
    first_xml = (out / "payouts-20261120.xml").read_bytes()
    again = _cli(env, "payouts", "export", "--date", "2026-11-20", "--out", str(out))
    assert again.returncode == 0 and "nothing posted again" in again.stdout
    assert (out / "payouts-20261120.xml").read_bytes() == first_xml

    ok = tmp_path / "ok.xml"
    ok.write_bytes(
        camt053_statement(
            account_id=FUND_ACCOUNT,
            entries=[_entry(f"MS20261120{H1}", 12974), _entry(f"MS20261120{H2}", 800)],
            opening_balance_fen=5_000_000,
            created_at=_at(),
        )
    )
    matched = _recon(env, ok, out)
    assert matched.returncode == 0, matched.stdout + matched.stderr
    report = (out / "recon-20261120.csv").read_text().splitlines()
    assert [line.split(",")[5] for line in report[1:]] == ["MATCHED", "MATCHED"]
    assert "<svg" in (out / "recon-20261120.html").read_text()
    rerun = _recon(env, ok, out)
    assert rerun.returncode == 0 and "nothing posted again" in rerun.stdout

    short = tmp_path / "short.csv"
    short.write_bytes(csv_statement([_entry(f"MS20261120{H1}", 12000)]))
    mismatch = _recon(env, short, tmp_path / "r2")
    assert mismatch.returncode == 3, mismatch.stderr
    statuses = [
        line.split(",")[5]
        for line in (tmp_path / "r2" / "recon-20261120.csv").read_text().splitlines()[1:]
    ]
    assert statuses == ["AMOUNT_MISMATCH", "MISSING_IN_BANK"]
    status = _cli(env, "day", "status")
    assert status.returncode == 0, status.stderr
    rows = [line.split() for line in status.stdout.splitlines()[1:]]
    assert rows == [
        ["2026-11-21", "OPEN", "0", "0.00", "no", "0", "0"],
        ["2026-11-20", "CLOSED", "2", "137.74", "yes", "2", "2"],
    ]
    # Everything end of day posted keeps the books sound and the chains intact.
    verified = _cli(env, "ledger", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


_CSV_HEADER = (
    b"booking_date,value_date,direction,amount_fen,end_to_end_id,bank_reference,"
    b"counterparty_account,counterparty_name\n"
)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("not a statement", b"hello,world\n1,2\n", "header must be"),
        (
            "another account",
            b"#account=999\nbooking_date,value_date,direction,amount_fen,"
            b"end_to_end_id,bank_reference,counterparty_account,counterparty_name\n",
            "not the fund's account",
        ),
        (
            "entity attack",
            b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><d>&x;</d>',
            "not allowed",
        ),
        # These two ended as "database: ..." and exit 1.
        ("NUL", _CSV_HEADER + b"2026-11-21,,DEBIT,100,MS20261120X,R\x00,A,N\n", "line 2"),
        (
            "amounts past the ledger's bigint",
            _CSV_HEADER
            + b"".join(b"2026-11-21,,DEBIT,999999999999999999,E,R%d,A,N\n" % n for n in range(10)),
            "line 2: the entries add up to more than",
        ),
    ],
)
async def test_unusable_statements_exit_2_and_post_nothing(
    env: dict[str, str],
    reference_db: str,
    tmp_path: Path,
    name: str,
    content: bytes,
    message: str,
) -> None:
    conn = await asyncpg.connect(reference_db)
    try:
        await conn.execute(f"SET ROLE {db.OPERATOR_ROLE}")
        await settle(conn, H1, 100)
        await close_day(conn)
        await export_payouts(conn, FIRST_DAY, debtor=FUND, created_at=_at())
        before = await entry_count(conn)
        statement = tmp_path / "bad"
        statement.write_bytes(content)
        run = _recon(env, statement, tmp_path / "out")
        assert run.returncode == 2, run.stdout + run.stderr
        assert message in run.stderr
        assert await entry_count(conn) == before
        assert await conn.fetchval("SELECT count(*) FROM bank_statements") == 0
        assert not (tmp_path / "out").exists()
    finally:
        await conn.close()


def _export(env: dict[str, str], out: Path) -> subprocess.CompletedProcess[str]:
    return _cli(env, "payouts", "export", "--date", "2026-11-20", "--out", str(out))


async def _two_payouts_closed(conn: asyncpg.Connection) -> int:
    """Settles for H1 and H2, closes the day as the operator's role; the entry count."""
    await conn.execute(f"SET ROLE {db.OPERATOR_ROLE}")
    await settle(conn, H1, 100)
    await settle(conn, H2, 200)
    await close_day(conn)
    return await entry_count(conn)


async def test_export_refuses_files_it_cannot_build_before_posting_anything(
    env: dict[str, str], reference_db: str, tmp_path: Path
) -> None:
    """A name with a control character crashed building the XML after the
    payouts were posted, on every run, with the day marked exported."""
    conn = await asyncpg.connect(reference_db)
    try:
        # import-reference refuses such a name now; a database loaded before may hold one
        await conn.execute("UPDATE institutions SET name = $1 WHERE code = $2", "Bad\x01Name", H2)
        before = await _two_payouts_closed(conn)
        out = tmp_path / "out"
        for _ in range(2):
            run = _export(env, out)
            assert run.returncode == 2, run.stdout + run.stderr
            assert f"'MS20261120{H2}': creditor name: contains U+0001" in run.stderr
            assert "nothing was posted" in run.stderr and "Traceback" not in run.stderr
        assert await entry_count(conn) == before
        assert await conn.fetchval("SELECT count(*) FROM payout_exports") == 0
        assert not out.exists()
    finally:
        await conn.close()


async def test_an_export_stopped_after_posting_is_finished_by_running_it_again(
    env: dict[str, str], reference_db: str, tmp_path: Path
) -> None:
    """The files are written after the payouts are posted: when that fails,
    the same command writes the same files and posts nothing twice."""
    conn = await asyncpg.connect(reference_db)
    try:
        before = await _two_payouts_closed(conn)
        blocked = tmp_path / "blocked"
        blocked.write_text("a file where the directory should be")
        failed = _export(env, blocked)
        assert failed.returncode == 2, failed.stdout + failed.stderr
        assert "in transit: run the export again" in failed.stderr
        posted = await entry_count(conn)
        assert posted == before + 2
        out = tmp_path / "out"
        for _ in range(2):
            again = _export(env, out)
            assert again.returncode == 0, again.stderr
            assert "nothing posted again" in again.stdout
        assert await entry_count(conn) == posted
        # the bytes of the first export (its creation time, stored), built again
        first = await export_payouts(conn, FIRST_DAY, debtor=FUND, created_at=_at())
        assert not first.posted
        assert (out / "payouts-20261120.csv").read_bytes() == first.files.csv
        assert (out / "payouts-20261120.xml").read_bytes() == first.files.xml
    finally:
        await conn.close()


def test_a_statement_that_never_ends_is_refused_at_the_size_limit(env, tmp_path: Path) -> None:
    """/dev/zero ended in a MemoryError traceback."""
    run = _recon(env, Path("/dev/zero"), tmp_path / "out")
    assert run.returncode == 2, run.stderr
    assert "/dev/zero: larger than" in run.stderr and "Traceback" not in run.stderr


def test_export_without_a_configured_fund_account_is_refused(env, tmp_path: Path) -> None:
    bare = {k: v for k, v in env.items() if k != "MEDSWITCH_FUND_ACCOUNT"}
    run = _cli(bare, "payouts", "export", "--date", "2026-11-20", "--out", str(tmp_path))
    assert run.returncode == 2 and "MEDSWITCH_FUND_ACCOUNT" in run.stderr


# --- close under load ---------------------------------------------------------------------

SETTLED_AROUND_THE_CLOSE = 30  # settlements committed before the close, and again after it


class Progress:
    """Counts settlements as they commit; the test waits for a count, not a duration."""

    def __init__(self) -> None:
        self.count = 0
        self._moved = asyncio.Event()

    def one_more(self) -> None:
        self.count += 1
        self._moved.set()

    async def reached(self, count: int) -> None:
        while self.count < count:
            self._moved.clear()
            await wait_for(self._moved.wait(), f"{count} settlements committed")


async def test_close_under_load_puts_every_settlement_in_exactly_one_day(reference_db) -> None:
    """Settlements keep committing while the day closes: each lands in D or D+1, and
    each day's clearing equals the sum of the settlements booked in it."""
    pool = await db.create_pool(reference_db, min_size=8, max_size=8)
    committed: list[tuple[str, int]] = []
    failures: list[str] = []
    stop = asyncio.Event()
    institutions = [H1, H2, H3]
    progress = Progress()

    async def writer(n: int) -> None:
        while not stop.is_set():
            amount = 100 + n
            try:
                async with pool.acquire() as c, c.transaction():
                    sid = await settle(c, institutions[n % 3], amount)
            except asyncpg.PostgresError as exc:
                failures.append(repr(exc))
                continue
            committed.append((sid, amount))
            progress.one_more()

    try:
        tasks = [asyncio.create_task(writer(n)) for n in range(6)]
        await progress.reached(SETTLED_AROUND_THE_CLOSE)
        operator = await asyncpg.connect(reference_db, server_settings={"role": db.OPERATOR_ROLE})
        try:
            result = await close_day(operator)
        finally:
            await operator.close()
        await progress.reached(progress.count + SETTLED_AROUND_THE_CLOSE)
        stop.set()
        await asyncio.gather(*tasks)
        async with pool.acquire() as c:
            booked = {
                r["settlement_id"]: r["business_date"]
                for r in await c.fetch("SELECT settlement_id, business_date FROM settlements")
            }
            clearing = await c.fetch(
                "SELECT institution_code, payout_fen, settlement_count FROM day_clearing"
                " WHERE business_date = $1",
                result.closed_date,
            )
            per_day = await c.fetch(
                "SELECT institution_code, sum(pooled_fund_fen)::bigint AS fen, count(*) AS n"
                " FROM settlements WHERE business_date = $1 GROUP BY 1",
                result.closed_date,
            )
    finally:
        await pool.close()
    # No settlement in flight is refused because of the close ...
    assert failures == []
    # ... and every acknowledged one is booked in exactly one of the two days.
    assert {sid for sid, _ in committed} == set(booked)
    days = set(booked.values())
    assert days == {result.closed_date, result.opened_date}, days
    assert {(r["institution_code"], r["payout_fen"], r["settlement_count"]) for r in clearing} == {
        (r["institution_code"], r["fen"], r["n"]) for r in per_day
    }


async def test_a_closed_day_never_changes_cancelling_into_it_is_refused(conn, ledger) -> None:
    from ledger.store import DayClosed

    sid = await settle(conn, H1, 900)
    await close_day(conn)
    with pytest.raises(DayClosed):
        await ledger.cancel((H1, "cancel-1"), b"fp", settlement_id=sid)
    rows = await conn.fetch("SELECT * FROM day_clearing WHERE business_date = $1", FIRST_DAY)
    assert [(r["institution_code"], r["payout_fen"]) for r in rows] == [(H1, 900)]
    assert await conn.fetchval("SELECT count(*) FROM cancellations") == 0


async def test_close_under_load_through_the_ledgers_settle_path(ledger, conn) -> None:
    """The same guarantee through the ledger's settle path (load, decide, record
    checked against the state loaded), several members and institutions at once."""
    from tests.integration.ledger_helpers import debit, settle

    acknowledged: list[str] = []
    failures: list[str] = []
    stop = asyncio.Event()
    progress = Progress()

    async def writer(n: int) -> None:
        institution = (H1, H2, H3)[n % 3]
        for k in itertools.count():
            if stop.is_set():
                return
            try:
                stored = await settle(
                    ledger,
                    (institution, f"w{n}-{k}"),
                    b"fp",
                    f"C33039900{n + 1:02d}",
                    debit(0, pooled_fen=100 + n),
                )
            except Exception as exc:  # every refusal is a finding here
                failures.append(repr(exc))
                continue
            acknowledged.append(stored.settlement_id)
            progress.one_more()

    tasks = [asyncio.create_task(writer(n)) for n in range(6)]
    await progress.reached(SETTLED_AROUND_THE_CLOSE)
    result = await close_day(conn)
    await progress.reached(progress.count + SETTLED_AROUND_THE_CLOSE)
    stop.set()
    await asyncio.gather(*tasks)
    assert failures == []
    booked = dict(await conn.fetch("SELECT settlement_id, business_date FROM settlements"))
    assert set(acknowledged) == set(booked)
    assert set(booked.values()) == {result.closed_date, result.opened_date}
    clearing = await conn.fetch(
        "SELECT institution_code, payout_fen FROM day_clearing WHERE business_date = $1",
        result.closed_date,
    )
    sums = await conn.fetch(
        "SELECT institution_code, sum(pooled_fund_fen)::bigint FROM settlements"
        " WHERE business_date = $1 GROUP BY 1",
        result.closed_date,
    )
    assert {tuple(r) for r in clearing} == {tuple(r) for r in sums}
