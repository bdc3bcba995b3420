"""The adjudication engine: one claim in, its split and state changes out.

`adjudicate(claim, context, policies, catalogs)` applies
shared/spec/adjudication.md in its order: claim-level eligibility (the first
failing rule rejects the whole claim), line classification, the funds by
visit type, serious-illness insurance, the individual account and cash. It
reads no clock and does no I/O: the member's state comes in as a value and
the exact changes the settlement causes go out as a value, so PreSettle and
Settle differ only in whether the caller applies them, and a cancellation
undoes them exactly.
"""

from __future__ import annotations

from datetime import date
from typing import NamedTuple

from adjudication import limits, reasons
from adjudication.benefits import new_admission_deductible, room
from adjudication.catalog import Catalog, CatalogBook, CatalogItem, ItemClass, ItemKind, Rx
from adjudication.catalog import Restriction as Rs
from adjudication.model import (
    Adjudication,
    ApprovedDisease,
    CardStatus,
    Claim,
    ClaimLine,
    Context,
    InjuryCause,
    InpatientStay,
    InstitutionKind,
    InstitutionStatus,
    LineResult,
    MemberState,
    MemberStatus,
    Outcome,
    Split,
    StateChanges,
    VisitType,
)
from adjudication.money import BP_WHOLE, pct
from adjudication.policy import Policy, PolicyBook
from adjudication.validation import InvalidClaim, Violation, validate_claim

NON_COVERED_CAUSES = frozenset(
    {
        InjuryCause.FIGHT,
        InjuryCause.DRUNK,
        InjuryCause.CRIME,
        InjuryCause.SELF_HARM,
        InjuryCause.TRAFFIC,
        InjuryCause.WORK_INJURY,
        InjuryCause.MATERNITY,
    }
)
ADULT_AGE = 18


def benefit_date(claim: Claim) -> date:
    """The date whose year is the benefit year: discharge for inpatients."""
    day = claim.discharge_date if claim.visit_type is VisitType.INPATIENT else claim.service_date
    if day is None:
        raise InvalidClaim((Violation("service_date", "is required"),))
    return day


def age_on(birth: date, day: date) -> int:
    """Whole years of age on `day` (a 29 February birthday counts from 1 March)."""
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def diagnosis_matches(diagnosis: str, code: str) -> bool:
    """`E11.9` matches `E11`; `E11` matches `E11`; `E110` does not match `E11`."""
    return diagnosis == code or diagnosis.startswith(code + ".")


def uses_member_history(claim: Claim) -> bool:
    """Whether adjudicating `claim` reads the member's approved special diseases
    or earlier inpatient stays (MemberState.special_diseases, .stays): only a
    special-disease visit and an inpatient stay do. The ledger loads neither
    for the others (a pharmacy purchase, an outpatient visit)."""
    return claim.visit_type in (VisitType.SPECIAL_DISEASE, VisitType.INPATIENT)


def approved_disease(member: MemberState, diagnosis: str, day: date) -> ApprovedDisease | None:
    for disease in member.special_diseases:
        if disease.valid_from <= day <= disease.valid_to and diagnosis_matches(
            diagnosis, disease.code
        ):
            return disease
    return None


def _reject(
    claim: Claim,
    reason: str,
    context: Context,
    policy: Policy,
    catalog: Catalog,
    day: date,
    pin_failures_after: int | None,
) -> Adjudication:
    total = sum(line.amount_fen for line in claim.lines)
    member = context.member
    # The balance is shown only to someone who proved they hold the card.
    shown = member is not None and context.pin_ok and reason not in _BEFORE_PIN
    return Adjudication(
        outcome=Outcome.REJECTED,
        reasons=(reason,),
        warnings=(),
        split=Split(total_fen=total, patient_cash_fen=total),
        lines=(),
        balance_after_fen=member.balance_fen if shown and member is not None else 0,
        member_id=member.member_id if member is not None else "",
        benefit_date=day,
        policy_version=policy.version,
        catalog_version=catalog.version,
        changes=None,
        pin_failures_after=pin_failures_after,
    )


