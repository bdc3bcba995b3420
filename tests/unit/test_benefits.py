"""What GetMember says is left of the year is what the engine would take next.

Each figure of adjudication.benefits is held equal to the part of a claim
that reaches it: a claim large enough takes all the outpatient deductible
left, all the outpatient pooled fund left, the full deductible of a new
admission, all the basic pooled fund left and all the serious-illness
insurance left. Worked examples from shared/reference/policy.toml first.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from adjudication.benefits import benefits, room
from adjudication.model import MemberCategory, Split, VisitType, YearAccumulators
from tests.kit import APPENDECTOMY, DAY, HOSPITAL, claim, line, member, policies, run

POLICY = policies().policies[0]
EMP = MemberCategory.EMPLOYEE
CADRE = MemberCategory.RETIRED_CADRE


def test_a_fresh_employee_has_everything_left() -> None:
    got = benefits(POLICY, EMP, "L3", YearAccumulators(year=2026))
    assert got.outpatient_deductible_left_fen == 100_000
    assert got.outpatient_pooled_left_fen == 500_000
    assert got.inpatient_deductible_fen == 90_000  # L3
    assert got.basic_pooled_left_fen == 40_000_000
    assert got.serious_illness_left_fen == 40_000_000
    assert got.policy_version == "2026.1"


def test_used_amounts_are_taken_off_and_a_second_admission_pays_half() -> None:
    acc = YearAccumulators(
        year=2026,
        outpatient_deductible_used_fen=30_000,
        outpatient_pooled_fen=499_000,
        basic_pooled_fen=39_000_000,
        new_admissions=1,
        serious_illness_paid_fen=45_000_000,  # past the cap: nothing left, never negative
    )
    got = benefits(POLICY, EMP, "L2", acc)
    assert got.outpatient_deductible_left_fen == 70_000
    assert got.outpatient_pooled_left_fen == 1_000
    assert got.inpatient_deductible_fen == 30_000  # L2 60000 at repeat_admission_bp 5000
    assert got.basic_pooled_left_fen == 1_000_000
    assert got.serious_illness_left_fen == 0
    assert got.year == acc


def test_uncapped_categories_and_pharmacies_say_so() -> None:
    got = benefits(POLICY, CADRE, "", YearAccumulators(year=2026, new_admissions=3))
    assert got.outpatient_pooled_left_fen is None  # no outpatient cap for RETIRED_CADRE
    assert got.basic_pooled_left_fen is None
    assert got.inpatient_deductible_fen is None  # a pharmacy has no level
    assert benefits(POLICY, CADRE, "L1", got.year).inpatient_deductible_fen == 0  # exempt
    assert room(None, 5) is None and room(10, 15) == 0


ACCUMULATORS = st.builds(
    YearAccumulators,
    year=st.just(DAY.year),
    outpatient_deductible_used_fen=st.integers(0, 120_000),
    outpatient_pooled_fen=st.integers(0, 700_000),
    basic_pooled_fen=st.integers(0, 45_000_000),
    inpatient_above_deductible_fen=st.integers(0, 9_000_000),
    new_admissions=st.integers(0, 3),
    serious_illness_base_fen=st.integers(0, 5_000_000),
    serious_illness_paid_fen=st.integers(0, 45_000_000),
)
CATEGORIES = st.sampled_from(list(MemberCategory))
LEVELS = st.sampled_from(["L1", "L2", "L3"])
# Large enough to reach every cap of the reference policy.
HUGE = line(APPENDECTOMY, 150_000, quantity=100_000)


def _huge_claim_split(
    visit: VisitType, acc: YearAccumulators, category: MemberCategory, level: str
) -> Split:
    fields = {k: getattr(acc, k) for k in YearAccumulators.__slots__ if k != "year"}
    return run(claim(visit, HUGE), member(category, **fields), HOSPITAL[level]).split


@settings(max_examples=150, deadline=None)
@given(acc=ACCUMULATORS, category=CATEGORIES, level=LEVELS)
def test_outpatient_figures_are_what_a_huge_outpatient_claim_takes(
    acc: YearAccumulators, category: MemberCategory, level: str
) -> None:
    left = benefits(POLICY, category, level, acc)
    split = _huge_claim_split(VisitType.OUTPATIENT, acc, category, level)
    assert split.deductible_fen == left.outpatient_deductible_left_fen
    if left.outpatient_pooled_left_fen is not None:
        assert split.pooled_fund_fen == left.outpatient_pooled_left_fen
    else:
        assert split.pooled_fund_fen > 700_000  # beyond any cap: there is none


@settings(max_examples=150, deadline=None)
@given(acc=ACCUMULATORS, category=CATEGORIES, level=LEVELS)
def test_inpatient_figures_are_what_a_huge_new_admission_takes(
    acc: YearAccumulators, category: MemberCategory, level: str
) -> None:
    left = benefits(POLICY, category, level, acc)
    split = _huge_claim_split(VisitType.INPATIENT, acc, category, level)
    assert split.deductible_fen == left.inpatient_deductible_fen
    if left.basic_pooled_left_fen is not None:
        assert split.pooled_fund_fen == left.basic_pooled_left_fen
    if category not in POLICY.serious_illness_exempt:
        assert split.serious_illness_fen == left.serious_illness_left_fen
