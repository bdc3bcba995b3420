"""An encounter's claim and its uploads' answers (adjudication.encounter).

The claim of an encounter is its admission, its discharge and the lines not
voided, in line order; it may hold up to limits.encounter_lines_max lines
(a Settle's claim 500), and the engine settles 20,000 of them in well under
a second (it is linear in the lines). An upload answers each line as the
settlement classifies it on the same day.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import date

from adjudication import limits
from adjudication.encounter import Encounter, encounter_claim, upload_results
from adjudication.model import ClaimLine, InjuryCause, MemberCategory, VisitType
from adjudication.validation import validate_claim, validate_lines
from tests.kit import (
    AMINO_INPATIENT,
    APPENDECTOMY,
    BED_A,
    CEFUR_B_RX,
    CHILD_OTC,
    EYE_GEL_C,
    HOSPITAL,
    UNKNOWN,
    catalogs,
    claim,
    line,
    member,
    policies,
    run,
)

ADMITTED = date(2026, 3, 1)
DISCHARGED = date(2026, 3, 10)
STAY = Encounter(
    encounter_id="E1",
    institution_code="H3",
    admission_date=ADMITTED,
    admission_diagnoses=("K35.9",),
    injury_cause=InjuryCause.ACCIDENT,
    accident_case_id="ACC-1",
    discharge_date=DISCHARGED,
    discharge_diagnoses=("K35.8", "I10"),
)
CODES = (APPENDECTOMY, BED_A, AMINO_INPATIENT, CEFUR_B_RX, CHILD_OTC, EYE_GEL_C, UNKNOWN)


def _lines(count: int) -> list[ClaimLine]:
    return [
        line(CODES[i % len(CODES)], 1_000 + 37 * (i % 97), quantity=1 + i % 3, line_no=i + 1)
        for i in range(count)
    ]


def test_the_claim_is_admission_discharge_and_lines_in_line_order() -> None:
    lines = _lines(5)
    made = encounter_claim(
        STAY, reversed(lines), request_id="r9", card_no="C1", use_individual_account=False
    )
    assert made.visit_type is VisitType.INPATIENT
    assert [ln.line_no for ln in made.lines] == [1, 2, 3, 4, 5]
    assert (made.admission_date, made.discharge_date) == (ADMITTED, DISCHARGED)
    assert made.diagnoses == ("K35.8", "I10")  # the discharge's, not the admission's
    assert (made.injury_cause, made.accident_case_id) == (InjuryCause.ACCIDENT, "ACC-1")
    assert (made.request_id, made.institution_code, made.card_no) == ("r9", "H3", "C1")
    assert not made.use_individual_account and made.encounter_id == "E1"


def test_an_encounter_claim_may_hold_more_lines_than_a_settle() -> None:
    lines = _lines(limits.claim_lines_max + 1)
    plain = claim(VisitType.INPATIENT, *lines, day=DISCHARGED, admitted=ADMITTED)
    assert [v.field for v in validate_claim(plain)] == ["lines"]
    assert validate_claim(replace(plain, encounter_id="E1")) == ()
    over = _lines(limits.encounter_lines_max + 1)
    too_many = replace(plain, lines=tuple(over), encounter_id="E1")
    assert [v.field for v in validate_claim(too_many)] == ["lines"]
    assert [v.field for v in validate_lines(over[:5], 4)] == ["lines"]
    assert validate_lines([], 4)[0].field == "lines"


def test_a_20000_line_stay_settles_in_well_under_a_second() -> None:
    lines = _lines(limits.encounter_lines_max)
    made = encounter_claim(STAY, lines, request_id="r", card_no="C1", use_individual_account=True)
    started = time.perf_counter()
    result = run(made, member(balance_fen=10**9))
    elapsed_s = time.perf_counter() - started
    assert result.accepted and len(result.lines) == limits.encounter_lines_max
    assert result.split.total_fen == sum(ln.amount_fen for ln in lines)
    # Measured about 0.05 s (2.5 microseconds a line); a quadratic step would take minutes.
    assert elapsed_s < 1.0, elapsed_s


def test_uploads_answer_each_line_as_the_settlement_classifies_it() -> None:
    lines = _lines(len(CODES) * 2)
    for category, born in ((MemberCategory.EMPLOYEE, date(1980, 1, 1)),
                           (MemberCategory.RETIRED_CADRE, date(2015, 1, 1))):  # fmt: skip
        answered = upload_results(
            lines,
            category=category,
            birth_date=born,
            day=DISCHARGED,
            policies=policies(),
            catalogs=catalogs(),
        )
        made = encounter_claim(
            STAY, lines, request_id="r", card_no="C", use_individual_account=True
        )
        settled = run(made, member(category, birth_date=born), HOSPITAL["L3"])
        assert answered == settled.lines
        assert {r.item_class for r in answered} == {"A", "B", "C", ""}
