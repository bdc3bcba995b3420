"""`medswitch payouts export --date D --out DIR`: the closed day's payout files.

Builds payouts-YYYYMMDD.csv and the pain.001.001.03 payouts-YYYYMMDD.xml the
fund's bank executes, then moves the payouts into "in transit" in the ledger
and writes the files. Once: exporting the same day again rewrites identical
files and posts nothing, so an export stopped after it posted is finished by
running it again. A file that cannot be built is refused before anything is
posted.

The paying account is configuration, from the environment or options:
MEDSWITCH_FUND_ACCOUNT (IBAN or the bank's account number, required),
MEDSWITCH_FUND_NAME, MEDSWITCH_FUND_BANK_BIC, MEDSWITCH_FUND_BANK_CODE.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from ledger.bankfiles.amounts import fen_to_yuan_text
from ledger.bankfiles.pain001 import DebtorAccount
from ledger.db import REGION_TZ
from ledger.endofday import ExportResult, export_payouts
from ledger.payouts import write_payout_files
from switch.commands.day import EXIT_OK, EXIT_REFUSED, iso_date, run_database_command

DEFAULT_FUND_NAME = "MedSwitch medical insurance fund"


def add_fund_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the fund's bank account (or MEDSWITCH_FUND_* variables)")
    group.add_argument("--fund-account", help="IBAN or account number [MEDSWITCH_FUND_ACCOUNT]")
    group.add_argument("--fund-name", help="account owner name [MEDSWITCH_FUND_NAME]")
    group.add_argument("--fund-bank-bic", help="the bank's BIC [MEDSWITCH_FUND_BANK_BIC]")
    group.add_argument(
        "--fund-bank-code", help="the bank's national code, e.g. CNAPS [MEDSWITCH_FUND_BANK_CODE]"
    )


def fund_account(args: argparse.Namespace, env: dict[str, str] | None = None) -> DebtorAccount:
    """The fund's account from options, else the environment; ValueError if unset."""
    env = dict(os.environ) if env is None else env
    account = (args.fund_account or env.get("MEDSWITCH_FUND_ACCOUNT", "")).strip()
    if not account:
        raise ValueError(
            "the fund's bank account is not configured: set MEDSWITCH_FUND_ACCOUNT "
            "or pass --fund-account"
        )
    return DebtorAccount(
        account_id=account,
        owner_name=(args.fund_name or env.get("MEDSWITCH_FUND_NAME") or DEFAULT_FUND_NAME),
        agent_bic=args.fund_bank_bic or env.get("MEDSWITCH_FUND_BANK_BIC") or None,
        agent_id=args.fund_bank_code or env.get("MEDSWITCH_FUND_BANK_CODE") or None,
    )


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("payouts", help="payouts to institutions")
    sub = parser.add_subparsers(dest="payouts_command", required=True)
    export = sub.add_parser("export", help="write a closed day's payout files (CSV, pain.001)")
    export.add_argument("--date", type=iso_date, required=True, help="the closed business day")
    export.add_argument("--out", type=Path, required=True, help="directory for the files")
    add_fund_options(export)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        debtor = fund_account(args)
    except ValueError as exc:
        print(f"medswitch payouts export: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    now = datetime.now(UTC).astimezone(REGION_TZ).replace(microsecond=0)

    async def work(conn: asyncpg.Connection) -> ExportResult:
        return await export_payouts(conn, args.date, debtor=debtor, created_at=now)

    result = run_database_command("payouts export", work)
    if isinstance(result, int):
        return result
    try:
        csv_path, xml_path = write_payout_files(args.out, result.files)
    except OSError as exc:
        again = "; the payouts are in transit: run the export again to write the files"
        print(
            f"medswitch payouts export: {args.out}: {exc}" + (again if result.posted else ""),
            file=sys.stderr,
        )
        return EXIT_REFUSED
    total_fen = sum(p.amount_fen for p in result.payouts)
    posted = "moved into transit" if result.posted else "exported before; nothing posted again"
    print(
        f"{len(result.payouts)} payouts, {fen_to_yuan_text(total_fen)} CNY ({posted}): "
        f"{csv_path}" + (f", {xml_path}" if xml_path else " (no XML: nothing to pay)")
    )
    return EXIT_OK
