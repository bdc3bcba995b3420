"""The gRPC edge over real mutual TLS: identity, validation, load, deadlines, drain.

A real grpc.aio server on port 0 with the switch's CA; the backend is the
engine over the in-memory reference region (tests/memory_backend.py), since
these rules are the same whatever stores the settlements.
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ledger.db import REGION_TZ
from switch import limits
from switch.backend import CatalogEntry, catalog_entries
from switch.edge import EdgeLimits
from switch.proto import medswitch_pb2 as pb
from switch.proto import medswitch_pb2_grpc as pb_grpc
from switch.server import RunningServer, ServerConfig, start
from tests.grpc_harness import (
    ErrorDetails,
    Pki,
    channel,
    error_details,
    make_pki,
    pharmacy_request,
)
from tests.memory_backend import MemoryBackend
from tests.waiting import ended_with, log_events, until, wait_for

PHARMACY = "P33039900005"
PHARMACY_2 = "P33039900006"
HOSPITAL = "H33039900001"

# Small enough for a test to fill: 4 calls in flight, 1 of them kept for settlement calls.
EDGE_LIMITS = EdgeLimits(
    inflight_max=4, inflight_per_institution_max=4, inflight_reserved_for_settlement=1
)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
async def switch(certs: Pki) -> AsyncIterator[tuple[RunningServer, MemoryBackend]]:
    backend = MemoryBackend()
    running = await start(
        backend, ServerConfig(listen="127.0.0.1:0", tls_dir=certs.tls_dir, edge_limits=EDGE_LIMITS)
    )
    yield running, backend
    await running.stop(0)


def otc_request(request_id: str, institution: str = PHARMACY) -> pb.SettleRequest:
    request: pb.SettleRequest = pharmacy_request(
        request_id, institution, "C3303990015", "343434", "2026-05-10"
    )
    return request


async def test_presettle_over_mtls_answers(
    switch: tuple[RunningServer, MemoryBackend], certs: Pki
) -> None:
    """A pharmacy with its own certificate gets a PREVIEW for its own request."""
    running, _ = switch
    async with channel(running.port, certs.creds(PHARMACY)) as ch:
        resp = await pb_grpc.SettlementServiceStub(ch).PreSettle(otc_request("edge-1"))
    assert resp.status == pb.SETTLEMENT_STATUS_PREVIEW
    assert resp.split.total_fen == 450
    assert resp.settlement_id == ""


async def test_no_client_certificate_gets_no_connection(
    switch: tuple[RunningServer, MemoryBackend], certs: Pki
) -> None:
    running, _ = switch
    async with channel(running.port, certs.server_only_creds()) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await pb_grpc.SettlementServiceStub(ch).PreSettle(otc_request("edge-2"), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_certificate_of_another_ca_gets_no_connection(
    switch: tuple[RunningServer, MemoryBackend], certs: Pki
) -> None:
    running, _ = switch
    async with channel(running.port, certs.creds(PHARMACY, foreign=True)) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await pb_grpc.SettlementServiceStub(ch).PreSettle(otc_request("edge-3"), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_request_for_another_institution_is_permission_denied(
    switch: tuple[RunningServer, MemoryBackend], certs: Pki
) -> None:
    """A certificate for institution A naming institution B: PERMISSION_DENIED, nothing done."""
    running, backend = switch
    before = len(backend.region.settlements)
    async with channel(running.port, certs.creds(HOSPITAL)) as ch:
        with log_events() as logs:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await pb_grpc.SettlementServiceStub(ch).Settle(otc_request("edge-4", PHARMACY))
            events = await logs.wait("rpc")
    details = error_details(err.value)
    assert details.code == grpc.StatusCode.PERMISSION_DENIED
    assert (details.domain, details.reason) == ("medswitch", "INSTITUTION_MISMATCH")
    assert len(backend.region.settlements) == before
    # the log names the certificate that called, and what it claimed to be
    [event] = events
    assert (event["institution"], event["claimed_institution"]) == (HOSPITAL, PHARMACY)


def _bad(**changes: object) -> pb.SettleRequest:
    req = otc_request("edge-bad")
    for name, value in changes.items():
        if name.startswith("line_"):
            setattr(req.lines[0], name.removeprefix("line_"), value)
        else:
            setattr(req, name, value)
    return req


MALFORMED = [
    ("empty request id", _bad(request_id=""), "request_id"),
    ("request id too long", _bad(request_id="x" * 65), "request_id"),
    ("missing card", _bad(card_no=""), "card_no"),
    ("unknown visit type", _bad(visit_type=77), "visit_type"),
    ("unknown injury cause", _bad(injury_cause=99), "injury_cause"),
    ("bad date", _bad(service_date="10/05/2026"), "service_date"),
    ("zero quantity", _bad(line_quantity=0), "lines[0].quantity"),
    ("negative price", _bad(line_unit_price_fen=-1), "lines[0].unit_price_fen"),
    ("amount mismatch", _bad(line_amount_fen=451), "lines[0].amount_fen"),
    ("overlong prescription ref", _bad(prescription_ref="p" * 65), "prescription_ref"),
]


@pytest.mark.parametrize(("rule", "bad_request", "field"), MALFORMED, ids=[m[0] for m in MALFORMED])
async def test_malformed_request_is_invalid_argument_naming_the_field(
    switch: tuple[RunningServer, MemoryBackend],
    certs: Pki,
    rule: str,
    bad_request: pb.SettleRequest,
    field: str,
) -> None:
    running, backend = switch
    before = len(backend.region.settlements)
    async with channel(running.port, certs.creds(PHARMACY)) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await pb_grpc.SettlementServiceStub(ch).Settle(bad_request)
    details = error_details(err.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT, rule
    assert (details.domain, details.reason) == ("medswitch", "INVALID_REQUEST")
    assert field in details.violations, (rule, details.violations)
    assert len(backend.region.settlements) == before, "a malformed request recorded something"


async def test_too_many_lines_and_duplicates_are_reported(
    switch: tuple[RunningServer, MemoryBackend], certs: Pki
) -> None:
    running, _ = switch
    req = otc_request("edge-lines")
    req.lines.add(line_no=1, item_code="X", quantity=1, unit_price_fen=1, amount_fen=1)
    async with channel(running.port, certs.creds(PHARMACY)) as ch:
        stub = pb_grpc.SettlementServiceStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Settle(req)
        assert "lines[1].line_no" in error_details(err.value).violations
        del req.lines[:]
        for n in range(501):
            req.lines.add(line_no=n + 1, item_code="X", quantity=1, unit_price_fen=1, amount_fen=1)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Settle(req)
        assert "lines" in error_details(err.value).violations
        del req.lines[:]
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Settle(req)
        assert "lines" in error_details(err.value).violations


async def test_health_is_serving(switch: tuple[RunningServer, MemoryBackend], certs: Pki) -> None:
    running, _ = switch
    async with channel(running.port, certs.creds(PHARMACY)) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        for service in ("", "medswitch.v1.SettlementService"):
            resp = await stub.Check(health_pb2.HealthCheckRequest(service=service))
            assert resp.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_every_service(
    switch: tuple[RunningServer, MemoryBackend], certs: Pki
) -> None:
    running, _ = switch
    async with channel(running.port, certs.creds(PHARMACY)) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)

        async def requests() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        names: set[str] = set()
        async for resp in stub.ServerReflectionInfo(requests()):
            names |= {s.name for s in resp.list_services_response.service}
    assert names >= {
        "medswitch.v1.SettlementService",
        "medswitch.v1.MemberService",
        "medswitch.v1.ReconciliationService",
        "medswitch.v1.CatalogService",
        "grpc.health.v1.Health",
    }


async def test_load_beyond_the_bound_is_resource_exhausted(
    switch: tuple[RunningServer, MemoryBackend], certs: Pki
) -> None:
    """With 4 calls in flight the 5th is refused at once, not queued; the 4 finish."""
    running, backend = switch
    backend.gate = asyncio.Event()
    backend.entered = 0
    try:
        async with channel(running.port, certs.creds(PHARMACY)) as ch:
            stub = pb_grpc.SettlementServiceStub(ch)
            held = [
                asyncio.ensure_future(stub.PreSettle(otc_request(f"load-{i}"))) for i in range(4)
            ]
            await backend.until_entered(4)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.PreSettle(otc_request("load-over"), timeout=5)
            details = error_details(err.value)
            assert details.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert details.reason == "OVERLOADED"
            backend.gate.set()
            answers = await asyncio.gather(*held)
            assert all(a.status == pb.SETTLEMENT_STATUS_PREVIEW for a in answers)
    finally:
        backend.gate = None
    assert running.edge.inflight == 0


async def test_deadline_is_honoured(
    switch: tuple[RunningServer, MemoryBackend], certs: Pki
) -> None:
    """A call that outlives its deadline ends DEADLINE_EXCEEDED and frees its slot."""
    running, backend = switch
    backend.gate = asyncio.Event()
    with log_events() as logs:
        try:
            async with channel(running.port, certs.creds(PHARMACY)) as ch:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await pb_grpc.SettlementServiceStub(ch).PreSettle(
                        otc_request("deadline"), timeout=0.3
                    )
            assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        finally:
            backend.gate.set()
            backend.gate = None
        await logs.wait("rpc")  # logged once the call has left its slot
    assert running.edge.inflight == 0


async def test_stop_drains_calls_in_flight(certs: Pki, tmp_path: Path) -> None:
    """On stop, calls in flight complete; new calls are refused."""
    backend = MemoryBackend()
    backend.gate = asyncio.Event()
    running = await start(backend, ServerConfig(listen="127.0.0.1:0", tls_dir=certs.tls_dir))
    async with channel(running.port, certs.creds(PHARMACY)) as ch:
        stub = pb_grpc.SettlementServiceStub(ch)
        held = [asyncio.ensure_future(stub.Settle(otc_request(f"drain-{i}"))) for i in range(3)]
        await backend.until_entered(3)
        watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest())
        serving = await wait_for(watch.read(), "health")
        assert serving.status == health_pb2.HealthCheckResponse.SERVING
        stopping = asyncio.ensure_future(running.stop(5))
        # health turns NOT_SERVING as the stop begins, and the server then stops listening
        stopped = await wait_for(watch.read(), "health on stop")
        assert stopped.status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()  # an open Watch would hold the drain
        async with channel(running.port, certs.creds(PHARMACY)) as ch2:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await pb_grpc.SettlementServiceStub(ch2).Settle(otc_request("late"), timeout=2)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        backend.gate.set()
        answers = await asyncio.gather(*held)
        await stopping
    assert [a.status for a in answers] == [pb.SETTLEMENT_STATUS_SETTLED] * 3
    assert len({a.settlement_id for a in answers}) == 3


async def test_catalog_streams(switch: tuple[RunningServer, MemoryBackend], certs: Pki) -> None:
    running, backend = switch
    expected = sum(len(c.items) for c in backend.region.catalogs.catalogs)
    async with channel(running.port, certs.creds(PHARMACY)) as ch:
        items = [
            i
            async for i in pb_grpc.CatalogServiceStub(ch).DownloadCatalog(
                pb.DownloadCatalogRequest(since_version=0)
            )
        ]
    assert len(items) == expected > 0
    assert {i.kind for i in items} >= {pb.DRUG, pb.GOODS}


async def test_one_log_event_per_request_without_personal_data(
    switch: tuple[RunningServer, MemoryBackend], certs: Pki
) -> None:
    """Each call logs request id, institution, method, status, duration; no PIN, no full card."""
    running, _ = switch
    req = otc_request("log-1")
    async with channel(running.port, certs.creds(PHARMACY)) as ch:
        with log_events() as logs:
            await pb_grpc.SettlementServiceStub(ch).PreSettle(req)
            events = await logs.wait("rpc")
    assert len(events) == 1
    event = events[0]
    assert event["request_id"] == "log-1"
    assert event["institution"] == PHARMACY
    assert event["method"] == "PreSettle"
    assert event["status"] == "OK"
    assert isinstance(event["duration_ms"], float)
    text = repr(event)
    assert req.pin not in text
    assert req.card_no not in text
    assert event["card"].endswith(req.card_no[-4:])


async def test_metrics_endpoint_counts_requests(certs: Pki) -> None:
    backend = MemoryBackend()
    running = await start(
        backend,
        ServerConfig(listen="127.0.0.1:0", tls_dir=certs.tls_dir, metrics_listen="127.0.0.1:0"),
    )
    try:
        async with channel(running.port, certs.creds(PHARMACY)) as ch:
            await pb_grpc.SettlementServiceStub(ch).Settle(otc_request("metrics-1"))
        url = f"http://127.0.0.1:{running.metrics_port}/metrics"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
    finally:
        await running.stop(0)
    text = body.decode()
    assert 'medswitch_requests_total{code="OK",method="Settle"}' in text
    assert 'medswitch_settlements_total{outcome="SETTLED"}' in text
    assert "medswitch_request_duration_ms_bucket" in text
    assert "medswitch_inflight_requests" in text
    assert "medswitch_db_pool_in_use" in text


@asynccontextmanager
async def _serving(certs: Pki, bounds: EdgeLimits) -> AsyncIterator[RunningServer]:
    """A switch of its own, with the edge bounds a test needs."""
    config = ServerConfig(listen="127.0.0.1:0", tls_dir=certs.tls_dir, edge_limits=bounds)
    running = await start(MemoryBackend(), config)
    try:
        yield running
    finally:
        await running.stop(0)


def _record(institution: str, n: int = 1) -> pb.ReconcileDetailRecord:
    return pb.ReconcileDetailRecord(
        institution_code=institution,
        business_date="2026-05-10",
        settlement_id=f"S{n}",
        total_fen=450,
        fund_total_fen=450,
        status=pb.SETTLEMENT_STATUS_SETTLED,
    )


async def _reconcile(
    ch: grpc.aio.Channel, records: AsyncIterator[pb.ReconcileDetailRecord]
) -> ErrorDetails | None:
    """A ReconcileDetails call: None when answered, else the refusal. The records
    stop when the call is over, whoever ended it."""
    ended = asyncio.Event()
    try:
        await pb_grpc.ReconciliationServiceStub(ch).ReconcileDetails(
            ended_with(records, ended), timeout=30
        )
    except grpc.aio.AioRpcError as err:
        return error_details(err)
    finally:
        ended.set()
    return None


# The streams below never write after the server may have ended their call:
# grpc's asyncio client then sometimes reports INTERNAL instead of the
# server's status (grpc/grpc#36066).


class IdleStreams:
    """ReconcileDetails streams that are admitted and then wait, holding their slots
    (they send their one record once released)."""

    def __init__(self, running: RunningServer) -> None:
        self.running = running
        self.release = asyncio.Event()
        self.held: list[asyncio.Future[ErrorDetails | None]] = []

    async def _records(self, institution: str) -> AsyncIterator[pb.ReconcileDetailRecord]:
        await self.release.wait()
        yield _record(institution)

    async def open(self, ch: grpc.aio.Channel, institution: str, n: int) -> list[ErrorDetails]:
        """Opens `n` streams one after another; the refusals of those not admitted."""
        refused: list[ErrorDetails] = []
        for _ in range(n):
            before = self.running.edge.calls.of(institution)
            call = asyncio.ensure_future(_reconcile(ch, self._records(institution)))
            await until(
                lambda: call.done() or self.running.edge.calls.of(institution) > before,  # noqa: B023
                "the stream admitted or refused",
            )
            if call.done():
                refusal = call.result()
                assert refusal is not None
                refused.append(refusal)
            else:
                self.held.append(call)
        return refused

    async def close(self) -> None:
        self.release.set()
        await asyncio.gather(*self.held)


def _calls_bounds(reserved: int) -> EdgeLimits:
    """6 calls in flight, 3 an institution, `reserved` for settlement; streams bound by these."""
    return EdgeLimits(
        inflight_max=6,
        inflight_per_institution_max=3,
        inflight_reserved_for_settlement=reserved,
        client_streams_max=10,
        client_streams_per_institution_max=10,
    )


async def test_one_institutions_open_streams_do_not_starve_another_institutions_settle(
    certs: Pki,
) -> None:
    """A pharmacy holding reconciliation streams open gets only its share of the
    calls in flight: a hospital still settles."""
    async with (
        _serving(certs, _calls_bounds(reserved=0)) as running,
        channel(running.port, certs.creds(PHARMACY)) as pharmacy,
        channel(running.port, certs.creds(HOSPITAL)) as hospital,
    ):
        streams = IdleStreams(running)
        refused = await streams.open(pharmacy, PHARMACY, 6)
        try:
            assert len(streams.held) == 3
            assert [(r.code, r.reason) for r in refused] == [
                (grpc.StatusCode.RESOURCE_EXHAUSTED, "OVERLOADED")
            ] * 3
            assert {r.metadata["limit"] for r in refused} == {"inflight_per_institution_max"}
            # a pharmacy purchase at a hospital: refused by policy, a normal answer
            request = otc_request("fair-1", HOSPITAL)
            answer = await pb_grpc.SettlementServiceStub(hospital).Settle(request, timeout=10)
            assert answer.status == pb.SETTLEMENT_STATUS_REJECTED
        finally:
            await streams.close()
    assert running.edge.inflight == 0


async def test_settlement_calls_keep_slots_reconciliation_cannot_take(certs: Pki) -> None:
    """Reconciliation from several institutions fills what it may; Settle still gets in."""
    async with (
        _serving(certs, _calls_bounds(reserved=2)) as running,
        channel(running.port, certs.creds(PHARMACY)) as pharmacy,
        channel(running.port, certs.creds(PHARMACY_2)) as pharmacy_2,
        channel(running.port, certs.creds(HOSPITAL)) as hospital,
    ):
        streams = IdleStreams(running)
        try:
            assert await streams.open(pharmacy, PHARMACY, 2) == []
            assert await streams.open(pharmacy_2, PHARMACY_2, 2) == []
            # 4 of 6 in flight: the 2 left are for settlement calls only
            [refused] = await streams.open(hospital, HOSPITAL, 1)
            assert refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert refused.metadata["limit"] == "inflight_requests_max"
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await pb_grpc.ReconciliationServiceStub(hospital).ReconcileTotals(
                    pb.ReconcileTotalsRequest(
                        institution_code=HOSPITAL, business_date="2026-05-10"
                    ),
                    timeout=10,
                )
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            request = otc_request("reserve-1", PHARMACY)
            answer = await pb_grpc.SettlementServiceStub(pharmacy).Settle(request, timeout=10)
            assert answer.status == pb.SETTLEMENT_STATUS_SETTLED
        finally:
            await streams.close()


async def test_an_institution_holds_few_client_streams(certs: Pki) -> None:
    """Client streams buffer their records: an institution may hold only a few open."""
    bounds = EdgeLimits(client_streams_max=3, client_streams_per_institution_max=2)
    async with (
        _serving(certs, bounds) as running,
        channel(running.port, certs.creds(PHARMACY)) as pharmacy,
        channel(running.port, certs.creds(PHARMACY_2)) as pharmacy_2,
        channel(running.port, certs.creds(HOSPITAL)) as hospital,
    ):
        streams = IdleStreams(running)
        try:
            [mine] = await streams.open(pharmacy, PHARMACY, 3)
            assert (mine.code, mine.metadata["limit"]) == (
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "client_streams_per_institution_max",
            )
            assert await streams.open(pharmacy_2, PHARMACY_2, 1) == []
            [server_wide] = await streams.open(hospital, HOSPITAL, 1)
            assert server_wide.metadata["limit"] == "client_streams_max"
        finally:
            await streams.close()
    assert running.edge.streams.total == 0


async def test_a_stream_paused_too_long_is_ended(certs: Pki) -> None:
    """A stream that stops sending is ended DEADLINE_EXCEEDED (STREAM_TIMEOUT), its slot freed."""
    async with (
        _serving(certs, EdgeLimits(client_stream_idle_max_s=0.3)) as running,
        channel(running.port, certs.creds(PHARMACY)) as ch,
    ):
        streams = IdleStreams(running)
        started = asyncio.get_running_loop().time()
        refusal = await _reconcile(ch, streams._records(PHARMACY))
        waited_s = asyncio.get_running_loop().time() - started
    assert refusal is not None
    assert (refusal.code, refusal.reason) == (grpc.StatusCode.DEADLINE_EXCEEDED, "STREAM_TIMEOUT")
    assert 0.3 <= waited_s < 3
    assert running.edge.inflight == 0


async def test_a_stream_sending_too_long_is_ended(certs: Pki) -> None:
    """A stream that trickles (never idle for long) still ends after its total duration."""
    bounds = EdgeLimits(client_stream_idle_max_s=3.0, client_stream_duration_max_s=0.8)

    async def trickle() -> AsyncIterator[pb.ReconcileDetailRecord]:
        for n, pause_s in enumerate((0.3, 2.5, 2.5, 30)):  # it ends in the second pause
            yield _record(PHARMACY, n)
            await asyncio.sleep(pause_s)

    async with (
        _serving(certs, bounds) as running,
        channel(running.port, certs.creds(PHARMACY)) as ch,
    ):
        refusal = await _reconcile(ch, trickle())
    assert refusal is not None
    assert (refusal.code, refusal.reason) == (grpc.StatusCode.DEADLINE_EXCEEDED, "STREAM_TIMEOUT")
    assert "after 0.8 s" in refusal.message


class EndlessCatalog(MemoryBackend):
    """A catalog that never ends: its download lasts as long as its client reads."""

    async def catalog(self, since_version: int) -> AsyncIterator[CatalogEntry]:
        entries = list(catalog_entries(self.region.catalogs, since_version))
        while True:
            for entry in entries:
                yield entry


async def test_a_download_its_client_stopped_reading_ends_with_its_connection(
    certs: Pki,
) -> None:
    """A client that stops reading a catalog download would hold its call slot for
    as long as its connection lives: connections are closed after their age and
    grace, and the slot with them."""
    config = ServerConfig(
        listen="127.0.0.1:0", tls_dir=certs.tls_dir,
        connection_age_max_s=1.0, connection_age_grace_s=1.0,
    )  # fmt: skip
    running = await start(EndlessCatalog(), config)
    try:
        async with channel(running.port, certs.creds(PHARMACY)) as ch:
            call = pb_grpc.CatalogServiceStub(ch).DownloadCatalog(
                pb.DownloadCatalogRequest(since_version=0), timeout=60
            )
            for _ in range(3):
                await call.read()
            started = asyncio.get_running_loop().time()
            # the client reads no more: the server's writes wait on flow control
            await until(lambda: running.edge.inflight == 0, "the stream's slot freed")
            freed_s = asyncio.get_running_loop().time() - started
            with pytest.raises(grpc.aio.AioRpcError) as err:
                while await call.read() is not grpc.aio.EOF:
                    pass
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            # the channel connects again and settles
            answer = await pb_grpc.SettlementServiceStub(ch).Settle(
                otc_request("after-goaway", PHARMACY), timeout=10
            )
            assert answer.status == pb.SETTLEMENT_STATUS_SETTLED
        assert freed_s < 10
    finally:
        await running.stop(0)


async def _records(n: int, institution: str = PHARMACY) -> AsyncIterator[pb.ReconcileDetailRecord]:
    for i in range(n):
        yield _record(institution, i)


async def test_a_stream_of_too_many_records_is_refused(
    certs: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "reconcile_records_max", 5)
    async with (
        _serving(certs, EdgeLimits()) as running,
        channel(running.port, certs.creds(PHARMACY)) as ch,
    ):
        assert await _reconcile(ch, _records(5)) is None
        refusal = await _reconcile(ch, _records(6))
    assert refusal is not None and refusal.code == grpc.StatusCode.INVALID_ARGUMENT
    assert refusal.violations == {"records": "more than 5 records"}


async def test_a_stream_of_too_many_bytes_is_refused(certs: Pki) -> None:
    size = _record(PHARMACY, 9).ByteSize()
    async with (
        _serving(certs, EdgeLimits(client_stream_bytes_max=size * 5)) as running,
        channel(running.port, certs.creds(PHARMACY)) as ch,
    ):
        assert await _reconcile(ch, _records(5)) is None
        refusal = await _reconcile(ch, _records(6))
    assert refusal is not None and refusal.code == grpc.StatusCode.INVALID_ARGUMENT
    assert refusal.violations == {"records": f"more than {size * 5} bytes of records"}


@pytest.mark.parametrize(
    ("field", "value"),
    [("request_id", "r" * 65), ("settlement_id", "S" * 65), ("request_id", "r\x00")],
)
async def test_a_record_with_an_overlong_or_control_character_id_is_refused(
    switch: tuple[RunningServer, MemoryBackend], certs: Pki, field: str, value: str
) -> None:
    """A record's ids are bounded like a request's: each buffered record stays small."""
    running, _ = switch
    record = _record(PHARMACY)
    setattr(record, field, value)

    async def records() -> AsyncIterator[pb.ReconcileDetailRecord]:
        yield record

    async with channel(running.port, certs.creds(PHARMACY)) as ch:
        refusal = await _reconcile(ch, records())
    assert refusal is not None and refusal.code == grpc.StatusCode.INVALID_ARGUMENT
    assert f"records[0].{field}" in refusal.violations


# A string field (1, institution_code) with bytes that are not UTF-8, and a
# length prefix running past the end of the message.
BAD_UTF8 = b"\x0a\x02\xff\xfe"
CORRUPT = b"\x0a\x7f\x01"


@pytest.mark.parametrize(
    ("method", "raw", "error"),
    [
        ("/medswitch.v1.SettlementService/Settle", CORRUPT, "Wire format was corrupt"),
        ("/medswitch.v1.SettlementService/Settle", BAD_UTF8, "bad UTF-8"),
        ("/medswitch.v1.MemberService/GetMember", CORRUPT, "Wire format was corrupt"),
        ("/medswitch.v1.CatalogService/DownloadCatalog", CORRUPT, "Wire format was corrupt"),
    ],
)
async def test_an_undecodable_request_is_invalid_argument_and_logged(
    switch: tuple[RunningServer, MemoryBackend], certs: Pki, method: str, raw: bytes, error: str
) -> None:
    """Bytes that are not the method's request message: INVALID_ARGUMENT with
    ErrorInfo naming "request", and the call's one log event."""
    running, _ = switch
    async with channel(running.port, certs.creds(PHARMACY)) as ch:
        with log_events() as logs:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                if method.endswith("DownloadCatalog"):
                    async for _ in ch.unary_stream(method)(raw, timeout=10):
                        pass
                else:
                    await ch.unary_unary(method)(raw, timeout=10)
            events = await logs.wait("rpc")
    details = error_details(err.value)
    assert (details.code, details.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")
    assert error in details.violations["request"]
    [event] = events
    assert (event["method"], event["status"]) == (method.rsplit("/")[-1], "INVALID_ARGUMENT")
    assert (event["institution"], event["error_reason"]) == (PHARMACY, "INVALID_REQUEST")


async def test_an_undecodable_record_in_a_stream_is_invalid_argument(
    switch: tuple[RunningServer, MemoryBackend], certs: Pki
) -> None:
    running, _ = switch

    async def messages() -> AsyncIterator[bytes]:
        yield _record(PHARMACY).SerializeToString()
        yield BAD_UTF8

    call = "/medswitch.v1.ReconciliationService/ReconcileDetails"
    async with channel(running.port, certs.creds(PHARMACY)) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await ch.stream_unary(call)(messages(), timeout=10)
    details = error_details(err.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "bad UTF-8" in details.violations["records[1]"]


async def test_what_a_refused_request_claims_is_logged_and_echoed_truncated(
    switch: tuple[RunningServer, MemoryBackend], certs: Pki
) -> None:
    """A megabyte of claimed institution, request id and card: the log event and the
    status message show their beginnings, not megabytes."""
    running, _ = switch
    request = otc_request("r" * 1_000_000, "X" * 1_000_000)
    request.card_no = "C" * 1_000_000
    async with channel(running.port, certs.creds(PHARMACY)) as ch:
        with log_events() as logs:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await pb_grpc.SettlementServiceStub(ch).Settle(request, timeout=10)
            [event] = await logs.wait("rpc")
    details = error_details(err.value)
    assert (details.code, details.reason) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "INSTITUTION_MISMATCH",
    )
    assert f"not {'X' * 64}...(1000000 characters)" in details.message
    assert len(details.message) < 200
    assert event["claimed_institution"] == "X" * 64 + "...(1000000 characters)"
    assert event["request_id"] == "r" * 64 + "...(1000000 characters)"
    assert len(event["card"]) < 100


async def test_a_claim_dated_after_tomorrow_is_refused(
    switch: tuple[RunningServer, MemoryBackend], certs: Pki
) -> None:
    """A service date far in the future is refused, naming the field; today's settles."""
    running, backend = switch
    before = len(backend.region.settlements)
    today = datetime.now(REGION_TZ).date()
    async with channel(running.port, certs.creds(PHARMACY)) as ch:
        stub = pb_grpc.SettlementServiceStub(ch)
        for day in ("9999-12-31", (today + timedelta(days=2)).isoformat()):
            request = otc_request(f"future-{day}")
            request.service_date = day
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Settle(request, timeout=10)
            details = error_details(err.value)
            assert details.code == grpc.StatusCode.INVALID_ARGUMENT
            assert "in the future" in details.violations["service_date"]
        assert len(backend.region.settlements) == before
        request = otc_request("future-today")
        request.service_date = today.isoformat()
        answer = await stub.Settle(request, timeout=10)
    assert answer.status == pb.SETTLEMENT_STATUS_SETTLED


async def test_idle_health_and_reflection_streams_do_not_starve_settlement(certs: Pki) -> None:
    """Health Watch and reflection streams stay open at their client's will: one
    institution may hold a few, never enough to fill grpc's own bound on calls."""
    bounds = EdgeLimits(
        inflight_max=4,
        inflight_reserved_for_settlement=1,
        health_reflection_streams_max=4,
        health_reflection_streams_per_institution_max=2,
    )
    release = asyncio.Event()

    async def idle() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        await release.wait()
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    async with (
        _serving(certs, bounds) as running,
        channel(running.port, certs.creds(PHARMACY)) as pharmacy,
        channel(running.port, certs.creds(HOSPITAL)) as hospital,
    ):
        reflecting = reflection_pb2_grpc.ServerReflectionStub(pharmacy)
        streams = [reflecting.ServerReflectionInfo(idle()) for _ in range(40)]
        ending = [asyncio.ensure_future(call.code()) for call in streams]
        while sum(call.done() for call in streams) < 38:  # all but the 2 admitted
            await wait_for(
                asyncio.wait(ending, return_when=asyncio.FIRST_COMPLETED), "refused streams"
            )
            ending = [e for e in ending if not e.done()]
        assert running.edge.library_streams.of(PHARMACY) == 2
        watch = health_pb2_grpc.HealthStub(pharmacy).Watch(health_pb2.HealthCheckRequest())
        refused = []
        for call in [watch, *(call for call in streams if call.done())]:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                async for _ in call:
                    pass
            refused.append(error_details(err.value))
        assert len(refused) == 39
        assert {(r.code, r.metadata["limit"]) for r in refused} == {
            (grpc.StatusCode.RESOURCE_EXHAUSTED, "health_reflection_streams_per_institution_max")
        }
        answer = await pb_grpc.SettlementServiceStub(hospital).Settle(
            otc_request("idle-streams", HOSPITAL), timeout=10
        )
        assert answer.status == pb.SETTLEMENT_STATUS_REJECTED  # by policy: answered
        release.set()
        for call in streams:
            call.cancel()
