"""Section 3 of the rules: line classification, one test per L_* code and boundary.

Claims here are outpatient at an L3 hospital for an EMPLOYEE with the year's
deductible untouched unless said otherwise, so the line parts are easy to
read; the funds are checked in test_rules_funds.py.
"""

from __future__ import annotations

from datetime import date

import pytest

from adjudication import reasons as R
from adjudication.model import LineResult, MemberCategory, VisitType
from tests.kit import (
    AMINO_INPATIENT,
    BLOOD_A,
    CEFUR_B_RX,
    CHILD_OTC,
    CONSULT_A,
    CONSULT_B,
    CT_APPROVAL,
    DAY,
    EYE_GEL_C,
    LIUWEI_ACCOUNT,
    OXYTOCIN,
    PARA_OTC,
    UNKNOWN,
    WORK_REHAB,
    claim,
    line,
    member,
    run,
)

OUT = VisitType.OUTPATIENT
INP = VisitType.INPATIENT


def only_line(
    visit: VisitType, ln_code: str, price: int, quantity: int = 1, **kw: object
) -> LineResult:
    m = kw.pop("m", None)
    extra = {
        k: kw.pop(k) for k in list(kw) if k in ("days_supply", "approved", "discharge_medication")
    }
    c = claim(visit, line(ln_code, price, quantity, **extra), **kw)  # type: ignore[arg-type]
    result = run(c, m)  # type: ignore[arg-type]
    assert result.accepted, result.reasons
    (ln,) = result.lines
    assert ln.full_selfpay_fen + ln.overlimit_selfpay_fen + ln.preselfpay_fen + ln.in_scope_fen == (
        price * quantity
    )
    return ln


def full_selfpay(ln: LineResult, amount: int, reason: str) -> None:
    assert (ln.full_selfpay_fen, ln.overlimit_selfpay_fen, ln.preselfpay_fen, ln.in_scope_fen) == (
        amount,
        0,
        0,
        0,
    )
    assert ln.reasons == (reason,)
    assert not ln.counts_toward_fund


def test_l_not_in_catalog() -> None:
    """L_NOT_IN_CATALOG: an unknown item code is accepted as full self-pay."""
    ln = only_line(OUT, UNKNOWN, 1234, 2)
    full_selfpay(ln, 2468, R.L_NOT_IN_CATALOG)  # 2 x 1234
    assert ln.item_class == ""


def test_l_class_c() -> None:
    """L_CLASS_C: class C items are full self-pay."""
    ln = only_line(OUT, EYE_GEL_C, 4500)
    full_selfpay(ln, 4500, R.L_CLASS_C)
    assert ln.item_class == "C"


def test_l_restricted_use_without_and_with_approval() -> None:
    """L_RESTRICTED_USE: APPROVAL_REQUIRED item not approved; approved it is covered."""
    full_selfpay(only_line(OUT, CT_APPROVAL, 30000), 30000, R.L_RESTRICTED_USE)
    ln = only_line(OUT, CT_APPROVAL, 30000, approved=True)
    # class B 1000 bp: pre = pct(30000, 1000) = 3000; in_scope = 30000 - 3000 = 27000
    assert (ln.preselfpay_fen, ln.in_scope_fen, ln.reasons) == (3000, 27000, ())


def test_l_child_only_the_day_before_and_the_day_of_the_18th_birthday() -> None:
    """L_CHILD_ONLY applies from the 18th birthday (age taken on the service date)."""
    birthday_18 = DAY
    born = date(DAY.year - 18, DAY.month, DAY.day)
    assert born.replace(year=born.year + 18) == birthday_18
    day_before = date(DAY.year, DAY.month, DAY.day - 1)
    child = only_line(OUT, CHILD_OTC, 1500, day=day_before, m=member(birth_date=born))
    assert (child.in_scope_fen, child.reasons) == (1500, ())  # class A, at cap: all in scope
    adult = only_line(OUT, CHILD_OTC, 1500, day=birthday_18, m=member(birth_date=born))
    full_selfpay(adult, 1500, R.L_CHILD_ONLY)


def test_l_child_only_29_february_birthday_counts_from_1_march() -> None:
    """Born 2008-02-29: still 17 on 2026-02-28, 18 on 2026-03-01."""
    born = date(2008, 2, 29)
    child = only_line(OUT, CHILD_OTC, 1500, day=date(2026, 2, 28), m=member(birth_date=born))
    assert child.reasons == ()
    adult = only_line(OUT, CHILD_OTC, 1500, day=date(2026, 3, 1), m=member(birth_date=born))
    full_selfpay(adult, 1500, R.L_CHILD_ONLY)


