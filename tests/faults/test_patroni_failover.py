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
outage each client saw); the faults on the embedded PostgreSQL are in
test_embedded_faults.py, the harness both use in harness.py.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cli import ROOT, medswitch
from tests.faults.harness import Switch, check, load_through, report
from tests.grpc_harness import free_port

CLUSTER = ROOT / "deploy" / "ha" / "cluster.py"
PG15 = Path("/usr/lib/postgresql/15/bin/postgres")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.faults,
    pytest.mark.skipif(
        not (shutil.which("patroni") and shutil.which("etcd") and PG15.exists()),
        reason="needs Debian's patroni, etcd-server and postgresql-15",
    ),
]


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
async def switch(ha: HaCluster, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Switch]:
    data_dir = tmp_path_factory.mktemp("ha-switch")
    url = ha.run("url")
    env = {
        "MEDSWITCH_DATA_DIR": str(data_dir),
        "MEDSWITCH_DATABASE_URL": url,
        "MEDSWITCH_FIRST_DAY": "2026-06-01",
        "MEDSWITCH_TLS_DIR": str(data_dir / "tls"),
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
    running = Switch(serve_env, port, data_dir / "tls", url)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


# Resends were for UNAVAILABLE only: not INTERNAL for asyncpg's broken-protocol
# error after a dying server's FATAL on an idle connection (switch/service.py).
ONLY_UNAVAILABLE = {"UNAVAILABLE"}


async def test_primary_killed_mid_load_loses_nothing(ha: HaCluster, switch: Switch) -> None:
    record, faulted_at = await load_through(switch, lambda: asyncio.to_thread(ha.run, "kill"))
    assert report("kill -9 primary", record, faulted_at) < 60  # Patroni's ttl is 20 s
    await check(switch, record, ONLY_UNAVAILABLE)
    ha.run("start")  # the killed node rejoins as the synchronous standby


async def test_planned_switchover_mid_load_loses_nothing(ha: HaCluster, switch: Switch) -> None:
    record, faulted_at = await load_through(switch, lambda: asyncio.to_thread(ha.run, "switchover"))
    assert report("switchover", record, faulted_at) < 30
    await check(switch, record, ONLY_UNAVAILABLE)
