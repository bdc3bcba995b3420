"""Section 2 of the rules: claim-level eligibility, one test per R_* code, in order.

Each rejection pays nothing (total is patient cash), lists no lines and
changes nothing; a claim failing two rules gets the earlier reason.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from adjudication import reasons as R
from adjudication.model import (
    Adjudication,
    ApprovedDisease,
    CardStatus,
    InjuryCause,
    InstitutionStatus,
    MemberStatus,
    VisitType,
)
from tests.kit import (
    AMOX_RX,
    CONSULT_A,
    DAY,
    EYE_GEL_C,
    HOSPITAL,
    LORA_B_OTC,
    PARA_OTC,
    PHARMACY,
    TOOTHPASTE,
    UNKNOWN,
    claim,
    line,
    member,
    run,
)

OUT = VisitType.OUTPATIENT
PH = VisitType.PHARMACY


def assert_rejected(result: Adjudication, reason: str) -> None:
    assert result.reasons == (reason,)
    assert not result.accepted
    assert result.lines == () and result.changes is None
    s = result.split
    assert s.pooled_fund_fen == s.serious_illness_fen == s.institution_waiver_fen == 0
    assert s.individual_account_fen == 0
    assert s.patient_cash_fen == s.total_fen


def assert_accepted(result: Adjudication) -> None:
    assert result.accepted, result.reasons
    assert result.reasons == ()


@pytest.mark.parametrize("status", [InstitutionStatus.SUSPENDED, InstitutionStatus.REVOKED])
def test_r_institution_not_active(status: InstitutionStatus) -> None:
    """R_INSTITUTION_NOT_ACTIVE: a suspended or revoked institution settles nothing."""
    inst = replace(HOSPITAL["L2"], status=status)
    assert_rejected(run(claim(OUT, line(CONSULT_A, 1000)), inst=inst), R.R_INSTITUTION_NOT_ACTIVE)


def test_r_visit_type_not_allowed_both_ways() -> None:
    """R_VISIT_TYPE_NOT_ALLOWED: PHARMACY at a hospital, OUTPATIENT at a pharmacy."""
    ph_claim = claim(PH, line(PARA_OTC, 500))
    assert_rejected(run(ph_claim, inst=HOSPITAL["L1"]), R.R_VISIT_TYPE_NOT_ALLOWED)
    assert_rejected(
        run(claim(OUT, line(CONSULT_A, 1000)), inst=PHARMACY), R.R_VISIT_TYPE_NOT_ALLOWED
    )
    assert_accepted(run(ph_claim, inst=PHARMACY))


def test_r_card_invalid_no_member_or_lost_card() -> None:
    """R_CARD_INVALID: no member holds the card, or it is reported lost."""
    c = claim(OUT, line(CONSULT_A, 1000))
    from adjudication.engine import adjudicate
    from adjudication.model import Context
    from tests.kit import catalogs, policies

    ctx = Context(institution=HOSPITAL["L3"], member=None, pin_ok=False)
    result = adjudicate(c, ctx, policies(), catalogs())
    assert_rejected(result, R.R_CARD_INVALID)
    assert result.member_id == "" and result.pin_failures_after is None
    lost = run(c, member(card_status=CardStatus.LOST))
    assert_rejected(lost, R.R_CARD_INVALID)
    assert lost.pin_failures_after is None  # the PIN is not looked at


def test_wrong_pins_count_up_and_the_fifth_locks_even_with_the_right_pin() -> None:
    """R_PIN_INVALID increments the count; at 5 failures R_PIN_LOCKED comes first."""
    c = claim(OUT, line(CONSULT_A, 1000))
    failures = 0
    for attempt in range(1, 6):
        result = run(c, member(pin_failures=failures), pin_ok=False)
        assert_rejected(result, R.R_PIN_INVALID)
        assert result.pin_failures_after == attempt
        assert result.pin_failures_after is not None
        failures = result.pin_failures_after
    assert failures == 5
    locked_right = run(c, member(pin_failures=failures), pin_ok=True)
    assert_rejected(locked_right, R.R_PIN_LOCKED)
    assert locked_right.pin_failures_after is None  # the lock does not change the count
    assert_rejected(run(c, member(pin_failures=failures), pin_ok=False), R.R_PIN_LOCKED)


def test_right_pin_after_four_failures_resets_the_count() -> None:
    """A right PIN resets the failure count (4 wrong -> right -> 0), even if rejected later."""
    c = claim(OUT, line(CONSULT_A, 1000))
    ok = run(c, member(pin_failures=4), pin_ok=True)
    assert_accepted(ok)
    assert ok.pin_failures_after == 0
    later = run(c, member(pin_failures=4, status=MemberStatus.SUSPENDED), pin_ok=True)
    assert_rejected(later, R.R_MEMBER_SUSPENDED)
    assert later.pin_failures_after == 0


def test_r_member_deceased_and_suspended() -> None:
    """R_MEMBER_DECEASED, R_MEMBER_SUSPENDED by member status."""
    c = claim(OUT, line(CONSULT_A, 1000))
    assert_rejected(run(c, member(status=MemberStatus.DECEASED)), R.R_MEMBER_DECEASED)
    assert_rejected(run(c, member(status=MemberStatus.SUSPENDED)), R.R_MEMBER_SUSPENDED)


@pytest.mark.parametrize(
    "cause",
    [
        InjuryCause.FIGHT,
        InjuryCause.DRUNK,
        InjuryCause.CRIME,
        InjuryCause.SELF_HARM,
        InjuryCause.TRAFFIC,
        InjuryCause.WORK_INJURY,
        InjuryCause.MATERNITY,
    ],
)
def test_r_non_covered_cause(cause: InjuryCause) -> None:
    """R_NON_COVERED_CAUSE for each injury cause basic insurance does not pay."""
    assert_rejected(
        run(claim(OUT, line(CONSULT_A, 1000), injury_cause=cause)), R.R_NON_COVERED_CAUSE
    )


def test_r_accident_unapproved_and_approved() -> None:
    """R_ACCIDENT_UNAPPROVED without an accident case id; with one it is accepted."""
    bare = claim(OUT, line(CONSULT_A, 1000), injury_cause=InjuryCause.ACCIDENT)
    assert_rejected(run(bare), R.R_ACCIDENT_UNAPPROVED)
    assert_accepted(run(replace(bare, accident_case_id="ACC-1")))


def test_r_special_disease_not_approved() -> None:
    """R_SPECIAL_DISEASE_NOT_APPROVED: not approved or expired; E11.9 matches E11."""
    sd = claim(VisitType.SPECIAL_DISEASE, line(CONSULT_A, 1000), diagnoses=("E11.9",))
    valid = ApprovedDisease("E11", date(2026, 1, 1), date(2026, 12, 31))
    assert_accepted(run(sd, member(diseases=(valid,))))
    assert_rejected(run(sd, member()), R.R_SPECIAL_DISEASE_NOT_APPROVED)
    expired = ApprovedDisease("E11", date(2025, 1, 1), DAY.replace(day=DAY.day - 1))
    assert_rejected(run(sd, member(diseases=(expired,))), R.R_SPECIAL_DISEASE_NOT_APPROVED)
    last_day = ApprovedDisease("E11", date(2025, 1, 1), DAY)  # valid_to is inclusive
    assert_accepted(run(sd, member(diseases=(last_day,))))
    # E110 is not E11 followed by a dot.
    other = replace(sd, diagnoses=("E110",))
    assert_rejected(run(other, member(diseases=(valid,))), R.R_SPECIAL_DISEASE_NOT_APPROVED)


def test_r_non_medical_goods() -> None:
    """R_NON_MEDICAL_GOODS: a pharmacy claim with a GOODS line."""
    c = claim(PH, line(PARA_OTC, 500), line(TOOTHPASTE, 1500))
    assert_rejected(run(c), R.R_NON_MEDICAL_GOODS)


def test_r_rx_requires_prescription() -> None:
    """R_RX_REQUIRES_PRESCRIPTION: RX drug at a pharmacy without a prescription."""
    c = claim(PH, line(AMOX_RX, 900))
    assert_rejected(run(c), R.R_RX_REQUIRES_PRESCRIPTION)
    assert_accepted(run(replace(c, prescription_ref="RX-1")))


def test_otc_limit_100_00_yuan_is_allowed_100_01_is_not() -> None:
    """R_OTC_AMOUNT_LIMIT above otc_max_per_purchase_fen (10000 fen = 100.00 yuan)."""
    # 20 x 500 = 10000 fen: exactly the limit, allowed.
    assert_accepted(run(claim(PH, line(PARA_OTC, 500, quantity=20))))
    # 20 x 500 + 1 x 1 = 10001 fen (100.01 yuan): over.
    over = claim(PH, line(PARA_OTC, 500, quantity=20), line(PARA_OTC, 1))
    assert_rejected(run(over), R.R_OTC_AMOUNT_LIMIT)
    # With a prescription there is no OTC limit.
    assert_accepted(run(replace(over, prescription_ref="RX-9")))


def test_otc_limit_counts_class_a_and_b_only() -> None:
    """Class C and uncatalogued lines do not count toward the OTC limit."""
    # A/B: 20 x 500 = 10000; C 5000 and unknown 3000 are not counted -> allowed.
    c = claim(PH, line(PARA_OTC, 500, quantity=20), line(EYE_GEL_C, 5000), line(UNKNOWN, 3000))
    assert_accepted(run(c))


def test_otc_single_package_exemption() -> None:
    """A single line of quantity 1 may exceed the OTC limit (smallest package)."""
    assert_accepted(run(claim(PH, line(LORA_B_OTC, 10001))))
    # Quantity 2 of the same is no longer one package: 2 x 5001 = 10002 > 10000.
    assert_rejected(run(claim(PH, line(LORA_B_OTC, 5001, quantity=2))), R.R_OTC_AMOUNT_LIMIT)


def test_r_frequent_purchase_the_fourth_of_a_day() -> None:
    """R_FREQUENT_PURCHASE: max 3 settled pharmacy purchases a day; the 4th is refused."""
    c = claim(PH, line(PARA_OTC, 500))
    third = run(c, member(pharmacy_purchases_today=2))
    assert_accepted(third)
    assert third.changes is not None and third.changes.pharmacy_date == DAY
    assert_rejected(run(c, member(pharmacy_purchases_today=3)), R.R_FREQUENT_PURCHASE)


def test_claim_failing_two_rules_gets_the_earlier_reason() -> None:
    """Order: each adjacent pair of rules, the earlier wins."""
    c = claim(OUT, line(CONSULT_A, 1000), injury_cause=InjuryCause.FIGHT)
    suspended_inst = replace(HOSPITAL["L3"], status=InstitutionStatus.SUSPENDED)
    deceased = member(status=MemberStatus.DECEASED)
    # institution before visit type
    ph = claim(PH, line(AMOX_RX, 900))
    assert_rejected(run(ph, inst=suspended_inst), R.R_INSTITUTION_NOT_ACTIVE)
    # visit type before card
    lost = member(card_status=CardStatus.LOST)
    assert_rejected(run(ph, lost, inst=HOSPITAL["L1"]), R.R_VISIT_TYPE_NOT_ALLOWED)
    # card before PIN lock
    assert_rejected(run(c, member(card_status=CardStatus.LOST, pin_failures=5)), R.R_CARD_INVALID)
    # PIN lock before a wrong PIN; wrong PIN before deceased
    assert_rejected(run(c, replace(deceased, pin_failures=5), pin_ok=False), R.R_PIN_LOCKED)
    assert_rejected(run(c, deceased, pin_ok=False), R.R_PIN_INVALID)
    # deceased before suspended cannot both hold; deceased before a non-covered cause
    assert_rejected(run(c, deceased), R.R_MEMBER_DECEASED)
    assert_rejected(run(c, member(status=MemberStatus.SUSPENDED)), R.R_MEMBER_SUSPENDED)
    # non-covered cause before the special-disease check
    sd = claim(
        VisitType.SPECIAL_DISEASE,
        line(CONSULT_A, 1000),
        diagnoses=("E11",),
        injury_cause=InjuryCause.ACCIDENT,
    )
    assert_rejected(run(sd), R.R_ACCIDENT_UNAPPROVED)
    assert_rejected(run(replace(sd, accident_case_id="A1")), R.R_SPECIAL_DISEASE_NOT_APPROVED)
    # goods before RX, RX before OTC amount, OTC amount before frequent purchase
    goods_rx = claim(PH, line(AMOX_RX, 900), line(TOOTHPASTE, 100))
    assert_rejected(run(goods_rx), R.R_NON_MEDICAL_GOODS)
    rx_over = claim(PH, line(AMOX_RX, 900, quantity=20))
    assert_rejected(run(rx_over, member(pharmacy_purchases_today=3)), R.R_RX_REQUIRES_PRESCRIPTION)
    otc_over = claim(PH, line(PARA_OTC, 500, quantity=21))
    assert_rejected(run(otc_over, member(pharmacy_purchases_today=3)), R.R_OTC_AMOUNT_LIMIT)


def test_every_claim_level_reason_is_tested_here() -> None:
    """Guard: every R_* code in reasons.py appears in this file."""
    from pathlib import Path

    text = Path(__file__).read_text(encoding="utf-8")
    codes = [name for name in vars(R) if name.startswith("R_")]
    assert codes and all(f"R.{code}" in text for code in codes)
