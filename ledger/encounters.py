"""Encounters (inpatient stays) as stored: their facts, their fee detail lines, their calls.

None of this is money: an encounter and its lines are kept apart from the
books until it is settled, and its settlement is recorded by the settle
path like any other (ledger/store.py). Migration 0002 holds the rules:
each call here is one statement of one owner's function, idempotent per
(institution, request id), refusing with a SQLSTATE that `refusal` turns
into a LedgerError of its own kind (nothing is written then). Answers are
returned as the JSON the function stored, so a retry gets the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, NamedTuple, TypeVar

import asyncpg

from ledger.store import LedgerError, RequestIdReused

T = TypeVar("T")


class EncounterNotFound(LedgerError):
    """No encounter with that id."""


class NotAdmittingInstitution(LedgerError):
    """The encounter was registered by another institution."""


class EncounterClosed(LedgerError):
    """The encounter is settled (cancel its settlement first) or its admission cancelled."""


class MemberInHospital(LedgerError):
    """The member has an admission with no discharge recorded (one stay at a time)."""


class EncounterNotReady(LedgerError):
    """Not yet settleable: no discharge recorded, or no lines not voided."""


class EncounterFull(LedgerError):
    """The upload would take the encounter past its line limits."""


class EncounterChanged(LedgerError):
    """The encounter changed while its settlement was decided; nothing was recorded."""


class EncounterFieldRefused(LedgerError):
    """A field of the request does not fit the encounter (a line number already used...)."""

    def __init__(self, message: str, violations: Sequence[tuple[str, str]]) -> None:
        super().__init__(message)
        self.violations = tuple(violations)  # (field, why)


_REFUSALS: dict[str, type[LedgerError]] = {
    "MS002": EncounterChanged,
    "MS009": RequestIdReused,
    "MS010": EncounterNotFound,
    "MS011": NotAdmittingInstitution,
    "MS012": EncounterClosed,
    "MS013": EncounterNotReady,
    "MS014": EncounterFull,
    "MS016": MemberInHospital,
}


def refusal(exc: asyncpg.PostgresError) -> LedgerError | None:
    """The refusal an encounter function (or the settle trigger) raised, or None."""
    message = str(getattr(exc, "message", None) or exc)
    if exc.sqlstate == "MS015":
        fields = json.loads(exc.detail or "[]")
        return EncounterFieldRefused(message, [(str(f), str(why)) for f, why in fields])
    kind = _REFUSALS.get(exc.sqlstate or "")
    return None if kind is None else kind(message)


class LineRow(NamedTuple):
    """One fee detail line, field for field the SQL type ms_encounter_line."""

    line_no: int
    item_code: str
    quantity: int
    unit_price_fen: int
    amount_fen: int
    days_supply: int
    approved: bool
    discharge_medication: bool


@dataclass(frozen=True, slots=True)
class StoredEncounter:
    """An encounter's row, as far as its claim needs it."""

    encounter_id: str
    institution_code: str
    member_id: str
    admission_date: date
    admission_diagnoses: tuple[str, ...]
    injury_cause: str
    accident_case_id: str
    discharge_date: date | None
    discharge_diagnoses: tuple[str, ...]
    line_count: int
    version: int


@dataclass(frozen=True, slots=True)
class UploadFacts:
    """What classifying an upload's lines needs: the member and the admission."""

    category: str
    birth_date: date
    admission_date: date


async def _refusing(call: Awaitable[T]) -> T:
    """The statement's result; an encounter refusal raised as its LedgerError."""
    try:
        return await call
    except asyncpg.PostgresError as exc:
        refused = refusal(exc)
        if refused is None:
            raise
        raise refused from exc


def _encounter(row: asyncpg.Record) -> StoredEncounter:
    return StoredEncounter(
        encounter_id=row["encounter_id"],
        institution_code=row["institution_code"],
        member_id=row["member_id"],
        admission_date=row["admission_date"],
        admission_diagnoses=tuple(row["admission_diagnoses"]),
        injury_cause=row["injury_cause"],
        accident_case_id=row["accident_case_id"],
        discharge_date=row["discharge_date"],
        discharge_diagnoses=tuple(row["discharge_diagnoses"] or ()),
        line_count=row["line_count"],
        version=row["version"],
    )


