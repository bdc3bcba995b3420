"""Settle and cancel against a real PostgreSQL: exactly once, never overdrawn, exact undo."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from datetime import date

import asyncpg
import pytest

from ledger import chain
from ledger.store import (
    ClaimInputs,
    DayClosed,
    Decision,
    InsufficientBalance,
    LateOriginal,
    Ledger,
    MalformedDecision,
    NotCancellable,
    NotYourSettlement,
    RequestIdReused,
    SettleItem,
    SettlementNotFound,
)
from tests.integration.ledger_helpers import DAY, INSTITUTION, OTHER_INSTITUTION, debit

CARD = "C3303990001"  # M0001, opening balance 320000 fen
OPENING_FEN = 320_000


async def _balance(pool: asyncpg.Pool, member_id: str = "M0001") -> int:
    value: int = await pool.fetchval(
        "SELECT b.balance_fen FROM members m JOIN account_balances b USING (account_id)"
        " WHERE m.member_id = $1",
        member_id,
    )
    return value


async def _verify(url: str) -> chain.VerifyReport:
    conn = await asyncpg.connect(url)
    try:
        return await chain.verify(conn)
    finally:
        await conn.close()


async def test_200_concurrent_debits_never_overdraw(
    ledger: Ledger, app_pool: asyncpg.Pool, reference_db: str
) -> None:
    """Whatever runs at once, the balance ends at opening minus the accepted debits, never < 0."""
    debit_fen = 3_000

    async def one(i: int) -> str:
        result = await ledger.settle(
            (INSTITUTION, f"r{i}"), f"fp{i}".encode(), CARD, 2026, DAY, debit(debit_fen)
        )
        return result.status

    statuses = await asyncio.gather(*(one(i) for i in range(200)))
    accepted = statuses.count("SETTLED")
    assert accepted == OPENING_FEN // debit_fen
    assert statuses.count("REJECTED") == 200 - accepted
    assert await _balance(app_pool) == OPENING_FEN - accepted * debit_fen
    recorded = await app_pool.fetchval("SELECT count(*) FROM settlements")
    assert recorded == 200
    assert (await _verify(reference_db)).sound


async def test_the_database_refuses_an_overdraft_the_caller_did_not_check(
    ledger: Ledger, app_pool: asyncpg.Pool
) -> None:
    """A decide callback that ignores the balance still cannot take it below zero."""
    debit_fen = 7_000

    async def one(i: int) -> bool:
        try:
            await ledger.settle(
                (INSTITUTION, f"x{i}"), b"fp", CARD, 2026, DAY, debit(debit_fen, honest=False)
            )
        except InsufficientBalance:
            return False
        return True

    results = await asyncio.gather(*(one(i) for i in range(60)))
    accepted = sum(results)
    assert accepted == OPENING_FEN // debit_fen
    assert await _balance(app_pool) == OPENING_FEN - accepted * debit_fen
    # the refused ones left nothing behind
    assert await app_pool.fetchval("SELECT count(*) FROM settlements") == accepted


async def test_identical_requests_racing_post_exactly_once(
    ledger: Ledger, app_pool: asyncpg.Pool
) -> None:
    decide = debit(1_000)
    results = await asyncio.gather(
        *(
            ledger.settle((INSTITUTION, "same"), b"fp-same", CARD, 2026, DAY, decide)
            for _ in range(8)
        )
    )
    assert len({r.settlement_id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert all(r.answer == results[0].answer for r in results)
    assert await app_pool.fetchval("SELECT count(*) FROM entries WHERE kind = 'SETTLEMENT'") == 1
    assert await _balance(app_pool) == OPENING_FEN - 1_000
    with pytest.raises(RequestIdReused):
        await ledger.settle((INSTITUTION, "same"), b"other", CARD, 2026, DAY, decide)


async def test_a_connection_killed_mid_transaction_leaves_nothing(
    app_pool: asyncpg.Pool, reference_db: str, data_keys: object
) -> None:
    from ledger.crypto import DataKeys

    assert isinstance(data_keys, DataKeys)
    lanes_before = await app_pool.fetch("SELECT * FROM chain_lanes ORDER BY lane")
    conn = await asyncpg.connect(reference_db, server_settings={"role": "medswitch_app"})
    victim_pid = conn.get_server_pid()
    await conn.execute("BEGIN")
    loaded = await conn.fetchrow(
        "SELECT * FROM ms_load_batch(ARRAY[$1], ARRAY[$2::bytea], ARRAY[2026], ARRAY[$3::date],"
        " 400, true, ARRAY['killed'])",
        INSTITUTION,
        data_keys.card_lookup(CARD),
        DAY,
    )
    await conn.execute(
        "SELECT ms_record_settlement($1, $2, 'killed', '\\x00', 'SETTLED', 'M0001', $3, 2026,"
        " '2026.1', 1, 5000, 0, 0, 5000, '{}'::jsonb, NULL,"
        " ARRAY['member:M0001', 'institution:H33039900001:payable'], ARRAY[5000, -5000]::bigint[],"
        " NULL)",
        loaded["settlement_id"],
        INSTITUTION,
        DAY,
    )
    assert await conn.fetchval("SELECT count(*) FROM settlements") == 1  # in flight
    admin = await asyncpg.connect(reference_db)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", victim_pid)
    finally:
        await admin.close()
    with pytest.raises(
        (
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,
            ConnectionError,
        )
    ):
        await asyncio.wait_for(conn.execute("COMMIT"), 10)
    conn.terminate()
    assert await app_pool.fetchval("SELECT count(*) FROM settlements") == 0
    assert await app_pool.fetchval("SELECT count(*) FROM entries WHERE kind <> 'OPENING'") == 0
    assert await _balance(app_pool) == OPENING_FEN
    assert await app_pool.fetch("SELECT * FROM chain_lanes ORDER BY lane") == lanes_before
    assert (await _verify(reference_db)).sound


async def test_cancel_restores_member_state_exactly(ledger: Ledger, app_pool: asyncpg.Pool) -> None:
    before = await app_pool.fetch("SELECT * FROM member_year WHERE member_id = 'M0001'")
    stay = {
        "settlement_id": "",  # filled below
        "primary_diagnosis": "J18",
        "admission_date": "2026-11-01",
        "discharge_date": "2026-11-10",
        "new_admission": True,
    }

    def decide(inputs):  # type: ignore[no-untyped-def]
        stay["settlement_id"] = inputs.settlement_id
        return debit(
            2_500,
            pooled_fen=40_000,
            basic_pooled_fen=40_000,
            inpatient_above_deductible_fen=45_000,
            new_admissions=1,
            pharmacy_date="2026-11-20",
            stay=dict(stay),
        )(inputs)

    settled = await ledger.settle((INSTITUTION, "s1"), b"f", CARD, 2026, DAY, decide)
    # stored key for key as decided (made in SQL from the typed fields)
    assert settled.changes is not None and settled.changes["stay"] == stay
    assert (await ledger.get_settlement(INSTITUTION, request_id="s1")).changes == settled.changes
    inputs = await ledger.load_for_claim(INSTITUTION, CARD, 2026, DAY)
    assert inputs.year["basic_pooled_fen"] == 40_000 and inputs.year["new_admissions"] == 1
    assert inputs.pharmacy_purchases_today == 1
    assert [s["settlement_id"] for s in inputs.stays] == [settled.settlement_id]
    assert inputs.stays[0]["admission_date"] == date(2026, 11, 1)

    cancelled = await ledger.cancel((INSTITUTION, "c1"), b"cf", settlement_id=settled.settlement_id)
    assert cancelled.balance_after_fen == OPENING_FEN
    after = await ledger.load_for_claim(INSTITUTION, CARD, 2026, DAY)
    assert all(after.year[k] == 0 for k in after.year if k != "year")
    assert after.pharmacy_purchases_today == 0 and after.stays == []
    assert await _balance(app_pool) == OPENING_FEN
    assert before == [] or all(r["basic_pooled_fen"] == 0 for r in before)
    # pooled fund and payable are back to where they were
    sums = await app_pool.fetch(
        "SELECT a.account_key, sum(p.amount_fen) FROM postings p JOIN accounts a USING (account_id)"
        " JOIN entries e USING (entry_id) WHERE e.kind <> 'OPENING' GROUP BY a.account_key"
    )
    assert sums and all(r["sum"] == 0 for r in sums)

    # retry of the cancel, and a second cancel under another id: the first one
    again = await ledger.cancel((INSTITUTION, "c1"), b"cf", settlement_id=settled.settlement_id)
    assert again.reversal_id == cancelled.reversal_id and again.replayed
    other = await ledger.cancel((INSTITUTION, "c2"), b"cf2", settlement_id=settled.settlement_id)
    assert other.reversal_id == cancelled.reversal_id
    with pytest.raises(RequestIdReused):
        await ledger.cancel((INSTITUTION, "c1"), b"changed", settlement_id=settled.settlement_id)
    got = await ledger.get_settlement(INSTITUTION, request_id="s1")
    assert got.cancellation is not None and got.cancellation["reversal_id"] == cancelled.reversal_id
    details = await ledger.day_details(INSTITUTION, DAY)
    assert [(d.settlement_id, d.status) for d in details] == [(settled.settlement_id, "CANCELLED")]
    assert (await ledger.day_totals(INSTITUTION, DAY)).settlement_count == 0


async def test_cancel_refusals(ledger: Ledger, app_pool: asyncpg.Pool, reference_db: str) -> None:
    settled = await ledger.settle((INSTITUTION, "s1"), b"f", CARD, 2026, DAY, debit(100))
    with pytest.raises(NotYourSettlement):
        await ledger.cancel((OTHER_INSTITUTION, "c"), b"x", settlement_id=settled.settlement_id)
    with pytest.raises(SettlementNotFound):
        await ledger.cancel((INSTITUTION, "c"), b"x", settlement_id="S-nope")
    rejected = await ledger.settle((INSTITUTION, "s2"), b"f", CARD, 2026, DAY, debit(10**9))
    assert rejected.status == "REJECTED" and rejected.entry_id is None
    with pytest.raises(NotCancellable):
        await ledger.cancel((INSTITUTION, "c3"), b"x", settlement_id=rejected.settlement_id)
    # close the day as the end-of-day command will
    admin = await asyncpg.connect(reference_db)
    try:
        assert await admin.fetchval("SELECT ms_close_day()") == DAY
    finally:
        await admin.close()
    with pytest.raises(DayClosed):
        await ledger.cancel((INSTITUTION, "c4"), b"x", settlement_id=settled.settlement_id)
    later = await ledger.settle((INSTITUTION, "s3"), b"f", CARD, 2026, DAY, debit(100))
    assert later.business_date == date(2026, 11, 21)


async def test_cancel_before_arrival_refuses_the_late_original(ledger: Ledger) -> None:
    tomb = await ledger.cancel((INSTITUTION, "c9"), b"x", original_request_id="never-seen")
    assert tomb.settlement_id is None
    with pytest.raises(LateOriginal):
        await ledger.settle((INSTITUTION, "never-seen"), b"f", CARD, 2026, DAY, debit(100))
    # another institution's request id of the same name is unaffected
    fine = await ledger.settle((OTHER_INSTITUTION, "never-seen"), b"f", CARD, 2026, DAY, debit(1))
    assert fine.status == "SETTLED"


async def test_cancel_by_original_request_id_reverses_a_received_settle(ledger: Ledger) -> None:
    settled = await ledger.settle((INSTITUTION, "orig"), b"f", CARD, 2026, DAY, debit(900))
    cancelled = await ledger.cancel((INSTITUTION, "c"), b"x", original_request_id="orig")
    assert cancelled.settlement_id == settled.settlement_id
    assert cancelled.balance_after_fen == OPENING_FEN


async def test_pin_failures_are_recorded_with_and_without_a_settlement(
    ledger: Ledger, data_keys: object
) -> None:
    inputs = await ledger.load_for_claim(INSTITUTION, CARD, 2026, DAY)
    assert inputs.member is not None
    assert ledger.pin_matches(inputs.member, "135790")
    assert not ledger.pin_matches(inputs.member, "000000")
    # wrong PINs tried at once on separate connections are all counted (no lost update)
    counts = await asyncio.gather(*(ledger.record_pin_check("M0001", ok=False) for _ in range(4)))
    assert sorted(counts) == [1, 2, 3, 4]
    assert (await ledger.load_for_claim(INSTITUTION, CARD, 2026, DAY)).member["pin_failures"] == 4  # type: ignore[index]
    assert await ledger.record_pin_check("M0001", ok=True) == 0
    assert (await ledger.load_for_claim(INSTITUTION, CARD, 2026, DAY)).member["pin_failures"] == 0  # type: ignore[index]


async def test_account_activity_runs_the_balance(ledger: Ledger) -> None:
    await ledger.settle((INSTITUTION, "a"), b"f", CARD, 2026, DAY, debit(1_000))
    s2 = await ledger.settle((INSTITUTION, "b"), b"f", CARD, 2026, DAY, debit(500))
    await ledger.cancel((INSTITUTION, "c"), b"f", settlement_id=s2.settlement_id)
    rows = await ledger.account_activity("M0001")
    assert [(r.kind, r.amount_fen, r.balance_after_fen) for r in rows] == [
        ("OPENING", OPENING_FEN, OPENING_FEN),
        ("SETTLEMENT", -1_000, OPENING_FEN - 1_000),
        ("SETTLEMENT", -500, OPENING_FEN - 1_500),
        ("CANCELLATION", 500, OPENING_FEN - 1_000),
    ]
    assert rows[1].institution_code == INSTITUTION
    totals = await ledger.day_totals(INSTITUTION, DAY)
    assert (totals.settlement_count, totals.individual_account_fen) == (1, 1_000)


async def test_a_batch_settles_like_single_calls_in_one_commit(
    ledger: Ledger, app_pool: asyncpg.Pool, reference_db: str
) -> None:
    from ledger.store import SettleItem

    cards = ["C3303990001", "C3303990002", "C3303990004"]
    items = [
        SettleItem((INSTITUTION, f"b{i}"), b"f", cards[i % 3], 2026, DAY, debit(1_000))
        for i in range(12)
    ]
    items.append(SettleItem((INSTITUTION, "b0"), b"f", cards[0], 2026, DAY, debit(1_000)))
    items.append(SettleItem((INSTITUTION, "b1"), b"other", cards[1], 2026, DAY, debit(1_000)))
    results = await ledger.settle_batch(items)
    assert [getattr(r, "status", None) for r in results[:12]] == ["SETTLED"] * 12
    assert results[12].settlement_id == results[0].settlement_id  # type: ignore[union-attr]
    assert isinstance(results[13], RequestIdReused)
    assert await app_pool.fetchval("SELECT count(*) FROM entries WHERE kind = 'SETTLEMENT'") == 12
    assert await _balance(app_pool, "M0001") == OPENING_FEN - 4 * 1_000
    # an overdraft inside a batch fails only its own item
    greedy = [
        SettleItem((INSTITUTION, "g1"), b"f", "C3303990003", 2026, DAY, debit(5, honest=False)),
        SettleItem((INSTITUTION, "g2"), b"f", cards[0], 2026, DAY, debit(5)),
    ]
    out = await ledger.settle_batch(greedy)
    assert isinstance(out[0], InsufficientBalance) and out[1].status == "SETTLED"  # type: ignore[union-attr]
    assert (await _verify(reference_db)).sound


async def test_a_batch_in_rounds_takes_its_key_locks_before_any_member(
    ledger: Ledger, app_pool: asyncpg.Pool
) -> None:
    """A retransmitted request racing a batch that holds it twice over one member.

    Batch A is [(M0001, K1), (M0001, K2)] (two rounds); B is [(M0001, K2)]. If
    A took K2 only in its second round, while holding M0001, and B held K2
    waiting for M0001, they would deadlock.
    """
    from ledger.store import SettleItem

    deadlocks = "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
    before = await app_pool.fetchval(deadlocks)
    for n in range(15):
        k1, k2 = (INSTITUTION, f"dl{n}-1"), (INSTITUTION, f"dl{n}-2")
        a = [SettleItem(k1, b"f1", CARD, 2026, DAY, debit(10)),
             SettleItem(k2, b"f2", CARD, 2026, DAY, debit(10))]  # fmt: skip
        b = [SettleItem(k2, b"f2", CARD, 2026, DAY, debit(10))]
        out_a, out_b = await asyncio.gather(ledger.settle_batch(a), ledger.settle_batch(b))
        settled = [r for r in (*out_a, *out_b) if getattr(r, "status", "") == "SETTLED"]
        assert len({r.settlement_id for r in settled}) == 2  # type: ignore[union-attr]
    await asyncio.sleep(0.6)  # let the backends flush their statistics
    assert await app_pool.fetchval(deadlocks) == before


async def test_a_retry_across_an_upgrade_matches_the_older_fingerprint(ledger: Ledger) -> None:
    from ledger.store import SettleItem

    key = (INSTITUTION, "upgrade-1")
    first = await ledger.settle(key, b"old-form", CARD, 2026, DAY, debit(10))
    retry = SettleItem(key, b"new-form", CARD, 2026, DAY, debit(10), legacy_fingerprint=b"old-form")
    [again] = await ledger.settle_batch([retry])
    assert again.replayed and again.settlement_id == first.settlement_id  # type: ignore[union-attr]
    alone = await ledger.settle_item(retry)  # the per-call path (no group commit) too
    assert alone.replayed and alone.settlement_id == first.settlement_id
    other = SettleItem(key, b"new-form", CARD, 2026, DAY, debit(10), legacy_fingerprint=b"x")
    [refused] = await ledger.settle_batch([other])
    assert isinstance(refused, RequestIdReused)


def _flawed(flaw: str, honest: Decision) -> Decision:
    """`honest` (100 fen from the account, 50 from the pooled fund) with one flaw."""
    changes = honest.changes
    assert changes is not None
    legs = honest.postings
    flawed = {
        "unknown_field": {"changes": {**changes, "surprise_fen": 5}},
        "no_benefit_year": {"changes": {**changes, "benefit_year": None}},
        "another_member_in_changes": {"changes": {**changes, "member_id": "M0002"}},
        "status": {"status": "PENDING"},
        "unbalanced": {"postings": [*legs[:-1], (legs[-1][0], legs[-1][1] + 1)]},
        "zero_leg": {"postings": [*legs, ("fund:pooled", 0)]},
        "float_leg": {"postings": [(k, float(a)) for k, a in legs]},
        "rejection_moving_money": {"status": "REJECTED"},
        "rejection_with_changes": {"status": "REJECTED", "postings": []},
        "another_member": {"member_id": "M0002"},
        "member_leg_differs": {"changes": {**changes, "account_debit_fen": 99}},
    }[flaw]
    return dataclasses.replace(honest, **flawed)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("flaw", "message"),
    [
        ("unknown_field", "unknown changes {'surprise_fen'}"),
        ("no_benefit_year", "changes name the benefit year"),
        ("another_member_in_changes", "changes name the member"),
        ("status", "status 'PENDING'"),
        ("unbalanced", "postings must balance"),
        ("zero_leg", "postings are non-zero int fen"),
        ("float_leg", "postings are non-zero int fen"),
        ("rejection_moving_money", "a rejection changes no money"),
        ("rejection_with_changes", "a rejection changes no money"),
        ("another_member", "money moves only for the card's member"),
        ("member_leg_differs", "the member's posting must equal changes.account_debit_fen"),
    ],
)
async def test_a_malformed_decision_writes_nothing(
    ledger: Ledger, app_pool: asyncpg.Pool, flaw: str, message: str
) -> None:
    # checked in code, not by assert (which python -O would strip), each with
    # what is wrong
    def decide(inputs: ClaimInputs) -> Decision:
        return _flawed(flaw, debit(100, pooled_fen=50)(inputs))

    with pytest.raises(MalformedDecision) as raised:
        await ledger.settle((INSTITUTION, "bad"), b"f", CARD, 2026, DAY, decide)
    assert str(raised.value) == message
    # in a batch too, and nothing of the batch is written
    good = SettleItem((OTHER_INSTITUTION, "good"), b"g", CARD, 2026, DAY, debit(100))
    bad = SettleItem((INSTITUTION, "bad"), b"f", CARD, 2026, DAY, decide)
    with pytest.raises(MalformedDecision, match="^" + re.escape(message) + "$"):
        await ledger.settle_batch([good, bad])
    assert await app_pool.fetchval("SELECT count(*) FROM settlements") == 0
    assert await _balance(app_pool) == OPENING_FEN


async def test_a_settle_whose_connection_is_killed_between_load_and_record_leaves_nothing(
    ledger: Ledger, app_pool: asyncpg.Pool, reference_db: str
) -> None:
    # Ledger.settle itself: the claim is loaded and locked, then its backend is
    # killed while `decide` runs; the client's retry then settles it once
    import subprocess
    from pathlib import Path

    import pgserver

    psql = Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql"
    kills: list[str] = []
    pay = debit(1_000)

    def decide(inputs):  # type: ignore[no-untyped-def]
        if not kills:
            killed = subprocess.run(
                [
                    str(psql),
                    reference_db,
                    "-Atc",
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND state = 'idle in transaction'",
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            kills.append(killed.stdout.strip())
        return pay(inputs)

    with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError, OSError)):
        await ledger.settle((INSTITUTION, "killed"), b"fp-k", CARD, 2026, DAY, decide)
    assert kills == ["1"]  # the settling transaction, waiting for its decision
    assert await app_pool.fetchval("SELECT count(*) FROM settlements") == 0
    assert await app_pool.fetchval("SELECT count(*) FROM entries WHERE kind <> 'OPENING'") == 0
    assert await _balance(app_pool) == OPENING_FEN
    again = await ledger.settle((INSTITUTION, "killed"), b"fp-k", CARD, 2026, DAY, decide)
    assert not again.replayed and again.entry_id is not None
    assert await _balance(app_pool) == OPENING_FEN - 1_000
    assert (await _verify(reference_db)).sound
