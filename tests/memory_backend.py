"""A SettlementBackend over the engine's in-memory region, for edge tests.

Encounters are kept in memory too (tests/memory_encounters.py).

The gRPC edge (mTLS, binding, validation, load bound, deadlines, drain) is
the same whatever stores the settlements; these tests drive it with the real
engine and the reference region held in memory, and can hold calls open on a
gate to fill the server. The database-backed backend is tested separately.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import date
from pathlib import Path

from adjudication.memory import InMemoryRegion, load_region
from adjudication.model import Claim
from ledger.store import AccountEntry, DayTotals, DetailRecord
from switch.backend import (
    CancelCommand,
    CancelView,
    CatalogEntry,
    MemberView,
    PoolStats,
    SettlementView,
    catalog_entries,
    settlement_view,
)
from switch.errors import ErrorReason, SwitchError
from tests.memory_encounters import MemoryEncounters

REFERENCE = Path(__file__).resolve().parent.parent / "shared" / "reference"
BUSINESS_DATE = date(2026, 5, 10)


class MemoryBackend:
    def __init__(self, region: InMemoryRegion | None = None) -> None:
        self.region = region or load_region(REFERENCE)
        self.encounters = MemoryEncounters(self)
        self.by_request: dict[tuple[str, str], tuple[bytes, SettlementView]] = {}
        self.gate: asyncio.Event | None = None  # when set: calls wait for it
        self.entered = 0  # calls that reached the backend
        self._entering = asyncio.Condition()

    async def _hold(self) -> None:
        self.entered += 1
        async with self._entering:
            self._entering.notify_all()
        if self.gate is not None:
            await self.gate.wait()

    async def until_entered(self, count: int, timeout_s: float = 30) -> None:
        """Returns once `count` calls have reached the backend (held at the gate)."""
        async with asyncio.timeout(timeout_s), self._entering:
            await self._entering.wait_for(lambda: self.entered >= count)

    async def pre_settle(self, claim: Claim, pin: str) -> SettlementView:
        await self._hold()
        _, result = self.region.adjudicate(claim, pin, apply=False)
        return settlement_view(
            result,
            settlement_id="",
            request_id=claim.request_id,
            institution_code=claim.institution_code,
            business_date=None,
            preview=True,
        )

    async def settle(self, claim: Claim, pin: str, request_digest: bytes) -> SettlementView:
        await self._hold()
        key = (claim.institution_code, claim.request_id)
        fingerprint = request_digest + pin.encode()
        if key in self.by_request:
            first, view = self.by_request[key]
            if first != fingerprint:
                raise SwitchError(ErrorReason.REQUEST_ID_REUSED, "request id used before")
            return view
        settlement_id, result = self.region.adjudicate(claim, pin, apply=True)
        view = settlement_view(
            result,
            settlement_id=settlement_id,
            request_id=claim.request_id,
            institution_code=claim.institution_code,
            business_date=BUSINESS_DATE,
            preview=False,
        )
        self.by_request[key] = (fingerprint, view)
        return view

    async def cancel(self, command: CancelCommand, request_digest: bytes) -> CancelView:
        await self._hold()
        settled = self.region.settlements.get(command.settlement_id)
        if settled is None:
            raise SwitchError(ErrorReason.SETTLEMENT_NOT_FOUND, "no such settlement")
        if settled.claim.institution_code != command.institution_code:
            raise SwitchError(ErrorReason.NOT_SETTLING_INSTITUTION, "not yours")
        balance = self.region.cancel(command.settlement_id)
        return CancelView(command.settlement_id, f"R{command.settlement_id}", balance)

    async def get_settlement(
        self, institution_code: str, settlement_id: str, request_id: str
    ) -> SettlementView:
        for (inst, _), (_, view) in self.by_request.items():
            if inst == institution_code and (
                view.settlement_id == settlement_id or view.request_id == request_id
            ):
                return view
        raise SwitchError(ErrorReason.SETTLEMENT_NOT_FOUND, "no such settlement")

    async def get_member(self, institution_code: str, card_no: str, pin: str) -> MemberView:
        raise SwitchError(ErrorReason.NOT_IMPLEMENTED, "not in the edge test backend")

    async def account_activity(
        self,
        institution_code: str,
        card_no: str,
        pin: str,
        from_date: date | None,
        to_date: date | None,
    ) -> Sequence[AccountEntry]:
        raise SwitchError(ErrorReason.NOT_IMPLEMENTED, "not in the edge test backend")

    async def institution_totals(self, institution_code: str, business_date: date) -> DayTotals:
        raise SwitchError(ErrorReason.NOT_IMPLEMENTED, "not in the edge test backend")

    async def institution_details(
        self, institution_code: str, business_date: date
    ) -> Sequence[DetailRecord]:
        return []  # the edge tests stream records to a day of no settlements

    async def catalog(self, since_version: int) -> AsyncIterator[CatalogEntry]:
        for entry in catalog_entries(self.region.catalogs, since_version):
            yield entry

    async def ping(self) -> bool:
        return True

    def dead_worker(self) -> str | None:
        return None  # no background tasks

    def pool_stats(self) -> PoolStats:
        return PoolStats(0, 0)