def member_disclosed(result: Adjudication) -> bool:
    """May the answer name the member? Only once the caller proved they hold the card.

    A rejection for a reason checked before the PIN (or for the PIN itself)
    keeps the member id for the record (PIN failures are counted against
    it) but must not tell a card number's owner to whoever typed it.
    """
    return result.outcome is not Outcome.REJECTED or not (set(result.reasons) & _BEFORE_PIN)


_BEFORE_PIN = frozenset(
    {
        reasons.R_INSTITUTION_NOT_ACTIVE,
        reasons.R_VISIT_TYPE_NOT_ALLOWED,
        reasons.R_CARD_INVALID,
        reasons.R_PIN_LOCKED,
        reasons.R_PIN_INVALID,
    }
)


def _claim_rejection(
    claim: Claim, context: Context, policy: Policy, catalog: Catalog, day: date
) -> tuple[str | None, int | None]:
    """(first failing claim-level reason or None, PIN failure count after)."""
    inst = context.institution
    if inst is None or inst.status is not InstitutionStatus.ACTIVE:
        return reasons.R_INSTITUTION_NOT_ACTIVE, None
    at_pharmacy = inst.kind is InstitutionKind.PHARMACY
    if at_pharmacy != (claim.visit_type is VisitType.PHARMACY):
        return reasons.R_VISIT_TYPE_NOT_ALLOWED, None
    member = context.member
    if member is None or member.card_status is CardStatus.LOST:
        return reasons.R_CARD_INVALID, None
    if member.pin_failures >= limits.pin_failures_max:
        return reasons.R_PIN_LOCKED, None
    if not context.pin_ok:
        return reasons.R_PIN_INVALID, member.pin_failures + 1
    pin_after = 0  # a right PIN resets the count, whatever follows
    return _cover_rejection(claim, member, policy, catalog, day), pin_after


def _cover_rejection(
    claim: Claim, member: MemberState, policy: Policy, catalog: Catalog, day: date
) -> str | None:
    """The claim-level rules after the PIN: the member, the cause, the visit type."""
    if member.status is MemberStatus.DECEASED:
        return reasons.R_MEMBER_DECEASED
    if member.status is MemberStatus.SUSPENDED:
        return reasons.R_MEMBER_SUSPENDED
    if claim.injury_cause in NON_COVERED_CAUSES:
        return reasons.R_NON_COVERED_CAUSE
    if claim.injury_cause is InjuryCause.ACCIDENT and not claim.accident_case_id:
        return reasons.R_ACCIDENT_UNAPPROVED
    if claim.visit_type is VisitType.SPECIAL_DISEASE:
        disease = approved_disease(member, claim.primary_diagnosis, day)
        if disease is None or disease.code not in policy.special_diseases:
            return reasons.R_SPECIAL_DISEASE_NOT_APPROVED
    if claim.visit_type is VisitType.PHARMACY:
        return _pharmacy_rejection(claim, member, policy, catalog)
    return None


def _pharmacy_rejection(
    claim: Claim, member: MemberState, policy: Policy, catalog: Catalog
) -> str | None:
    """A pharmacy purchase: no goods, a prescription for RX drugs, the OTC and daily limits."""
    items = [catalog.items.get(line.item_code) for line in claim.lines]
    if any(item is not None and item.kind is ItemKind.GOODS for item in items):
        return reasons.R_NON_MEDICAL_GOODS
    if not claim.prescription_ref:
        if any(item is not None and item.rx is Rx.RX for item in items):
            return reasons.R_RX_REQUIRES_PRESCRIPTION
        covered_fen = sum(
            line.amount_fen
            for line, item in zip(claim.lines, items, strict=True)
            if item is not None and item.item_class is not ItemClass.C
        )
        single_package = len(claim.lines) == 1 and claim.lines[0].quantity == 1
        if covered_fen > policy.otc_max_per_purchase_fen and not single_package:
            return reasons.R_OTC_AMOUNT_LIMIT
    if member.pharmacy_purchases_today >= policy.max_purchases_per_day:
        return reasons.R_FREQUENT_PURCHASE
    return None


