"""With the database unreachable the switch answers UNAVAILABLE, never a guess,
and serves again by itself once the database is back.

The switch reaches PostgreSQL through a TCP proxy the test can cut: a real
network outage (connections reset, new ones refused), not a mocked driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ledger import db
from ledger.crypto import DataKeys
from ledger.store import Ledger
from switch.proto import medswitch_pb2 as pb
from switch.proto import medswitch_pb2_grpc as pb_grpc
from switch.server import LIVENESS_SERVICE, ServerConfig, start
from switch.service import LedgerBackend
from tests.cli import ROOT, ServeProcess
from tests.grpc_harness import (
    Pki,
    channel,
    error_details,
    free_port,
    health_becomes,
    pharmacy_request,
)
from tests.switch_pg import SwitchPg
from tests.switch_pg import switch_certs as switch_certs
from tests.switch_pg import switch_pg as switch_pg

P1 = "P33039900005"


class CuttableProxy:
    """127.0.0.1:port -> the server's unix socket; `cut` drops everything."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.clients: set[asyncio.StreamWriter] = set()  # the switch's side

    async def open(self) -> None:
        self.server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self.server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()
        self.writers.clear()
        self.clients.clear()
        self.server = None

    def tell_clients(self, data: bytes) -> None:
        """Sends `data` to every connection of the switch as if the server had sent it."""
        for writer in self.clients:
            writer.write(data)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(self.socket_path)
        self.writers |= {writer, up_writer}
        self.clients.add(writer)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


def purchase(request_id: str) -> pb.SettleRequest:
    request: pb.SettleRequest = pharmacy_request(
        request_id, P1, "C3303990013", "909090", "2026-07-01"
    )
    return request


async def _settle_retrying(stub: Any, request: pb.SettleRequest) -> pb.SettleResponse:
    """Settle as a client following the README: UNAVAILABLE is retried with the same request."""
    for _ in range(20):
        try:
            answer: pb.SettleResponse = await stub.Settle(request, timeout=10)
            return answer
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.UNAVAILABLE, err
            await asyncio.sleep(0.1)  # the client's backoff, as the README asks
    raise AssertionError("still UNAVAILABLE after 20 retries")


@contextlib.asynccontextmanager
async def _switch_behind_proxy(
    switch_pg: SwitchPg, switch_certs: Pki, *, pool_max: int, probe_interval_s: float = 2.0
) -> AsyncIterator[tuple[CuttableProxy, grpc.aio.Channel]]:
    """A switch whose database connections all pass through a CuttableProxy, and a
    channel to it as pharmacy P1."""
    url = urlparse(await switch_pg.fresh_db())
    socket_dir = parse_qs(url.query)["host"][0]
    proxy = CuttableProxy(f"{socket_dir}/.s.PGSQL.5432")
    await proxy.open()
    tcp_url = f"postgresql://{url.username}@127.0.0.1:{proxy.port}{url.path}"
    pool = await db.open_database(tcp_url, min_size=1, max_size=pool_max)
    backend = await LedgerBackend.open(pool, Ledger(pool, DataKeys(switch_pg.data_key)))
    config = ServerConfig(
        listen="127.0.0.1:0",
        tls_dir=switch_certs.tls_dir,
        health_probe_interval_s=probe_interval_s,
    )
    running = await start(backend, config)
    try:
        async with channel(running.port, switch_certs.creds(P1)) as ch:
            yield proxy, ch
    finally:
        await running.stop(0)
        await backend.close()
        await pool.close()
        if proxy.server is not None:
            await proxy.cut()


