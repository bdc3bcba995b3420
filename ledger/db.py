"""Where the database is, and making sure its schema is the one this code expects.

With no MEDSWITCH_DATABASE_URL the switch runs on an embedded PostgreSQL
(the `pgserver` package) whose cluster lives under `$MEDSWITCH_DATA_DIR/pg`
and is started on demand; it keeps running between commands until
`medswitch db stop`. Durability settings (fsync, synchronous_commit) are the
PostgreSQL defaults and are checked, never relaxed.

The schema is `ledger/migrations/0001_baseline.sql`, the whole schema of a
new database; changes after it are further numbered files
(`NNNN_name.sql`, numbered 1..n without gaps), applied in order, each in its
own transaction, under an advisory lock so two processes starting at once
do not race, and recorded (number and name) in `schema_version`. A database
whose schema is newer than this code is refused, and so is one whose
recorded migrations are not this code's (made by an unreleased build from
before the baseline, or by another branch). ledger/schema.snapshot
describes the schema the migrations make (tests/schema_catalog.py).

`medswitch serve` works as the role `medswitch_app`: it reads, and writes
only through the owner's functions (the baseline's rights). The operator's commands
that write (import-reference, day, payouts, recon) work as
`medswitch_operator`, which holds the direct writes they make. Migrations,
`db` and `ledger verify` run as the connecting (owner) user.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from ledger.pgserver_import import import_pgserver

APP_ROLE = "medswitch_app"
OPERATOR_ROLE = "medswitch_operator"
ROLES = (APP_ROLE, OPERATOR_ROLE)
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
MIGRATION_LOCK_KEY = 0x4D535357  # "MSSW": one advisory lock for schema changes
REGION_TZ = ZoneInfo("Asia/Shanghai")
POOL_SIZE_MAX = 20
COMMAND_TIMEOUT_S = 60.0


SERVER_VERSION_NUM_MIN = 150000  # PostgreSQL 15


class SchemaMismatch(RuntimeError):
    """The database's schema is not one this code can bring up to date."""


class SchemaTooNew(SchemaMismatch):
    """The database was migrated by newer code than this."""


class SchemaDiverged(SchemaMismatch):
    """The database's recorded migrations are not this code's (same number,
    another name): made by a build from before the schema baseline, or by a
    branch whose migrations this code does not have."""


