"""Concurrency: one card charged by two pharmacies at once, through the real API.

Settle serialises per member inside one database transaction: however the 50
calls interleave, the account is never overdrawn, the per-day purchase
accumulator is never double-counted, and the ledger verifies afterwards.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import date, timedelta

import asyncpg
import grpc
import pytest
from prometheus_client import REGISTRY

from switch.proto import medswitch_pb2 as pb
from switch.proto import medswitch_pb2_grpc as pb_grpc
from tests.cli import medswitch
from tests.grpc_harness import Pki, channel, error_details
from tests.switch_pg import LiveSwitch, SwitchPg, live_switch, stop_switch
from tests.switch_pg import switch_certs as switch_certs
from tests.switch_pg import switch_pg as switch_pg


@pytest.fixture(scope="module", params=[False, True], ids=["per-call-commit", "group-commit"])
async def live(
    request: pytest.FixtureRequest, switch_pg: SwitchPg, switch_certs: Pki
) -> AsyncIterator[LiveSwitch]:
    """Every concurrency rule holds with and without group commit."""
    switch = await live_switch(switch_pg, switch_certs, group_commit=request.param)
    yield switch
    await stop_switch(switch)


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


async def test_identical_requests_racing_settle_once(live: LiveSwitch) -> None:
    """Ten copies of one request at once: one settlement, ten identical answers;
    a different request under the same id meanwhile gets ALREADY_EXISTS."""
    req = purchase(1000)
    req.request_id = "race-1"
    req.card_no, req.pin = "C3303990001", "135790"
    altered = pb.SettleRequest()
    altered.CopyFrom(req)
    altered.lines[0].quantity += 1
    altered.lines[0].amount_fen = altered.lines[0].quantity * PRICE_FEN
    async with channel(live.running.port, live.certs.creds(req.institution_code)) as ch:
        stub = pb_grpc.SettlementServiceStub(ch)
        results = await asyncio.gather(
            *(stub.Settle(req) for _ in range(10)),
            stub.Settle(altered),
            return_exceptions=True,
        )
    answers = [r for r in results if isinstance(r, pb.SettleResponse)]
    errors = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len({a.SerializeToString() for a in answers}) == 1
    # The altered copy lost the race (ALREADY_EXISTS) or won it (then all ten lost).
    if len(answers) == 10:
        assert [e.code() for e in errors] == [grpc.StatusCode.ALREADY_EXISTS]
    else:
        assert len(answers) == 1 and len(errors) == 10
        assert {e.code() for e in errors} == {grpc.StatusCode.ALREADY_EXISTS}
    conn = await asyncpg.connect(live.db_url)
    try:
        count = await conn.fetchval("SELECT count(*) FROM settlements WHERE request_id = 'race-1'")
    finally:
        await conn.close()
    assert count == 1


async def test_concurrent_outpatient_claims_never_double_count_the_deductible(
    live: LiveSwitch, switch_pg: SwitchPg
) -> None:
    """Twenty outpatient claims for one employee from two hospitals at once: the
    annual deductible is consumed exactly once, in whatever order they commit."""
    hospitals = ("H33039900001", "H33039900002")  # L3 and L2: both 50 % for employees
    price_fen, quantity, claims = 6_000, 2, 20
    deductible_fen = 100_000  # policy: outpatient.deductible_fen.EMPLOYEE
    requests = [
        pb.SettleRequest(
            request_id=f"opd-{n:03d}",
            institution_code=hospitals[n % 2],
            card_no="C3303990017",
            pin="787878",
            visit_type=pb.VISIT_TYPE_OUTPATIENT,
            service_date="2026-04-01",
            diagnoses=["J06.9"],
            lines=[
                pb.ClaimLine(
                    line_no=1,
                    item_code="250301001",
                    quantity=quantity,
                    unit_price_fen=price_fen,
                    amount_fen=quantity * price_fen,
                )
            ],
        )
        for n in range(claims)
    ]
    chans = {code: channel(live.running.port, live.certs.creds(code)) for code in hospitals}
    try:
        answers = await asyncio.gather(
            *(
                pb_grpc.SettlementServiceStub(chans[r.institution_code]).Settle(r, timeout=60)
                for r in requests
            )
        )
    finally:
        for ch in chans.values():
            await ch.close()
    assert all(a.status == pb.SETTLEMENT_STATUS_SETTLED for a in answers)
    per_claim = price_fen * quantity
    full, rest = divmod(deductible_fen, per_claim)
    assert sorted(a.split.deductible_fen for a in answers) == sorted(
        [per_claim] * full + [rest] + [0] * (claims - full - 1)
    )
    pooled = sum(a.split.pooled_fund_fen for a in answers)
    assert pooled == (claims * per_claim - deductible_fen) // 2
    conn = await asyncpg.connect(live.db_url)
    try:
        year = await conn.fetchrow(
            "SELECT outpatient_deductible_used_fen, outpatient_pooled_fen FROM member_year"
            " WHERE member_id = 'M0017' AND year = 2026"
        )
    finally:
        await conn.close()
    assert year["outpatient_deductible_used_fen"] == deductible_fen
    assert year["outpatient_pooled_fen"] == pooled
    env = {"MEDSWITCH_DATABASE_URL": live.db_url, "MEDSWITCH_DATA_KEY": switch_pg.data_key.hex()}
    verify = medswitch("ledger", "verify", env=env)
    assert verify.returncode == 0, verify.stdout + verify.stderr


async def test_parallel_pin_guesses_still_lock_the_card_after_five(live: LiveSwitch) -> None:
    """Twenty wrong PINs at once (GetMember and PreSettle): exactly five count as
    wrong, every later one finds the card locked; parallelism buys no guesses."""
    card = "C3303990019"
    async with channel(live.running.port, live.certs.creds(PHARMACIES[0])) as ch:
        members = pb_grpc.MemberServiceStub(ch)
        settle = pb_grpc.SettlementServiceStub(ch)
        guesses = []
        for n in range(20):
            if n % 2:
                guesses.append(
                    members.GetMember(
                        pb.GetMemberRequest(
                            institution_code=PHARMACIES[0], card_no=card, pin=f"{n:06d}"
                        )
                    )
                )
            else:
                req = purchase(n)
                req.request_id, req.card_no, req.pin = f"guess-{n}", card, f"{n:06d}"
                guesses.append(settle.PreSettle(req))
        results = await asyncio.gather(*guesses, return_exceptions=True)
    outcomes: list[str] = []
    for r in results:
        if isinstance(r, grpc.aio.AioRpcError):
            outcomes.append(error_details(r).reason)  # PIN_INVALID / PIN_LOCKED
        else:
            assert isinstance(r, pb.SettleResponse)
            outcomes.append(r.reasons[0].removeprefix("R_"))
    assert sorted(outcomes) == sorted(["PIN_INVALID"] * 5 + ["PIN_LOCKED"] * 15), outcomes


async def test_concurrent_settlements_of_many_members(live: LiveSwitch) -> None:
    """Many members at once: each call its own, correct, durable answer; with group
    commit on, calls arriving together share transactions."""
    cards = [
        ("C3303990001", "135790"),
        ("C3303990002", "246802"),
        ("C3303990006", "778899"),
        ("C3303990008", "564738"),
        ("C3303990012", "808080"),
        ("C3303990014", "121212"),
        ("C3303990016", "565656"),
        ("C3303990017", "787878"),
    ]
    requests = []
    for n in range(48):
        req = purchase(n)
        req.request_id = f"group-{n:03d}"
        req.card_no, req.pin = cards[n % len(cards)]
        req.service_date = (date(2026, 9, 1) + timedelta(days=n)).isoformat()
        requests.append(req)

    def batch_stats() -> tuple[float, float]:
        count = REGISTRY.get_sample_value("medswitch_settle_batch_size_count") or 0.0
        total = REGISTRY.get_sample_value("medswitch_settle_batch_size_sum") or 0.0
        return count, total

    before = batch_stats()
    chans = {code: channel(live.running.port, live.certs.creds(code)) for code in PHARMACIES}
    try:
        answers = await asyncio.gather(
            *(
                pb_grpc.SettlementServiceStub(chans[r.institution_code]).Settle(r, timeout=60)
                for r in requests
            )
        )
    finally:
        for ch in chans.values():
            await ch.close()
    after = batch_stats()
    batches, items = after[0] - before[0], after[1] - before[1]
    # Every Settle goes through the writer; its batches hold one claim per card.
    assert items == len(requests)
    if live.backend.writer.batch_max > 1:
        assert batches < len(requests), "no two settlements ever shared a commit"
    else:
        assert batches == len(requests)
    assert len({a.settlement_id for a in answers}) == len(requests)
    assert all(a.status == pb.SETTLEMENT_STATUS_SETTLED for a in answers)
    conn = await asyncpg.connect(live.db_url)
    try:
        stored = await conn.fetchval(
            "SELECT count(*) FROM settlements WHERE request_id LIKE 'group-%'"
        )
    finally:
        await conn.close()
    assert stored == len(requests)