def _restriction_reason(
    item: CatalogItem, line: ClaimLine, visit_type: VisitType, adult: bool
) -> str | None:
    r = item.restrictions
    if not r:
        return None
    if Rs.APPROVAL_REQUIRED in r and not line.approved:
        return reasons.L_RESTRICTED_USE
    if Rs.CHILD_ONLY in r and adult:
        return reasons.L_CHILD_ONLY
    if Rs.INPATIENT_ONLY in r and visit_type is not VisitType.INPATIENT:
        return reasons.L_INPATIENT_ONLY
    if Rs.WORK_INJURY_ONLY in r or Rs.MATERNITY_ONLY in r:
        return reasons.L_OTHER_SCHEME
    return None


def classify_line(
    line: ClaimLine,
    item: CatalogItem | None,
    visit_type: VisitType,
    adult: bool,
    no_preselfpay: bool,
    policy: Policy,
) -> LineResult:
    """Section 3: the first matching rule wins."""
    amount = line.amount_fen
    if item is None:
        return LineResult(line.line_no, "", amount, 0, 0, 0, (reasons.L_NOT_IN_CATALOG,), False)
    klass = item.item_class.value
    if item.item_class is ItemClass.C:
        return LineResult(line.line_no, klass, amount, 0, 0, 0, (reasons.L_CLASS_C,), False)
    refused = _restriction_reason(item, line, visit_type, adult)
    if refused is not None:
        return LineResult(line.line_no, klass, amount, 0, 0, 0, (refused,), False)
    if item.kind is ItemKind.DRUG and line.days_supply:
        days_max = policy.days_supply_limit(visit_type, line.discharge_medication)
        if days_max is not None and line.days_supply > days_max:
            return LineResult(
                line.line_no, klass, amount, 0, 0, 0, (reasons.L_DAYS_SUPPLY_EXCEEDED,), False
            )
    why: tuple[str, ...] = ()
    cap = item.price_cap_fen
    if cap is not None and cap < line.unit_price_fen:
        overlimit = (line.unit_price_fen - cap) * line.quantity
        why = (reasons.L_OVER_PRICE_CAP,)
    else:
        overlimit = 0
    base = amount - overlimit
    if item.item_class is ItemClass.B and not no_preselfpay:
        preselfpay = pct(base, item.preselfpay_bp)
    else:
        preselfpay = 0
    counts = True
    if Rs.ACCOUNT_ONLY_OUTPATIENT in item.restrictions and visit_type is not VisitType.INPATIENT:
        counts = False
        why = (*why, reasons.L_ACCOUNT_ONLY_OUTPATIENT)
    return LineResult(line.line_no, klass, 0, overlimit, preselfpay, base - preselfpay, why, counts)


def _capped(raw_fen: int, room_fen: int | None) -> int:
    return raw_fen if room_fen is None else min(raw_fen, room_fen)


class LineTotals(NamedTuple):
    """Section 3 over the whole claim: each line's result and their sums."""

    results: tuple[LineResult, ...]
    total_fen: int
    full_selfpay_fen: int
    overlimit_selfpay_fen: int
    preselfpay_fen: int
    in_scope_fen: int
    fund_scope_fen: int  # E: the in-scope amount that counts toward the pooled fund


class Funds(NamedTuple):
    """Section 4 for one claim: what the funds pay, and what that adds to the year.

    The first four are the split's; the next six are the accumulator
    deltas of StateChanges. A field a visit type does not use stays 0.
    """

    deductible_fen: int = 0
    pooled_fund_fen: int = 0
    serious_illness_fen: int = 0
    institution_waiver_fen: int = 0
    outpatient_deductible_used_fen: int = 0
    outpatient_pooled_fen: int = 0
    basic_pooled_fen: int = 0
    inpatient_above_deductible_fen: int = 0
    new_admissions: int = 0
    serious_illness_base_fen: int = 0
    special_disease: str = ""  # the approved disease a SPECIAL_DISEASE claim matched
    warnings: tuple[str, ...] = ()
    stay: InpatientStay | None = None  # the stay an INPATIENT claim adds


