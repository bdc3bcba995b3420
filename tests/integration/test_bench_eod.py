"""bench_eod.py's day, at a small size: its settlements come with their entries,
so the day closes (records and entries agree), exports and reconciles, and
the books stay sound.

BENCHMARKS.md's end-of-day figures rest on this loader; a day loaded as rows
alone would now be refused by close (tests/integration/test_application_rights.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

from ledger import chain
from loadtest import bench_eod


async def test_the_benchmarks_day_closes_exports_and_reconciles(
    make_db: Callable[[str], Awaitable[str]], tmp_path: Path
) -> None:
    url = await make_db("ms_empty")
    timings = await bench_eod.run(url, 300, 7, tmp_path)
    assert list(timings) == ["close", "export", "reconcile"]
    conn = await asyncpg.connect(url)
    try:
        clearing = await conn.fetchrow(
            "SELECT count(*) AS n, sum(settlement_count) AS settled FROM day_clearing"
        )
        assert (clearing["n"], clearing["settled"]) == (7, 300)
        assert await conn.fetchval("SELECT count(*) FROM payout_exports") == 1
        report = await chain.verify(conn)
    finally:
        await conn.close()
    assert report.sound, report.problems
