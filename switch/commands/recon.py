"""`medswitch recon bank --date D --statement FILE --out DIR`: reconcile a statement.

Reads the bank statement (camt.053.001.02 or CSV, by content), matches it
against the day's exported payouts, records and posts the result once, and
writes recon-YYYYMMDD.csv and .html. Exit 0 when every line matched, 3 when
the report lists exceptions, 2 on unusable input (nothing posted), 1 when
the database failed.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from ledger.bankfiles.statement import read_statement, read_statement_file
from ledger.db import REGION_TZ
from ledger.endofday import ReconRecord, expected_payouts, record_reconciliation
from ledger.recon import EXIT_UNUSABLE_INPUT, Reconciliation, match_statement
from ledger.recon_report import ReportContext, write_recon_files
from switch.commands.day import iso_date, run_database_command
from switch.commands.payouts import add_fund_options, fund_account


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("recon", help="reconciliation")
    sub = parser.add_subparsers(dest="recon_command", required=True)
    bank = sub.add_parser("bank", help="reconcile a bank statement against a day's payouts")
    bank.add_argument("--date", type=iso_date, required=True, help="the payouts' business day")
    bank.add_argument("--statement", type=Path, required=True, help="camt.053 XML or CSV")
    bank.add_argument("--out", type=Path, required=True, help="directory for the report")
    add_fund_options(bank)
    parser.set_defaults(func=run)


def _refuse(message: str) -> int:
    print(f"medswitch recon bank: {message}", file=sys.stderr)
    return EXIT_UNUSABLE_INPUT


def run(args: argparse.Namespace) -> int:
    try:
        account_id = fund_account(args).account_id
        data = read_statement_file(args.statement)
        statement = read_statement(data, source=str(args.statement), fund_account_id=account_id)
    except (ValueError, OSError) as exc:  # StatementError is a ValueError
        return _refuse(str(exc))

    async def work(conn: asyncpg.Connection) -> tuple[Reconciliation, ReconRecord]:
        expected = await expected_payouts(conn, args.date)
        recon = match_statement(args.date, expected, statement.entries)
        record = await record_reconciliation(
            conn, recon, statement, source_name=args.statement.name, account_id=account_id
        )
        return recon, record

    result = run_database_command("recon bank", work)
    if isinstance(result, int):
        return result
    recon, record = result
    context = ReportContext(
        statement_name=args.statement.name,
        statement_format=statement.format,
        account_id=statement.account_id or account_id,
        balances_checked=statement.balances_checked,
        generated_at=datetime.now(UTC).astimezone(REGION_TZ).replace(microsecond=0),
    )
    try:
        csv_path, html_path = write_recon_files(args.out, recon, context)
    except OSError as exc:
        return _refuse(f"{args.out}: {exc}")
    totals = ", ".join(f"{s} {t.count}" for s, t in recon.totals_by_status().items() if t.count)
    posted = (
        "statement reconciled before; nothing posted again"
        if record.already_recorded
        else f"{record.entries_posted} ledger entries posted"
    )
    print(f"{totals or 'nothing to reconcile'} ({posted}): {csv_path}, {html_path}")
    return recon.exit_code
