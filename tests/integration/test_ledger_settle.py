"""Settle and cancel against a real PostgreSQL: exactly once, never overdrawn, exact undo."""

from __future__ import annotations

import asyncio
import re
from datetime import date

import asyncpg
import pytest

from ledger import chain
from ledger.store import (
    DayClosed,
    Ledger,
    LoadRequest,
    MalformedDecision,
    NotCancellable,
    NotYourSettlement,
    RequestCancelled,
    RequestIdReused,
    SettlementNotFound,
    StaleRows,
    StateRow,
)
from tests.integration.ledger_helpers import (
    DAY,
    INSTITUTION,
    OTHER_INSTITUTION,
    Record,
    debit,
    settle,
)

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


async def test_concurrent_debits_never_overdraw(
    ledger: Ledger, app_pool: asyncpg.Pool, reference_db: str
) -> None:
    """Whatever runs at once, the balance ends at opening minus the accepted debits, never < 0.

    Each settler stands for a serve process of its own (one process never
    decides twice on one member at once): all but one of each round find the
    member moved, load again and decide again.
    """
    debit_fen = 6_000

    async def one(i: int) -> str:
        result = await settle(
            ledger, (INSTITUTION, f"r{i}"), f"fp{i}".encode(), CARD, debit(debit_fen)
        )
        return result.status

    statuses = await asyncio.gather(*(one(i) for i in range(60)))
    accepted = statuses.count("SETTLED")
    assert accepted == OPENING_FEN // debit_fen
    assert statuses.count("REJECTED") == 60 - accepted
    assert await _balance(app_pool) == OPENING_FEN - accepted * debit_fen
    recorded = await app_pool.fetchval("SELECT count(*) FROM settlements")
    assert recorded == 60
    assert (await _verify(reference_db)).sound


