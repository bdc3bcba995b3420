"""Health follows what the switch needs to serve (grpc.health.v1, as balancers see it).

A background task that dies says so: the settlement writer's death turns the
switch NOT_SERVING (no retry brings it back; the process must be restarted)
and every Settle is refused at once instead of waiting forever; the health
watcher's own death leaves the switch NOT_SERVING too, since nothing watches
it any more.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from adjudication.memory import load_region
from switch.proto import medswitch_pb2 as pb
from switch.proto import medswitch_pb2_grpc as pb_grpc
from switch.server import LIVENESS_SERVICE, ServerConfig, start
from tests.grpc_harness import Pki, channel, error_details, make_pki, pharmacy_request
from tests.memory_backend import REFERENCE, MemoryBackend
from tests.switch_pg import LiveSwitch, SwitchPg, live_switch, stop_switch
from tests.switch_pg import switch_certs as switch_certs
from tests.switch_pg import switch_pg as switch_pg
from tests.waiting import log_events, wait_for

PHARMACY = "P33039900005"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def purchase(request_id: str) -> pb.SettleRequest:
    request: pb.SettleRequest = pharmacy_request(
        request_id, PHARMACY, "C3303990015", "343434", "2026-05-10"
    )
    return request


@pytest.fixture
async def live(switch_pg: SwitchPg, switch_certs: Pki) -> AsyncIterator[LiveSwitch]:
    switch = await live_switch(switch_pg, switch_certs, health_probe_interval_s=0.05)
    yield switch
    await stop_switch(switch)


async def _health(watch: grpc.aio.StreamStreamCall) -> int:
    answer = await wait_for(watch.read(), "a health status")
    status: int = answer.status
    return status


async def test_a_dead_settlement_writer_turns_health_not_serving(live: LiveSwitch) -> None:
    async with channel(live.running.port, live.certs.creds(PHARMACY)) as ch:
        stub = pb_grpc.SettlementServiceStub(ch)
        first = await stub.Settle(purchase("health-1"), timeout=10)
        assert first.status == pb.SETTLEMENT_STATUS_SETTLED  # the writer runs
        watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest())
        try:
            assert await _health(watch) == SERVING
            with log_events() as logs:
                live.backend.writer._task.cancel()  # killed, not closed
                assert await _health(watch) == NOT_SERVING
            [died] = logs.named("settle_writer_died")
            assert died["worker"] == "settle_writer"
            [health] = logs.named("health")  # the health watcher's word
            assert (health["status"], health["reason"]) == ("NOT_SERVING", "settle_writer_died")
            # only a restart brings the writer back: liveness probes are told too
            alive = await health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service=LIVENESS_SERVICE)
            )
            assert alive.status == NOT_SERVING
        finally:
            watch.cancel()
        # a Settle is refused at once, not queued for a writer that is gone
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Settle(purchase("health-2"), timeout=10)
    assert error_details(err.value).reason == "INTERNAL"


async def test_a_writer_that_fails_turns_health_not_serving(
    live: LiveSwitch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in the writer's loop (here: taking the next batch raises)."""
    async with channel(live.running.port, live.certs.creds(PHARMACY)) as ch:
        stub = pb_grpc.SettlementServiceStub(ch)
        watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest())
        try:
            assert await _health(watch) == SERVING

            async def broken() -> list[object]:
                raise RuntimeError("a bug in the writer")

            monkeypatch.setattr(live.backend.writer, "_take", broken)
            with pytest.raises(grpc.aio.AioRpcError) as err:  # the call that met the bug
                await stub.Settle(purchase("health-3"), timeout=10)
            assert error_details(err.value).reason == "INTERNAL"
            assert await _health(watch) == NOT_SERVING
        finally:
            watch.cancel()
    assert isinstance(live.backend.writer.failure, RuntimeError)


class BrokenBackend(MemoryBackend):
    """A backend whose health answer is a bug."""

    def dead_worker(self) -> str | None:
        raise RuntimeError("a bug in the backend's health answer")


async def test_a_dead_health_watcher_leaves_the_switch_not_serving(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    certs = make_pki(tmp_path_factory.mktemp("pki"))
    with log_events() as logs:
        running = await start(
            BrokenBackend(load_region(REFERENCE)),
            ServerConfig(listen="127.0.0.1:0", tls_dir=certs.tls_dir, health_probe_interval_s=0.05),
        )
        try:
            async with channel(running.port, certs.creds(PHARMACY)) as ch:
                watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest())
                try:
                    statuses = [await _health(watch)]
                    if statuses[0] == SERVING:
                        statuses.append(await _health(watch))
                finally:
                    watch.cancel()
            await logs.wait("health_probe_died")
        finally:
            await running.stop(0)
    assert statuses[-1] == NOT_SERVING
