"""The values the adjudication engine takes and gives.

Everything here is an immutable value of the standard library, so a claim and
the member state it was judged against can be stored, replayed years later,
and compared field by field. Money is integer fen (`_fen`), ratios are basis
points (`_bp`), dates are `datetime.date`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum


class VisitType(StrEnum):
    OUTPATIENT = "OUTPATIENT"
    SPECIAL_DISEASE = "SPECIAL_DISEASE"
    INPATIENT = "INPATIENT"
    PHARMACY = "PHARMACY"


class InjuryCause(StrEnum):
    NONE = "NONE"
    ACCIDENT = "ACCIDENT"
    FIGHT = "FIGHT"
    DRUNK = "DRUNK"
    CRIME = "CRIME"
    SELF_HARM = "SELF_HARM"
    TRAFFIC = "TRAFFIC"
    WORK_INJURY = "WORK_INJURY"
    MATERNITY = "MATERNITY"


class MemberCategory(StrEnum):
    EMPLOYEE = "EMPLOYEE"
    RETIREE = "RETIREE"
    RESIDENT = "RESIDENT"
    RETIRED_CADRE = "RETIRED_CADRE"


class MemberStatus(StrEnum):
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    DECEASED = "DECEASED"


class CardStatus(StrEnum):
    ACTIVE = "ACTIVE"
    LOST = "LOST"


class InstitutionKind(StrEnum):
    HOSPITAL = "HOSPITAL"
    CLINIC = "CLINIC"
    PHARMACY = "PHARMACY"


class InstitutionStatus(StrEnum):
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    REVOKED = "REVOKED"


class Outcome(StrEnum):
    """What the engine decided. The switch maps it to SettlementStatus."""

    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"


# --------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True, slots=True)
class ClaimLine:
    line_no: int
    item_code: str
    quantity: int
    unit_price_fen: int
    amount_fen: int
    days_supply: int = 0
    approved: bool = False
    discharge_medication: bool = False


@dataclass(frozen=True, slots=True)
class Claim:
    """One claim as the institution sent it (the SettleRequest, minus the PIN).

    The PIN itself never reaches the engine: the caller checks it against the
    stored keyed hash and passes only whether it matched (`Context.pin_ok`).
    """

    request_id: str
    institution_code: str
    card_no: str
    visit_type: VisitType
    lines: tuple[ClaimLine, ...]
    service_date: date | None = None
    admission_date: date | None = None
    discharge_date: date | None = None
    diagnoses: tuple[str, ...] = ()
    injury_cause: InjuryCause = InjuryCause.NONE
    accident_case_id: str = ""
    prescription_ref: str = ""
    use_individual_account: bool = True
    # Set for the claim of an encounter (an inpatient stay whose fee details
    # were uploaded over the stay): its lines may number up to
    # limits.encounter_lines_max. Nothing else in the rules looks at it.
    encounter_id: str = ""

    @property
    def primary_diagnosis(self) -> str:
        return self.diagnoses[0] if self.diagnoses else ""


@dataclass(frozen=True, slots=True)
class Institution:
    code: str
    kind: InstitutionKind
    level: str  # "L1", "L2", "L3"; "" for pharmacies
    status: InstitutionStatus
    name: str = ""
    region: str = ""


@dataclass(frozen=True, slots=True)
class ApprovedDisease:
    code: str
    valid_from: date
    valid_to: date  # inclusive


@dataclass(frozen=True, slots=True)
class InpatientStay:
    """A settled, not cancelled, inpatient claim of the member."""

    settlement_id: str
    primary_diagnosis: str
    admission_date: date
    discharge_date: date
    new_admission: bool  # False when it continued an earlier episode


@dataclass(frozen=True, slots=True)
class YearAccumulators:
    """What the member has used in one benefit year (all fen, or counts)."""

    year: int
    outpatient_deductible_used_fen: int = 0
    outpatient_pooled_fen: int = 0
    basic_pooled_fen: int = 0  # inpatient and special disease together
    inpatient_above_deductible_fen: int = 0
    new_admissions: int = 0
    serious_illness_base_fen: int = 0
    serious_illness_paid_fen: int = 0


@dataclass(frozen=True, slots=True)
class MemberState:
    """The member as the ledger knows them at the moment of the claim.

    `year` holds the accumulators of the claim's benefit year,
    `pharmacy_purchases_today` the settled pharmacy purchases on the claim's
    service date, `stays` the member's settled inpatient stays (at least those
    that can still matter: discharged within the longest look-back window).
    """

    member_id: str
    category: MemberCategory
    status: MemberStatus
    card_status: CardStatus
    birth_date: date
    balance_fen: int
    year: YearAccumulators
    pin_failures: int = 0
    special_diseases: tuple[ApprovedDisease, ...] = ()
    stays: tuple[InpatientStay, ...] = ()
    pharmacy_purchases_today: int = 0


@dataclass(frozen=True, slots=True)
class Context:
    """Everything about the claim that is not in the request itself."""

    institution: Institution | None  # None: unknown institution code
    member: MemberState | None  # None: no member holds that card
    pin_ok: bool


# --------------------------------------------------------------------------
# Outputs


@dataclass(frozen=True, slots=True)
class Split:
    total_fen: int = 0
    full_selfpay_fen: int = 0
    overlimit_selfpay_fen: int = 0
    preselfpay_fen: int = 0
    in_scope_fen: int = 0
    deductible_fen: int = 0
    pooled_fund_fen: int = 0
    serious_illness_fen: int = 0
    institution_waiver_fen: int = 0
    individual_account_fen: int = 0
    patient_cash_fen: int = 0

    def as_dict(self) -> dict[str, int]:
        # Every field is an int: a shallow copy is dataclasses.asdict's answer
        # at a tenth of its cost (it is built for each answer a Settle stores).
        return {name: getattr(self, name) for name in _SPLIT_FIELDS}


@dataclass(frozen=True, slots=True)
class LineResult:
    line_no: int
    item_class: str  # "A", "B", "C", or "" when not in the catalog
    full_selfpay_fen: int
    overlimit_selfpay_fen: int
    preselfpay_fen: int
    in_scope_fen: int
    reasons: tuple[str, ...] = ()
    counts_toward_fund: bool = True  # False for account-only and uncovered lines


@dataclass(frozen=True, slots=True)
class StateChanges:
    """The exact changes a settlement makes to the member's state.

    Stored with the settlement, applied by Settle, and subtracted again by a
    cancellation, so that cancel restores the state to the fen. All deltas
    are non-negative; `account_debit_fen` is taken from the balance.
    """

    member_id: str
    benefit_year: int
    outpatient_deductible_used_fen: int = 0
    outpatient_pooled_fen: int = 0
    basic_pooled_fen: int = 0
    inpatient_above_deductible_fen: int = 0
    new_admissions: int = 0
    serious_illness_base_fen: int = 0
    serious_illness_paid_fen: int = 0
    pharmacy_date: date | None = None  # set for a pharmacy purchase (+1 that day)
    account_debit_fen: int = 0
    stay: InpatientStay | None = None  # the stay this settlement adds

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {name: getattr(self, name) for name in _CHANGES_FIELDS}
        out["pharmacy_date"] = self.pharmacy_date.isoformat() if self.pharmacy_date else None
        if self.stay is not None:
            out["stay"] = {
                "settlement_id": self.stay.settlement_id,
                "primary_diagnosis": self.stay.primary_diagnosis,
                "admission_date": self.stay.admission_date.isoformat(),
                "discharge_date": self.stay.discharge_date.isoformat(),
                "new_admission": self.stay.new_admission,
            }
        return out

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> StateChanges:
        values = dict(data)
        pharmacy = values.get("pharmacy_date")
        values["pharmacy_date"] = date.fromisoformat(str(pharmacy)) if pharmacy else None
        stay = values.get("stay")
        if isinstance(stay, dict):
            values["stay"] = InpatientStay(
                settlement_id=str(stay["settlement_id"]),
                primary_diagnosis=str(stay["primary_diagnosis"]),
                admission_date=date.fromisoformat(str(stay["admission_date"])),
                discharge_date=date.fromisoformat(str(stay["discharge_date"])),
                new_admission=bool(stay["new_admission"]),
            )
        return cls(**values)  # type: ignore[arg-type]


_SPLIT_FIELDS = tuple(f.name for f in dataclasses.fields(Split))
_CHANGES_FIELDS = tuple(f.name for f in dataclasses.fields(StateChanges))


@dataclass(frozen=True, slots=True)
class Adjudication:
    """The engine's answer for one claim."""

    outcome: Outcome
    reasons: tuple[str, ...]  # R_* (claim-level), empty when accepted
    warnings: tuple[str, ...]  # W_*
    split: Split
    lines: tuple[LineResult, ...]
    balance_after_fen: int
    member_id: str  # "" when no member was found
    benefit_date: date | None
    policy_version: str
    catalog_version: int
    # None on a rejection: a rejection changes nothing but the PIN count.
    changes: StateChanges | None
    # The member's PIN failure count after this claim; None when the PIN was
    # not looked at (rejected before the PIN check, or no member).
    pin_failures_after: int | None = None
    special_disease: str = ""  # the approved disease a SPECIAL_DISEASE claim matched
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def accepted(self) -> bool:
        return self.outcome is Outcome.ACCEPTED
