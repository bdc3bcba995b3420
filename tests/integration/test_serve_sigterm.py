"""`medswitch serve` as an operator runs it: SIGTERM in the middle of a load.

The server process stops accepting calls, finishes those in flight and exits
0; afterwards every settlement a client was told about is in the ledger, and
`medswitch ledger verify` passes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import asyncpg
import grpc
import pytest

from switch.proto import medswitch_pb2_grpc as pb_grpc
from tests.cli import ROOT, medswitch, serve_process
from tests.grpc_harness import Pki, channel, free_port, pharmacy_request
from tests.switch_pg import SwitchPg, active_cards
from tests.switch_pg import switch_certs as switch_certs
from tests.switch_pg import switch_pg as switch_pg

PHARMACY = "P33039900005"
WORKERS = 16


def serve_env(
    switch_pg: SwitchPg, certs: Pki, data_dir: Path, db_url: str, port: int, **settings: str
) -> dict[str, str]:
    """The environment of a `medswitch serve` process over `db_url`, plus `settings`."""
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MEDSWITCH_DATA_DIR": str(data_dir),
        "MEDSWITCH_DATABASE_URL": db_url,
        "MEDSWITCH_DATA_KEY": switch_pg.data_key.hex(),
        "MEDSWITCH_TLS_DIR": str(certs.tls_dir),
        "MEDSWITCH_LISTEN": f"127.0.0.1:{port}",
        "MEDSWITCH_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
        **settings,
    }


async def _wait_serving(proc: subprocess.Popen[bytes], port: int, certs: Pki) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "medswitch serve exited early"
        try:
            async with channel(port, certs.creds(PHARMACY)) as ch:
                await ch.channel_ready()
                return
        except Exception:
            await asyncio.sleep(0.2)
    raise TimeoutError("medswitch serve did not come up")


@pytest.mark.parametrize("group_commit", ["0", "1"], ids=["per-call-commit", "group-commit"])
async def test_sigterm_mid_load_drains_and_loses_nothing(
    switch_pg: SwitchPg, switch_certs: Pki, tmp_path: Path, group_commit: str
) -> None:
    db_url = await switch_pg.fresh_db()
    port = free_port()
    env = serve_env(
        switch_pg, switch_certs, tmp_path, db_url, port, MEDSWITCH_GROUP_COMMIT=group_commit
    )
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log, (tmp_path / "serve.err").open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "switch.cli", "serve"],
            env=env,
            stdout=log,
            stderr=err,
            cwd=ROOT,
        )
    acknowledged: list[str] = []
    acknowledged_requests: list[tuple[str, str]] = []
    cards = active_cards()
    refused: list[grpc.StatusCode] = []
    try:
        await _wait_serving(proc, port, switch_certs)
        stop_sending = asyncio.Event()

        async def worker(w: int, stub: pb_grpc.SettlementServiceStub) -> None:
            n = 0
            while not stop_sending.is_set():
                card, pin = cards[(w + n) % len(cards)]
                day = (date(2026, 1, 1) + timedelta(days=n % 300)).isoformat()
                req = pharmacy_request(f"term-{w}-{n}", PHARMACY, card, pin, day)
                n += 1
                try:
                    resp = await stub.Settle(req, timeout=20)
                except grpc.aio.AioRpcError as err:
                    refused.append(err.code())
                    return  # the server is going away
                acknowledged.append(resp.settlement_id)
                acknowledged_requests.append((resp.settlement_id, req.request_id))

        async with channel(port, switch_certs.creds(PHARMACY)) as ch:
            stub = pb_grpc.SettlementServiceStub(ch)
            workers = [asyncio.ensure_future(worker(w, stub)) for w in range(WORKERS)]
            while len(acknowledged) < 100:
                await asyncio.sleep(0.02)
            proc.send_signal(signal.SIGTERM)
            exit_code = await asyncio.to_thread(proc.wait, 60)
            stop_sending.set()
            await asyncio.gather(*workers)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log_text = log_path.read_text("utf-8", errors="replace")
    assert exit_code == 0, log_text[-2000:]
    assert '"event": "draining"' in log_text and '"event": "stopped"' in log_text
    # stdout is JSON lines: one `rpc` event per answered call, nothing personal.
    events = [json.loads(line) for line in log_text.splitlines()]
    rpcs = {e["request_id"]: e for e in events if e.get("event") == "rpc"}
    for settlement_id, request_id in acknowledged_requests:
        event = rpcs[request_id]
        assert event["status"] == "OK" and event["method"] == "Settle"
        assert event["settlement_id"] == settlement_id
        assert event["institution"] == PHARMACY and event["duration_ms"] >= 0
    assert not any(card in log_text for card, _ in cards)
    pins = {pin for _, pin in cards}
    assert not any("pin" in e or pins & {str(v) for v in e.values()} for e in events)
    assert set(refused) <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}, refused

    conn = await asyncpg.connect(db_url)
    try:
        stored = {
            r["settlement_id"] for r in await conn.fetch("SELECT settlement_id FROM settlements")
        }
    finally:
        await conn.close()
    assert len(acknowledged) >= 100
    missing = set(acknowledged) - stored
    assert not missing, f"acknowledged but not in the ledger: {sorted(missing)[:5]}"
    verify = medswitch("ledger", "verify", env={"MEDSWITCH_DATABASE_URL": db_url})
    assert verify.returncode == 0, verify.stdout + verify.stderr


async def test_serve_processes_share_a_port_only_when_asked(
    switch_pg: SwitchPg, switch_certs: Pki, tmp_path: Path
) -> None:
    db_url = await switch_pg.fresh_db()
    port = free_port()

    def start(name: str, reuse: str) -> subprocess.Popen[bytes]:
        env = serve_env(switch_pg, switch_certs, tmp_path, db_url, port, MEDSWITCH_REUSE_PORT=reuse)
        return serve_process(env, tmp_path / f"{name}.log")

    procs = [start("a", "1")]
    try:
        await _wait_serving(procs[0], port, switch_certs)
        # without --reuse-port a second switch on a port in use fails at once
        intruder = start("intruder", "0")
        assert await asyncio.to_thread(intruder.wait, 60) != 0
        procs.append(start("b", "1"))
        # the port already answers (a), so wait for b's own word that it serves
        deadline = time.monotonic() + 60
        while '"event": "serving"' not in (tmp_path / "b.log").read_text("utf-8", "replace"):
            assert procs[1].poll() is None and time.monotonic() < deadline, "b did not start"
            await asyncio.sleep(0.2)
        cards = active_cards()
        for n in range(40):  # a new connection each time: the kernel spreads them
            card, pin = cards[n % len(cards)]
            async with channel(port, switch_certs.creds(PHARMACY)) as ch:
                resp = await pb_grpc.SettlementServiceStub(ch).PreSettle(
                    pharmacy_request(f"share-{n}", PHARMACY, card, pin, "2026-05-10"), timeout=20
                )
            assert resp.settlement_id == ""  # a preview
        for p in procs:
            p.send_signal(signal.SIGTERM)
        assert [await asyncio.to_thread(p.wait, 60) for p in procs] == [0, 0]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    answered = [
        (tmp_path / f"{name}.log").read_text("utf-8", errors="replace").count('"event": "rpc"')
        for name in ("a", "b")
    ]
    assert sum(answered) >= 40 and min(answered) > 0, answered


async def test_serve_refuses_a_data_key_that_did_not_write_the_database(
    switch_pg: SwitchPg, switch_certs: Pki, tmp_path: Path
) -> None:
    # a data dir moved without its data.key: a fresh key would find no card at all
    db_url = await switch_pg.fresh_db()
    env = serve_env(switch_pg, switch_certs, tmp_path, db_url, free_port())
    del env["MEDSWITCH_DATA_KEY"]  # and no data.key in the data dir either
    run = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "switch.cli", "serve"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
    assert "did not write the database" in run.stderr
