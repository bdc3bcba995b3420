"""End-of-day benchmark: close, export and reconcile a day of a million settlements.

A business day of `--settlements` settlements (default 1,000,000) across
`--institutions` institutions (default 5,000) is loaded as the owner: their
entries through the posting function (`ms_post_set`, 10,000 a call) and
their rows into the settlements table with COPY (the settle path has its own
benchmark; here only the end of day is measured). Then, timed one by one, as
the operator's role, exactly what the commands do:

1. close: `ledger.endofday.close_day` (records checked against entries,
   clearing per institution from the ledger, netting);
2. export: `export_payouts` + `write_payout_files` (CSV and pain.001);
3. reconcile: a camt.053.001.02 statement of the bank paying every payout
   (a few exceptions mixed in) is read with all checks, matched, recorded and
   posted, and the report written.

Prints each step and the total; exits 1 if the total exceeds `--budget-s`.
Uses a throw-away embedded PostgreSQL (or MEDSWITCH_DATABASE_URL, where it
creates and drops a database of its own).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger import accounts, db
from ledger.bankfiles import CREDIT, DEBIT, StatementEntry, read_statement
from ledger.bankfiles.pain001 import DebtorAccount
from ledger.bankfiles.simulate import camt053_statement
from ledger.endofday import (
    close_day,
    expected_payouts,
    export_payouts,
    record_reconciliation,
)
from ledger.payouts import write_payout_files
from ledger.recon import match_statement
from ledger.recon_report import ReportContext, write_recon_files

DAY = date(2026, 11, 20)
FUND = DebtorAccount("6222020200112233445", "Bench fund", agent_id="102331000016")
MEMBERS_MAX = 100_000
BATCH = 10_000


async def post_entries(
    conn: asyncpg.Connection, kind: str, entries: list[tuple[str, list[tuple[str, int]]]]
) -> list[int]:
    """Entries of one kind in one ms_post_set call (as the owner); their ids, in order."""
    entry_of, keys, amounts = [], [], []
    for n, (_, legs) in enumerate(entries, start=1):
        for key, fen in legs:
            entry_of.append(n)
            keys.append(key)
            amounts.append(fen)
    ids: list[int] = await conn.fetchval(
        "SELECT ms_post_set($1, $2::text[], $3::integer[], $4::text[], $5::bigint[])",
        kind,
        [ref for ref, _ in entries],
        entry_of,
        keys,
        amounts,
    )
    return ids


async def load_day(conn: asyncpg.Connection, settlements: int, institutions: int) -> None:
    codes = [f"H330399{i:05d}" for i in range(institutions)]
    await conn.copy_records_to_table(
        "institutions",
        records=[(c, f"Institution {c}", "HOSPITAL", "L2", "330399", "ACTIVE") for c in codes],
        columns=("code", "name", "kind", "level", "region", "status"),
    )
    await conn.copy_records_to_table(
        "accounts",
        records=[
            row
            for c in codes
            for row in (
                (accounts.institution_payable(c), "INSTITUTION_PAYABLE", "CREDIT"),
                (accounts.institution_receivable(c), "INSTITUTION_RECEIVABLE", "DEBIT"),
            )
        ],
        columns=("account_key", "kind", "normal_side"),
    )
    # Members' accounts, each with enough for its share of the day.
    members = [f"M{m:07d}" for m in range(min(MEMBERS_MAX, settlements))]
    await conn.copy_records_to_table(
        "accounts",
        records=[(accounts.member_account(m), "MEMBER_INDIVIDUAL", "CREDIT") for m in members],
        columns=("account_key", "kind", "normal_side"),
    )
    await post_entries(
        conn,
        "OPENING",
        [
            (
                "bench-opening",
                [(accounts.OPENING_BALANCE, 10**7 * len(members))]
                + [(accounts.member_account(m), -(10**7)) for m in members],
            )
        ],
    )
    rng = random.Random(7)
    for start in range(0, settlements, BATCH):
        rows = []
        legs = []
        for n in range(start, min(start + BATCH, settlements)):
            pooled = rng.randrange(1, 50_000)
            serious = rng.randrange(0, 5_000) if n % 10 == 0 else 0
            account = rng.randrange(0, 3_000)
            member, code = members[n % len(members)], codes[n % institutions]
            legs.append(
                accounts.settlement_postings(
                    member,
                    code,
                    pooled_fund_fen=pooled,
                    serious_illness_fen=serious,
                    individual_account_fen=account,
                )
            )
            rows.append(
                (
                    f"S{n:015d}",
                    code,
                    f"r{n}",
                    b"f",
                    "SETTLED",
                    member,
                    DAY,
                    pooled + serious + account + 1_000,
                    pooled,
                    serious,
                    account,
                    "{}",
                )
            )
        entry_ids = await post_entries(
            conn, "SETTLEMENT", [(row[0], leg) for row, leg in zip(rows, legs, strict=True)]
        )
        await conn.copy_records_to_table(
            "settlements",
            records=[(*row, entry) for row, entry in zip(rows, entry_ids, strict=True)],
            columns=(
                "settlement_id",
                "institution_code",
                "request_id",
                "fingerprint",
                "status",
                "member_id",
                "business_date",
                "total_fen",
                "pooled_fund_fen",
                "serious_illness_fen",
                "individual_account_fen",
                "answer",
                "entry_id",
            ),
        )
    await conn.execute("ANALYZE settlements, entries, postings")


async def run(url: str, settlements: int, institutions: int, out: Path) -> dict[str, float]:
    conn = await asyncpg.connect(url)
    try:
        await db.migrate(conn, first_day=DAY)
        t0 = time.perf_counter()
        await load_day(conn, settlements, institutions)  # as the owner
        await conn.execute(f"SET ROLE {db.OPERATOR_ROLE}")
        print(f"loaded {settlements:,} settlements in {time.perf_counter() - t0:.1f} s")
        timings: dict[str, float] = {}
        created_at = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)

        t = time.perf_counter()
        closed = await close_day(conn, expected_date=DAY)
        timings["close"] = time.perf_counter() - t
        print(f"close: {closed.institution_count:,} institutions, {closed.payout_count:,} payouts")

        t = time.perf_counter()
        exported = await export_payouts(conn, DAY, debtor=FUND, created_at=created_at)
        write_payout_files(out, exported.files)
        timings["export"] = time.perf_counter() - t

        # The bank's statement (not timed): every payout paid, one short, one
        # missing, one duplicated, one returned and a fee.
        def paid(e2e: str, fen: int, ref: str, direction: str = DEBIT) -> StatementEntry:
            return StatementEntry("", DAY + timedelta(1), None, direction, fen, e2e, ref, "", "")

        entries = [
            paid(p.end_to_end_id, p.amount_fen, f"B{n}") for n, p in enumerate(exported.payouts[1:])
        ]
        entries[0] = paid(entries[0].end_to_end_id, entries[0].amount_fen - 1, "B0")
        entries.append(paid(entries[5].end_to_end_id, entries[5].amount_fen, "BDUP"))
        entries.append(paid(entries[6].end_to_end_id, entries[6].amount_fen, "BRET", CREDIT))
        entries.append(paid("", 1500, "FEE"))
        statement_path = out / "statement.xml"
        statement_path.write_bytes(
            camt053_statement(
                account_id=FUND.account_id,
                entries=entries,
                opening_balance_fen=10**13,
                created_at=created_at,
            )
        )

        t = time.perf_counter()
        statement = read_statement(
            statement_path.read_bytes(),
            source=str(statement_path),
            fund_account_id=FUND.account_id,
        )
        recon = match_statement(DAY, await expected_payouts(conn, DAY), statement.entries)
        record = await record_reconciliation(
            conn, recon, statement, source_name=statement_path.name, account_id=FUND.account_id
        )
        write_recon_files(
            out,
            recon,
            ReportContext(statement_path.name, statement.format, FUND.account_id, True, created_at),
        )
        timings["reconcile"] = time.perf_counter() - t
        totals = {s: t.count for s, t in recon.totals_by_status().items() if t.count}
        print(
            f"reconcile: {len(statement.entries):,} entries, {record.entries_posted:,} "
            f"ledger entries posted, {totals}"
        )
        return timings
    finally:
        await conn.close()


async def main_async(args: argparse.Namespace) -> int:
    import os

    out = Path(tempfile.mkdtemp(prefix="bench-eod-"))
    external = os.environ.get("MEDSWITCH_DATABASE_URL")
    server = None
    if external:
        base = external
    else:
        from ledger.pgserver_import import import_pgserver

        server = import_pgserver().get_server(
            Path(tempfile.mkdtemp(prefix="mspg-")) / "pg", cleanup_mode="stop"
        )
        base = str(server.get_uri())
    name = f"bench_eod_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(base)
    await admin.execute(f"CREATE DATABASE {name}")
    prefix, _, query = base.partition("?")
    url = f"{prefix.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")
    try:
        timings = await run(url, args.settlements, args.institutions, out)
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()
        if server is not None:
            server.cleanup()
    total = sum(timings.values())
    for step, seconds in timings.items():
        print(f"{step:>10}: {seconds:7.2f} s")
    print(f"{'total':>10}: {total:7.2f} s (budget {args.budget_s:.0f} s); files in {out}")
    return 0 if total <= args.budget_s else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settlements", type=int, default=1_000_000)
    parser.add_argument("--institutions", type=int, default=5_000)
    parser.add_argument("--budget-s", type=float, default=120.0)
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
