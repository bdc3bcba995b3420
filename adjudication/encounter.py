"""An inpatient stay as hospitals run it, and the one claim it stands for.

Hospitals register the admission, upload the fee details day by day, void
some, record the discharge and settle at the end (the national interface's
2401, 2301, 2302, 2402, 2303/2304). The rules know only claims: settling an
encounter is, to the fen, settling the one inpatient claim made of its
admission, its discharge and the lines not voided (`encounter_claim`). An
upload answers each line as a settlement on a given day would classify it
(`upload_results`); the settlement classifies them again on the discharge
date, so the two differ only if the catalog, the policy or the member's age
changes in between.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from adjudication.catalog import CatalogBook
from adjudication.engine import ADULT_AGE, age_on, classify_line
from adjudication.model import (
    Claim,
    ClaimLine,
    InjuryCause,
    LineResult,
    MemberCategory,
    VisitType,
)
from adjudication.policy import PolicyBook
from adjudication.validation import InvalidClaim, Violation


@dataclass(frozen=True, slots=True)
class Encounter:
    """What an encounter holds besides its lines: the admission and the discharge."""

    encounter_id: str
    institution_code: str
    admission_date: date
    admission_diagnoses: tuple[str, ...]
    injury_cause: InjuryCause = InjuryCause.NONE
    accident_case_id: str = ""
    discharge_date: date | None = None  # None until the discharge is recorded
    discharge_diagnoses: tuple[str, ...] = ()


def encounter_claim(
    encounter: Encounter,
    lines: Iterable[ClaimLine],
    *,
    request_id: str,
    card_no: str,
    use_individual_account: bool,
) -> Claim:
    """The inpatient claim an encounter stands for, settled under `request_id`.

    `lines` are the encounter's lines not voided; the claim holds them in
    line number order, its diagnoses are the discharge's (primary first),
    its dates the admission and the discharge.
    """
    return Claim(
        request_id=request_id,
        institution_code=encounter.institution_code,
        card_no=card_no,
        visit_type=VisitType.INPATIENT,
        lines=tuple(sorted(lines, key=lambda line: line.line_no)),
        admission_date=encounter.admission_date,
        discharge_date=encounter.discharge_date,
        diagnoses=encounter.discharge_diagnoses,
        injury_cause=encounter.injury_cause,
        accident_case_id=encounter.accident_case_id,
        use_individual_account=use_individual_account,
        encounter_id=encounter.encounter_id,
    )


def upload_results(
    lines: Sequence[ClaimLine],
    *,
    category: MemberCategory,
    birth_date: date,
    day: date,
    policies: PolicyBook,
    catalogs: CatalogBook,
) -> tuple[LineResult, ...]:
    """Each line classified as an inpatient settlement with benefit date `day` would
    (rules section 3: class, self-pay parts, in-scope amount, line reasons).

    Raises InvalidClaim (naming `lines`) when no policy or catalog is in force on `day`.
    """
    policy = policies.in_force(day)
    catalog = catalogs.in_force(day)
    if policy is None or catalog is None:
        missing = "benefit policy" if policy is None else "catalog"
        raise InvalidClaim((Violation("lines", f"no {missing} in force on {day}"),))
    adult = age_on(birth_date, day) >= ADULT_AGE
    no_preselfpay = category in policy.no_preselfpay_categories
    items = catalog.items
    return tuple(
        classify_line(
            line, items.get(line.item_code), VisitType.INPATIENT, adult, no_preselfpay, policy
        )
        for line in lines
    )
