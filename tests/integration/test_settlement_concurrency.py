"""Concurrency: one card charged by two pharmacies at once, through the real API.

Settle serialises per member inside one database transaction: however the 50
calls interleave, the account is never overdrawn, the per-day purchase
accumulator is never double-counted, and the ledger verifies afterwards.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import date, timedelta

import asyncpg

from switch.proto import medswitch_pb2 as pb
from switch.proto import medswitch_pb2_grpc as pb_grpc
from tests.cli import medswitch
from tests.grpc_harness import channel
from tests.switch_pg import LiveSwitch, SwitchPg
from tests.switch_pg import live as live
from tests.switch_pg import switch_certs as switch_certs
from tests.switch_pg import switch_pg as switch_pg

PHARMACIES = ("P33039900005", "P33039900006")
CARD, PIN, MEMBER = "C3303990015", "343434", "M0015"
OPENING_BALANCE_FEN = 250_000
PRICE_FEN, QUANTITY = 450, 20  # 9,000 fen a purchase: under the OTC limit
DAYS, PER_DAY, ALLOWED_PER_DAY = 10, 5, 3  # policy: max_purchases_per_day = 3


def purchase(n: int) -> pb.SettleRequest:
    day = date(2026, 3, 1) + timedelta(days=n % DAYS)
    return pb.SettleRequest(
        request_id=f"conc-{n:03d}",
        institution_code=PHARMACIES[n % 2],
        card_no=CARD,
        pin=PIN,
        visit_type=pb.VISIT_TYPE_PHARMACY,
        service_date=day.isoformat(),
        lines=[
            pb.ClaimLine(
                line_no=1,
                item_code="XN02BEA001A001010100004",
                quantity=QUANTITY,
                unit_price_fen=PRICE_FEN,
                amount_fen=QUANTITY * PRICE_FEN,
            )
        ],
    )


async def test_fifty_concurrent_settlements_for_one_member(
    live: LiveSwitch, switch_pg: SwitchPg
) -> None:
    """Never overdrawn, never double-counted, every fen accounted, ledger sound."""
    requests = [purchase(n) for n in range(DAYS * PER_DAY)]
    chans = {code: channel(live.running.port, live.certs.creds(code)) for code in PHARMACIES}
    try:
        stubs = {code: pb_grpc.SettlementServiceStub(ch) for code, ch in chans.items()}
        answers = await asyncio.gather(
            *(stubs[r.institution_code].Settle(r, timeout=60) for r in requests)
        )
        # Retries of all of them, concurrently again: the same answers, nothing new.
        retried = await asyncio.gather(
            *(stubs[r.institution_code].Settle(r, timeout=60) for r in requests)
        )
    finally:
        for ch in chans.values():
            await ch.close()
    assert list(retried) == list(answers)

    settled = [a for a in answers if a.status == pb.SETTLEMENT_STATUS_SETTLED]
    rejected = [a for a in answers if a.status == pb.SETTLEMENT_STATUS_REJECTED]
    assert len(settled) == DAYS * ALLOWED_PER_DAY
    assert len(rejected) == DAYS * (PER_DAY - ALLOWED_PER_DAY)
    assert all(list(a.reasons) == ["R_FREQUENT_PURCHASE"] for a in rejected)
    by_day = Counter(
        r.service_date
        for r, a in zip(requests, answers, strict=True)
        if a.status == pb.SETTLEMENT_STATUS_SETTLED
    )
    assert set(by_day.values()) == {ALLOWED_PER_DAY}

    paid = sum(a.split.individual_account_fen for a in settled)
    assert paid == min(OPENING_BALANCE_FEN, len(settled) * QUANTITY * PRICE_FEN)
    assert all(a.balance_after_fen >= 0 for a in answers)
    for a in settled:  # every split adds up
        s = a.split
        assert s.total_fen == (
            s.pooled_fund_fen
            + s.serious_illness_fen
            + s.institution_waiver_fen
            + s.individual_account_fen
            + s.patient_cash_fen
        )
    # Each settlement saw the balance its predecessors left: the balances after
    # are exactly the running balance in commit order.
    afters = sorted((a.balance_after_fen for a in settled), reverse=True)
    running, expected = OPENING_BALANCE_FEN, []
    for a in sorted(settled, key=lambda a: (-a.balance_after_fen, -a.split.individual_account_fen)):
        running -= a.split.individual_account_fen
        expected.append(running)
    assert afters == sorted(expected, reverse=True)

    conn = await asyncpg.connect(live.db_url)
    try:
        counts = await conn.fetch(
            "SELECT service_date, purchases FROM pharmacy_daily WHERE member_id = $1", MEMBER
        )
        balance = await conn.fetchval(
            "SELECT b.balance_fen FROM members m JOIN account_balances b USING (account_id)"
            " WHERE m.member_id = $1",
            MEMBER,
        )
    finally:
        await conn.close()
    assert {r["purchases"] for r in counts} == {ALLOWED_PER_DAY} and len(counts) == DAYS
    assert balance == OPENING_BALANCE_FEN - paid

    env = {"MEDSWITCH_DATABASE_URL": live.db_url, "MEDSWITCH_DATA_KEY": switch_pg.data_key.hex()}
    verify = medswitch("ledger", "verify", env=env)
    assert verify.returncode == 0, verify.stdout + verify.stderr