class NoOpenDay(RuntimeError):
    """No business day is open (the database was not initialised)."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = re.fullmatch(r"(\d{4})_(\w+)\.sql", path.name)
        if match is None:
            raise RuntimeError(f"{path}: migration files are named NNNN_name.sql")
        found.append(Migration(int(match.group(1)), match.group(2), path.read_text("utf-8")))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..n without gaps, found {versions}")
    return found


class NoWritableHost(ConnectionError):
    """No host of a multi-host URL accepts writes now: a failover in progress.

    A ConnectionError, so callers treat it like any unreachable database
    (UNAVAILABLE, retried), not as asyncpg's client-side error it was.
    """


async def connect(dsn: str, **kwargs: Any) -> asyncpg.Connection:
    """asyncpg.connect, for every connection MedSwitch opens (pools included).

    A URL may name several hosts (`postgresql://h1:5432,h2:5432/db?target_
    session_attrs=read-write`); asyncpg tries them in order. While none of
    those that answer is a primary (between a primary's demotion and a
    standby's promotion) it raises TargetServerAttributeNotMatched, which
    here becomes NoWritableHost.
    """
    try:
        return await asyncpg.connect(dsn, **kwargs)
    except asyncpg.TargetServerAttributeNotMatched as exc:
        raise NoWritableHost(str(exc)) from exc


class Probe:
    """Whether the database answers now, asked on a connection of its own.

    Not through the application pool: while every pooled connection is busy
    (under load, or all stuck on a frozen server) the pool cannot tell a
    busy database from one that stopped answering, and a probe waiting for
    a pooled connection would wait behind the load. The connection is kept
    from one check to the next and dropped after any failure (a timed-out
    statement leaves it unusable); the next check connects again.
    """

    def __init__(self, url: str, *, app_login: bool = False) -> None:
        self.url = url  # multi-host: the primary is found as for the pool
        self._role = as_role_args(APP_ROLE, app_login=app_login)  # as the pool's do
        self._conn: asyncpg.Connection | None = None

    async def check(self, timeout_s: float) -> None:
        """Returns once the database answered within `timeout_s`; raises
        TimeoutError, or the connection's own error, if it did not."""
        try:
            async with asyncio.timeout(timeout_s):
                if self._conn is None or self._conn.is_closed():
                    self._conn = await connect(self.url, **self._role)
                await self._conn.fetchval("SELECT 1")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Drops the connection at once, without a word to a server that may not answer."""
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None


class ConfigError(ValueError):
    """A setting that cannot be used as given."""


def configured_first_day() -> date | None:
    """MEDSWITCH_FIRST_DAY (--first-day): the first business day of a new database."""
    value = os.environ.get("MEDSWITCH_FIRST_DAY", "").strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"MEDSWITCH_FIRST_DAY: {value!r} is not a date (YYYY-MM-DD)") from None


def pg_dir(data_dir: Path) -> Path:
    return data_dir / "pg"


# What a new embedded cluster is created with, instead of initdb's defaults
# sized for a laptop (128 MB of shared buffers made the backends write out
# dirty pages themselves under load). Set once, when the cluster is made; an
# operator's later ALTER SYSTEM stays in force. fsync, synchronous_commit and
# full_page_writes stay on (check_durability).
#
# Each new 16 MB WAL segment was written full of zeroes and flushed while
# every commit waited: at 600 Settle/s, a stall of 60-100 ms every 8 s, most
# of the open loop's p99 (BENCHMARKS.md). A new segment is now made without
# the zeroes (wal_init_zero; a full disk then shows when WAL is written, and
# the server stops, instead of when a segment is made), and a checkpoint keeps
# 1 GB of old segments to reuse (min_wal_size) rather than making new ones.
EMBEDDED_SETTINGS = {
    "shared_buffers": "1GB",
    "max_wal_size": "4GB",
    "min_wal_size": "1GB",
    "wal_init_zero": "off",
    "checkpoint_timeout": "15min",
}


def embedded_url(data_dir: Path, *, start: bool = True) -> str | None:
    """The URL of the embedded server, started if needed (None if not running and not start)."""
    directory = pg_dir(data_dir).resolve()
    if not start and not (directory / "postmaster.pid").exists():
        return None
    pgserver = import_pgserver()  # lazily: an external database needs no binaries
    directory.mkdir(parents=True, exist_ok=True)
    if not (directory / "PG_VERSION").exists():
        made = pgserver.get_server(directory, cleanup_mode="stop")
        for name, value in EMBEDDED_SETTINGS.items():
            made.psql(f"ALTER SYSTEM SET {name} = '{value}';")
        made.cleanup()  # stopped, so that the next start reads the settings
    server = pgserver.get_server(directory, cleanup_mode=None)
    return str(server.get_uri())


def stop_embedded(data_dir: Path) -> bool:
    """Stop the embedded server if it runs; True if it was running.

    pg_ctl stops it in fast mode whoever else uses it: a `medswitch serve`
    still connected has its sessions ended (their open transactions roll
    back; nothing committed is lost). pgserver's own cleanup stops a server
    only when the last process holding a handle to it lets go, so `db stop`
    said "stopped" while a running switch kept it up.
    """
    directory = pg_dir(data_dir).resolve()
    if not (directory / "postmaster.pid").exists():
        return False
    pgserver = import_pgserver()
    from pgserver import _commands

    # This process's handle (embedded_url's, or a new one) is let go without
    # stopping anything, and forgotten: a later embedded_url starts afresh.
    server = pgserver.get_server(directory, cleanup_mode=None)
    server.cleanup_mode = None
    server.cleanup()
    pgserver.PostgresServer._instances.pop(directory, None)
    if (directory / "postmaster.pid").exists():
        _commands.pg_ctl(
            ["-w", "-t", "60", "-m", "fast", "stop"], pgdata=directory, user=server.system_user
        )
    return True


def database_url(data_dir: Path, external_url: str | None) -> str:
    return external_url if external_url else str(embedded_url(data_dir))


async def schema_version(conn: asyncpg.Connection) -> int:
    exists = await conn.fetchval("SELECT to_regclass('public.schema_version') IS NOT NULL")
    if not exists:
        return 0
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))


async def migrate(
    conn: asyncpg.Connection,
    *,
    directory: Path = MIGRATIONS_DIR,
    first_day: date | None = None,
) -> list[int]:
    """Bring the schema up to date; returns the versions applied (empty if current).

    Safe to run any number of times and from several processes at once.
    Opens the first business day when the database is new.
    """
    day = first_day or configured_first_day() or datetime.now(REGION_TZ).date()
    await check_server_version(conn)
    wanted = migrations(directory)
    applied: list[int] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = await _check_applied(conn, wanted)
        for migration in wanted[current:]:
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_version (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            applied.append(migration.version)
        is_super = await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        if not is_super:  # let the owner act as either role
            for role in ROLES:
                await conn.execute(f"GRANT {role} TO CURRENT_USER")
        await conn.execute(
            "INSERT INTO business_days (business_date, status)"
            " SELECT $1, 'OPEN' WHERE NOT EXISTS (SELECT 1 FROM business_days)",
            day,
        )
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    return applied


async def _check_applied(conn: asyncpg.Connection, wanted: list[Migration]) -> int:
    """The database's schema version, if its recorded migrations are `wanted`'s
    first ones (SchemaDiverged if not, SchemaTooNew if it has more)."""
    applied = await conn.fetch("SELECT version, name FROM schema_version ORDER BY version")
    for row in applied:
        if row["version"] > len(wanted):
            break
        ours = wanted[row["version"] - 1].name
        if row["name"] != ours:
            raise SchemaDiverged(
                f"the database's migration {row['version']} is {row['name']!r} but this "
                f"code's is {ours!r}: it was made by other migrations than this code's (an "
                "unreleased build from before the schema baseline, or another branch). Use "
                "the build that made it, or start from a new database (the embedded one: "
                "`medswitch db stop`, move $MEDSWITCH_DATA_DIR/pg aside) and import the "
                "reference data again"
            )
    current = applied[-1]["version"] if applied else 0
    if current > len(wanted):
        raise SchemaTooNew(
            f"the database schema is version {current} but this code knows only up to "
            f"{len(wanted)}; upgrade MedSwitch before using this database"
        )
    return int(current)


async def _init_connection(conn: asyncpg.Connection) -> None:
    import json

    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release without asyncpg's default reset query (one round trip per call).

    Nothing here leaves session state behind: locks are transaction-scoped
    (pg_advisory_xact_lock), no cursors, LISTEN or SET outlive a call, and the
    role is a connection parameter. asyncpg still rolls back an open
    transaction before calling this.
    """


def as_role_args(role: str, *, app_login: bool) -> dict[str, Any]:
    """Connection arguments that make a connection act as `role`: logging in as
    it (app_login), or taking it as a connection parameter (create_pool)."""
    if app_login:
        return {"user": role, "server_settings": {}}
    return {"server_settings": {"role": role}}


async def create_pool(
    url: str,
    *,
    min_size: int = 2,
    max_size: int = POOL_SIZE_MAX,
    role: str = APP_ROLE,
    app_login: bool = False,
    **kwargs: Any,
) -> asyncpg.Pool:
    """A pool whose connections act as `role` (the application role by default).

    With app_login they log in as the role itself, so no statement sent on
    them can take the owner's rights (SET ROLE, RESET ROLE); otherwise they
    log in as the URL's user and take the role as a connection parameter.
    """
    pool = await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_keep_session,
        command_timeout=COMMAND_TIMEOUT_S,
        connect=connect,
        **as_role_args(role, app_login=app_login),
        **kwargs,
    )
    assert pool is not None
    return pool


