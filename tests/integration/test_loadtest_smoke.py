"""The locustfile drives a real switch over mutual TLS and finds every answer right.

Operators rely on the load test both for speed and for correctness under
load, so it must run as documented (headless, CSV statistics) against a
real gRPC server with client certificates, exercise every kind of call of
the mix, and report no failure when the switch answers correctly. The
switch is the real grpc.aio server over PostgreSQL (the ledger backend,
a generated population imported with the real import code) and, to show
that wrong answers count, over the engine's in-memory region
(tests/memory_backend.py) deliberately broken.
"""

from __future__ import annotations

import asyncio
import csv
import os
import sys
from pathlib import Path

import asyncpg
import pytest

from adjudication.memory import load_region
from adjudication.model import Claim
from ledger import db
from ledger.crypto import DataKeys
from ledger.store import Ledger
from loadtest import population
from switch import server
from switch.backend import SettlementBackend, SettlementView
from switch.commands.import_reference import _import, load_dir
from switch.service import LedgerBackend
from tests.memory_backend import MemoryBackend
from tests.switch_pg import SwitchPg
from tests.switch_pg import switch_pg as switch_pg

ROOT = Path(__file__).resolve().parent.parent.parent
LOCUST_S = 4


class ForgetfulBackend(MemoryBackend):
    """A broken switch: it settles a retried request a second time."""

    async def settle(self, claim: Claim, pin: str, request_digest: bytes) -> SettlementView:
        self.by_request.pop((claim.institution_code, claim.request_id), None)
        return await super().settle(claim, pin, request_digest)


@pytest.fixture(scope="module")
def region(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("loadtest")
    pop, tls = base / "pop", base / "tls"
    population.main(
        ["--members", "3000", "--institutions", "20", "--out", str(pop),
         "--cert-institutions", "6", "--issue-certs", "--tls-dir", str(tls)]
    )  # fmt: skip
    return pop, tls


async def locust_run(
    backend: SettlementBackend, pop: Path, tls: Path, out: Path
) -> tuple[dict[str, dict[str, str]], str]:
    """Runs the locustfile headless against a switch on `backend`: (stats rows, output)."""
    switch = await server.start(backend, server.ServerConfig(listen="127.0.0.1:0", tls_dir=tls))
    try:
        return await _locust(switch.port, pop, tls, out)
    finally:
        await switch.stop(0)


async def _locust(
    port: int, pop: Path, tls: Path, out: Path
) -> tuple[dict[str, dict[str, str]], str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "locust", "-f", str(ROOT / "loadtest" / "locustfile.py"),
        "--host", f"127.0.0.1:{port}", "--population", str(pop), "--tls-dir", str(tls),
        "--headless", "-u", "8", "-r", "8", "-t", f"{LOCUST_S}s", "--csv", str(out),
        "--only-summary", "--loglevel", "WARNING",
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(proc.communicate(), timeout=LOCUST_S + 40)
    text = output.decode(errors="replace")
    rows = {r["Name"]: r for r in csv.DictReader(out.with_name("run_stats.csv").open())}
    return rows, text


@pytest.fixture(scope="module")
async def db_run(
    switch_pg: SwitchPg, region: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, dict[str, str]], str, str]:
    """One locust run against the database-backed switch: (stats, output, failures)."""
    pop, tls = region
    url = switch_pg.url(f"loadtest_{os.getpid()}")
    conn = await asyncpg.connect(switch_pg.base_url)
    try:
        await conn.execute(f'CREATE DATABASE "loadtest_{os.getpid()}"')
    finally:
        await conn.close()
    await _import(url, switch_pg.data_key, load_dir(pop))
    pool = await db.open_database(url, min_size=1, max_size=10)
    backend = await LedgerBackend.open(
        pool, Ledger(pool, DataKeys(switch_pg.data_key)), probe=db.Probe(url)
    )
    try:
        out = tmp_path_factory.mktemp("db_run") / "run"
        rows, text = await locust_run(backend, pop, tls, out)
    finally:
        await backend.close()  # its settlement writer and health probe
        await pool.close()
    return rows, text, out.with_name("run_failures.csv").read_text()


async def test_locust_run_on_the_database_switch_has_every_call_kind(
    db_run: tuple[dict[str, dict[str, str]], str, str],
) -> None:
    """Every kind of call of the mix is made, pharmacy the most, and no answer
    is wrong or failed (cancellations: see the next test)."""
    rows, text, failures = db_run
    total = rows.pop("Aggregated")
    assert int(total["Request Count"]) > 100, text[-3000:]
    kinds = {name.split()[-1] for name in rows}
    assert kinds >= {
        "pharmacy", "outpatient", "special_disease", "inpatient", "stay", "retry", "cancel",
    }, kinds  # fmt: skip
    assert "RegisterAdmission stay" in rows, sorted(rows)  # stays through the encounter API
    pharmacy = int(rows["Settle pharmacy"]["Request Count"])
    assert pharmacy > int(rows["Settle outpatient"]["Request Count"]) > 0
    for name, row in rows.items():
        if name != "CancelSettlement cancel":
            assert int(row["Failure Count"]) == 0, failures


async def test_locust_cancellations_on_the_database_switch_succeed(
    db_run: tuple[dict[str, dict[str, str]], str, str],
) -> None:
    """Cancelling settlements that moved accumulators (deductible, pooled fund)
    under load succeeds (it once failed INTERNAL: the undo broke a CHECK)."""
    rows, _, failures = db_run
    assert int(rows["CancelSettlement cancel"]["Failure Count"]) == 0, failures


async def test_a_retry_answered_with_another_settlement_is_a_failure(
    region: tuple[Path, Path], tmp_path: Path
) -> None:
    """Wrong answers count, not only errors: a switch that settles a retried
    request twice shows up as failed retries naming the problem."""
    pop, tls = region
    out = tmp_path / "run"
    rows, text = await locust_run(ForgetfulBackend(load_region(pop)), pop, tls, out)
    assert int(rows["Settle retry"]["Failure Count"]) > 0, text[-3000:]
    failures = out.with_name("run_failures.csv").read_text()
    assert "a retry answered a different settlement_id" in failures
