"""`medswitch ledger verify`: recompute the books and re-walk the hash chains.

Exit 0 when sound, 1 naming the first bad entry (and up to 19 more problems).
Runs as the connecting (owner) user, read-only.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import asyncpg

from ledger import chain, db
from switch.commands.db import connect_url
from switch.config import Settings


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("ledger", help="ledger maintenance")
    sub = parser.add_subparsers(dest="ledger_command", required=True)
    verify = sub.add_parser(
        "verify", help="check balances, entry sums and the tamper-evident chains"
    )
    verify.add_argument(
        "--anchor",
        type=Path,
        metavar="FILE",
        help="chain ends recorded by the last sound run: each must still be on its chain;"
        " a sound run records the new ends (keep FILE where the database's owner cannot"
        " write)",
    )
    verify.add_argument(
        "--first-anchor",
        action="store_true",
        help="FILE does not exist yet: start recording (refused if it does)",
    )
    parser.set_defaults(func=run)


async def _verify(url: str, anchors: dict[int, chain.ChainEnd] | None = None) -> chain.VerifyReport:
    conn = await db.connect(url)
    try:
        await db.migrate(conn)
        return await chain.verify(conn, anchors=anchors)
    finally:
        await conn.close()


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    anchor: Path | None = args.anchor
    try:
        if args.first_anchor and not anchor:
            raise ValueError("--first-anchor needs --anchor FILE")
        anchors = chain.read_anchors(anchor, first=args.first_anchor) if anchor else None
    except ValueError as exc:
        print(f"medswitch ledger verify: {exc}", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(_verify(connect_url(settings), anchors))
    except (db.SchemaMismatch, OSError, asyncpg.PostgresError) as exc:
        print(f"medswitch ledger verify: {exc}", file=sys.stderr)
        return 1
    for line in report.problems:
        print(f"BAD: {line}")
    print(
        f"{report.entries} entries, {report.postings} postings in {report.lanes} lanes,"
        f" {report.balances} balances: {'sound' if report.sound else 'NOT SOUND'}"
    )
    if anchor and report.sound:
        chain.write_anchors(anchor, report.ends)
        print(f"anchored the ends of {len(report.ends)} lanes in {anchor}")
    return 0 if report.sound else 1