async def open_database(
    url: str,
    *,
    first_day: date | None = None,
    role: str = APP_ROLE,
    app_login: bool = False,
    **pool_kwargs: Any,
) -> asyncpg.Pool:
    """Migrate (as the connecting user) and return a pool acting as `role`.

    app_login, for the embedded server (whose local connections need no
    password): the role may log in and the pool logs in as it (create_pool).
    An external server's operator decides how its roles log in; there the
    pool takes the role as a connection parameter.
    """
    conn = await connect(url)
    try:
        await _prepare(conn, first_day=first_day, login_role=role if app_login else None)
    finally:
        await conn.close()
    return await create_pool(url, role=role, app_login=app_login, **pool_kwargs)


async def connect_app(
    url: str, *, role: str = APP_ROLE, app_login: bool = False
) -> asyncpg.Connection:
    """One connection acting as `role`, by open_database's rules (with
    app_login it logs in as the role, otherwise it takes it)."""
    conn = await connect(url)
    try:
        await _prepare(conn, first_day=None, login_role=role if app_login else None)
        if not app_login:
            await conn.execute(f"SET ROLE {_known(role)}")
            return conn
    except BaseException:
        await conn.close()
        raise
    await conn.close()
    return await connect(url, user=role)


async def _prepare(
    conn: asyncpg.Connection, *, first_day: date | None, login_role: str | None
) -> None:
    """As the owner: migrate, refuse a server that loses commits, and let
    `login_role` (one of ROLES) log in."""
    await migrate(conn, first_day=first_day)
    await check_durability(conn)
    if login_role is not None:
        await conn.execute(f"ALTER ROLE {_known(login_role)} LOGIN")