async def test_unreachable_database_is_unavailable_then_service_resumes(
    switch_pg: SwitchPg, switch_certs: Pki
) -> None:
    async with _switch_behind_proxy(switch_pg, switch_certs, pool_max=4) as (proxy, ch):
        stub = pb_grpc.SettlementServiceStub(ch)
        first = await stub.Settle(purchase("out-1"))
        assert first.status == pb.SETTLEMENT_STATUS_SETTLED

        await proxy.cut()  # health follows the database: NOT_SERVING while it is unreachable
        await health_becomes(ch, health_pb2.HealthCheckResponse.NOT_SERVING)
        # liveness probes ask another name: a database outage restarts no switch
        alive = await health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service=LIVENESS_SERVICE)
        )
        assert alive.status == health_pb2.HealthCheckResponse.SERVING
        for n in range(3):
            try:
                await stub.Settle(purchase(f"out-down-{n}"), timeout=10)
            except grpc.aio.AioRpcError as err:
                details = error_details(err)
                assert details.code == grpc.StatusCode.UNAVAILABLE, details
                assert details.reason == "DATABASE_UNAVAILABLE"
            else:
                raise AssertionError("answered without a database")

        await proxy.open()  # the database is back, same address
        await health_becomes(ch, health_pb2.HealthCheckResponse.SERVING)
        answer = await _settle_retrying(stub, purchase("out-2"))
        assert answer.status == pb.SETTLEMENT_STATUS_SETTLED
        # Nothing was recorded for the calls refused while it was down.
        for n in range(3):
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await stub.GetSettlement(
                    pb.GetSettlementRequest(institution_code=P1, request_id=f"out-down-{n}")
                )
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_serve_waits_for_the_database_and_starts_by_itself(
    switch_pg: SwitchPg, switch_certs: Pki, tmp_path: Path
) -> None:
    """`medswitch serve` started before its database keeps trying, then serves."""
    url = urlparse(await switch_pg.fresh_db())
    socket_dir = parse_qs(url.query)["host"][0]
    proxy = CuttableProxy(f"{socket_dir}/.s.PGSQL.5432")
    proxy.port = free_port()  # the database's address, not answering yet
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MEDSWITCH_DATA_DIR": str(tmp_path),
        "MEDSWITCH_DATABASE_URL": f"postgresql://{url.username}@127.0.0.1:{proxy.port}{url.path}",
        "MEDSWITCH_DATA_KEY": switch_pg.data_key.hex(),
        "MEDSWITCH_TLS_DIR": str(switch_certs.tls_dir),
        "MEDSWITCH_LISTEN": f"127.0.0.1:{port}",
        "MEDSWITCH_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
    }
    serve = await ServeProcess.start(env)
    try:
        await serve.output.wait_for("database_unreachable")
        assert serve.proc.returncode is None, "serve gave up instead of waiting"
        await proxy.open()
        await serve.serving()
        async with channel(port, switch_certs.creds(P1)) as ch:
            answer = await pb_grpc.SettlementServiceStub(ch).Settle(purchase("boot-1"), timeout=10)
        assert answer.status == pb.SETTLEMENT_STATUS_SETTLED
        assert await serve.terminate() == 0
    finally:
        await serve.close()
        if proxy.server is not None:
            await proxy.cut()


def _fatal_error_response(sqlstate: str, message: str) -> bytes:
    """A PostgreSQL ErrorResponse message of severity FATAL (protocol 3.0)."""
    fields = b"".join(
        tag + value.encode() + b"\0"
        for tag, value in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", sqlstate), (b"M", message))
    )
    body = fields + b"\0"
    return b"E" + (len(body) + 4).to_bytes(4, "big") + body


async def test_a_dying_servers_fatal_on_an_idle_connection_is_unavailable(
    switch_pg: SwitchPg, switch_certs: Pki
) -> None:
    """The FATAL a crashing PostgreSQL sends to idle connections leaves asyncpg's
    protocol failed ("cannot switch to state 15"): the next call answers
    UNAVAILABLE (safe to retry), not INTERNAL, and the switch serves again."""
    async with _switch_behind_proxy(switch_pg, switch_certs, pool_max=1, probe_interval_s=60) as (
        proxy,
        ch,
    ):
        stub = pb_grpc.SettlementServiceStub(ch)
        first = await stub.Settle(purchase("fatal-1"))
        assert first.status == pb.SETTLEMENT_STATUS_SETTLED
        proxy.tell_clients(
            _fatal_error_response("57P01", "terminating connection due to administrator command")
        )
        # Let the FATAL arrive while the connection is idle (the socket stays open).
        # asyncpg shows nothing of having read it, so this one wait is a duration;
        # should it be too short, the FATAL answers the next query instead, which
        # is UNAVAILABLE as well: the test could then pass without this path.
        await asyncio.sleep(0.2)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Settle(purchase("fatal-2"), timeout=10)
        details = error_details(err.value)
        assert (details.code, details.reason) == (
            grpc.StatusCode.UNAVAILABLE,
            "DATABASE_UNAVAILABLE",
        )
        answer = await _settle_retrying(stub, purchase("fatal-2"))
        assert answer.status == pb.SETTLEMENT_STATUS_SETTLED