def adjudicate(
    claim: Claim, context: Context, policies: PolicyBook, catalogs: CatalogBook
) -> Adjudication:
    """Adjudicate one claim (see the module docstring).

    Raises InvalidClaim for a malformed claim (section 1) or one dated before
    any policy or catalog is in force; business rejections are answers.
    """
    day, policy, catalog = _rules_in_force(claim, policies, catalogs)
    reason, pin_after = _claim_rejection(claim, context, policy, catalog, day)
    if reason is not None:
        return _reject(claim, reason, context, policy, catalog, day, pin_after)
    member = context.member
    institution = context.institution
    assert member is not None and institution is not None  # checked above
    assert member.year.year == day.year, "state must hold the claim's benefit year"
    lines = classify_lines(claim, member, policy, catalog, day)
    visit_funds = _FUNDS_BY_VISIT[claim.visit_type]
    funds = visit_funds(claim, member, institution.level, policy, day, lines.fund_scope_fen)
    return _accepted(claim, member, day, policy, catalog, lines, funds, pin_after)


def _rules_in_force(
    claim: Claim, policies: PolicyBook, catalogs: CatalogBook
) -> tuple[date, Policy, Catalog]:
    """Section 1, then the benefit date and the policy and catalog in force on it."""
    violations = validate_claim(claim)
    if violations:
        raise InvalidClaim(violations)
    day = benefit_date(claim)
    policy = policies.in_force(day)
    catalog = catalogs.in_force(day)
    date_field = "discharge_date" if claim.visit_type is VisitType.INPATIENT else "service_date"
    if policy is None:
        raise InvalidClaim((Violation(date_field, f"no benefit policy in force on {day}"),))
    if catalog is None:
        raise InvalidClaim((Violation(date_field, f"no catalog in force on {day}"),))
    return day, policy, catalog


def classify_lines(
    claim: Claim, member: MemberState, policy: Policy, catalog: Catalog, day: date
) -> LineTotals:
    """Section 3 for every line of an eligible claim, and the sums the funds start from."""
    visit = claim.visit_type
    adult = age_on(member.birth_date, day) >= ADULT_AGE
    no_pre = member.category in policy.no_preselfpay_categories
    items = catalog.items
    results: list[LineResult] = []
    total = full = over = pre = scope = fund_scope = 0
    for line in claim.lines:
        result = classify_line(line, items.get(line.item_code), visit, adult, no_pre, policy)
        results.append(result)
        total += line.amount_fen
        full += result.full_selfpay_fen
        over += result.overlimit_selfpay_fen
        pre += result.preselfpay_fen
        scope += result.in_scope_fen
        if result.counts_toward_fund:
            fund_scope += result.in_scope_fen
    return LineTotals(tuple(results), total, full, over, pre, scope, fund_scope)


# ---------------------------------------------------------------------------
# Section 4, one function per visit type: (claim, member, institution level,
# policy, benefit date, E) -> Funds.


def _pharmacy_funds(
    claim: Claim, member: MemberState, level: str, policy: Policy, day: date, e_fen: int
) -> Funds:
    """PHARMACY: no fund pays; the account and cash pay it all."""
    return Funds()


def _outpatient_funds(
    claim: Claim, member: MemberState, level: str, policy: Policy, day: date, e_fen: int
) -> Funds:
    """OUTPATIENT: the year's outpatient deductible, then the outpatient ratio up to its cap."""
    category = member.category
    year = member.year
    left = max(0, policy.outpatient_deductible_fen[category] - year.outpatient_deductible_used_fen)
    deductible = min(e_fen, left)
    raw = pct(e_fen - deductible, policy.outpatient_ratio_bp[category][level])
    cap = policy.outpatient_annual_cap_fen.get(category)
    pooled = _capped(raw, room(cap, year.outpatient_pooled_fen))
    return Funds(
        deductible_fen=deductible,
        pooled_fund_fen=pooled,
        outpatient_deductible_used_fen=deductible,
        outpatient_pooled_fen=pooled,
    )


