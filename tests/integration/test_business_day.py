"""Business days seen through the API: a closed day's settlement is corrected by an
adjustment, not cancelled; with no open day nothing settles (UNAVAILABLE)."""

from __future__ import annotations

from datetime import date, timedelta

import asyncpg
import grpc

from switch.proto import medswitch_pb2 as pb
from switch.proto import medswitch_pb2_grpc as pb_grpc
from tests.grpc_harness import channel, error_details, pharmacy_request
from tests.switch_pg import LiveSwitch
from tests.switch_pg import live as live
from tests.switch_pg import switch_certs as switch_certs
from tests.switch_pg import switch_pg as switch_pg

P1 = "P33039900005"


def purchase(request_id: str) -> pb.SettleRequest:
    request: pb.SettleRequest = pharmacy_request(
        request_id, P1, "C3303990008", "564738", "2026-08-01"
    )
    return request


async def _close_day(db_url: str, day: date, *, open_next: bool) -> None:
    """What end of day does to business_days (run as the database owner)."""
    conn = await asyncpg.connect(db_url)
    try:
        async with conn.transaction():
            await conn.execute(
                "UPDATE business_days SET status = 'CLOSED', closed_at = now()"
                " WHERE business_date = $1",
                day,
            )
            if open_next:
                await conn.execute(
                    "INSERT INTO business_days (business_date, status) VALUES ($1, 'OPEN')",
                    day + timedelta(days=1),
                )
    finally:
        await conn.close()


async def test_closed_day_is_not_cancellable_and_no_open_day_is_unavailable(
    live: LiveSwitch,
) -> None:
    async with channel(live.running.port, live.certs.creds(P1)) as ch:
        stub = pb_grpc.SettlementServiceStub(ch)
        first = await stub.Settle(purchase("day-1"))
        day = date.fromisoformat(first.business_date)
        await _close_day(live.db_url, day, open_next=True)

        with grpc_error() as caught:
            await stub.CancelSettlement(
                pb.CancelSettlementRequest(
                    request_id="day-1-cancel",
                    institution_code=P1,
                    settlement_id=first.settlement_id,
                )
            )
        assert caught.value == (grpc.StatusCode.FAILED_PRECONDITION, "BUSINESS_DAY_CLOSED")

        second = await stub.Settle(purchase("day-2"))
        assert second.business_date == (day + timedelta(days=1)).isoformat()
        assert await stub.Settle(purchase("day-1")) == first  # a late retry: same answer

        await _close_day(live.db_url, day + timedelta(days=1), open_next=False)
        with grpc_error() as caught:
            await stub.Settle(purchase("day-3"))
        assert caught.value == (grpc.StatusCode.UNAVAILABLE, "NO_OPEN_BUSINESS_DAY")


class grpc_error:
    """Catches one AioRpcError; `.value` is (code, ErrorInfo.reason)."""

    value: tuple[grpc.StatusCode, str]

    def __enter__(self) -> grpc_error:
        return self

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> bool:
        assert isinstance(exc, grpc.aio.AioRpcError), f"expected an RPC error, got {exc!r}"
        details = error_details(exc)
        assert details.domain == "medswitch"
        self.value = (details.code, details.reason)
        return True
