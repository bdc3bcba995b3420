"""The switch and its embedded PostgreSQL killed, frozen and stopped mid-load.

One data directory, set up as an operator would (`medswitch import-reference`
starts the embedded PostgreSQL; `medswitch serve` runs as a process). Under
Settle load from clients that resend unknown outcomes with the same request
id (harness.py), each test injects one fault:

- kill -9 of `medswitch serve`, then a new one started;
- SIGTERM of `medswitch serve` (it drains and exits 0), then a new one;
- kill -9 of PostgreSQL (the postmaster and every process of it, as when its
  machine dies), then `medswitch db start`;
- PostgreSQL frozen (SIGSTOP to every process of it) for 10 s, then SIGCONT:
  health must turn NOT_SERVING meanwhile although every pooled connection is
  busy (stuck on the frozen server), and SERVING again after.

After each, nothing acknowledged is lost or doubled (GetSettlement, a
resend, the stored rows, ReconcileTotals and every balance agree),
`medswitch ledger verify` passes, and where the switch was not the process
killed, the same process serves again by itself. Each prints the outage its
clients saw (`pytest tests/faults -s`); RELIABILITY.md has the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import psutil  # pgserver's own dependency
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ledger import db
from switch.proto import medswitch_pb2 as pb
from switch.proto import medswitch_pb2_grpc as pb_grpc
from tests.cli import ROOT, medswitch
from tests.faults.harness import Switch, check, load_through, report
from tests.faults.settle_load import PHARMACY, credentials
from tests.grpc_harness import free_port
from tests.waiting import until

pytestmark = [pytest.mark.slow, pytest.mark.faults]
FREEZE_S = 10.0
# Two pooled connections: the settlement writer keeps both busy under load (a
# batch loading while the one before it commits), so while PostgreSQL is
# frozen none is idle and health must ask on a connection of its own.
POOL_MAX = 2
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Embedded(Switch):
    """The switch over the embedded PostgreSQL of its data directory."""

    @property
    def pg_dir(self) -> Path:
        return db.pg_dir(Path(self.env["MEDSWITCH_DATA_DIR"]))

    def postgres(self) -> list[psutil.Process]:
        """The postmaster and every process it started (each its own session)."""
        pid = int((self.pg_dir / "postmaster.pid").read_text().split()[0])
        postmaster = psutil.Process(pid)
        return [postmaster, *postmaster.children(recursive=True)]

    def signal_postgres(self, how: signal.Signals) -> None:
        """`how` to the postmaster first (so it starts nothing new), then the rest."""
        for process in self.postgres():
            with contextlib.suppress(psutil.NoSuchProcess):  # a backend that just ended
                process.send_signal(how)

    async def kill_postgres(self) -> None:
        """kill -9 of every process of the server; returns once they are dead."""
        processes = self.postgres()
        self.signal_postgres(signal.SIGKILL)
        await until(lambda: not any(_alive(p) for p in processes), "PostgreSQL to die")
        if processes[0].is_running():
            # A zombie: this machine's init reaps no orphans, and PostgreSQL
            # would take the dead postmaster's lock files for a live server's.
            for lock in (self.pg_dir / "postmaster.pid", *self.pg_dir.glob(".s.PGSQL.*.lock")):
                lock.unlink()

    def start_postgres(self) -> None:
        done = medswitch("db", "start", env=self.env, timeout=120)
        log = (self.pg_dir / "log").read_text(errors="replace")
        assert done.returncode == 0, done.stdout + done.stderr + log[-3000:]

    def health(self) -> int:
        port = int(self.env["MEDSWITCH_HEALTH_LISTEN"].rsplit(":", 1)[1])
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            answer = health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=2
            )
        status: int = answer.status
        return status

    def pool_figures(self) -> tuple[float, float]:
        """(connections open, connections in use), from the metrics endpoint."""
        url = f"http://{self.env['MEDSWITCH_METRICS_LISTEN']}/metrics"
        with urllib.request.urlopen(url, timeout=5) as answer:
            lines = answer.read().decode().splitlines()
        value = {k: float(v) for k, _, v in (ln.partition(" ") for ln in lines if ln[:1] != "#")}
        return value["medswitch_db_pool_size"], value["medswitch_db_pool_in_use"]


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture(scope="module")
async def embedded() -> AsyncIterator[Embedded]:
    # a short path: the server's unix socket lives in it (108 bytes)
    data_dir = Path(tempfile.mkdtemp(prefix="msf-"))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MEDSWITCH_DATA_DIR": str(data_dir),
        "MEDSWITCH_TLS_DIR": str(data_dir / "tls"),
        "MEDSWITCH_FIRST_DAY": "2026-06-01",
    }
    env.pop("MEDSWITCH_DATABASE_URL", None)
    try:
        for args in (("import-reference", str(ROOT / "shared" / "reference")), ("pki", "init")):
            done = medswitch(*args, env=env, timeout=120)
            assert done.returncode == 0, done.stdout + done.stderr
        url = db.embedded_url(data_dir, start=False)
        assert url is not None
        port = free_port()
        env |= {
            "MEDSWITCH_LISTEN": f"127.0.0.1:{port}",
            "MEDSWITCH_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
            "MEDSWITCH_HEALTH_LISTEN": f"127.0.0.1:{free_port()}",
            "MEDSWITCH_DB_POOL_MAX": str(POOL_MAX),
        }
        switch = Embedded(env, port, data_dir / "tls", url)
        await switch.start()
        try:
            yield switch
        finally:
            if switch.serve is not None:
                await switch.stop()
    finally:
        medswitch("db", "stop", env=env, timeout=120)
        shutil.rmtree(data_dir, ignore_errors=True)


async def test_switch_killed_mid_load_loses_nothing(embedded: Embedded) -> None:
    async def kill_and_start() -> None:
        assert await embedded.stop(signal.SIGKILL) == -signal.SIGKILL
        await embedded.start()

    record, faulted_at = await load_through(embedded, kill_and_start)
    assert report("kill -9 switch", record, faulted_at) < 30
    await check(embedded, record, {"UNAVAILABLE"})


async def test_switch_stopped_mid_load_drains_and_loses_nothing(embedded: Embedded) -> None:
    async def stop_and_start() -> None:
        assert await embedded.stop(signal.SIGTERM) == 0
        await embedded.start()

    record, faulted_at = await load_through(embedded, stop_and_start)
    assert report("SIGTERM switch", record, faulted_at) < 30
    # CANCELLED: a call caught by the connection the stopping server closed
    # (it never reached the switch; README's "Retries": resend it)
    await check(embedded, record, {"UNAVAILABLE", "CANCELLED"})


async def test_database_killed_mid_load_loses_nothing(embedded: Embedded) -> None:
    serving = embedded.running()

    async def kill_and_start() -> None:
        await embedded.kill_postgres()
        await asyncio.to_thread(embedded.start_postgres)

    record, faulted_at = await load_through(embedded, kill_and_start)
    assert report("kill -9 PostgreSQL", record, faulted_at) < 30
    await check(embedded, record, {"UNAVAILABLE"})
    assert embedded.running() is serving, "not the same process"


async def test_database_frozen_mid_load_is_not_serving_then_loses_nothing(
    embedded: Embedded,
) -> None:
    serving = embedded.running()
    # (seconds frozen, pool size, connections in use, health), sampled while frozen
    seen: list[tuple[float, float, float, int]] = []

    async def freeze() -> None:
        embedded.signal_postgres(signal.SIGSTOP)
        frozen_at = time.monotonic()
        thawed_at = frozen_at + FREEZE_S
        try:
            # calls that take whatever pooled connection the writer left idle
            async with grpc.aio.secure_channel(
                f"127.0.0.1:{embedded.port}", credentials(embedded.tls_dir)
            ) as ch:
                reads = [_read_any(ch) for _ in range(POOL_MAX)]
                waiting = asyncio.gather(*reads, return_exceptions=True)
                while time.monotonic() < thawed_at - 0.5:
                    await asyncio.sleep(0.5)
                    size, in_use = await asyncio.to_thread(embedded.pool_figures)
                    health = await asyncio.to_thread(embedded.health)
                    seen.append((time.monotonic() - frozen_at, size, in_use, health))
                await asyncio.sleep(max(0.0, thawed_at - time.monotonic()))
                embedded.signal_postgres(signal.SIGCONT)
                await waiting
        finally:
            embedded.signal_postgres(signal.SIGCONT)

    record, faulted_at = await load_through(embedded, freeze)
    full = [health for _, size, in_use, health in seen if size == in_use == POOL_MAX]
    assert full, f"the pool was never full while frozen: {seen}"
    assert NOT_SERVING in full, f"health while frozen and the pool full: {seen}"
    assert seen[-1][3] == NOT_SERVING, seen
    print(f"\nNOT_SERVING {next(t for t, *_, h in seen if h == NOT_SERVING):.1f} s into the freeze")
    assert report("PostgreSQL frozen 10 s", record, faulted_at) < FREEZE_S + 20
    await check(embedded, record, {"UNAVAILABLE", "DEADLINE_EXCEEDED"})
    assert await asyncio.to_thread(embedded.health) == SERVING
    assert embedded.running() is serving, "not the same process"


async def _read_any(ch: grpc.aio.Channel) -> None:
    """A read that needs a pooled connection (answered once the database is back)."""
    stub = pb_grpc.SettlementServiceStub(ch)
    request = pb.GetSettlementRequest(institution_code=PHARMACY, request_id="none-such")
    try:
        await stub.GetSettlement(request, timeout=FREEZE_S + 10)
    except grpc.aio.AioRpcError as err:
        assert err.code() == grpc.StatusCode.NOT_FOUND, err