def _special_disease_funds(
    claim: Claim, member: MemberState, level: str, policy: Policy, day: date, e_fen: int
) -> Funds:
    """SPECIAL_DISEASE: the disease's ratio under the basic cap, its waiver, serious illness."""
    approved = approved_disease(member, claim.primary_diagnosis, day)
    assert approved is not None  # checked by the claim-level rules
    rule = policy.special_diseases[approved.code]
    raw = pct(e_fen, rule.pooled_bp)
    pooled = _basic_capped(raw, member, policy)
    waiver = min(pct(e_fen, rule.waiver_bp), e_fen - pooled)
    share, serious = _serious_illness(member, policy, e_fen - pooled - waiver)
    return Funds(
        pooled_fund_fen=pooled,
        serious_illness_fen=serious,
        institution_waiver_fen=waiver,
        basic_pooled_fen=pooled,
        serious_illness_base_fen=share,
        special_disease=rule.code,
    )


def _inpatient_funds(
    claim: Claim, member: MemberState, level: str, policy: Policy, day: date, e_fen: int
) -> Funds:
    """INPATIENT: a deductible per new episode, two ratio bands, the basic cap, serious illness."""
    admitted = claim.admission_date
    discharged = claim.discharge_date
    assert admitted is not None and discharged is not None  # validated
    primary = claim.primary_diagnosis
    same_episode, split_warning = _earlier_stays(member, admitted, primary, policy)
    deductible = 0 if same_episode else min(e_fen, _inpatient_deductible(member, level, policy))
    above = e_fen - deductible
    band_room = max(0, policy.band_threshold_fen - member.year.inpatient_above_deductible_fen)
    p1 = min(above, band_room)
    p2 = above - p1
    ratio = policy.inpatient_ratio_bp[member.category][level]
    raw = pct(p1, ratio) + pct(p2, min(BP_WHOLE, ratio + policy.band_extra_bp))
    pooled = _basic_capped(raw, member, policy)
    share, serious = _serious_illness(member, policy, e_fen - pooled)
    return Funds(
        deductible_fen=deductible,
        pooled_fund_fen=pooled,
        serious_illness_fen=serious,
        basic_pooled_fen=pooled,
        inpatient_above_deductible_fen=above,
        new_admissions=0 if same_episode else 1,
        serious_illness_base_fen=share,
        warnings=(reasons.W_SPLIT_ADMISSION,) if split_warning else (),
        stay=InpatientStay("", primary, admitted, discharged, not same_episode),
    )


_FUNDS_BY_VISIT = {
    VisitType.PHARMACY: _pharmacy_funds,
    VisitType.OUTPATIENT: _outpatient_funds,
    VisitType.SPECIAL_DISEASE: _special_disease_funds,
    VisitType.INPATIENT: _inpatient_funds,
}


def _earlier_stays(
    member: MemberState, admitted: date, primary_diagnosis: str, policy: Policy
) -> tuple[bool, bool]:
    """(same episode as an earlier stay, discharged recently enough to warn of a split)."""
    same_episode = False
    split_warning = False
    for earlier in member.stays:
        gap_days = (admitted - earlier.discharge_date).days
        if gap_days < 0:
            continue
        if gap_days <= policy.same_episode_days and earlier.primary_diagnosis == primary_diagnosis:
            same_episode = True
        if gap_days <= policy.split_admission_warn_days:
            split_warning = True
    return same_episode, split_warning


def _inpatient_deductible(member: MemberState, level: str, policy: Policy) -> int:
    """The deductible of a new admission: by level, reduced for a repeat, 0 when exempt."""
    return new_admission_deductible(policy, member.category, level, member.year)


