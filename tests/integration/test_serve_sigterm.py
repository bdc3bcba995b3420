"""`medswitch serve` as an operator runs it: SIGTERM in the middle of a load.

The server process stops accepting calls, finishes those in flight and exits
0; afterwards every settlement a client was told about is in the ledger, and
`medswitch ledger verify` passes.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import asyncpg
import grpc
import pytest

from switch.proto import medswitch_pb2_grpc as pb_grpc
from tests.cli import ROOT, ServeProcess, medswitch
from tests.grpc_harness import Pki, channel, free_port, pharmacy_request
from tests.switch_pg import SwitchPg, active_cards
from tests.switch_pg import switch_certs as switch_certs
from tests.switch_pg import switch_pg as switch_pg
from tests.waiting import wait_for

PHARMACY = "P33039900005"
WORKERS = 16
ACKNOWLEDGED_BEFORE_SIGTERM = 100


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


@pytest.mark.parametrize("group_commit", ["0", "1"], ids=["per-call-commit", "group-commit"])
async def test_sigterm_mid_load_drains_and_loses_nothing(
    switch_pg: SwitchPg, switch_certs: Pki, tmp_path: Path, group_commit: str
) -> None:
    db_url = await switch_pg.fresh_db()
    port = free_port()
    env = serve_env(
        switch_pg, switch_certs, tmp_path, db_url, port, MEDSWITCH_GROUP_COMMIT=group_commit
    )
    serve = await ServeProcess.start(env, stderr=tmp_path / "serve.err")
    acknowledged: list[str] = []
    acknowledged_requests: list[tuple[str, str]] = []
    cards = active_cards()
    refused: list[grpc.StatusCode] = []
    under_load = asyncio.Event()  # ACKNOWLEDGED_BEFORE_SIGTERM answers came
    try:
        await serve.serving()
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
                if len(acknowledged) >= ACKNOWLEDGED_BEFORE_SIGTERM:
                    under_load.set()

        async with channel(port, switch_certs.creds(PHARMACY)) as ch:
            stub = pb_grpc.SettlementServiceStub(ch)
            workers = [asyncio.ensure_future(worker(w, stub)) for w in range(WORKERS)]
            await wait_for(under_load.wait(), f"{ACKNOWLEDGED_BEFORE_SIGTERM} settlements")
            exit_code = await serve.terminate()
            stop_sending.set()
            await asyncio.gather(*workers)
    finally:
        log_text = await serve.close()
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
    assert len(acknowledged) >= ACKNOWLEDGED_BEFORE_SIGTERM
    missing = set(acknowledged) - stored
    assert not missing, f"acknowledged but not in the ledger: {sorted(missing)[:5]}"
    verify = medswitch("ledger", "verify", env={"MEDSWITCH_DATABASE_URL": db_url})
    assert verify.returncode == 0, verify.stdout + verify.stderr


async def test_serve_processes_share_a_port_only_when_asked(
    switch_pg: SwitchPg, switch_certs: Pki, tmp_path: Path
) -> None:
    db_url = await switch_pg.fresh_db()
    port = free_port()

    async def start(reuse: str) -> ServeProcess:
        env = serve_env(switch_pg, switch_certs, tmp_path, db_url, port, MEDSWITCH_REUSE_PORT=reuse)
        return await ServeProcess.start(env)

    procs = [await start("1")]
    try:
        await procs[0].serving()
        # without --reuse-port a second switch on a port in use fails at once
        intruder = await start("0")
        try:
            assert await intruder.exit_code() != 0
        finally:
            await intruder.close()
        procs.append(await start("1"))
        await procs[1].serving()  # its own word: the port already answers (a)
        cards = active_cards()
        for n in range(40):  # a new connection each time: the kernel spreads them
            card, pin = cards[n % len(cards)]
            async with channel(port, switch_certs.creds(PHARMACY)) as ch:
                resp = await pb_grpc.SettlementServiceStub(ch).PreSettle(
                    pharmacy_request(f"share-{n}", PHARMACY, card, pin, "2026-05-10"), timeout=20
                )
            assert resp.settlement_id == ""  # a preview
        assert [await p.terminate() for p in procs] == [0, 0]
    finally:
        outputs = [await p.close() for p in procs]
    answered = [output.count('"event": "rpc"') for output in outputs]
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
