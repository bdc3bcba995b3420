"""Real PostgreSQL for the integration tests, fast enough to give each test its own database.

One embedded server (pgserver) per test session, in a temporary directory.
Two template databases are built once: `ms_empty` (migrated, first business
day 2026-11-20) and `ms_reference` (that plus shared/reference imported with
the session's data key). A test asks for a fresh copy with CREATE DATABASE
... TEMPLATE, which takes a few tens of milliseconds.

Fixtures:
- `pg` (session): PgCluster -- `.url(dbname)` superuser URL, `.data_dir`.
- `data_key` (session): the 32-byte data key; `data_keys`: DataKeys of it;
  `cli_env` (session): os.environ plus MEDSWITCH_DATA_KEY (hex) and
  PYTHONPATH, for running `python -m switch.cli` against a test database
  (add MEDSWITCH_DATABASE_URL yourself).
- `empty_db` / `reference_db` (function): superuser URL of a fresh database.
- `app_pool` (function): application-role asyncpg pool on a fresh
  reference database (`reference_db`); `ledger`: Ledger over it;
  `operator_pool`: an operator-role pool on the same database (what
  import-reference and end of day work as).
- `make_db(template)` (function): factory for more fresh databases.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import asyncpg
import pytest

from ledger import db, importer
from ledger.crypto import DataKeys
from ledger.store import Ledger

REPO_ROOT = Path(__file__).resolve().parents[2]
REFERENCE_DIR = REPO_ROOT / "shared" / "reference"
FIRST_DAY = date(2026, 11, 20)
EMPTY_TEMPLATE = "ms_empty"
REFERENCE_TEMPLATE = "ms_reference"


@dataclass(frozen=True)
class PgCluster:
    base_url: str
    data_dir: Path

    def url(self, dbname: str) -> str:
        # pgserver URLs look like postgresql://postgres:@/postgres?host=/dir
        prefix, _, query = self.base_url.partition("?")
        root = prefix.rsplit("/", 1)[0]
        return f"{root}/{dbname}?{query}"


@pytest.fixture(scope="session")
def data_key() -> bytes:
    return secrets.token_bytes(32)


@pytest.fixture(scope="session")
def data_keys(data_key: bytes) -> DataKeys:
    return DataKeys(data_key)


@pytest.fixture(scope="session")
def pg() -> Iterator[PgCluster]:
    from ledger.pgserver_import import import_pgserver

    pgserver = import_pgserver()
    # A short path: the server's unix socket lives there (108-byte limit).
    root = Path(tempfile.mkdtemp(prefix="mspg-"))
    server = pgserver.get_server(root / "pg", cleanup_mode="stop")
    try:
        yield PgCluster(str(server.get_uri()), root)
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)  # a cluster per session adds up


@pytest.fixture(scope="session")
def cli_env(pg: PgCluster, data_key: bytes) -> dict[str, str]:
    env = dict(os.environ)
    env["MEDSWITCH_DATA_KEY"] = data_key.hex()
    env["MEDSWITCH_DATA_DIR"] = str(pg.data_dir / "cli")
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


@pytest.fixture(scope="session")
def python() -> str:
    return sys.executable


async def _admin(pg: PgCluster) -> asyncpg.Connection:
    return await asyncpg.connect(pg.url("postgres"))


@pytest.fixture(scope="session")
async def templates(pg: PgCluster, data_key: bytes) -> list[str]:
    """Build ms_empty and ms_reference once."""
    from switch.commands.import_reference import load_dir

    admin = await _admin(pg)
    try:
        for name in (EMPTY_TEMPLATE, REFERENCE_TEMPLATE):
            await admin.execute(f"DROP DATABASE IF EXISTS {name}")
            await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    for name in (EMPTY_TEMPLATE, REFERENCE_TEMPLATE):
        conn = await asyncpg.connect(pg.url(name))
        try:
            await db.migrate(conn, first_day=FIRST_DAY)
            if name == REFERENCE_TEMPLATE:
                await conn.execute(f"SET ROLE {db.OPERATOR_ROLE}")
                await importer.import_reference(conn, data_key, **load_dir(REFERENCE_DIR))
        finally:
            await conn.close()
    return [EMPTY_TEMPLATE, REFERENCE_TEMPLATE]


@pytest.fixture
async def make_db(
    pg: PgCluster, templates: list[str]
) -> AsyncIterator[Callable[[str], Awaitable[str]]]:
    made: list[str] = []

    async def make(template: str = EMPTY_TEMPLATE) -> str:
        name = f"t_{secrets.token_hex(6)}"
        admin = await _admin(pg)
        try:
            await admin.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        finally:
            await admin.close()
        made.append(name)
        return pg.url(name)

    yield make
    admin = await _admin(pg)
    try:
        for name in made:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture
async def empty_db(make_db: Callable[[str], Awaitable[str]]) -> str:
    return await make_db(EMPTY_TEMPLATE)


@pytest.fixture
async def reference_db(make_db: Callable[[str], Awaitable[str]]) -> str:
    return await make_db(REFERENCE_TEMPLATE)


@pytest.fixture
async def app_pool(reference_db: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(reference_db, min_size=1, max_size=10)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def operator_pool(reference_db: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(reference_db, min_size=1, max_size=2, role=db.OPERATOR_ROLE)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
def ledger(app_pool: asyncpg.Pool, data_keys: DataKeys) -> Ledger:
    return Ledger(app_pool, data_keys)
