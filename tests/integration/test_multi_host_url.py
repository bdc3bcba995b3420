"""MEDSWITCH_DATABASE_URL may name several hosts (a Patroni cluster's nodes).

asyncpg tries them in order and, with `target_session_attrs=read-write`,
keeps the first primary. While a failover has left no primary among the
hosts that answer, connecting is an outage (UNAVAILABLE, waited out by
`serve`), never the client-side error asyncpg raises for it. The real
failover is tests/faults/test_patroni_failover.py (needs Patroni).
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest

from ledger import db
from switch.service import UNAVAILABLE_ERRORS


def with_hosts(url: str, hosts: list[str], **query: str) -> str:
    """`url` (pgserver's: postgresql://user:@/db?host=/socket/dir) over `hosts`."""
    parsed = urlparse(url)
    params = "&".join([f"host={','.join(hosts)}", *(f"{k}={v}" for k, v in query.items())])
    return f"{parsed.scheme}://{parsed.netloc}{parsed.path}?{params}"


def socket_dir(url: str) -> str:
    return parse_qs(urlparse(url).query)["host"][0]


async def test_the_first_host_that_answers_as_a_primary_is_used(reference_db: str) -> None:
    dead = "/nonexistent-medswitch-host"  # connection refused, as a dead node's port
    url = with_hosts(
        reference_db, [dead, socket_dir(reference_db)], target_session_attrs="read-write"
    )
    conn = await db.connect(url)
    try:
        assert await conn.fetchval("SELECT NOT pg_is_in_recovery()")
    finally:
        await conn.close()
    pool = await db.create_pool(url, min_size=1, max_size=2)
    try:
        assert await pool.fetchval("SELECT count(*) FROM business_days") == 1
    finally:
        await pool.close()


async def test_no_host_of_the_wanted_kind_is_an_outage_not_an_error(reference_db: str) -> None:
    # Every host answers but none is of the kind asked for: what a read-write
    # URL meets between a primary's demotion and a standby's promotion.
    # (The embedded server is a primary, so asking for a standby stands in.)
    url = with_hosts(reference_db, [socket_dir(reference_db)], target_session_attrs="standby")
    with pytest.raises(db.NoWritableHost) as raised:
        await db.connect(url)
    assert isinstance(raised.value, UNAVAILABLE_ERRORS)
    with pytest.raises(db.NoWritableHost):
        await db.create_pool(url, min_size=1, max_size=2)
    with pytest.raises(db.NoWritableHost):
        await db.open_database(url, min_size=1, max_size=2)
