"""Encounters held in memory, for the in-memory backend (edge tests, edge-only benchmark).

The same rules as the database's (ledger/migrations/0002_encounters.sql), as
far as a stay run by a well-behaved hospital meets them: the registering
institution only, idempotent calls, line numbers used once, no change to a
settled or cancelled stay, a settlement only after the discharge; the
settlement is the in-memory backend's Settle of the stay's claim.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date
from typing import TYPE_CHECKING, Any

from adjudication.encounter import Encounter, encounter_claim, upload_results
from adjudication.model import Claim, ClaimLine
from switch.backend import (
    AdmissionCommand,
    DischargeCommand,
    EncounterCall,
    EncounterStatus,
    EncounterView,
    FeeDetailsView,
    SettleEncounterCommand,
    SettlementStatus,
    SettlementView,
    UploadCommand,
    VoidCommand,
)
from switch.errors import ErrorReason, FieldViolation, SwitchError, invalid

if TYPE_CHECKING:
    from tests.memory_backend import MemoryBackend


@dataclass
class Stay:
    encounter: Encounter
    member_id: str
    department: str
    lines: dict[int, ClaimLine] = field(default_factory=dict)
    voided: set[int] = field(default_factory=set)
    settlement_id: str = ""
    cancelled: bool = False


class MemoryEncounters:
    def __init__(self, backend: MemoryBackend) -> None:
        self.backend = backend
        self.stays: dict[str, Stay] = {}
        self.answers: dict[tuple[str, str], tuple[bytes, Any]] = {}

    def _replay(self, key: tuple[str, str], digest: bytes) -> Any:
        if key not in self.answers:
            return None
        first, answer = self.answers[key]
        if first != digest:
            raise SwitchError(ErrorReason.REQUEST_ID_REUSED, "request id used before")
        return answer

    def _stay(self, institution_code: str, encounter_id: str, *, open_: bool = True) -> Stay:
        stay = self.stays.get(encounter_id)
        if stay is None:
            raise SwitchError(ErrorReason.ENCOUNTER_NOT_FOUND, "no such encounter")
        if stay.encounter.institution_code != institution_code:
            raise SwitchError(ErrorReason.NOT_ADMITTING_INSTITUTION, "not yours")
        if open_ and (stay.cancelled or self._standing(stay)):
            raise SwitchError(ErrorReason.ENCOUNTER_CLOSED, "settled or cancelled")
        return stay

    def _standing(self, stay: Stay) -> bool:
        settled = self.backend.region.settlements.get(stay.settlement_id)
        return settled is not None and not settled.cancelled

    def _view(self, stay: Stay, request_id: str = "") -> EncounterView:
        e = stay.encounter
        live = [line for no, line in stay.lines.items() if no not in stay.voided]
        standing = self._standing(stay)
        status = (
            EncounterStatus.CANCELLED
            if stay.cancelled
            else EncounterStatus.SETTLED
            if standing
            else EncounterStatus.DISCHARGED
            if e.discharge_date
            else EncounterStatus.ADMITTED
        )
        return EncounterView(
            e.encounter_id, request_id, e.institution_code, stay.member_id, status,
            e.admission_date, stay.department, e.admission_diagnoses, e.injury_cause,
            e.accident_case_id, e.discharge_date, e.discharge_diagnoses, len(live),
            sum(line.amount_fen for line in live), stay.settlement_id if standing else "",
        )  # fmt: skip

    def open_of(self, member_id: str) -> EncounterView | None:
        """The member's latest stay neither settled nor cancelled (GetMember's open stay)."""
        held = [
            s for s in self.stays.values()
            if s.member_id == member_id and not s.cancelled and not self._standing(s)
        ]  # fmt: skip
        return self._view(held[-1]) if held else None

    def _answered(self, key: tuple[str, str], digest: bytes, answer: Any) -> Any:
        self.answers[key] = (digest, answer)
        return answer

    async def register_admission(self, command: AdmissionCommand, digest: bytes) -> EncounterView:
        key = (command.institution_code, command.request_id)
        # As the switch: the card and its PIN first (a retry with a wrong PIN is
        # PIN_INVALID), then the stored answer, then one stay at a time.
        member = self.backend.region.member_by_card(command.card_no)
        if member is None:
            raise SwitchError(ErrorReason.CARD_INVALID, "no member holds this card")
        if member.pin != command.pin:
            raise SwitchError(ErrorReason.PIN_INVALID, "wrong PIN")
        if (done := self._replay(key, digest + command.pin.encode())) is not None:
            return done
        if any(
            s.member_id == member.member_id and not s.cancelled and not s.encounter.discharge_date
            for s in self.stays.values()
        ):
            raise SwitchError(ErrorReason.MEMBER_IN_HOSPITAL, "in hospital already")
        encounter_id = f"E{len(self.stays) + 1:08d}"
        self.stays[encounter_id] = stay = Stay(
            Encounter(
                encounter_id, command.institution_code, command.admission_date,
                command.diagnoses, command.injury_cause, command.accident_case_id,
            ),
            member.member_id,
            command.department,
        )  # fmt: skip
        return self._answered(key, digest + command.pin.encode(), self._view(stay, key[1]))

    async def cancel_admission(
        self, call: EncounterCall, reason: str, digest: bytes
    ) -> EncounterView:
        if (done := self._replay(call.key, digest)) is not None:
            return done
        stay = self._stay(call.institution_code, call.encounter_id, open_=False)
        if self._standing(stay):
            raise SwitchError(ErrorReason.ENCOUNTER_CLOSED, "settled")
        stay.cancelled = True
        return self._answered(call.key, digest, self._view(stay, call.request_id))

    async def upload_fee_details(self, command: UploadCommand, digest: bytes) -> FeeDetailsView:
        call = command.call
        if (done := self._replay(call.key, digest)) is not None:
            return done
        stay = self._stay(call.institution_code, call.encounter_id)
        used = [
            FieldViolation(f"lines[{i}].line_no", "already uploaded")
            for i, line in enumerate(command.lines)
            if line.line_no in stay.lines
        ]
        if used:
            raise invalid(used)
        member = self.backend.region.members[stay.member_id]
        day = max(date.today(), stay.encounter.admission_date)
        results = upload_results(
            command.lines, category=member.category, birth_date=member.birth_date, day=day,
            policies=self.backend.region.policies, catalogs=self.backend.region.catalogs,
        )  # fmt: skip
        stay.lines.update((line.line_no, line) for line in command.lines)
        view = self._view(stay)
        answer = FeeDetailsView(
            call.encounter_id, call.request_id, results, (), view.line_count, view.total_fen
        )
        return self._answered(call.key, digest, answer)

    async def void_fee_details(self, command: VoidCommand, digest: bytes) -> FeeDetailsView:
        call = command.call
        if (done := self._replay(call.key, digest)) is not None:
            return done
        stay = self._stay(call.institution_code, call.encounter_id)
        bad = [
            FieldViolation(f"line_nos[{i}]", "not uploaded, or voided")
            for i, no in enumerate(command.line_nos)
            if no not in stay.lines or no in stay.voided
        ]
        if bad:
            raise invalid(bad)
        stay.voided.update(command.line_nos)
        view = self._view(stay)
        answer = FeeDetailsView(
            call.encounter_id, call.request_id, (), command.line_nos, view.line_count,
            view.total_fen,
        )  # fmt: skip
        return self._answered(call.key, digest, answer)

    async def record_discharge(self, command: DischargeCommand, digest: bytes) -> EncounterView:
        call = command.call
        if (done := self._replay(call.key, digest)) is not None:
            return done
        stay = self._stay(call.institution_code, call.encounter_id)
        if command.discharge_date < stay.encounter.admission_date:
            raise invalid([FieldViolation("discharge_date", "before the admission date")])
        stay.encounter = replace(
            stay.encounter,
            discharge_date=command.discharge_date,
            discharge_diagnoses=command.diagnoses,
        )
        return self._answered(call.key, digest, self._view(stay, call.request_id))

    def _claim(self, command: SettleEncounterCommand, *, open_: bool = True) -> Claim:
        call = command.call
        stay = self._stay(call.institution_code, call.encounter_id, open_=open_)
        if not stay.encounter.discharge_date or len(stay.lines) == len(stay.voided):
            raise SwitchError(ErrorReason.ENCOUNTER_NOT_READY, "not discharged, or no lines")
        lines = [line for no, line in stay.lines.items() if no not in stay.voided]
        return encounter_claim(
            stay.encounter, lines, request_id=call.request_id, card_no=command.card_no,
            use_individual_account=command.use_individual_account,
        )  # fmt: skip

    async def pre_settle_encounter(self, command: SettleEncounterCommand) -> SettlementView:
        return await self.backend.pre_settle(self._claim(command), command.pin)

    async def settle_encounter(
        self, command: SettleEncounterCommand, digest: bytes
    ) -> SettlementView:
        call = command.call
        stay = self._stay(call.institution_code, call.encounter_id, open_=False)
        # A retry of a recorded settlement is answered whatever the stay is now.
        claim = self._claim(command, open_=call.key not in self.backend.by_request)
        view = await self.backend.settle(claim, command.pin, digest)
        if view.status is SettlementStatus.SETTLED:
            stay.settlement_id = view.settlement_id
        return view

    async def get_encounter(self, institution_code: str, encounter_id: str) -> EncounterView:
        return self._view(self._stay(institution_code, encounter_id, open_=False))
