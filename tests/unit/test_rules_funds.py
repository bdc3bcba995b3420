"""Sections 4-6 of the rules: the funds by visit type, the account, the changes.

Every expected figure is worked out by hand in the comment above it from
shared/reference/policy.toml (EMPLOYEE: outpatient deductible 100000, L3
ratio 5000, cap 500000; inpatient L3 deductible 90000, ratio 8000, band
5000000 + 500 bp, basic cap 40000000; serious illness from 2000000 at 6000,
cap 40000000). pct(x, bp) = (x * bp + 5000) // 10000.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest

from adjudication import reasons as R
from adjudication.model import (
    Adjudication,
    ApprovedDisease,
    MemberCategory,
    MemberState,
    Split,
    VisitType,
)
from tests.kit import (
    APPENDECTOMY,
    CONSULT_A,
    DAY,
    EYE_GEL_C,
    HOSPITAL,
    LORA_B_OTC,
    XRAY_A,
    claim,
    line,
    member,
    run,
    stay,
)

OUT = VisitType.OUTPATIENT
INP = VisitType.INPATIENT
SD = VisitType.SPECIAL_DISEASE
EMP = MemberCategory.EMPLOYEE
CADRE = MemberCategory.RETIRED_CADRE
YEAR_DISEASE = ApprovedDisease("E11", date(2026, 1, 1), date(2026, 12, 31))
HAEMOPHILIA = ApprovedDisease("D66", date(2026, 1, 1), date(2026, 12, 31))


def accepted(result: Adjudication) -> Split:
    assert result.accepted, result.reasons
    s = result.split
    assert s.total_fen == (
        s.full_selfpay_fen + s.overlimit_selfpay_fen + s.preselfpay_fen + s.in_scope_fen
    )
    assert s.total_fen == (
        s.pooled_fund_fen
        + s.serious_illness_fen
        + s.institution_waiver_fen
        + s.individual_account_fen
        + s.patient_cash_fen
    )
    return s


def outpatient(e_fen: int, m: MemberState, level: str = "L3") -> Adjudication:
    """An outpatient claim whose E is e_fen (one class-A appendectomy line, cap 150000)."""
    assert e_fen <= 150_000
    return run(claim(OUT, line(APPENDECTOMY, e_fen)), m, HOSPITAL[level])


# ---------------------------------------------------------------- outpatient


@pytest.mark.parametrize(
    ("e_fen", "deductible", "pooled"),
    [
        (9_999, 9_999, 0),  # 1 fen short of meeting it: d = 9999, pooled 0
        (10_000, 10_000, 0),  # met exactly: d = 10000, E - d = 0
        (10_001, 10_000, 1),  # 1 fen past: pct(1, 5000) = (5000 + 5000) // 10000 = 1
        (10_003, 10_000, 2),  # pct(3, 5000) = (15000 + 5000) // 10000 = 2
    ],
)
def test_outpatient_deductible_met_exactly_and_one_fen_either_side(
    e_fen: int, deductible: int, pooled: int
) -> None:
    """Outpatient d = min(E, 100000 - used); used 90000 leaves 10000."""
    result = outpatient(e_fen, member(outpatient_deductible_used_fen=90_000))
    s = accepted(result)
    assert (s.deductible_fen, s.pooled_fund_fen) == (deductible, pooled)
    assert s.individual_account_fen == e_fen - pooled  # balance 1000000 covers it
    assert result.changes is not None
    assert result.changes.outpatient_deductible_used_fen == deductible
    assert result.changes.outpatient_pooled_fen == pooled


@pytest.mark.parametrize(
    ("category", "level", "pooled"),
    [
        (EMP, "L1", 6_000),  # pct(10000, 6000)
        (EMP, "L2", 5_000),
        (MemberCategory.RETIREE, "L1", 7_000),
        (MemberCategory.RESIDENT, "L1", 5_000),
        (MemberCategory.RESIDENT, "L2", 4_000),
        (MemberCategory.RESIDENT, "L3", 3_000),
    ],
)
def test_outpatient_ratio_by_category_and_level(
    category: MemberCategory, level: str, pooled: int
) -> None:
    """Outpatient ratio[category][level] once the deductible is met (used = the whole of it)."""
    used = {EMP: 100_000, MemberCategory.RETIREE: 70_000, MemberCategory.RESIDENT: 30_000}
    m = member(category, outpatient_deductible_used_fen=used[category])
    assert accepted(outpatient(10_000, m, level)).pooled_fund_fen == pooled


def test_outpatient_cap_exhausted_mid_claim() -> None:
    """pooled = min(raw, 500000 - paid): paid 499000 leaves 1000 of raw 5000."""
    m = member(outpatient_deductible_used_fen=100_000, outpatient_pooled_fen=499_000)
    s = accepted(outpatient(10_000, m))
    # raw = pct(10000, 5000) = 5000; room = 1000 -> pooled 1000, account 9000
    assert (s.pooled_fund_fen, s.individual_account_fen, s.patient_cash_fen) == (1_000, 9_000, 0)
    full = member(outpatient_deductible_used_fen=100_000, outpatient_pooled_fen=500_000)
    assert accepted(outpatient(10_000, full)).pooled_fund_fen == 0


def test_retired_cadre_outpatient_no_deductible_full_ratio_no_cap() -> None:
    """RETIRED_CADRE: deductible 0, ratio 10000, no outpatient cap."""
    m = member(CADRE, outpatient_pooled_fen=99_000_000)
    s = accepted(outpatient(12_345, m))
    assert (s.deductible_fen, s.pooled_fund_fen, s.individual_account_fen) == (0, 12_345, 0)


# ---------------------------------------------------------------- pharmacy


def test_pharmacy_pays_no_fund_and_the_account_pays_pre_and_in_scope() -> None:
    """PHARMACY: pooled 0; account = pre + in_scope; class C is cash."""
    c = claim(
        VisitType.PHARMACY,
        line(LORA_B_OTC, 1_800, quantity=2),
        line(EYE_GEL_C, 1_000, line_no=2),
    )
    s = accepted(run(c))
    # loratadine 2 x 1800 = 3600: pre = pct(3600, 500) = 180, in_scope 3420
    assert (s.preselfpay_fen, s.in_scope_fen, s.full_selfpay_fen) == (180, 3_420, 1_000)
    assert (s.pooled_fund_fen, s.individual_account_fen, s.patient_cash_fen) == (0, 3_600, 1_000)


# ---------------------------------------------------------------- account


def test_account_limited_by_balance_zero_balance_and_skip() -> None:
    """account = min(balance, payable); 0 with zero balance or skip_individual_account."""
    m = member(outpatient_deductible_used_fen=100_000, balance_fen=1_234)
    # E = 10000, pooled 5000, payable 5000 > balance 1234
    s = accepted(outpatient(10_000, m))
    assert (s.individual_account_fen, s.patient_cash_fen) == (1_234, 3_766)
    assert accepted(outpatient(10_000, replace(m, balance_fen=0))).individual_account_fen == 0
    skip = claim(OUT, line(APPENDECTOMY, 10_000), use_individual_account=False)
    result = run(skip, replace(m, balance_fen=1_000_000))
    s2 = accepted(result)
    assert (s2.individual_account_fen, s2.patient_cash_fen) == (0, 5_000)
    assert result.changes is not None and result.changes.account_debit_fen == 0
    assert result.balance_after_fen == 1_000_000


def test_account_never_pays_full_selfpay_or_overlimit() -> None:
    """Full self-pay and over-cap amounts are cash only (account flags false)."""
    # consultation 1500 (cap 1000): over 500; class C eye gel 700
    c = claim(OUT, line(CONSULT_A, 1_500), line(EYE_GEL_C, 700, line_no=2))
    s = accepted(run(c))
    # E = 1000, all deductible (used 0); payable = 1000 -> account 1000, cash 500 + 700
    assert (s.deductible_fen, s.individual_account_fen, s.patient_cash_fen) == (1_000, 1_000, 1_200)


# ---------------------------------------------------------------- inpatient


def inpatient(e_fen: int, m: MemberState, admitted: date | None = None) -> Adjudication:
    """An L3 inpatient claim with E = e_fen (appendectomy, class A, cap 150000)."""
    assert e_fen <= 150_000
    c = claim(INP, line(APPENDECTOMY, e_fen), admitted=admitted, diagnoses=("K35.8",))
    return run(c, m, HOSPITAL["L3"])


def test_inpatient_first_admission_full_deductible() -> None:
    """New admission, none earlier this year: D = 90000 (L3)."""
    result = inpatient(150_000, member())
    s = accepted(result)
    # above = 60000; pooled = pct(60000, 8000) = 48000
    assert (s.deductible_fen, s.pooled_fund_fen) == (90_000, 48_000)
    ch = result.changes
    assert ch is not None and ch.stay is not None
    assert (ch.new_admissions, ch.inpatient_above_deductible_fen, ch.basic_pooled_fen) == (
        1,
        60_000,
        48_000,
    )
    # share = 150000 - 48000 = 102000 (below the threshold: si 0)
    assert (ch.serious_illness_base_fen, ch.serious_illness_paid_fen) == (102_000, 0)
    assert ch.stay.new_admission and ch.stay.primary_diagnosis == "K35.8"


def test_inpatient_repeat_admission_half_deductible() -> None:
    """Second new admission in the year: D = pct(90000, 5000) = 45000."""
    s = accepted(inpatient(150_000, member(new_admissions=1)))
    # above = 105000; pooled = pct(105000, 8000) = 84000
    assert (s.deductible_fen, s.pooled_fund_fen) == (45_000, 84_000)


def test_inpatient_deductible_larger_than_e() -> None:
    """d = min(E, D): E 50000 < 90000 -> d 50000, pooled 0."""
    s = accepted(inpatient(50_000, member()))
    assert (s.deductible_fen, s.pooled_fund_fen) == (50_000, 0)


def test_band_threshold_crossed_inside_one_claim() -> None:
    """p1 at r up to the band threshold, p2 at r + 500 bp beyond it."""
    s = accepted(inpatient(150_000, member(inpatient_above_deductible_fen=4_990_000)))
    # above = 150000 - 90000 = 60000; room = 5000000 - 4990000 = 10000
    # p1 = 10000 -> pct(10000, 8000) = 8000; p2 = 50000 -> pct(50000, 8500) = 42500
    assert s.pooled_fund_fen == 50_500
    below = accepted(inpatient(150_000, member(inpatient_above_deductible_fen=4_940_000)))
    # room 60000 = above: all at 8000 -> 48000
    assert below.pooled_fund_fen == 48_000
    past = accepted(inpatient(150_000, member(inpatient_above_deductible_fen=5_000_000)))
    # room 0: all 60000 at 8500 -> 51000
    assert past.pooled_fund_fen == 51_000


def test_band_rounds_each_part_separately() -> None:
    """raw = pct(p1, r) + pct(p2, r + extra): each rounded half up on its own."""
    # above = 90001 - 90000 + ... use room 1: above 3 -> p1 = 1, p2 = 2
    s = accepted(inpatient(90_003, member(inpatient_above_deductible_fen=4_999_999)))
    # pct(1, 8000) = (8000 + 5000) // 10000 = 1; pct(2, 8500) = (17000 + 5000) // 10000 = 2
    assert s.pooled_fund_fen == 3


def test_basic_annual_cap_exhausted_mid_claim() -> None:
    """pooled = min(raw, 40000000 - paid): paid 39990000 leaves 10000 of raw 48000."""
    result = inpatient(150_000, member(basic_pooled_fen=39_990_000))
    s = accepted(result)
    assert s.pooled_fund_fen == 10_000
    assert result.changes is not None and result.changes.basic_pooled_fen == 10_000
    # share = 150000 - 10000 = 140000 (S = 0, below the threshold)
    assert result.changes.serious_illness_base_fen == 140_000


@pytest.mark.parametrize(
    ("base_before", "si"),
    [
        (1_898_000, 0),  # S + share = 2000000 exactly: over = 0
        (1_898_001, 1),  # over = 1: pct(1, 6000) = (6000 + 5000) // 10000 = 1
        (1_950_000, 31_200),  # over = 1950000 + 102000 - 2000000 = 52000 -> 31200
        (3_000_000, 61_200),  # past the threshold: over = share 102000 -> 61200
    ],
)
def test_serious_illness_threshold_crossed_inside_one_claim(base_before: int, si: int) -> None:
    """over = max(0, S + share - max(threshold, S)); si = pct(over, 6000)."""
    # E 150000: d 90000, pooled 48000, share = 102000
    result = inpatient(150_000, member(serious_illness_base_fen=base_before))
    s = accepted(result)
    assert (s.pooled_fund_fen, s.serious_illness_fen) == (48_000, si)
    # the account pays what is left: 150000 - 48000 - si
    assert s.individual_account_fen == 102_000 - si
    assert result.changes is not None
    assert result.changes.serious_illness_base_fen == 102_000
    assert result.changes.serious_illness_paid_fen == si


def test_serious_illness_annual_cap() -> None:
    """si = min(pct(over, 6000), 40000000 - paid): paid 39999900 leaves 100."""
    m = member(serious_illness_base_fen=3_000_000, serious_illness_paid_fen=39_999_900)
    assert accepted(inpatient(150_000, m)).serious_illness_fen == 100
    done = replace(m, year=replace(m.year, serious_illness_paid_fen=40_000_000))
    assert accepted(inpatient(150_000, done)).serious_illness_fen == 0


def test_retired_cadre_inpatient_no_deductible() -> None:
    """RETIRED_CADRE: deductible exempt, ratio 10000, no basic cap."""
    result = inpatient(150_000, member(CADRE, new_admissions=0, basic_pooled_fen=90_000_000))
    s = accepted(result)
    assert (s.deductible_fen, s.pooled_fund_fen, s.serious_illness_fen) == (0, 150_000, 0)
    assert result.changes is not None and result.changes.new_admissions == 1


# ----------------------------------------------- same episode and split admission

ADMIT = DAY - timedelta(days=2)  # discharged on DAY


@pytest.mark.parametrize(
    ("gap_days", "same_dx", "deductible", "new_admission", "warned"),
    [
        (0, True, 0, 0, True),  # admitted the day of the earlier discharge
        (7, True, 0, 0, True),  # warn window edge (<= 7), same episode
        (8, True, 0, 0, False),  # past the warn window, still the same episode
        (10, True, 0, 0, False),  # same-episode edge (<= 10)
        (11, True, 45_000, 1, False),  # new episode: repeat half deductible
        (7, False, 45_000, 1, True),  # other diagnosis: new episode, still warned
        (10, False, 45_000, 1, False),
    ],
)
def test_same_episode_and_split_admission_windows(
    gap_days: int, same_dx: bool, deductible: int, new_admission: int, warned: bool
) -> None:
    """10-day same-episode rule (same primary diagnosis) and 7-day W_SPLIT_ADMISSION."""
    earlier = stay(ADMIT - timedelta(days=gap_days), "K35.8" if same_dx else "J18.9")
    m = member(stays=(earlier,), new_admissions=1)
    result = inpatient(150_000, m, admitted=ADMIT)
    s = accepted(result)
    assert s.deductible_fen == deductible
    # above = 150000 - d; pooled = pct(above, 8000): 120000 for d 0, 84000 for d 45000
    assert s.pooled_fund_fen == {0: 120_000, 45_000: 84_000}[deductible]
    assert result.changes is not None
    assert result.changes.new_admissions == new_admission
    assert result.warnings == ((R.W_SPLIT_ADMISSION,) if warned else ())


def test_split_admission_warning_never_changes_money() -> None:
    """W_SPLIT_ADMISSION is a warning only: same split as without the earlier stay."""
    other_dx = stay(ADMIT - timedelta(days=3), "J18.9")
    warned = inpatient(150_000, member(stays=(other_dx,)), admitted=ADMIT)
    plain = inpatient(150_000, member(), admitted=ADMIT)
    assert warned.warnings == (R.W_SPLIT_ADMISSION,) and plain.warnings == ()
    assert warned.split == plain.split


def test_cancelled_stay_no_longer_counts() -> None:
    """After a cancellation the stay is gone: no warning, no same episode, full deductible."""
    from adjudication.memory import load_region
    from tests.claims import REFERENCE

    region = load_region(REFERENCE)

    def stay_claim(admitted: date, discharged: date, request_id: str) -> object:
        return replace(
            claim(INP, line(APPENDECTOMY, 150_000), admitted=admitted, diagnoses=("K35.8",)),
            request_id=request_id,
            discharge_date=discharged,
            institution_code="H33039900001",
            card_no="C3303990001",
        )

    first = stay_claim(date(2026, 4, 1), date(2026, 4, 5), "a")
    sid, r1 = region.adjudicate(first, "135790", apply=True)  # type: ignore[arg-type]
    assert r1.accepted and r1.split.deductible_fen == 90_000
    again = stay_claim(date(2026, 4, 9), date(2026, 4, 12), "b")
    _, preview = region.adjudicate(again, "135790", apply=False)  # type: ignore[arg-type]
    assert preview.warnings == (R.W_SPLIT_ADMISSION,) and preview.split.deductible_fen == 0
    region.cancel(sid)
    _, after = region.adjudicate(again, "135790", apply=False)  # type: ignore[arg-type]
    assert after.warnings == ()
    # no new admission left this year: full deductible again
    assert after.split.deductible_fen == 90_000
    assert after.changes is not None and after.changes.new_admissions == 1


# ---------------------------------------------------------------- special disease


def test_special_disease_no_deductible_pooled_and_serious_illness() -> None:
    """SPECIAL_DISEASE E11: pooled = pct(E, 7000); SI on the rest once past the threshold."""
    m = member(diseases=(YEAR_DISEASE,), serious_illness_base_fen=3_000_000)
    result = run(claim(SD, line(XRAY_A, 8_000), diagnoses=("E11.9",)), m, HOSPITAL["L2"])
    s = accepted(result)
    # pooled = pct(8000, 7000) = 5600; share 2400; over 2400 -> si = pct(2400, 6000) = 1440
    assert (s.deductible_fen, s.pooled_fund_fen, s.serious_illness_fen) == (0, 5_600, 1_440)
    assert s.individual_account_fen == 960  # 8000 - 5600 - 1440
    assert result.special_disease == "E11"
    assert result.changes is not None and result.changes.basic_pooled_fen == 5_600


def test_retired_cadre_gets_no_serious_illness() -> None:
    """RETIRED_CADRE is exempt from serious illness (and its base does not grow)."""
    m = member(CADRE, diseases=(YEAR_DISEASE,), serious_illness_base_fen=3_000_000)
    result = run(claim(SD, line(XRAY_A, 8_000), diagnoses=("E11",)), m)
    s = accepted(result)
    assert (s.pooled_fund_fen, s.serious_illness_fen) == (5_600, 0)
    assert result.changes is not None and result.changes.serious_illness_base_fen == 0


def test_institution_waiver_haemophilia_pilot() -> None:
    """D66: pooled 9000 bp, the institution waives 1000 bp: the member carries nothing."""
    m = member(diseases=(HAEMOPHILIA,))
    s = accepted(run(claim(SD, line(XRAY_A, 8_000), diagnoses=("D66",)), m))
    # pooled = pct(8000, 9000) = 7200; waiver = min(pct(8000, 1000) = 800, 8000 - 7200) = 800
    assert (s.pooled_fund_fen, s.institution_waiver_fen) == (7_200, 800)
    assert (s.serious_illness_fen, s.individual_account_fen, s.patient_cash_fen) == (0, 0, 0)


def test_waiver_when_the_basic_cap_is_nearly_exhausted() -> None:
    """Basic cap leaves 1000: pooled 1000, waiver still pct(E, 1000) = 800, share 6200."""
    m = member(diseases=(HAEMOPHILIA,), basic_pooled_fen=39_999_000)
    result = run(claim(SD, line(XRAY_A, 8_000), diagnoses=("D66",)), m)
    s = accepted(result)
    assert (s.pooled_fund_fen, s.institution_waiver_fen) == (1_000, 800)
    assert s.individual_account_fen == 6_200  # 8000 - 1000 - 800
    assert result.changes is not None and result.changes.serious_illness_base_fen == 6_200


def test_waiver_never_exceeds_e_minus_pooled() -> None:
    """E = 5: pooled = pct(5, 9000) = 5; waiver = min(pct(5, 1000) = 1, 5 - 5) = 0."""
    m = member(diseases=(HAEMOPHILIA,))
    s = accepted(run(claim(SD, line(XRAY_A, 5), diagnoses=("D66",)), m))
    assert (s.pooled_fund_fen, s.institution_waiver_fen) == (5, 0)


def test_every_warning_is_tested_here() -> None:
    """Guard: every W_* code in reasons.py appears in this file."""
    from pathlib import Path

    text = Path(__file__).read_text(encoding="utf-8")
    codes = [name for name in vars(R) if name.startswith("W_")]
    assert codes and all(f"R.{code}" in text for code in codes)
