"""The settlement writer when a member moves between its load and its record.

Another serve process, a cancellation or a PIN check may change a member
after the writer loaded the member's state and before it recorded what it
decided from it. The record is then refused as stale and the writer loads
and decides again; a member that never stops moving is refused with
CONFLICT_RETRIES_EXHAUSTED, recording nothing. The moves here are real
writes on a second connection, made at the moment the writer has loaded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import asyncpg
import pytest

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
    """A ledger whose member gets a wrong PIN counted after each of its first `moves` loads."""

    moves = 0

    async def load_states(self, requests: Sequence[LoadRequest]) -> list[StateRow]:
        states = await super().load_states(requests)
        if self.moves > 0:
            self.moves -= 1
            await self.record_pin_check(MEMBER, ok=False)
        return states


@pytest.fixture
async def moving(switch_pg: SwitchPg, data_key: bytes) -> AsyncIterator[tuple[LedgerBackend, str]]:
    url = await switch_pg.fresh_db()
    pool = await db.open_database(url, min_size=1, max_size=4)
    backend = await LedgerBackend.open(pool, MovingLedger(pool, DataKeys(data_key)))
    try:
        yield backend, url
    finally:
        await backend.close()
        await pool.close()


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
    backend.ledger.moves = 2  # two wrong PINs counted elsewhere, each after a load
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
    backend.ledger.moves = limits.settle_loads_max
    with pytest.raises(SwitchError) as refused:
        await _settle(backend, "moving-1")
    assert refused.value.reason is ErrorReason.CONFLICT_RETRIES_EXHAUSTED
    after = await _member(url)
    assert after["settlements"] == 0
    # once the member is still, the same request is decided from what the
    # moves left: eight wrong PINs counted elsewhere have locked the card
    backend.ledger.moves = 0
    view = await _settle(backend, "moving-1")
    assert view.status.value == "REJECTED"  # type: ignore[attr-defined]
    assert view.reasons == ("R_PIN_LOCKED",)  # type: ignore[attr-defined]
