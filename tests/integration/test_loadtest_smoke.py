"""The locustfile drives a real switch over mutual TLS and finds every answer right.

Operators rely on the load test both for speed and for correctness under
load, so it must run as documented (headless, CSV statistics) against a
real gRPC server with client certificates, exercise every kind of call of
the mix, and report no failure when the switch answers correctly. The
switch here is the real grpc.aio server with the engine's in-memory region
behind it (tests/memory_backend.py), loaded with a generated population.
"""

from __future__ import annotations

import asyncio
import csv
import os
import sys
from pathlib import Path

import pytest

from adjudication.memory import load_region
from adjudication.model import Claim
from loadtest import population
from switch import server
from switch.backend import SettlementView
from tests.memory_backend import MemoryBackend

ROOT = Path(__file__).resolve().parent.parent.parent
LOCUST_S = 4


class ForgetfulBackend(MemoryBackend):
    """A broken switch: it settles a retried request a second time."""

    async def settle(self, claim: Claim, pin: str) -> SettlementView:
        self.by_request.pop((claim.institution_code, claim.request_id), None)
        return await super().settle(claim, pin)


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
    backend: MemoryBackend, pop: Path, tls: Path, out: Path
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


async def test_locust_headless_run_has_every_call_kind_and_no_failure(
    region: tuple[Path, Path], tmp_path: Path
) -> None:
    pop, tls = region
    out = tmp_path / "run"
    rows, text = await locust_run(MemoryBackend(load_region(pop)), pop, tls, out)
    total = rows.pop("Aggregated")
    assert int(total["Request Count"]) > 100, text[-3000:]
    assert int(total["Failure Count"]) == 0, out.with_name("run_failures.csv").read_text()
    kinds = {name.split()[-1] for name in rows}
    assert kinds >= {
        "pharmacy", "outpatient", "special_disease", "inpatient", "retry", "cancel",
    }, kinds  # fmt: skip
    pharmacy = int(rows["Settle pharmacy"]["Request Count"])
    assert pharmacy > int(rows["Settle outpatient"]["Request Count"]) > 0


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
