"""The switch on a Patroni cluster: the primary dies, or is switched over, mid-load.

deploy/ha/cluster.py starts etcd and two PostgreSQL 15 nodes under Patroni
(synchronous replication); `medswitch serve` gets the multi-host URL. Under
Settle load from clients that resend unknown outcomes with the same request
id, the primary is killed (kill -9 of its Patroni and PostgreSQL, as if its
machine died), and in the second test switched over as planned. The switch
must answer UNAVAILABLE meanwhile, find the new primary by itself, lose no
acknowledged settlement and post none twice, and `ledger verify` must pass.

Skipped where Patroni, etcd or PostgreSQL 15 are not installed
(`apt-get install patroni etcd-server postgresql-15`); CI does not install
them. Run alone: `.venv/bin/python -m pytest tests/faults -q -s` (prints the
outage each client saw).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from ledger import db
from tests.cli import ROOT, medswitch, serve_process
from tests.faults.settle_load import (
    LoadRecord,
    check_nothing_lost,
    credentials,
    run_load,
)
from tests.grpc_harness import free_port

CLUSTER = ROOT / "deploy" / "ha" / "cluster.py"
PG15 = Path("/usr/lib/postgresql/15/bin/postgres")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (shutil.which("patroni") and shutil.which("etcd") and PG15.exists()),
        reason="needs Debian's patroni, etcd-server and postgresql-15",
    ),
]
ACKS_BEFORE = 300  # settlements acknowledged before the fault
ACKS_AFTER = 300  # and after the switch serves again


def free_base_port() -> int:
    """A base port with the six ports cluster.py uses above it free."""
    for base in range(21000, 30000, 10):
        try:
            for port in range(base, base + 6):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free ports")


@dataclass
class HaCluster:
    directory: Path
    base_port: int

    def run(self, command: str) -> str:
        argv = [sys.executable, str(CLUSTER), command, "--dir", str(self.directory)]
        argv += ["--base-port", str(self.base_port)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout.strip()


@dataclass
class Switch:
    port: int
    tls_dir: Path
    db_url: str
    proc: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def ha() -> Iterator[HaCluster]:
    # a short path: each node's unix socket lives in its directory (108 bytes)
    cluster = HaCluster(Path(tempfile.mkdtemp(prefix="ms-ha-")), free_base_port())
    try:
        cluster.run("start")
        yield cluster
    finally:
        cluster.run("stop")
        shutil.rmtree(cluster.directory, ignore_errors=True)


@pytest.fixture(scope="module")
def switch(ha: HaCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Switch]:
    data_dir = tmp_path_factory.mktemp("ha-switch")
    url = ha.run("url")
    env = {
        "MEDSWITCH_DATA_DIR": str(data_dir),
        "MEDSWITCH_DATABASE_URL": url,
        "MEDSWITCH_FIRST_DAY": "2026-06-01",
    }
    for args in (("import-reference", str(ROOT / "shared" / "reference")), ("pki", "init")):
        done = medswitch(*args, env=env, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
    port = free_port()
    serve_env = {
        **os.environ,
        **env,
        "PYTHONPATH": str(ROOT),
        "MEDSWITCH_LISTEN": f"127.0.0.1:{port}",
        "MEDSWITCH_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
    }
    proc = serve_process(serve_env, data_dir / "serve.log")
    try:
        yield Switch(port, data_dir / "tls", url, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def wait_serving(switch: Switch) -> None:
    deadline = time.monotonic() + 90
    creds = credentials(switch.tls_dir)
    while time.monotonic() < deadline:
        assert switch.proc.poll() is None, "medswitch serve exited"
        try:
            async with grpc.aio.secure_channel(f"127.0.0.1:{switch.port}", creds) as ch:
                await asyncio.wait_for(ch.channel_ready(), 2)
                return
        except (TimeoutError, grpc.aio.AioRpcError):
            await asyncio.sleep(0.3)
    raise TimeoutError("medswitch serve did not come up")


async def load_through(switch: Switch, ha: HaCluster, fault: str) -> tuple[LoadRecord, float]:
    """Settle load; `cluster.py fault` after ACKS_BEFORE answers; on until ACKS_AFTER
    more answers came after it. Returns the record and when the fault began."""
    await wait_serving(switch)
    stop = asyncio.Event()
    record = LoadRecord()
    loading = asyncio.ensure_future(
        run_load(switch.port, credentials(switch.tls_dir), stop, record, workers=6)
    )
    try:
        await _until(lambda: len(record.acknowledged) >= ACKS_BEFORE, loading)
        faulted_at = time.monotonic()
        await asyncio.to_thread(ha.run, fault)
        await _until(lambda: sum(t > faulted_at for t in record.answered_at) >= ACKS_AFTER, loading)
    finally:
        stop.set()
        await loading
    return record, faulted_at


async def _until(done: Callable[[], bool], loading: asyncio.Future[None]) -> None:
    deadline = time.monotonic() + 120
    while not done():
        assert not loading.done(), "the load stopped early"
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def check(switch: Switch, record: LoadRecord) -> None:
    """Nothing acknowledged lost, nothing doubled, the ledger sound."""
    conn = await db.connect(switch.db_url)
    try:
        problems = await check_nothing_lost(switch.port, credentials(switch.tls_dir), record, conn)
    finally:
        await conn.close()
    assert not problems, problems[:10]
    verify = await asyncio.to_thread(
        medswitch, "ledger", "verify", env={"MEDSWITCH_DATABASE_URL": switch.db_url}, timeout=300
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


def expect_only_unavailable(record: LoadRecord) -> None:
    """Resends were for UNAVAILABLE only: not INTERNAL for asyncpg's broken-protocol
    error after a dying server's FATAL on an idle connection (switch/service.py)."""
    assert set(record.refused) <= {"UNAVAILABLE"}, record.refused


async def test_primary_killed_mid_load_loses_nothing(ha: HaCluster, switch: Switch) -> None:
    record, faulted_at = await load_through(switch, ha, "kill")
    outage_s = record.longest_gap_s(faulted_at)
    print(f"\nkill -9 primary: outage {outage_s:.1f} s, {record.retries} resends, {record.refused}")
    assert outage_s < 60  # Patroni's ttl is 20 s
    await check(switch, record)
    ha.run("start")  # the killed node rejoins as the synchronous standby
    expect_only_unavailable(record)


async def test_planned_switchover_mid_load_loses_nothing(ha: HaCluster, switch: Switch) -> None:
    record, faulted_at = await load_through(switch, ha, "switchover")
    outage_s = record.longest_gap_s(faulted_at)
    print(f"\nswitchover: outage {outage_s:.1f} s, {record.retries} resends, {record.refused}")
    assert outage_s < 30
    await check(switch, record)
    expect_only_unavailable(record)
