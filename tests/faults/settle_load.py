"""Settle load that survives faults, and the checks that nothing was lost or doubled.

Workers send pharmacy purchases over mutual TLS. An answer is recorded as
acknowledged; a call whose outcome is unknown (UNAVAILABLE, DEADLINE_EXCEEDED
and the other retryable statuses) is sent again with the same request id
until it is answered, as a front-end machine must. The longest stretch in
which no call was answered is the outage seen by the clients.

`check_nothing_lost` then asks the switch itself: every acknowledged
settlement is found by GetSettlement and a resend returns it unchanged, the
database holds exactly one settlement per request id sent, and
ReconcileTotals agrees with the sum of the acknowledged answers.

Run by hand against a running switch (deploy/README.md):
    python -m tests.faults.settle_load --port 50051 --tls-dir var/tls --seconds 60 --check
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import grpc

from switch import pki
from switch.proto import medswitch_pb2 as pb
from switch.proto import medswitch_pb2_grpc as pb_grpc
from tests.grpc_harness import pharmacy_request
from tests.switch_pg import active_cards

PHARMACY = "P33039900005"
# What README's "Retries" calls safe to send again with the same request id.
RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.INTERNAL,
}
CALL_TIMEOUT_S = 10.0
RETRY_PAUSE_S = 0.2
GIVE_UP_S = 120.0  # a request still unanswered after this fails the run


def credentials(tls_dir: Path, code: str = PHARMACY) -> grpc.ChannelCredentials:
    paths = pki.TlsPaths(tls_dir)
    if not paths.client_crt(code).exists():
        pki.issue(tls_dir, code)
    return grpc.ssl_channel_credentials(
        root_certificates=paths.ca_crt.read_bytes(),
        private_key=paths.client_key(code).read_bytes(),
        certificate_chain=paths.client_crt(code).read_bytes(),
    )


@dataclass
class LoadRecord:
    acknowledged: dict[str, pb.SettleResponse] = field(default_factory=dict)
    requests: dict[str, pb.SettleRequest] = field(default_factory=dict)
    retries: int = 0
    refused: dict[str, int] = field(default_factory=dict)  # status name -> count
    answered_at: list[float] = field(default_factory=list)  # monotonic times of answers
    unanswered: list[str] = field(default_factory=list)
    # the switch's totals for the institution's business day before the load
    baseline: pb.ReconcileTotalsResponse | None = None

    def longest_gap_s(self, after: float) -> float:
        """The longest time without any answer, from `after` on (the clients' outage)."""
        times = sorted(t for t in self.answered_at if t >= after)
        if not times:
            return float("inf")
        return max([b - a for a, b in zip([after, *times], times, strict=False)], default=0.0)


async def settle_until_answered(
    stub: pb_grpc.SettlementServiceStub, request: pb.SettleRequest, record: LoadRecord
) -> None:
    """Send, and on an unknown outcome resend the same request id, until answered."""
    record.requests[request.request_id] = request
    deadline = time.monotonic() + GIVE_UP_S
    while True:
        try:
            answer = await stub.Settle(request, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as err:
            name = err.code().name
            record.refused[name] = record.refused.get(name, 0) + 1
            if err.code() not in RETRYABLE or time.monotonic() > deadline:
                record.unanswered.append(f"{request.request_id}: {name} {err.details()}")
                return
            record.retries += 1
            await asyncio.sleep(RETRY_PAUSE_S)
            continue
        record.acknowledged[request.request_id] = answer
        record.answered_at.append(time.monotonic())
        return


async def run_load(
    port: int,
    creds: grpc.ChannelCredentials,
    stop: asyncio.Event,
    record: LoadRecord,
    *,
    workers: int = 8,
) -> None:
    """Settle from `workers` clients until `stop` is set, into `record` (watch it live).

    Every request sent is answered in the end, or listed in record.unanswered.
    """
    cards = active_cards()
    run_tag = f"{time.time_ns():x}"
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", creds) as ch:
        record.baseline = await _totals(ch, [])

    async def worker(w: int, stub: pb_grpc.SettlementServiceStub) -> None:
        n = 0
        while not stop.is_set():
            card, pin = cards[(w + n) % len(cards)]
            # spread over days: one card buys at most a few times a day
            day = (date(2026, 1, 1) + timedelta(days=(n // len(cards)) % 360)).isoformat()
            request = pharmacy_request(f"fault-{run_tag}-{w}-{n}", PHARMACY, card, pin, day)
            n += 1
            await settle_until_answered(stub, request, record)

    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", creds) as ch:
        stub = pb_grpc.SettlementServiceStub(ch)
        await asyncio.gather(*(worker(w, stub) for w in range(workers)))


async def check_nothing_lost(
    port: int, creds: grpc.ChannelCredentials, record: LoadRecord, conn: Any
) -> list[str]:
    """What is wrong, if anything: an empty list means nothing lost, nothing doubled.

    `conn` is an asyncpg connection to the switch's database.
    """
    problems = [f"never answered: {u}" for u in record.unanswered]
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", creds) as ch:
        stub = pb_grpc.SettlementServiceStub(ch)
        for request_id, answer in record.acknowledged.items():
            found = await stub.GetSettlement(
                pb.GetSettlementRequest(institution_code=PHARMACY, request_id=request_id),
                timeout=CALL_TIMEOUT_S,
            )
            resent = await stub.Settle(record.requests[request_id], timeout=CALL_TIMEOUT_S)
            if found.settlement_id != answer.settlement_id or resent != answer:
                problems.append(f"{request_id}: answered {answer.settlement_id}, now differs")
        problems += await _reconcile(ch, record)
    rows = await conn.fetch(
        "SELECT request_id, count(*) AS n FROM settlements"
        " WHERE institution_code = $1 AND request_id = any($2::text[]) GROUP BY request_id",
        PHARMACY,
        list(record.requests),
    )
    stored = {r["request_id"]: r["n"] for r in rows}
    problems += [f"{rid}: {n} settlements" for rid, n in stored.items() if n != 1]
    lost = set(record.acknowledged) - set(stored)
    problems += [f"acknowledged but not stored: {rid}" for rid in sorted(lost)]
    return problems


async def _totals(
    ch: grpc.aio.Channel, answers: list[pb.SettleResponse], base: Any = None
) -> pb.ReconcileTotalsResponse:
    """ReconcileTotals for the open business day, claiming `base` plus `answers`."""
    day = (
        await pb_grpc.SettlementServiceStub(ch).PreSettle(
            pharmacy_request("totals", PHARMACY, *active_cards()[0], "2026-01-01"),
            timeout=CALL_TIMEOUT_S,
        )
    ).business_date

    def claimed(field: str, part: str) -> int:
        start = int(getattr(base, f"switch_{field}")) if base is not None else 0
        return start + sum(int(getattr(a.split, part)) for a in answers)

    answer: pb.ReconcileTotalsResponse = await pb_grpc.ReconciliationServiceStub(
        ch
    ).ReconcileTotals(
        pb.ReconcileTotalsRequest(
            institution_code=PHARMACY,
            business_date=day,
            settlement_count=(base.switch_settlement_count if base is not None else 0)
            + len(answers),
            medical_total_fen=claimed("medical_total_fen", "total_fen"),
            pooled_fund_fen=claimed("pooled_fund_fen", "pooled_fund_fen"),
            serious_illness_fen=claimed("serious_illness_fen", "serious_illness_fen"),
            individual_account_fen=claimed("individual_account_fen", "individual_account_fen"),
        ),
        timeout=CALL_TIMEOUT_S,
    )
    return answer


async def _reconcile(ch: grpc.aio.Channel, record: LoadRecord) -> list[str]:
    """ReconcileTotals: the totals before the load plus the acknowledged settlements."""
    settled = [a for a in record.acknowledged.values() if a.status == pb.SETTLEMENT_STATUS_SETTLED]
    totals = await _totals(ch, settled, record.baseline)
    return [] if totals.matched else [f"ReconcileTotals differs: {list(totals.differences)}"]


async def _main(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(args.seconds, stop.set)
    started = time.monotonic()
    creds = credentials(args.tls_dir)
    record = LoadRecord()
    await run_load(args.port, creds, stop, record, workers=args.workers)
    print(
        f"answered {len(record.acknowledged)}, retries {record.retries}, refused {record.refused},"
        f" unanswered {len(record.unanswered)},"
        f" longest gap {record.longest_gap_s(started + 1.0):.1f} s"
    )
    if args.check:
        conn = await asyncpg.connect(os.environ["MEDSWITCH_DATABASE_URL"])
        try:
            problems = await check_nothing_lost(args.port, creds, record, conn)
        finally:
            await conn.close()
        print("\n".join(problems) or "nothing lost, nothing doubled")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Settle load with retries of unknown outcomes")
    parser.add_argument("--port", type=int, default=50051)
    parser.add_argument("--tls-dir", type=Path, default=Path("var/tls"))
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument(
        "--check", action="store_true", help="then check (database: $MEDSWITCH_DATABASE_URL)"
    )
    asyncio.run(_main(parser.parse_args()))