def _known(role: str) -> str:
    """`role`, if it is one of MedSwitch's (it is put into SQL as a name)."""
    if role not in ROLES:
        raise ValueError(f"{role!r} is not one of MedSwitch's roles {ROLES}")
    return role


async def check_durability(conn: asyncpg.Connection) -> None:
    """Refuse to run where commits would not survive a crash."""
    for name in ("fsync", "synchronous_commit", "full_page_writes"):
        value = await conn.fetchval(f"SHOW {name}")
        if value != "on":
            raise ConfigError(f"PostgreSQL {name} is {value!r}; MedSwitch needs it on")


async def check_server_version(conn: asyncpg.Connection) -> None:
    """Refuse a server older than PostgreSQL 15 (the migrations use 15's features)."""
    number = int(await conn.fetchval("SHOW server_version_num"))
    if number < SERVER_VERSION_NUM_MIN:
        shown = await conn.fetchval("SHOW server_version")
        raise ConfigError(f"PostgreSQL {shown} is too old; MedSwitch needs 15 or newer")


async def open_day(conn: asyncpg.Connection) -> date:
    day = await conn.fetchval("SELECT business_date FROM business_days WHERE status = 'OPEN'")
    if day is None:
        raise NoOpenDay("no business day is open")
    result: date = day
    return result


def redact_url(url: str) -> str:
    """The URL without a password, fit for printing."""
    return re.sub(r"(//[^:/@]+):[^@]*@", r"\1:***@", url)


__all__: Sequence[str] = (
    "APP_ROLE",
    "OPERATOR_ROLE",
    "ROLES",
    "NoWritableHost",
    "Probe",
    "SchemaDiverged",
    "SchemaMismatch",
    "SchemaTooNew",
    "check_durability",
    "check_server_version",
    "connect",
    "connect_app",
    "create_pool",
    "database_url",
    "embedded_url",
    "migrate",
    "open_database",
    "stop_embedded",
)