class Encounters:
    """Encounter calls and reads, over an application-role pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # ------------------------------------------------------------- changes

    async def admit(
        self,
        key: tuple[str, str],
        fingerprint: bytes,
        card_hmac: bytes,
        admission_date: date,
        department: str,
        diagnoses: Sequence[str],
        injury_cause: str,
        accident_case_id: str,
    ) -> dict[str, Any]:
        """Registers the admission of the card's member (2401); the Encounter answer."""
        answer: dict[str, Any] = await _refusing(
            self.pool.fetchval(
                "SELECT ms_encounter_admit($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                *key,
                fingerprint,
                card_hmac,
                admission_date,
                department,
                list(diagnoses),
                injury_cause,
                accident_case_id,
            )
        )
        return answer

    async def cancel_admission(
        self, key: tuple[str, str], fingerprint: bytes, encounter_id: str, reason: str
    ) -> dict[str, Any]:
        """Cancels an admission without a standing settlement (2404)."""
        answer: dict[str, Any] = await _refusing(
            self.pool.fetchval(
                "SELECT ms_encounter_cancel_admission($1, $2, $3, $4, $5)",
                *key,
                fingerprint,
                encounter_id,
                reason,
            )
        )
        return answer

    async def upload(
        self,
        key: tuple[str, str],
        fingerprint: bytes,
        encounter_id: str,
        lines: Sequence[LineRow],
        results: Sequence[dict[str, Any]],
        *,
        lines_max: int,
        stored_lines_max: int,
    ) -> dict[str, Any]:
        """Adds fee detail lines (2301), answered with `results` (one per line)."""
        answer: dict[str, Any] = await _refusing(
            self.pool.fetchval(
                "SELECT ms_encounter_upload($1, $2, $3, $4, $5, $6, $7, $8)",
                *key,
                fingerprint,
                encounter_id,
                list(lines),
                list(results),
                lines_max,
                stored_lines_max,
            )
        )
        return answer

    async def void(
        self,
        key: tuple[str, str],
        fingerprint: bytes,
        encounter_id: str,
        line_nos: Sequence[int],
        reason: str,
    ) -> dict[str, Any]:
        """Voids uploaded lines (2302)."""
        answer: dict[str, Any] = await _refusing(
            self.pool.fetchval(
                "SELECT ms_encounter_void($1, $2, $3, $4, $5, $6)",
                *key,
                fingerprint,
                encounter_id,
                list(line_nos),
                reason,
            )
        )
        return answer

    async def discharge(
        self,
        key: tuple[str, str],
        fingerprint: bytes,
        encounter_id: str,
        discharge_date: date,
        diagnoses: Sequence[str],
    ) -> dict[str, Any]:
        """Records (or corrects) the discharge (2402)."""
        answer: dict[str, Any] = await _refusing(
            self.pool.fetchval(
                "SELECT ms_encounter_discharge($1, $2, $3, $4, $5, $6)",
                *key,
                fingerprint,
                encounter_id,
                discharge_date,
                list(diagnoses),
            )
        )
        return answer

    async def settle_intent(
        self, key: tuple[str, str], fingerprint: bytes, encounter_id: str, card_hmac: bytes
    ) -> StoredEncounter:
        """Ties a settle request to the encounter (as it is now) before it is settled."""
        row = await _refusing(
            self.pool.fetchrow(
                "SELECT * FROM ms_encounter_settle_intent($1, $2, $3, $4, $5)",
                *key,
                fingerprint,
                encounter_id,
                card_hmac,
            )
        )
        return _encounter(row)

    # --------------------------------------------------------------- reads

    async def claimable(
        self, institution_code: str, encounter_id: str, card_hmac: bytes
    ) -> StoredEncounter:
        """The encounter, if the card's member may settle it now (PreSettle)."""
        row = await _refusing(
            self.pool.fetchrow(
                "SELECT * FROM ms_encounter_claimable($1, $2, $3, true)",
                institution_code,
                encounter_id,
                card_hmac,
            )
        )
        return _encounter(row)

    async def lines(self, encounter_id: str) -> list[LineRow]:
        """The encounter's lines not voided, in line order."""
        rows = await self.pool.fetch(
            "SELECT line_no, item_code, quantity, unit_price_fen, amount_fen, days_supply,"
            " approved, discharge_medication FROM encounter_lines"
            " WHERE encounter_id = $1 AND voided_by IS NULL ORDER BY line_no",
            encounter_id,
        )
        return [LineRow(**dict(row)) for row in rows]

    async def upload_facts(self, institution_code: str, encounter_id: str) -> UploadFacts:
        """The member and admission date of the institution's encounter."""
        row = await _refusing(
            self.pool.fetchrow(
                "SELECT m.category, m.birth_date, e.admission_date"
                " FROM ms_encounter_get($1, $2) e JOIN members m USING (member_id)",
                institution_code,
                encounter_id,
            )
        )
        return UploadFacts(row["category"], row["birth_date"], row["admission_date"])

    async def get(self, institution_code: str, encounter_id: str) -> dict[str, Any]:
        """The institution's encounter as it is now (the Encounter answer)."""
        answer: dict[str, Any] = await _refusing(
            self.pool.fetchval(
                "SELECT ms_encounter_json(e) FROM ms_encounter_get($1, $2) e",
                institution_code,
                encounter_id,
            )
        )
        return answer

    async def open_of(self, member_id: str) -> dict[str, Any] | None:
        """The member's latest encounter neither settled nor cancelled, if any."""
        answer: dict[str, Any] | None = await self.pool.fetchval(
            "SELECT ms_encounter_json(e) FROM encounters e"
            " WHERE e.member_id = $1 AND NOT e.cancelled AND NOT ms_encounter_standing(e)"
            " ORDER BY e.created_at DESC, e.encounter_id DESC LIMIT 1",
            member_id,
        )
        return answer
