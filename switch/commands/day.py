"""`medswitch day close [--date D]`: close the open business day, open the next.

`medswitch day status` lists the latest days with where their end of day
stands (payouts, export, reconciliation).

Also the connection helper the other end-of-day commands share: the
database is migrated as the connecting user, then the work runs as the
operator's role (medswitch_operator), which can append to the ledger but
never rewrite it, and cannot write what only `serve` records (settlements,
cancellations, members' state).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any, TypeVar

import asyncpg

from ledger import db
from ledger.bankfiles.amounts import fen_to_yuan_text
from ledger.endofday import CloseResult, DayStatus, EndOfDayError, close_day, recent_days
from switch.commands.db import connect_url
from switch.config import Settings

T = TypeVar("T")
EXIT_OK = 0
EXIT_FAILED = 1  # the database could not be reached or failed
EXIT_REFUSED = 2  # bad input: nothing was changed


def iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


async def with_operator_connection(work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    settings = Settings.from_env()
    conn = await db.connect_app(
        connect_url(settings), role=db.OPERATOR_ROLE, app_login=settings.app_login
    )
    try:
        return await work(conn)
    finally:
        await conn.close()


def run_database_command(name: str, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T | int:
    """`work`'s result, or an exit code after printing why it could not run."""
    try:
        return asyncio.run(with_operator_connection(work))
    except EndOfDayError as exc:
        print(f"medswitch {name}: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except (db.SchemaMismatch, OSError, asyncpg.PostgresError) as exc:
        print(f"medswitch {name}: database: {exc}", file=sys.stderr)
        return EXIT_FAILED


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("day", help="business days (settlement windows)")
    sub = parser.add_subparsers(dest="day_command", required=True)
    close = sub.add_parser("close", help="close the open business day and open the next")
    close.add_argument(
        "--date",
        type=iso_date,
        default=None,
        help="the day to close; refused if another day is open (default: the open day)",
    )
    sub.add_parser("status", help="the latest business days and their end-of-day state")
    parser.set_defaults(func=run)


def _status() -> int:
    result = run_database_command("day status", recent_days)
    if isinstance(result, int):
        return result
    days: list[DayStatus] = result
    print("business_date  status  payouts  total_CNY        exported  statements  exceptions")
    for d in days:
        print(
            f"{d.business_date}     {d.status:<6}  {d.payout_count:>7}  "
            f"{fen_to_yuan_text(d.payout_total_fen):>15}  {'yes' if d.exported else 'no':<8}  "
            f"{d.statements:>10}  {d.open_exceptions:>10}"
        )
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    if args.day_command == "status":
        return _status()

    async def work(conn: asyncpg.Connection) -> CloseResult:
        return await close_day(conn, expected_date=args.date)

    result = run_database_command("day close", work)
    if isinstance(result, int):
        return result
    print(
        f"closed {result.closed_date}: {result.institution_count} institutions,"
        f" {result.payout_count} payouts, {fen_to_yuan_text(result.payout_total_fen)} CNY;"
        f" {len(result.receivables_fen)} receivables carried forward;"
        f" opened {result.opened_date}"
    )
    return EXIT_OK
