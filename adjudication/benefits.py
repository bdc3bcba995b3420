"""What a member has left of the benefit year, as the rules would apply it next.

A member at the counter asks how much deductible or annual cap is left;
the answer must be the engine's own arithmetic (shared/spec/adjudication.md
section 4) on the year's accumulators, not a second reading of the policy
elsewhere. Tests hold each figure equal to what `adjudicate` takes from a
claim large enough to reach it.
"""

from __future__ import annotations

from dataclasses import dataclass

from adjudication.model import MemberCategory, YearAccumulators
from adjudication.money import pct
from adjudication.policy import Policy


@dataclass(frozen=True, slots=True)
class Benefits:
    """The benefit year's accumulators and what is left of each limit (fen)."""

    year: YearAccumulators
    policy_version: str
    outpatient_deductible_left_fen: int
    outpatient_pooled_left_fen: int | None  # None: the category has no outpatient cap
    # The deductible of a new admission (not a same-episode readmission) at
    # an institution of `inpatient_level`; None when it has no level (a pharmacy).
    inpatient_deductible_fen: int | None
    inpatient_level: str
    basic_pooled_left_fen: int | None  # None: the category has no basic annual cap
    serious_illness_left_fen: int


def room(cap_fen: int | None, used_fen: int) -> int | None:
    """What is left under a cap; None when there is no cap."""
    return None if cap_fen is None else max(0, cap_fen - used_fen)


def new_admission_deductible(
    policy: Policy, category: MemberCategory, level: str, acc: YearAccumulators
) -> int:
    """The deductible of a new admission (section 4, INPATIENT): by level, halved
    (repeat_admission_bp) once the year has had an admission, 0 for exempt categories."""
    if category in policy.inpatient_deductible_exempt:
        return 0
    deductible = policy.inpatient_deductible_fen[level]
    if acc.new_admissions >= 1:
        deductible = pct(deductible, policy.repeat_admission_bp)
    return deductible


def benefits(
    policy: Policy, category: MemberCategory, level: str, acc: YearAccumulators
) -> Benefits:
    """The member's benefits left in `acc`'s year under `policy`, for a claim at an
    institution of `level` ("" for a pharmacy)."""
    outpatient_deductible = policy.outpatient_deductible_fen[category]
    return Benefits(
        year=acc,
        policy_version=policy.version,
        outpatient_deductible_left_fen=max(
            0, outpatient_deductible - acc.outpatient_deductible_used_fen
        ),
        outpatient_pooled_left_fen=room(
            policy.outpatient_annual_cap_fen.get(category), acc.outpatient_pooled_fen
        ),
        inpatient_deductible_fen=(
            new_admission_deductible(policy, category, level, acc)
            if level in policy.inpatient_deductible_fen
            else None
        ),
        inpatient_level=level,
        basic_pooled_left_fen=room(policy.basic_annual_cap_fen.get(category), acc.basic_pooled_fen),
        serious_illness_left_fen=max(
            0, policy.serious_illness_annual_cap_fen - acc.serious_illness_paid_fen
        ),
    )
