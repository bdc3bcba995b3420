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

from adjudication import limits, reasons
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
    if member.status is MemberStatus.DECEASED:
        return reasons.R_MEMBER_DECEASED, pin_after
    if member.status is MemberStatus.SUSPENDED:
        return reasons.R_MEMBER_SUSPENDED, pin_after
    if claim.injury_cause in NON_COVERED_CAUSES:
        return reasons.R_NON_COVERED_CAUSE, pin_after
    if claim.injury_cause is InjuryCause.ACCIDENT and not claim.accident_case_id:
        return reasons.R_ACCIDENT_UNAPPROVED, pin_after
    if claim.visit_type is VisitType.SPECIAL_DISEASE:
        disease = approved_disease(member, claim.primary_diagnosis, day)
        if disease is None or disease.code not in policy.special_diseases:
            return reasons.R_SPECIAL_DISEASE_NOT_APPROVED, pin_after
    if claim.visit_type is VisitType.PHARMACY:
        items = [catalog.items.get(line.item_code) for line in claim.lines]
        if any(item is not None and item.kind is ItemKind.GOODS for item in items):
            return reasons.R_NON_MEDICAL_GOODS, pin_after
        if not claim.prescription_ref:
            if any(item is not None and item.rx is Rx.RX for item in items):
                return reasons.R_RX_REQUIRES_PRESCRIPTION, pin_after
            covered_fen = sum(
                line.amount_fen
                for line, item in zip(claim.lines, items, strict=True)
                if item is not None and item.item_class is not ItemClass.C
            )
            single_package = len(claim.lines) == 1 and claim.lines[0].quantity == 1
            if covered_fen > policy.otc_max_per_purchase_fen and not single_package:
                return reasons.R_OTC_AMOUNT_LIMIT, pin_after
        if member.pharmacy_purchases_today >= policy.max_purchases_per_day:
            return reasons.R_FREQUENT_PURCHASE, pin_after
    return None, pin_after


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


def _room(cap_fen: int | None, used_fen: int) -> int | None:
    """What is left under a cap; None when there is no cap."""
    return None if cap_fen is None else max(0, cap_fen - used_fen)


def _capped(raw_fen: int, room_fen: int | None) -> int:
    return raw_fen if room_fen is None else min(raw_fen, room_fen)


