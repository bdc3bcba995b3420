"""The EncounterService behind the edge: stays kept by the ledger, settled by the settle path.

Until it is settled, an encounter changes only itself (ledger/encounters.py):
its admission, its fee detail lines (each upload answered line by line by
the engine's classification) and its discharge; none of that reaches the
books. Settling it builds the one inpatient claim it stands for
(adjudication.encounter.encounter_claim) and sends it through the process's
settle writer (switch/settle.py), the path every Settle takes: the same
adjudication, record, postings, accumulators, idempotency and
reconciliation. The SETTLE request written just before ties the settlement
to its encounter; the statement recording the settlement marks the
encounter settled, or records nothing if the encounter changed meanwhile
(ENCOUNTER_CHANGED: the same request again settles what it now holds).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from adjudication import limits as alimits
from adjudication.encounter import Encounter, encounter_claim, upload_results
from adjudication.model import Claim, ClaimLine, InjuryCause, MemberCategory
from ledger.db import REGION_TZ
from ledger.encounters import Encounters, LineRow, StoredEncounter, refusal
from switch import limits
from switch.backend import (
    AdmissionCommand,
    DischargeCommand,
    EncounterCall,
    EncounterView,
    FeeDetailsView,
    SettleEncounterCommand,
    SettlementView,
    UploadCommand,
    VoidCommand,
    encounter_view,
    fee_details_view,
    line_to_dict,
)
from switch.service import LedgerBackend, domain_errors


class LedgerEncounters:
    """EncounterBackend over ledger.encounters and the backend's settle path."""

    def __init__(self, backend: LedgerBackend) -> None:
        self.backend = backend
        self.store = Encounters(backend.ledger.pool)

    def _card(self, card_no: str) -> bytes:
        return self.backend.ledger.keys.card_lookup(card_no)

    async def register_admission(
        self, command: AdmissionCommand, request_digest: bytes
    ) -> EncounterView:
        fingerprint = self.backend.fingerprint(request_digest, command.card_no, command.pin)
        with domain_errors():
            # Who is admitted: the card's member, once its PIN is right (as GetMember).
            await self.backend._member_checked(
                command.institution_code, command.card_no, command.pin
            )
            answer = await self.store.admit(
                (command.institution_code, command.request_id),
                fingerprint,
                self._card(command.card_no),
                command.admission_date,
                command.department,
                command.diagnoses,
                command.injury_cause.value,
                command.accident_case_id,
            )
        return encounter_view(answer)

    async def cancel_admission(
        self, call: EncounterCall, reason: str, request_digest: bytes
    ) -> EncounterView:
        with domain_errors():
            answer = await self.store.cancel_admission(
                call.key, request_digest, call.encounter_id, reason
            )
        return encounter_view(answer)

    async def upload_fee_details(
        self, command: UploadCommand, request_digest: bytes
    ) -> FeeDetailsView:
        """The lines stored, each answered as a settlement today would classify it."""
        call = command.call
        with domain_errors():
            facts = await self.store.upload_facts(call.institution_code, call.encounter_id)
            results = upload_results(
                command.lines,
                category=MemberCategory(facts.category),
                birth_date=facts.birth_date,
                day=max(datetime.now(REGION_TZ).date(), facts.admission_date),
                policies=self.backend.policies,
                catalogs=self.backend.catalogs,
            )
            answer = await self.store.upload(
                call.key,
                request_digest,
                call.encounter_id,
                [_line_row(line) for line in command.lines],
                [line_to_dict(result) for result in results],
                lines_max=alimits.encounter_lines_max,
                stored_lines_max=limits.encounter_stored_lines_max,
            )
        return fee_details_view(answer)

    async def void_fee_details(self, command: VoidCommand, request_digest: bytes) -> FeeDetailsView:
        call = command.call
        with domain_errors():
            answer = await self.store.void(
                call.key, request_digest, call.encounter_id, command.line_nos, command.reason
            )
        return fee_details_view(answer)

    async def record_discharge(
        self, command: DischargeCommand, request_digest: bytes
    ) -> EncounterView:
        call = command.call
        with domain_errors():
            answer = await self.store.discharge(
                call.key,
                request_digest,
                call.encounter_id,
                command.discharge_date,
                command.diagnoses,
            )
        return encounter_view(answer)

    async def pre_settle_encounter(self, command: SettleEncounterCommand) -> SettlementView:
        """PreSettle of the encounter's claim (nothing recorded but PIN failures)."""
        call = command.call
        with domain_errors():
            stored = await self.store.claimable(
                call.institution_code, call.encounter_id, self._card(command.card_no)
            )
            claim = await self._claim(stored, command)
        return await self.backend.pre_settle(claim, command.pin)

    async def settle_encounter(
        self, command: SettleEncounterCommand, request_digest: bytes
    ) -> SettlementView:
        """Settle of the encounter's claim, through the settle writer like any Settle."""
        call = command.call
        fingerprint = self.backend.fingerprint(request_digest, command.card_no, command.pin)
        with domain_errors():
            stored = await self.store.settle_intent(
                call.key, fingerprint, call.encounter_id, self._card(command.card_no)
            )
            claim = await self._claim(stored, command)
            try:
                return await self.backend.writer.settle(claim, command.pin, fingerprint)
            except asyncpg.PostgresError as exc:  # the encounter moved as it was recorded
                refused = refusal(exc)
                if refused is None:
                    raise
                raise refused from exc

    async def get_encounter(self, institution_code: str, encounter_id: str) -> EncounterView:
        with domain_errors():
            return encounter_view(await self.store.get(institution_code, encounter_id))

    async def open_of(self, member_id: str) -> EncounterView | None:
        """The member's latest encounter neither settled nor cancelled (GetMember)."""
        answer = await self.store.open_of(member_id)
        return None if answer is None else encounter_view(answer)

    async def _claim(self, stored: StoredEncounter, command: SettleEncounterCommand) -> Claim:
        lines = await self.store.lines(stored.encounter_id)
        return encounter_claim(
            _encounter(stored),
            _claim_lines(lines),
            request_id=command.call.request_id,
            card_no=command.card_no,
            use_individual_account=command.use_individual_account,
        )


def _encounter(stored: StoredEncounter) -> Encounter:
    return Encounter(
        encounter_id=stored.encounter_id,
        institution_code=stored.institution_code,
        admission_date=stored.admission_date,
        admission_diagnoses=stored.admission_diagnoses,
        injury_cause=InjuryCause(stored.injury_cause),
        accident_case_id=stored.accident_case_id,
        discharge_date=stored.discharge_date,
        discharge_diagnoses=stored.discharge_diagnoses,
    )


def _line_row(line: ClaimLine) -> LineRow:
    return LineRow(*(getattr(line, name) for name in LineRow._fields))


def _claim_lines(rows: Sequence[LineRow]) -> list[ClaimLine]:
    return [ClaimLine(**row._asdict()) for row in rows]