def test_l_child_only_inpatient_age_on_discharge_date() -> None:
    """For inpatients the age is taken on the discharge date (the benefit date)."""
    born = date(DAY.year - 18, DAY.month, DAY.day)
    before = date(DAY.year, DAY.month, DAY.day - 2)
    ln = only_line(INP, CHILD_OTC, 1500, day=DAY, admitted=before, m=member(birth_date=born))
    full_selfpay(ln, 1500, R.L_CHILD_ONLY)


def test_l_inpatient_only() -> None:
    """L_INPATIENT_ONLY outside an inpatient stay; covered on an inpatient claim."""
    full_selfpay(only_line(OUT, AMINO_INPATIENT, 5000), 5000, R.L_INPATIENT_ONLY)
    ln = only_line(INP, AMINO_INPATIENT, 5000)
    # B 1000 bp: pre = 500, in_scope = 4500
    assert (ln.preselfpay_fen, ln.in_scope_fen, ln.reasons) == (500, 4500, ())


@pytest.mark.parametrize(("code", "price"), [(WORK_REHAB, 20000), (OXYTOCIN, 600)])
def test_l_other_scheme(code: str, price: int) -> None:
    """L_OTHER_SCHEME: WORK_INJURY_ONLY and MATERNITY_ONLY items, any visit type."""
    full_selfpay(only_line(OUT, code, price), price, R.L_OTHER_SCHEME)
    full_selfpay(only_line(INP, code, price), price, R.L_OTHER_SCHEME)


def test_restriction_beats_days_supply_and_class_c_beats_restriction() -> None:
    """First matching rule wins: class C before restrictions before days supply."""
    ln = only_line(OUT, AMINO_INPATIENT, 5000, days_supply=99)
    assert ln.reasons == (R.L_INPATIENT_ONLY,)
    full_selfpay(only_line(OUT, EYE_GEL_C, 100, days_supply=99), 100, R.L_CLASS_C)


@pytest.mark.parametrize(
    ("visit", "limit"),
    [
        (VisitType.OUTPATIENT, 7),
        (VisitType.PHARMACY, 7),
        (VisitType.SPECIAL_DISEASE, 30),
    ],
)
def test_l_days_supply_exceeded_per_visit_type(visit: VisitType, limit: int) -> None:
    """L_DAYS_SUPPLY_EXCEEDED above days_supply.<visit type>; at the limit it is covered."""
    from adjudication.model import ApprovedDisease

    m = member(diseases=(ApprovedDisease("E11", date(2026, 1, 1), date(2026, 12, 31)),))
    kw: dict[str, object] = {"m": m, "diagnoses": ("E11",)}
    at = only_line(visit, PARA_OTC, 500, days_supply=limit, **kw)
    assert (at.in_scope_fen, at.reasons) == (500, ())
    over = only_line(visit, PARA_OTC, 500, days_supply=limit + 1, **kw)
    full_selfpay(over, 500, R.L_DAYS_SUPPLY_EXCEEDED)


def test_days_supply_applies_to_drugs_only() -> None:
    """A treatment line with a days_supply is not a drug: no days-supply rule."""
    ln = only_line(OUT, CONSULT_A, 1000, days_supply=60)
    assert (ln.in_scope_fen, ln.reasons) == (1000, ())


def test_days_supply_inpatient_only_discharge_medication() -> None:
    """Inpatient: only discharge_medication lines are checked, against INPATIENT_DISCHARGE (30)."""
    ward = only_line(INP, PARA_OTC, 500, days_supply=90)
    assert (ward.in_scope_fen, ward.reasons) == (500, ())
    at = only_line(INP, PARA_OTC, 500, days_supply=30, discharge_medication=True)
    assert (at.in_scope_fen, at.reasons) == (500, ())
    over = only_line(INP, PARA_OTC, 500, days_supply=31, discharge_medication=True)
    full_selfpay(over, 500, R.L_DAYS_SUPPLY_EXCEEDED)


