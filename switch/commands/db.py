"""`medswitch db start|stop|status`: the embedded PostgreSQL, and how every
command finds its database.

`connect_url(settings)` is what the other commands use: the external
MEDSWITCH_DATABASE_URL when set, else the embedded server (started on
demand). `open_ledger(settings)` also migrates and returns an application
pool and the data keys.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import asyncpg

from ledger import db
from ledger.crypto import DataKeys, check_opens_database
from switch.config import Settings


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("db", help="manage the embedded PostgreSQL")
    sub = parser.add_subparsers(dest="db_command", required=True)
    sub.add_parser("start", help="start the embedded server and bring its schema up to date")
    sub.add_parser("stop", help="stop the embedded server")
    sub.add_parser("status", help="print the connection URL and schema version")
    parser.set_defaults(func=run)


def connect_url(settings: Settings) -> str:
    return db.database_url(settings.data_dir, settings.database_url)


async def open_ledger(settings: Settings, **pool_kwargs: Any) -> tuple[asyncpg.Pool, DataKeys]:
    """Migrated database, application-role pool and data keys, for any command."""
    keys = DataKeys.from_settings(settings.data_dir)
    pool = await db.open_database(
        connect_url(settings), app_login=settings.app_login, **pool_kwargs
    )
    try:
        async with pool.acquire() as conn:
            await check_opens_database(keys, conn)
    except BaseException:
        await pool.close()
        raise
    return pool, keys


async def _status(url: str) -> tuple[int, int]:
    conn = await db.connect(url)
    try:
        return await db.schema_version(conn), len(db.migrations())
    finally:
        await conn.close()


async def _start(url: str) -> list[int]:
    conn = await db.connect(url)
    try:
        await db.check_durability(conn)
        return await db.migrate(conn)
    finally:
        await conn.close()


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    try:
        if args.db_command == "stop":
            if settings.database_url:
                print("medswitch db: MEDSWITCH_DATABASE_URL is set; nothing embedded to stop")
                return 0
            stopped = db.stop_embedded(settings.data_dir)
            print("stopped" if stopped else "not running")
            return 0
        if args.db_command == "start":
            url = connect_url(settings)
            applied = asyncio.run(_start(url))
            print(db.redact_url(url))
            if applied:
                print(f"applied migrations {applied}")
            return 0
        # status
        if settings.database_url:
            url = settings.database_url
        else:
            found = db.embedded_url(settings.data_dir, start=False)
            if found is None:
                print(f"embedded PostgreSQL under {db.pg_dir(settings.data_dir)}: not running")
                return 0
            url = found
        current, known = asyncio.run(_status(url))
        print(db.redact_url(url))
        print(f"schema version {current} (this code: {known})")
        return 0
    except db.SchemaMismatch as exc:
        print(f"medswitch db: {exc}", file=sys.stderr)
        return 1
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"medswitch db: {exc}", file=sys.stderr)
        return 1