def _basic_capped(raw_fen: int, member: MemberState, policy: Policy) -> int:
    """The pooled fund's payment under the category's basic annual cap."""
    cap = policy.basic_annual_cap_fen.get(member.category)
    return _capped(raw_fen, room(cap, member.year.basic_pooled_fen))


def _serious_illness(member: MemberState, policy: Policy, share_fen: int) -> tuple[int, int]:
    """(serious-illness base added, serious illness paid) for the share the member carries."""
    if member.category in policy.serious_illness_exempt:
        return 0, 0
    base_before = member.year.serious_illness_base_fen
    over_threshold = max(
        0, base_before + share_fen - max(policy.serious_illness_threshold_fen, base_before)
    )
    room = max(0, policy.serious_illness_annual_cap_fen - member.year.serious_illness_paid_fen)
    return share_fen, min(pct(over_threshold, policy.serious_illness_ratio_bp), room)


# ---------------------------------------------------------------------------
# Section 5 and the answer


def _account_fen(
    claim: Claim, member: MemberState, policy: Policy, lines: LineTotals, funds_fen: int
) -> int:
    """Section 5: what the individual account pays (never more than the balance)."""
    payable = lines.preselfpay_fen + lines.in_scope_fen - funds_fen
    if policy.account_pays_full_selfpay:
        payable += lines.full_selfpay_fen
    if policy.account_pays_overlimit:
        payable += lines.overlimit_selfpay_fen
    assert payable >= 0, (lines, funds_fen)
    if not claim.use_individual_account:
        return 0
    return max(0, min(member.balance_fen, payable))


def _accepted(
    claim: Claim,
    member: MemberState,
    day: date,
    policy: Policy,
    catalog: Catalog,
    lines: LineTotals,
    funds: Funds,
    pin_after: int | None,
) -> Adjudication:
    """The answer for an eligible claim: its split, and the changes settling it makes."""
    paid_by_funds = funds.pooled_fund_fen + funds.serious_illness_fen + funds.institution_waiver_fen
    account = _account_fen(claim, member, policy, lines, paid_by_funds)
    split = Split(
        total_fen=lines.total_fen,
        full_selfpay_fen=lines.full_selfpay_fen,
        overlimit_selfpay_fen=lines.overlimit_selfpay_fen,
        preselfpay_fen=lines.preselfpay_fen,
        in_scope_fen=lines.in_scope_fen,
        deductible_fen=funds.deductible_fen,
        pooled_fund_fen=funds.pooled_fund_fen,
        serious_illness_fen=funds.serious_illness_fen,
        institution_waiver_fen=funds.institution_waiver_fen,
        individual_account_fen=account,
        patient_cash_fen=lines.total_fen - paid_by_funds - account,
    )
    parts = lines.full_selfpay_fen + lines.overlimit_selfpay_fen + lines.preselfpay_fen
    assert lines.total_fen == parts + lines.in_scope_fen, split
    assert split.patient_cash_fen >= 0, split
    changes = StateChanges(
        member_id=member.member_id,
        benefit_year=day.year,
        outpatient_deductible_used_fen=funds.outpatient_deductible_used_fen,
        outpatient_pooled_fen=funds.outpatient_pooled_fen,
        basic_pooled_fen=funds.basic_pooled_fen,
        inpatient_above_deductible_fen=funds.inpatient_above_deductible_fen,
        new_admissions=funds.new_admissions,
        serious_illness_base_fen=funds.serious_illness_base_fen,
        serious_illness_paid_fen=funds.serious_illness_fen,
        pharmacy_date=day if claim.visit_type is VisitType.PHARMACY else None,
        account_debit_fen=account,
        stay=funds.stay,
    )
    return Adjudication(
        outcome=Outcome.ACCEPTED,
        reasons=(),
        warnings=funds.warnings,
        split=split,
        lines=lines.results,
        balance_after_fen=member.balance_fen - account,
        member_id=member.member_id,
        benefit_date=day,
        policy_version=policy.version,
        catalog_version=catalog.version,
        changes=changes,
        pin_failures_after=pin_after,
        special_disease=funds.special_disease,
    )