def test_l_over_price_cap_with_class_b_preselfpay_on_the_same_line() -> None:
    """L_OVER_PRICE_CAP: the excess over the cap, then class-B pre-self-pay on the rest."""
    # CEFUR_B_RX: cap 2800, B 1000 bp; 3 x 3333 = 9999
    ln = only_line(OUT, CEFUR_B_RX, 3333, 3)
    # over = (3333 - 2800) x 3 = 1599; base = 9999 - 1599 = 8400
    # pre = pct(8400, 1000) = 840; in_scope = 8400 - 840 = 7560
    assert (ln.full_selfpay_fen, ln.overlimit_selfpay_fen, ln.preselfpay_fen, ln.in_scope_fen) == (
        0,
        1599,
        840,
        7560,
    )
    assert ln.reasons == (R.L_OVER_PRICE_CAP,)
    assert ln.counts_toward_fund


def test_price_at_the_cap_is_not_over() -> None:
    """Exactly the cap (2800) is not over it; 2801 is 1 fen over per unit."""
    at = only_line(OUT, CEFUR_B_RX, 2800)
    assert (at.overlimit_selfpay_fen, at.reasons) == (0, ())
    one_over = only_line(OUT, CEFUR_B_RX, 2801, 2)
    # over = 1 x 2 = 2; base 5600; pre = pct(5600, 1000) = 560; in_scope 5040
    assert (one_over.overlimit_selfpay_fen, one_over.preselfpay_fen) == (2, 560)
    assert one_over.in_scope_fen == 5040


def test_preselfpay_rounds_half_up() -> None:
    """pct rounds half up: B 1000 bp of 1005 = 100.5 -> 101; of 1004 = 100.4 -> 100."""
    assert only_line(OUT, CONSULT_B, 1005).preselfpay_fen == 101
    assert only_line(OUT, CONSULT_B, 1004).preselfpay_fen == 100


def test_retired_cadre_has_no_preselfpay() -> None:
    """RETIRED_CADRE: no class A/B distinction, preselfpay 0 even for class B."""
    m = member(MemberCategory.RETIRED_CADRE)
    ln = only_line(OUT, CEFUR_B_RX, 2800, m=m)
    assert (ln.preselfpay_fen, ln.in_scope_fen) == (0, 2800)
    # The price cap still applies: over = 200, in_scope = 2800.
    capped = only_line(OUT, CEFUR_B_RX, 3000, m=m)
    assert (capped.overlimit_selfpay_fen, capped.preselfpay_fen, capped.in_scope_fen) == (
        200,
        0,
        2800,
    )


def test_l_account_only_outpatient_counts_for_the_account_not_the_fund() -> None:
    """L_ACCOUNT_ONLY_OUTPATIENT: covered, but its in_scope is not in E; account pays it."""
    # Outpatient, EMPLOYEE, deductible already met (100000 used), L3 ratio 5000.
    m = member(outpatient_deductible_used_fen=100_000, balance_fen=1_000_000)
    c = claim(OUT, line(LIUWEI_ACCOUNT, 3000), line(BLOOD_A, 2000))
    result = run(c, m)
    acc_line, blood = result.lines
    # Liuwei: B 1000 bp, pre = 300, in_scope = 2700, does not count toward the fund.
    assert (acc_line.preselfpay_fen, acc_line.in_scope_fen) == (300, 2700)
    assert acc_line.reasons == (R.L_ACCOUNT_ONLY_OUTPATIENT,)
    assert not acc_line.counts_toward_fund and blood.counts_toward_fund
    # E = 2000 (blood only); pooled = pct(2000, 5000) = 1000
    # payable = pre 300 + in_scope (2700 + 2000) - 1000 = 4000 -> account 4000, cash 0
    assert result.split.pooled_fund_fen == 1000
    assert result.split.individual_account_fen == 4000
    assert result.split.patient_cash_fen == 0


def test_account_only_item_counts_toward_the_fund_on_an_inpatient_claim() -> None:
    """ACCOUNT_ONLY_OUTPATIENT does not apply to inpatient visits."""
    ln = only_line(INP, LIUWEI_ACCOUNT, 3000)
    assert (ln.in_scope_fen, ln.reasons, ln.counts_toward_fund) == (2700, (), True)


def test_every_line_reason_is_tested_here() -> None:
    """Guard: every L_* code in reasons.py appears in this file."""
    from pathlib import Path

    text = Path(__file__).read_text(encoding="utf-8")
    codes = [name for name in vars(R) if name.startswith("L_")]
    assert codes and all(f"R.{code}" in text for code in codes)
