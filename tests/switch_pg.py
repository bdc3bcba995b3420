"""A real PostgreSQL for the switch's integration tests, one fresh database per use.

One embedded server (pgserver) per session; the reference region is imported
once into a template database with the real import code, and each test
module gets its own copy (CREATE DATABASE ... TEMPLATE, tens of ms), so the
worked examples always start from a freshly initialised switch.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from ledger import db
from ledger.crypto import DataKeys
from ledger.store import Ledger
from switch.commands.import_reference import _import, load_dir
from switch.server import RunningServer, ServerConfig, start
from switch.service import LedgerBackend
from tests.grpc_harness import Pki, make_pki

REFERENCE = Path(__file__).resolve().parent.parent / "shared" / "reference"
TEMPLATE = "sw_reference"
_counter = itertools.count()


@dataclass(frozen=True)
class SwitchPg:
    base_url: str
    data_key: bytes

    def url(self, dbname: str) -> str:
        prefix, _, query = self.base_url.partition("?")
        root = prefix.rsplit("/", 1)[0]
        return f"{root}/{dbname}?{query}"

    async def fresh_db(self) -> str:
        name = f"sw_{next(_counter)}_{secrets.token_hex(3)}"
        conn = await asyncpg.connect(self.base_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
        finally:
            await conn.close()
        return self.url(name)


@pytest.fixture(scope="session")
def switch_pg() -> Iterator[SwitchPg]:
    import pgserver

    root = Path(tempfile.mkdtemp(prefix="swpg-"))  # short: the unix socket lives there
    server = pgserver.get_server(root / "pg", cleanup_mode="stop")
    try:
        cluster = SwitchPg(str(server.get_uri()), secrets.token_bytes(32))

        async def build() -> None:
            conn = await asyncpg.connect(cluster.base_url)
            try:
                await conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
            finally:
                await conn.close()
            await _import(cluster.url(TEMPLATE), cluster.data_key, load_dir(REFERENCE))

        # A private loop: the session loop of pytest-asyncio is not running here.
        asyncio.run(build())
        yield cluster
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class LiveSwitch:
    running: RunningServer
    backend: LedgerBackend
    pool: asyncpg.Pool
    db_url: str
    certs: Pki


async def live_switch(
    cluster: SwitchPg, certs: Pki, *, inflight_max: int = 256, pool_max: int = 10
) -> LiveSwitch:
    url = await cluster.fresh_db()
    pool = await db.open_database(url, min_size=1, max_size=pool_max)
    backend = await LedgerBackend.open(pool, Ledger(pool, DataKeys(cluster.data_key)))
    running = await start(
        backend,
        ServerConfig(listen="127.0.0.1:0", tls_dir=certs.tls_dir, inflight_max=inflight_max),
    )
    return LiveSwitch(running, backend, pool, url, certs)


async def stop_switch(live: LiveSwitch) -> None:
    await live.running.stop(0)
    await live.pool.close()


@pytest.fixture(scope="module")
def switch_certs(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
async def live(switch_pg: SwitchPg, switch_certs: Pki) -> AsyncIterator[LiveSwitch]:
    switch = await live_switch(switch_pg, switch_certs)
    yield switch
    await stop_switch(switch)
