"""A real PostgreSQL and a live switch for the switch's integration tests.

The session's embedded server and its reference template come from
tests/integration/conftest.py (the ledger's fixtures); each test module gets
its own copy of the template (CREATE DATABASE ... TEMPLATE, tens of ms), so
the worked examples always start from a freshly initialised switch, and a
real grpc.aio server with mutual TLS on port 0 in front of it.
"""

from __future__ import annotations

import csv
import itertools
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from ledger import db
from ledger.crypto import DataKeys
from ledger.store import Ledger
from switch import limits
from switch.edge import EdgeLimits
from switch.server import RunningServer, ServerConfig, start
from switch.service import LedgerBackend
from tests.grpc_harness import Pki, make_pki

REFERENCE = Path(__file__).resolve().parent.parent / "shared" / "reference"
TEMPLATE = "ms_reference"  # built by tests/integration/conftest.py
_counter = itertools.count()


def active_cards() -> list[tuple[str, str]]:
    """(card, PIN) of the reference members who can settle."""
    with (REFERENCE / "members.csv").open(encoding="utf-8") as fh:
        return [
            (row["card_no"], row["pin"])
            for row in csv.DictReader(fh)
            if row["status"] == "ACTIVE" and row["card_status"] == "ACTIVE"
        ]


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
def switch_pg(pg: Any, templates: list[str], data_key: bytes) -> SwitchPg:
    """The ledger's session cluster and reference template (tests/integration/conftest.py)."""
    assert TEMPLATE in templates
    return SwitchPg(pg.url("postgres"), data_key)


@dataclass
class LiveSwitch:
    running: RunningServer
    backend: LedgerBackend
    pool: asyncpg.Pool
    db_url: str
    certs: Pki


async def live_switch(
    cluster: SwitchPg,
    certs: Pki,
    *,
    inflight_max: int = 256,
    pool_max: int = 10,
    group_commit: bool = False,
    health_probe_interval_s: float = limits.health_probe_interval_s,
    health_listen: str | None = None,
    listen: str = "127.0.0.1:0",
) -> LiveSwitch:
    url = await cluster.fresh_db()
    pool = await db.open_database(url, min_size=1, max_size=pool_max)
    backend = await LedgerBackend.open(
        pool, Ledger(pool, DataKeys(cluster.data_key)), group_commit=group_commit
    )
    running = await start(
        backend,
        ServerConfig(
            listen=listen,
            tls_dir=certs.tls_dir,
            edge_limits=EdgeLimits.for_inflight_max(inflight_max),
            health_probe_interval_s=health_probe_interval_s,
            health_listen=health_listen,
        ),
    )
    return LiveSwitch(running, backend, pool, url, certs)


async def stop_switch(live: LiveSwitch) -> None:
    await live.running.stop(0)
    await live.backend.close()
    await live.pool.close()


@pytest.fixture(scope="module")
def switch_certs(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
async def live(switch_pg: SwitchPg, switch_certs: Pki) -> AsyncIterator[LiveSwitch]:
    switch = await live_switch(switch_pg, switch_certs)
    yield switch
    await stop_switch(switch)