async def test_the_database_refuses_an_overdraft_the_caller_did_not_check(
    ledger: Ledger, app_pool: asyncpg.Pool
) -> None:
    """A decision that ignores the balance still cannot take it below zero."""
    debit_fen = 7_000

    async def one(i: int) -> bool:
        try:
            await settle(
                ledger, (INSTITUTION, f"x{i}"), b"fp", CARD, debit(debit_fen, honest=False)
            )
        except asyncpg.CheckViolationError:
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
        *(settle(ledger, (INSTITUTION, "same"), b"fp-same", CARD, decide) for _ in range(8))
    )
    assert len({r.settlement_id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert all(r.answer == results[0].answer for r in results)
    assert await app_pool.fetchval("SELECT count(*) FROM entries WHERE kind = 'SETTLEMENT'") == 1
    assert await _balance(app_pool) == OPENING_FEN - 1_000
    with pytest.raises(RequestIdReused):
        await settle(ledger, (INSTITUTION, "same"), b"other", CARD, decide)


async def test_a_connection_killed_mid_transaction_leaves_nothing(
    app_pool: asyncpg.Pool, reference_db: str, data_keys: object
) -> None:
    from ledger.crypto import DataKeys

    assert isinstance(data_keys, DataKeys)
    lanes_before = await app_pool.fetch("SELECT * FROM chain_lanes ORDER BY lane")
    conn = await asyncpg.connect(reference_db)  # (ms_record_settlement is the owner's)
    victim_pid = conn.get_server_pid()
    await conn.execute("BEGIN")
    loaded = await conn.fetchrow(
        "SELECT * FROM ms_load_states(ARRAY[$1], ARRAY[$2::bytea], ARRAY[2026], ARRAY[$3::date],"
        " 400, ARRAY['killed'])",
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
    stay: dict[str, object] = {
        "primary_diagnosis": "J18",
        "admission_date": "2026-11-01",
        "discharge_date": "2026-11-10",
        "new_admission": True,
    }

    def decide(state: StateRow, key: tuple[str, str], fingerprint: bytes) -> Record:
        stay["settlement_id"] = state.settlement_id
        return debit(
            2_500,
            pooled_fen=40_000,
            basic_pooled_fen=40_000,
            inpatient_above_deductible_fen=45_000,
            new_admissions=1,
            pharmacy_date=DAY,
            stay_settlement_id=state.settlement_id,
            stay_primary_diagnosis="J18",
            stay_admission_date=date(2026, 11, 1),
            stay_discharge_date=date(2026, 11, 10),
            stay_new_admission=True,
        )(state, key, fingerprint)

    settled = await settle(ledger, (INSTITUTION, "s1"), b"f", CARD, decide)
    # stored key for key as decided (made in SQL from the typed fields)
    assert settled.changes is not None and settled.changes["stay"] == stay
    assert (await ledger.get_settlement(INSTITUTION, request_id="s1")).changes == settled.changes
    state = await ledger.load_for_claim(INSTITUTION, CARD, 2026, DAY)
    assert state.basic_pooled_fen == 40_000 and state.new_admissions == 1
    assert state.pharmacy_purchases_today == 1
    assert [s["settlement_id"] for s in state.stays or ()] == [settled.settlement_id]
    assert (state.stays or [{}])[0]["admission_date"] == "2026-11-01"

    cancelled = await ledger.cancel((INSTITUTION, "c1"), b"cf", settlement_id=settled.settlement_id)
    assert cancelled.balance_after_fen == OPENING_FEN
    after = await ledger.load_for_claim(INSTITUTION, CARD, 2026, DAY)
    accumulators = StateRow._fields[StateRow._fields.index("outpatient_deductible_used_fen") :][:7]
    assert all(getattr(after, name) == 0 for name in accumulators)
    assert after.pharmacy_purchases_today == 0 and after.stays is None
    assert (after.state_seq or 0) > (state.state_seq or 0), "a cancellation moves the member"
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
    settled = await settle(ledger, (INSTITUTION, "s1"), b"f", CARD, debit(100))
    with pytest.raises(NotYourSettlement):
        await ledger.cancel((OTHER_INSTITUTION, "c"), b"x", settlement_id=settled.settlement_id)
    with pytest.raises(SettlementNotFound):
        await ledger.cancel((INSTITUTION, "c"), b"x", settlement_id="S-nope")
    rejected = await settle(ledger, (INSTITUTION, "s2"), b"f", CARD, debit(10**9))
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
    later = await settle(ledger, (INSTITUTION, "s3"), b"f", CARD, debit(100))
    assert later.business_date == date(2026, 11, 21)


async def test_a_request_cancelled_before_it_arrived_never_settles(ledger: Ledger) -> None:
    cancelled = await ledger.cancel((INSTITUTION, "c9"), b"x", original_request_id="never-seen")
    assert cancelled.settlement_id is None
    with pytest.raises(RequestCancelled):
        await settle(ledger, (INSTITUTION, "never-seen"), b"f", CARD, debit(100))
    # another institution's request id of the same name is unaffected
    fine = await settle(ledger, (OTHER_INSTITUTION, "never-seen"), b"f", CARD, debit(1))
    assert fine.status == "SETTLED"


async def test_cancel_by_original_request_id_reverses_a_received_settle(ledger: Ledger) -> None:
    settled = await settle(ledger, (INSTITUTION, "orig"), b"f", CARD, debit(900))
    cancelled = await ledger.cancel((INSTITUTION, "c"), b"x", original_request_id="orig")
    assert cancelled.settlement_id == settled.settlement_id
    assert cancelled.balance_after_fen == OPENING_FEN


async def test_pin_failures_are_recorded_with_and_without_a_settlement(
    ledger: Ledger, data_keys: object
) -> None:
    state = await ledger.load_for_claim(INSTITUTION, CARD, 2026, DAY)
    assert ledger.pin_matches(state, "135790")
    assert not ledger.pin_matches(state, "000000")
    # wrong PINs tried at once on separate connections are all counted (no lost update)
    counts = await asyncio.gather(
        *(ledger.record_pin_check("M0001", ok=False, failures_max=5) for _ in range(4))
    )
    assert sorted(c for c in counts if c is not None) == [1, 2, 3, 4]
    after = await ledger.load_for_claim(INSTITUTION, CARD, 2026, DAY)
    assert after.pin_failures == 4
    assert after.state_seq == (state.state_seq or 0) + 4, "each PIN check moves the member"
    assert await ledger.record_pin_check("M0001", ok=True, failures_max=5) == 0
    reset = await ledger.load_for_claim(INSTITUTION, CARD, 2026, DAY)
    assert reset.pin_failures == 0
    # a right PIN with nothing to reset writes nothing: the member does not move
    assert await ledger.record_pin_check("M0001", ok=True, failures_max=5) == 0
    still = await ledger.load_for_claim(INSTITUTION, CARD, 2026, DAY)
    assert still.state_seq == reset.state_seq


async def test_a_pin_check_on_a_locked_card_counts_nothing_and_says_so(ledger: Ledger) -> None:
    """The limit is checked in the counting statement, on the count stored now:
    of eight wrong PINs at once, five are counted and three find the card locked;
    then a right PIN finds it locked too and does not unlock it."""
    counts = await asyncio.gather(
        *(ledger.record_pin_check("M0001", ok=False, failures_max=5) for _ in range(8))
    )
    assert sorted(c for c in counts if c is not None) == [1, 2, 3, 4, 5]
    assert counts.count(None) == 3
    assert await ledger.record_pin_check("M0001", ok=True, failures_max=5) is None
    locked = await ledger.load_for_claim(INSTITUTION, CARD, 2026, DAY)
    assert locked.pin_failures == 5


async def test_account_activity_runs_the_balance(ledger: Ledger) -> None:
    await settle(ledger, (INSTITUTION, "a"), b"f", CARD, debit(1_000))
    s2 = await settle(ledger, (INSTITUTION, "b"), b"f", CARD, debit(500))
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


async def _load(ledger: Ledger, keys: list[tuple[str, str, str]]) -> list[StateRow]:
    """States for (institution, request id, card) triples, as the writer loads a batch."""
    return await ledger.load_states(
        [LoadRequest(i, ledger.keys.card_lookup(c), 2026, DAY, r) for i, r, c in keys]
    )


async def test_a_batch_records_in_one_statement_and_names_its_stale_rows(
    ledger: Ledger, app_pool: asyncpg.Pool, reference_db: str
) -> None:
    cards = ["C3303990001", "C3303990002", "C3303990004"]
    keys = [(INSTITUTION, f"b{i}", card) for i, card in enumerate(cards)]
    states = await _load(ledger, keys)
    records = [debit(1_000)(s, (i, r), b"f") for s, (i, r, _) in zip(states, keys, strict=True)]
    # M0002 moves (a PIN check elsewhere) after the batch was loaded
    assert await ledger.record_pin_check("M0002", ok=False, failures_max=5) == 1
    with pytest.raises(StaleRows) as stale:
        await ledger.record(DAY, [r for r, _ in records], [legs for _, legs in records])
    assert stale.value.positions == [1]
    assert await app_pool.fetchval("SELECT count(*) FROM settlements") == 0, "nothing recorded"
    # the others record as decided, in one statement; the stale one loads and decides again
    fresh = [records[0], records[2]]
    recorded = await ledger.record(DAY, [r for r, _ in fresh], [legs for _, legs in fresh])
    assert len(recorded.entry_ids) == 2 and None not in recorded.entry_ids
    assert (await _load(ledger, [keys[0]]))[0].existing_settlement_id == records[0][0].settlement_id
    again = await settle(ledger, (INSTITUTION, "b1"), b"f", cards[1], debit(1_000))
    assert again.status == "SETTLED"
    # a key settled since the load is stale too (the loser loads again and replays)
    (late,) = await _load(ledger, [(INSTITUTION, "b9", CARD)])
    await settle(ledger, (INSTITUTION, "b9"), b"f", "C3303990006", debit(5))
    row, legs = debit(5)(late, (INSTITUTION, "b9"), b"f")
    with pytest.raises(StaleRows):
        await ledger.record(DAY, [row], [legs])
    assert await app_pool.fetchval("SELECT count(*) FROM entries WHERE kind = 'SETTLEMENT'") == 4
    assert await _balance(app_pool, "M0001") == OPENING_FEN - 1_000
    assert (await _verify(reference_db)).sound


async def test_the_changes_a_settlement_stores_are_built_inline(reference_db: str) -> None:
    """ms_changes_json is inlined where the settlements are inserted: a SQL
    function is inlined only if no less volatile than its body, and
    jsonb_build_object is STABLE. Declared IMMUTABLE, it was called as a
    function, its body parsed and planned again in every batch (migration 0006)."""
    conn = await asyncpg.connect(reference_db)
    try:
        plan = "\n".join(
            row[0]
            for row in await conn.fetch(
                "EXPLAIN (VERBOSE) SELECT ms_changes_json(r) FROM unnest('{}'::ms_settle_row[]) r"
            )
        )
    finally:
        await conn.close()
    assert "jsonb_build_object" in plan and "ms_changes_json" not in plan, plan


SHARED_IDENTIFIERS = (
    "institution_code",
    "request_id",
    "member_id",
    "settlement_id",
    "encounter_id",
)


async def test_identifiers_the_tables_share_compare_as_bytes_everywhere(reference_db: str) -> None:
    """A "C" column compared with a default-collation one compares in "C",
    which a default-collation B-tree cannot serve (migration 0007)."""
    conn = await asyncpg.connect(reference_db)
    try:
        columns = await conn.fetch(
            "SELECT c.relname || '.' || a.attname AS name,"
            " a.attcollation::regcollation::text AS coll"
            " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0"
            " AND NOT a.attisdropped AND a.atttypid = 'text'::regtype"
            " AND a.attname = ANY($1::text[])",
            list(SHARED_IDENTIFIERS),
        )
    finally:
        await conn.close()
    assert len(columns) > 10  # the rule is about something
    assert {r["name"]: r["coll"] for r in columns if r["coll"] != '"C"'} == {}


async def test_a_settlement_probes_the_encounter_requests_by_their_key(reference_db: str) -> None:
    """The settlements' statement trigger joins the new settlements to
    encounter_requests on (institution_code, request_id): the join the
    primary key serves. With the encounters' columns in the default
    collation it could only scan the whole table, once a settlement."""
    conn = await asyncpg.connect(reference_db)
    try:
        await conn.execute("SET enable_seqscan = off")
        await conn.execute("SET enable_hashjoin = off")  # as the trigger's function sets
        await conn.execute("SET enable_mergejoin = off")
        plan = "\n".join(
            row[0]
            for row in await conn.fetch(
                "EXPLAIN SELECT n.settlement_id, x.encounter_id"
                " FROM (SELECT * FROM settlements LIMIT 8) n"
                " JOIN encounter_requests x ON x.institution_code = n.institution_code"
                " AND x.request_id = n.request_id AND x.kind = 'SETTLE'"
                " AND x.fingerprint = n.fingerprint"
            )
        )
    finally:
        await conn.close()
    assert "encounter_requests_pkey" in plan and "Seq Scan on encounter_requests" not in plan, plan


async def test_a_day_closed_since_the_load_makes_the_whole_batch_stale(
    ledger: Ledger, app_pool: asyncpg.Pool, reference_db: str
) -> None:
    (state,) = await _load(ledger, [(INSTITUTION, "d1", CARD)])
    admin = await asyncpg.connect(reference_db)
    try:
        assert await admin.fetchval("SELECT ms_close_day()") == DAY
    finally:
        await admin.close()
    row, legs = debit(10)(state, (INSTITUTION, "d1"), b"f")
    with pytest.raises(StaleRows) as stale:
        await ledger.record(DAY, [row], [legs])
    assert stale.value.positions == [0]
    settled = await settle(ledger, (INSTITUTION, "d1"), b"f", CARD, debit(10))
    assert settled.business_date == date(2026, 11, 21)


async def test_records_over_the_same_members_in_any_order_never_deadlock(
    ledger: Ledger, app_pool: asyncpg.Pool
) -> None:
    """Two processes' batches over one pair of members, listed in opposite orders."""
    deadlocks = "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
    before = await app_pool.fetchval(deadlocks)
    pair = ["C3303990001", "C3303990002"]
    for n in range(15):
        a = [(INSTITUTION, f"dl{n}-a{i}", card) for i, card in enumerate(pair)]
        b = [(OTHER_INSTITUTION, f"dl{n}-b{i}", card) for i, card in enumerate(reversed(pair))]
        loaded = await asyncio.gather(_load(ledger, a), _load(ledger, b))

        async def record(states: list[StateRow], keys: list[tuple[str, str, str]]) -> str:
            made = [debit(10)(s, (i, r), b"f") for s, (i, r, _) in zip(states, keys, strict=True)]
            try:
                await ledger.record(DAY, [row for row, _ in made], [legs for _, legs in made])
            except StaleRows:
                return "stale"
            return "recorded"

        outcomes = await asyncio.gather(record(loaded[0], a), record(loaded[1], b))
        assert sorted(outcomes) == ["recorded", "stale"], "one wins, the other loads again"
    await _flush_statistics(app_pool)
    assert await app_pool.fetchval(deadlocks) == before


async def _flush_statistics(pool: asyncpg.Pool) -> None:
    """Every pooled backend's pending statistics are in pg_stat_* when this returns:
    each is asked to flush at its next idle moment, which comes (before the
    answer to the asking statement) as that statement ends. Held all at once, so
    none is missed."""
    held = [await pool.acquire() for _ in range(pool.get_size())]
    try:
        for conn in held:
            await conn.execute("SELECT pg_stat_force_next_flush()")
    finally:
        for conn in held:
            await pool.release(conn)


def _flawed(flaw: str, honest: Record) -> Record:
    """`honest` (100 fen from the account, 50 from the pooled fund) with one flaw."""
    row, legs = honest
    flawed: dict[str, Record] = {
        "status": (row._replace(status="PENDING"), legs),
        "unbalanced": (row, [*legs[:-1], (legs[-1][0], legs[-1][1] + 1)]),
        "one_leg": (row, legs[:1]),
        "zero_leg": (row, [*legs, ("fund:pooled", 0)]),
        "float_leg": (row, [(k, float(a)) for k, a in legs]),  # type: ignore[misc]
        "rejection_moving_money": (row._replace(status="REJECTED"), legs),
        "rejection_with_changes": (row._replace(status="REJECTED"), []),
        "no_member": (row._replace(member_id=None), legs),
        "member_leg_differs": (row._replace(account_debit_fen=99), legs),
        "money_without_changes": (
            row._replace(change_year=None, account_debit_fen=None),
            [("fund:pooled", 50), (legs[-1][0], -50)],
        ),
    }
    return flawed[flaw]


@pytest.mark.parametrize(
    ("flaw", "message"),
    [
        ("status", "status 'PENDING'"),
        ("unbalanced", "postings must balance"),
        ("one_leg", "postings must balance"),
        ("zero_leg", "postings are non-zero int fen"),
        ("float_leg", "postings are non-zero int fen"),
        ("rejection_moving_money", "a rejection changes no money"),
        ("rejection_with_changes", "a rejection changes no money"),
        ("no_member", "money moves only for the card's member"),
        ("member_leg_differs", "the member's posting must equal account_debit_fen"),
        ("money_without_changes", "a settlement that moves money changes the member's state"),
    ],
)
async def test_a_malformed_record_writes_nothing(
    ledger: Ledger, app_pool: asyncpg.Pool, flaw: str, message: str
) -> None:
    # checked in code, not by assert (which python -O would strip), each with
    # what is wrong; in a batch, nothing of the batch is written
    good_key, bad_key = (OTHER_INSTITUTION, "good", "C3303990002"), (INSTITUTION, "bad", CARD)
    good_state, bad_state = await _load(ledger, [good_key, bad_key])
    good = debit(100)(good_state, good_key[:2], b"g")
    bad = _flawed(flaw, debit(100, pooled_fen=50)(bad_state, bad_key[:2], b"f"))
    for batch in ([bad], [good, bad]):
        with pytest.raises(MalformedDecision, match="^" + re.escape(message) + "$"):
            await ledger.record(DAY, [r for r, _ in batch], [legs for _, legs in batch])
    assert await app_pool.fetchval("SELECT count(*) FROM settlements") == 0
    assert await _balance(app_pool) == OPENING_FEN


async def test_no_connection_is_in_a_transaction_while_the_caller_decides(
    ledger: Ledger, app_pool: asyncpg.Pool, reference_db: str
) -> None:
    # the claim is loaded, then every application backend of the database is
    # killed while it is decided: none was in a transaction, nothing was held
    import subprocess
    from pathlib import Path

    from ledger.pgserver_import import import_pgserver

    psql = Path(import_pgserver().__file__).parent / "pginstall" / "bin" / "psql"
    seen: list[str] = []
    pay = debit(1_000)

    def decide(state: StateRow, key: tuple[str, str], fingerprint: bytes) -> Record:
        if not seen:
            out = subprocess.run(
                [str(psql), reference_db, "-Atc",
                 "SELECT count(*) FILTER (WHERE state LIKE 'idle in transaction%'),"
                 " count(pg_terminate_backend(pid)) FILTER (WHERE backend_type = 'client backend')"
                 " FROM pg_stat_activity WHERE datname = current_database()"
                 " AND pid <> pg_backend_pid()"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            seen.append(out.stdout.strip())
        return pay(state, key, fingerprint)

    first = None
    try:
        first = await settle(ledger, (INSTITUTION, "killed"), b"fp-k", CARD, decide)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError, OSError):
        # the record drew a killed connection from the pool: nothing was written
        assert await app_pool.fetchval("SELECT count(*) FROM settlements") == 0
        assert await _balance(app_pool) == OPENING_FEN
    idle_in_transaction, killed = seen[0].split("|")
    assert idle_in_transaction == "0" and int(killed) >= 1
    again = await settle(ledger, (INSTITUTION, "killed"), b"fp-k", CARD, decide)
    assert again.entry_id is not None
    if first is not None:
        assert again.replayed and again.settlement_id == first.settlement_id
    assert await app_pool.fetchval("SELECT count(*) FROM settlements") == 1
    assert await _balance(app_pool) == OPENING_FEN - 1_000
    assert (await _verify(reference_db)).sound


async def test_a_claim_without_history_loads_no_diseases_or_stays(
    ledger: Ledger, reference_db: str
) -> None:
    # M0006 (card ...0006) holds an approved E11; give them a stay as well
    owner = await asyncpg.connect(reference_db)
    try:
        await owner.execute(
            "INSERT INTO inpatient_stays VALUES ('S-OLD', 'M0006', 'K35.8', $1, $1, true)", DAY
        )
    finally:
        await owner.close()
    card = ledger.keys.card_lookup("C3303990006")
    with_history, without, read = await ledger.load_states(
        [
            LoadRequest(INSTITUTION, card, 2026, DAY, "h1", history=True),
            LoadRequest(INSTITUTION, card, 2026, DAY, "h2", history=False),
            LoadRequest(INSTITUTION, card, 2026, DAY, None),  # a read: history by default
        ]
    )
    assert [d["code"] for d in with_history.special_diseases or ()] == ["E11"]
    assert [s["settlement_id"] for s in with_history.stays or ()] == ["S-OLD"]
    assert (without.special_diseases, without.stays) == (None, None)
    assert read.special_diseases == with_history.special_diseases
    assert read.stays == with_history.stays
    # everything else is the same member, loaded alike
    same = ("member_id", "state_seq", "balance_fen", "pharmacy_purchases_today")
    assert [getattr(without, f) for f in same] == [getattr(with_history, f) for f in same]