def adjudicate(
    claim: Claim, context: Context, policies: PolicyBook, catalogs: CatalogBook
) -> Adjudication:
    """Adjudicate one claim (see the module docstring).

    Raises InvalidClaim for a malformed claim (section 1) or one dated before
    any policy or catalog is in force; business rejections are answers.
    """
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

    reason, pin_after = _claim_rejection(claim, context, policy, catalog, day)
    if reason is not None:
        return _reject(claim, reason, context, policy, catalog, day, pin_after)
    member = context.member
    institution = context.institution
    assert member is not None and institution is not None  # checked above
    assert member.year.year == day.year, "state must hold the claim's benefit year"

    visit = claim.visit_type
    category = member.category
    adult = age_on(member.birth_date, day) >= ADULT_AGE
    no_pre = category in policy.no_preselfpay_categories
    items = catalog.items

    lines: list[LineResult] = []
    full = over = pre = scope = fund_scope = 0
    total = 0
    for line in claim.lines:
        result = classify_line(line, items.get(line.item_code), visit, adult, no_pre, policy)
        lines.append(result)
        total += line.amount_fen
        full += result.full_selfpay_fen
        over += result.overlimit_selfpay_fen
        pre += result.preselfpay_fen
        scope += result.in_scope_fen
        if result.counts_toward_fund:
            fund_scope += result.in_scope_fen
    e = fund_scope
    acc = member.year
    level = institution.level

    deductible = pooled = si = waiver = 0
    outpatient_deductible = outpatient_pooled = basic_pooled = 0
    above = si_share = 0
    new_admission = 0
    disease_code = ""
    warnings: tuple[str, ...] = ()
    stay: InpatientStay | None = None

    if visit is VisitType.OUTPATIENT:
        left = max(
            0, policy.outpatient_deductible_fen[category] - acc.outpatient_deductible_used_fen
        )
        deductible = min(e, left)
        raw = pct(e - deductible, policy.outpatient_ratio_bp[category][level])
        cap = policy.outpatient_annual_cap_fen.get(category)
        pooled = _capped(raw, _room(cap, acc.outpatient_pooled_fen))
        outpatient_deductible, outpatient_pooled = deductible, pooled
    elif visit is VisitType.SPECIAL_DISEASE:
        approved = approved_disease(member, claim.primary_diagnosis, day)
        assert approved is not None  # checked by the claim-level rules
        rule = policy.special_diseases[approved.code]
        disease_code = rule.code
        raw = pct(e, rule.pooled_bp)
        cap = policy.basic_annual_cap_fen.get(category)
        pooled = _capped(raw, _room(cap, acc.basic_pooled_fen))
        waiver = min(pct(e, rule.waiver_bp), e - pooled)
        basic_pooled = pooled
    elif visit is VisitType.INPATIENT:
        admitted = claim.admission_date
        discharged = claim.discharge_date
        assert admitted is not None and discharged is not None  # validated
        primary = claim.primary_diagnosis
        same_episode = False
        split_warning = False
        for earlier in member.stays:
            gap_days = (admitted - earlier.discharge_date).days
            if gap_days < 0:
                continue
            if gap_days <= policy.same_episode_days and earlier.primary_diagnosis == primary:
                same_episode = True
            if gap_days <= policy.split_admission_warn_days:
                split_warning = True
        if split_warning:
            warnings = (reasons.W_SPLIT_ADMISSION,)
        if same_episode:
            deductible = 0
        else:
            new_admission = 1
            if category in policy.inpatient_deductible_exempt:
                full_deductible = 0
            else:
                full_deductible = policy.inpatient_deductible_fen[level]
                if acc.new_admissions >= 1:
                    full_deductible = pct(full_deductible, policy.repeat_admission_bp)
            deductible = min(e, full_deductible)
        above = e - deductible
        band_room = max(0, policy.band_threshold_fen - acc.inpatient_above_deductible_fen)
        p1 = min(above, band_room)
        p2 = above - p1
        ratio = policy.inpatient_ratio_bp[category][level]
        raw = pct(p1, ratio) + pct(p2, min(BP_WHOLE, ratio + policy.band_extra_bp))
        cap = policy.basic_annual_cap_fen.get(category)
        pooled = _capped(raw, _room(cap, acc.basic_pooled_fen))
        basic_pooled = pooled
        stay = InpatientStay("", primary, admitted, discharged, bool(new_admission))

    if visit in (VisitType.INPATIENT, VisitType.SPECIAL_DISEASE) and (
        category not in policy.serious_illness_exempt
    ):
        si_share = e - pooled - waiver
        base_before = acc.serious_illness_base_fen
        over_threshold = max(
            0,
            base_before + si_share - max(policy.serious_illness_threshold_fen, base_before),
        )
        si_room = max(0, policy.serious_illness_annual_cap_fen - acc.serious_illness_paid_fen)
        si = min(pct(over_threshold, policy.serious_illness_ratio_bp), si_room)

    funds = pooled + si + waiver
    payable = pre + scope - funds
    if policy.account_pays_full_selfpay:
        payable += full
    if policy.account_pays_overlimit:
        payable += over
    account = min(member.balance_fen, payable) if claim.use_individual_account else 0
    account = max(0, account)
    cash = total - funds - account

    split = Split(
        total_fen=total,
        full_selfpay_fen=full,
        overlimit_selfpay_fen=over,
        preselfpay_fen=pre,
        in_scope_fen=scope,
        deductible_fen=deductible,
        pooled_fund_fen=pooled,
        serious_illness_fen=si,
        institution_waiver_fen=waiver,
        individual_account_fen=account,
        patient_cash_fen=cash,
    )
    assert total == full + over + pre + scope, split
    assert cash >= 0 and payable >= 0, split

    changes = StateChanges(
        member_id=member.member_id,
        benefit_year=day.year,
        outpatient_deductible_used_fen=outpatient_deductible,
        outpatient_pooled_fen=outpatient_pooled,
        basic_pooled_fen=basic_pooled,
        inpatient_above_deductible_fen=above,
        new_admissions=new_admission,
        serious_illness_base_fen=si_share,
        serious_illness_paid_fen=si,
        pharmacy_date=day if visit is VisitType.PHARMACY else None,
        account_debit_fen=account,
        stay=stay,
    )
    return Adjudication(
        outcome=Outcome.ACCEPTED,
        reasons=(),
        warnings=warnings,
        split=split,
        lines=tuple(lines),
        balance_after_fen=member.balance_fen - account,
        member_id=member.member_id,
        benefit_date=day,
        policy_version=policy.version,
        catalog_version=catalog.version,
        changes=changes,
        pin_failures_after=pin_after,
        special_disease=disease_code,
    )
