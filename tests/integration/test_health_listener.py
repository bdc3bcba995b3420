"""The plaintext health-only listener (`serve --health-listen`), for probes.

Kubernetes' `grpc:` probes and Docker's HEALTHCHECK cannot present a client
certificate, so the mTLS port is closed to them. The health listener answers
grpc.health.v1 without TLS, the same status as the mTLS port (NOT_SERVING
while the database is down or the switch drains), and nothing else: no
settlement service is reachable without a certificate.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from switch import healthcheck
from switch.proto import medswitch_pb2_grpc as pb_grpc
from switch.server import LIVENESS_SERVICE
from tests.grpc_harness import Pki, pharmacy_request
from tests.switch_pg import SwitchPg, live_switch, stop_switch
from tests.switch_pg import switch_certs as switch_certs
from tests.switch_pg import switch_pg as switch_pg


async def test_health_listener_answers_health_only_and_follows_the_drain(
    switch_pg: SwitchPg, switch_certs: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    live = await live_switch(switch_pg, switch_certs, health_listen="127.0.0.1:0")
    address = f"127.0.0.1:{live.running.health_port}"
    try:
        assert live.running.health_port > 0
        assert await asyncio.to_thread(healthcheck.main, [address]) == 0
        liveness = ["--service", LIVENESS_SERVICE]
        assert await asyncio.to_thread(healthcheck.main, [address, *liveness]) == 0
        async with grpc.aio.insecure_channel(address) as ch:
            answer = await health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service="medswitch.v1.SettlementService")
            )
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await pb_grpc.SettlementServiceStub(ch).PreSettle(
                    pharmacy_request("h-1", "P33039900005", "C3303990013", "909090", "2026-07-01")
                )
            assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED

        await live.running.health.enter_graceful_shutdown()  # what SIGTERM does first
        assert await asyncio.to_thread(healthcheck.main, [address]) == 1
        assert "NOT_SERVING" in capsys.readouterr().err
        # draining, the process too says NOT_SERVING (liveness, until then, SERVING
        # whatever the database does: tests/integration/test_database_outage.py)
        liveness = await asyncio.to_thread(healthcheck.check, address, 3.0, LIVENESS_SERVICE)
        assert liveness is not None and "NOT_SERVING" in liveness
    finally:
        await stop_switch(live)
    assert await asyncio.to_thread(healthcheck.main, [address, "--timeout-s", "1"]) == 1
    assert "UNAVAILABLE" in capsys.readouterr().err


async def test_without_health_listen_there_is_no_plaintext_port(
    switch_pg: SwitchPg, switch_certs: Pki
) -> None:
    live = await live_switch(switch_pg, switch_certs)
    try:
        assert live.running.health_port == 0 and live.running.health_server is None
    finally:
        await stop_switch(live)
