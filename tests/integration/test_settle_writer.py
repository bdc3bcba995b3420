"""The settlement writer when a member moves between its load and its record.

Another serve process, a cancellation or a PIN check may change a member
after the writer loaded the member's state and before it recorded what it
decided from it. The record is then refused as stale and the writer loads
and decides again; a member that never stops moving is refused with
CONFLICT_RETRIES_EXHAUSTED, recording nothing. The moves here are real
writes on a second connection, made at the moment the writer has loaded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg
import pytest

from adjudication import limits as alimits
from ledger import db
from ledger.crypto import DataKeys
from ledger.store import Ledger, LoadRequest, StateRow
from switch import convert, limits
from switch.errors import ErrorReason, SwitchError
from switch.service import LedgerBackend
from tests.grpc_harness import pharmacy_request
from tests.switch_pg import SwitchPg
from tests.switch_pg import switch_pg as switch_pg

PHARMACY, CARD, PIN, MEMBER = "P33039900005", "C3303990012", "808080", "M0012"


class MovingLedger(Ledger):
    """A ledger whose member gets a PIN check counted after each load, as long as
    `pins` lists one (True: a right PIN, False: a wrong one)."""

    def __init__(self, pool: asyncpg.Pool, keys: DataKeys) -> None:
        super().__init__(pool, keys)
        self.pins: list[bool] = []

    async def load_states(self, requests: Sequence[LoadRequest]) -> list[StateRow]:
        states = await super().load_states(requests)
        if self.pins:
            ok = self.pins.pop(0)
            await self.record_pin_check(MEMBER, ok=ok, failures_max=alimits.pin_failures_max)
        return states


L = TypeVar("L", bound=Ledger)


@asynccontextmanager
async def _backend(
    switch_pg: SwitchPg, data_key: bytes, ledger_type: type[L]
) -> AsyncIterator[tuple[LedgerBackend, L, str]]:
    """A backend over a fresh database whose ledger is a `ledger_type`."""
    url = await switch_pg.fresh_db()
    pool = await db.open_database(url, min_size=1, max_size=4)
    ledger = ledger_type(pool, DataKeys(data_key))
    backend = await LedgerBackend.open(pool, ledger, probe=db.Probe(url))
    try:
        yield backend, ledger, url
    finally:
        await backend.close()  # a second close does nothing
        await pool.close()


@pytest.fixture
async def moving(switch_pg: SwitchPg, data_key: bytes) -> AsyncIterator[tuple[LedgerBackend, str]]:
    async with _backend(switch_pg, data_key, MovingLedger) as (backend, _, url):
        yield backend, url


async def _settle(backend: LedgerBackend, request_id: str) -> object:
    request = pharmacy_request(request_id, PHARMACY, CARD, PIN, "2026-06-02")
    claim, violations = convert.claim_from_request(request)
    assert claim is not None, violations
    return await backend.settle(claim, PIN, convert.request_digest(request))


async def _member(url: str) -> asyncpg.Record:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchrow(
            "SELECT m.pin_failures, b.balance_fen, m.state_seq,"
            " (SELECT count(*) FROM settlements) AS settlements"
            " FROM members m JOIN account_balances b USING (account_id) WHERE m.member_id = $1",
            MEMBER,
        )
    finally:
        await conn.close()


async def test_a_member_moved_after_the_load_is_decided_again(
    moving: tuple[LedgerBackend, str],
) -> None:
    backend, url = moving
    before = await _member(url)
    assert isinstance(backend.ledger, MovingLedger)
    backend.ledger.pins = [False, False]  # two wrong PINs counted elsewhere, each after a load
    view = await _settle(backend, "moved-1")
    after = await _member(url)
    # decided a third time, from the state the two moves left: a right PIN resets the count
    assert view.status.value == "SETTLED"  # type: ignore[attr-defined]
    assert after["pin_failures"] == 0
    assert after["balance_fen"] == before["balance_fen"] - view.split.individual_account_fen  # type: ignore[attr-defined]
    assert view.balance_after_fen == after["balance_fen"]  # type: ignore[attr-defined]
    assert after["settlements"] == 1
    assert after["state_seq"] == before["state_seq"] + 3  # two PIN checks and the settlement


async def test_a_member_that_keeps_moving_is_refused_and_nothing_is_recorded(
    moving: tuple[LedgerBackend, str],
) -> None:
    backend, url = moving
    assert isinstance(backend.ledger, MovingLedger)
    # a wrong PIN and a right one, by turns: every check moves the member
    backend.ledger.pins = [False, True] * (limits.settle_loads_max // 2)
    with pytest.raises(SwitchError) as refused:
        await _settle(backend, "moving-1")
    assert refused.value.reason is ErrorReason.CONFLICT_RETRIES_EXHAUSTED
    after = await _member(url)
    assert after["settlements"] == 0
    # once the member is still, the same request is decided from what the moves left
    assert backend.ledger.pins == []
    view = await _settle(backend, "moving-1")
    assert view.status.value == "SETTLED"  # type: ignore[attr-defined]
    assert (await _member(url))["settlements"] == 1


async def test_a_card_locked_by_checks_elsewhere_after_the_load_is_refused_locked(
    moving: tuple[LedgerBackend, str],
) -> None:
    """Wrong PINs counted through other processes after the load: the checks past
    the fifth find the card locked and count nothing; the Settle, decided again
    from the locked card, is refused R_PIN_LOCKED."""
    backend, url = moving
    assert isinstance(backend.ledger, MovingLedger)
    backend.ledger.pins = [False] * (alimits.pin_failures_max + 2)
    view = await _settle(backend, "locked-1")
    assert view.status.value == "REJECTED"  # type: ignore[attr-defined]
    assert view.reasons == ("R_PIN_LOCKED",)  # type: ignore[attr-defined]
    assert (await _member(url))["pin_failures"] == alimits.pin_failures_max


@pytest.mark.parametrize("call", ["PreSettle", "GetMember"])
async def test_a_right_pin_after_the_card_locked_elsewhere_finds_it_locked(
    moving: tuple[LedgerBackend, str], call: str
) -> None:
    """PreSettle and GetMember judge a right PIN on the count stored when it is
    checked, not when it was loaded: a card locked meanwhile through another
    process stays locked and answers as locked."""
    backend, url = moving
    assert isinstance(backend.ledger, MovingLedger)
    for _ in range(alimits.pin_failures_max - 1):
        await backend.ledger.record_pin_check(
            MEMBER, ok=False, failures_max=alimits.pin_failures_max
        )
    backend.ledger.pins = [False]  # the fifth wrong PIN, counted after the call's load
    if call == "PreSettle":
        request = pharmacy_request("preview-1", PHARMACY, CARD, PIN, "2026-06-02")
        claim, _ = convert.claim_from_request(request)
        assert claim is not None
        view = await backend.pre_settle(claim, PIN)
        assert view.reasons == ("R_PIN_LOCKED",)  # type: ignore[attr-defined]
    else:
        with pytest.raises(SwitchError) as refused:
            await backend.get_member(PHARMACY, CARD, PIN)
        assert refused.value.reason is ErrorReason.PIN_LOCKED
    assert backend.ledger.pins == []
    assert (await _member(url))["pin_failures"] == alimits.pin_failures_max


class HeldLedger(Ledger):
    """A ledger that logs its loads and records and holds the first record until
    `release` is set, so that calls arrive while a batch records."""

    def __init__(self, pool: asyncpg.Pool, keys: DataKeys) -> None:
        super().__init__(pool, keys)
        self.recording = asyncio.Event()
        self.release = asyncio.Event()
        self.log: list[tuple[str, int]] = []

    async def load_states(self, requests: Sequence[LoadRequest]) -> list[StateRow]:
        self.log.append(("load", len(requests)))
        return await super().load_states(requests)

    async def record(self, *args: Any, **kwargs: Any) -> Any:
        self.log.append(("record", len(args[1])))
        self.recording.set()
        await self.release.wait()
        try:
            return await super().record(*args, **kwargs)
        finally:
            self.log.append(("recorded", len(args[1])))


async def test_calls_arriving_while_a_batch_records_make_the_next_batch(
    switch_pg: SwitchPg, data_key: bytes
) -> None:
    cards = [("C3303990001", "135790"), ("C3303990002", "246802"),
             ("C3303990004", "998877"), ("C3303990007", "102938")]  # fmt: skip

    async def settle(i: int) -> object:
        card, pin = cards[i]
        request = pharmacy_request(f"held-{i}", PHARMACY, card, pin, "2026-06-02")
        claim, violations = convert.claim_from_request(request)
        assert claim is not None, violations
        return await backend.settle(claim, pin, convert.request_digest(request))

    async with _backend(switch_pg, data_key, HeldLedger) as (backend, ledger, _):
        first = asyncio.create_task(settle(0))
        await ledger.recording.wait()
        rest = [asyncio.create_task(settle(i)) for i in (1, 2, 3)]
        for _ in range(20):  # the writer would load them now if it overlapped
            await asyncio.sleep(0.01)
        assert ledger.log == [("load", 1), ("record", 1)]
        ledger.release.set()
        views = await asyncio.gather(first, *rest)
        # nothing loaded while the first batch recorded; the three that waited are one batch
        assert ledger.log == [
            ("load", 1), ("record", 1), ("recorded", 1),
            ("load", 3), ("record", 3), ("recorded", 3),
        ]  # fmt: skip
        assert [v.status.value for v in views] == ["SETTLED"] * 4  # type: ignore[attr-defined]


class StuckLoadLedger(Ledger):
    """A ledger whose loads never return (a database that stopped answering)."""

    def __init__(self, pool: asyncpg.Pool, keys: DataKeys) -> None:
        super().__init__(pool, keys)
        self.loading = asyncio.Event()

    async def load_states(self, requests: Sequence[LoadRequest]) -> list[StateRow]:
        self.loading.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_closing_while_a_batch_loads_answers_its_calls(
    switch_pg: SwitchPg, data_key: bytes
) -> None:
    """The batch in hand is neither queued nor recorded: closing fails its calls too."""
    async with _backend(switch_pg, data_key, StuckLoadLedger) as (backend, ledger, _):
        settling = asyncio.create_task(_settle(backend, "stuck-1"))
        await ledger.loading.wait()
        await backend.close()
        with pytest.raises(SwitchError) as err:
            await asyncio.wait_for(settling, 10)
        assert err.value.reason is ErrorReason.DATABASE_UNAVAILABLE
        assert isinstance(err.value.__cause__, ConnectionError)
