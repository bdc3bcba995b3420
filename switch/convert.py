"""Translation between the wire (medswitch.v1 messages) and the domain values.

Requests become `adjudication.model` values only after every wire-format rule
of docs/rules.md section 1 holds; otherwise the caller gets the complete
list of field violations (paths like "lines[2].amount_fen", 0-based as in
google.rpc.BadRequest) and nothing is recorded. Engine answers become
responses here, so servicers stay proto -> domain -> proto and nothing else.

The PIN never enters a domain value: it is checked against its keyed hash by
the ledger and only the verdict reaches the engine.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from adjudication import limits as alimits
from adjudication import model
from adjudication.benefits import Benefits
from adjudication.validation import validate_claim, validate_lines
from ledger.db import REGION_TZ
from ledger.store import AccountEntry
from switch import limits
from switch.backend import (
    AdmissionCommand,
    CatalogEntry,
    DischargeCommand,
    EncounterCall,
    EncounterView,
    FeeDetailsView,
    MemberView,
    SettleEncounterCommand,
    SettlementView,
    UploadCommand,
    VoidCommand,
)
from switch.errors import FieldViolation, invalid
from switch.proto import medswitch_pb2 as pb

_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")

VISIT_TYPE_FROM_PB: dict[int, model.VisitType] = {
    pb.VISIT_TYPE_OUTPATIENT: model.VisitType.OUTPATIENT,
    pb.VISIT_TYPE_SPECIAL_DISEASE: model.VisitType.SPECIAL_DISEASE,
    pb.VISIT_TYPE_INPATIENT: model.VisitType.INPATIENT,
    pb.VISIT_TYPE_PHARMACY: model.VisitType.PHARMACY,
}
INJURY_CAUSE_FROM_PB: dict[int, model.InjuryCause] = {
    pb.InjuryCause.Value(f"INJURY_CAUSE_{cause.value}"): cause for cause in model.InjuryCause
}
INJURY_CAUSE_TO_PB: dict[model.InjuryCause, pb.InjuryCause] = {
    cause: pb.InjuryCause.Value(f"INJURY_CAUSE_{cause.value}") for cause in model.InjuryCause
}
MEMBER_CATEGORY_TO_PB: dict[model.MemberCategory, pb.MemberCategory] = {
    c: pb.MemberCategory.Value(f"MEMBER_CATEGORY_{c.value}") for c in model.MemberCategory
}
MEMBER_STATUS_TO_PB: dict[model.MemberStatus, pb.MemberStatus] = {
    s: pb.MemberStatus.Value(f"MEMBER_STATUS_{s.value}") for s in model.MemberStatus
}


class Checker:
    """Collects field violations, so a client learns every problem at once."""

    def __init__(self) -> None:
        self.violations: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self.violations.append(FieldViolation(field, description))

    def text(self, field: str, value: str, len_max: int, *, required: bool = False) -> str:
        if required and not value:
            self.add(field, "required")
        elif len(value) > len_max:
            self.add(field, f"longer than {len_max} characters")
        else:
            self.printable(field, value)
        return value

    def institution(self, value: str) -> None:
        self.text("institution_code", value, alimits.institution_code_len_max, required=True)

    def card(self, value: str) -> None:
        self.text("card_no", value, alimits.card_no_len_max, required=True)

    def request_id(self, value: str) -> None:
        self.text("request_id", value, alimits.request_id_len_max, required=True)

    def diagnoses(self, field: str, values: Sequence[str]) -> tuple[str, ...]:
        """ICD-10 codes, primary first: at least one, each 1-16 printable characters."""
        if not values:
            self.add(field, "at least the primary diagnosis is required")
        elif len(values) > alimits.diagnoses_max:
            self.add(field, f"more than {alimits.diagnoses_max} diagnoses")
        for i, code in enumerate(values[: alimits.diagnoses_max]):
            self.text(f"{field}[{i}]", code, alimits.diagnosis_len_max, required=True)
        return tuple(values[: alimits.diagnoses_max])

    def printable(self, field: str, value: str) -> None:
        """No control characters (C0, DEL, C1) and no Unicode line breaks, which
        would end a line in a log, a CSV report or a bank file."""
        if any(ch < " " or "\x7f" <= ch <= "\x9f" or ch in "\u2028\u2029" for ch in value):
            self.add(field, "contains control characters")

    def date(
        self, field: str, value: str, *, required: bool = False, latest: date | None = None
    ) -> date | None:
        if not value:
            if required:
                self.add(field, "required (YYYY-MM-DD)")
            return None
        if not _DATE_RE.fullmatch(value):
            self.add(field, "not a date in the form YYYY-MM-DD")
            return None
        try:
            day = date.fromisoformat(value)
        except ValueError:
            self.add(field, "not a valid calendar date")
            return None
        if latest is not None and day > latest:
            self.add(field, f"in the future: {latest.isoformat()} at the latest")
            return None
        return day

    def enum(self, field: str, value: int, known: Iterable[int], *, required: bool = False) -> bool:
        if value not in set(known):
            self.add(field, f"unknown enum value {value}")
            return False
        if required and value == 0:
            self.add(field, "required")
            return False
        return True

    def int_range(self, field: str, value: int, lo: int, hi: int) -> bool:
        if not lo <= value <= hi:
            self.add(field, f"must be between {lo} and {hi}")
            return False
        return True


def latest_service_date() -> date:
    """The latest service date a claim may have now (today in the region, plus slack)."""
    today = datetime.now(REGION_TZ).date()
    return today + timedelta(days=limits.service_date_ahead_days_max)


def claim_from_request(
    req: pb.SettleRequest, *, latest_date: date | None = None
) -> tuple[model.Claim | None, list[FieldViolation]]:
    """The claim a SettleRequest stands for, or None with every field violation.

    Wire-only rules (enum values, date syntax, the PIN, control characters,
    no date after `latest_date` when given) are checked here; the rest of
    section 1 is the engine's `validate_claim`, run on a best-effort claim so
    that one answer names every problem.
    """
    ck = Checker()
    ck.text("pin", req.pin, limits.pin_len_max)
    visit_ok = ck.enum("visit_type", req.visit_type, VISIT_TYPE_FROM_PB.keys() | {0}, required=True)
    ck.enum("injury_cause", req.injury_cause, INJURY_CAUSE_FROM_PB.keys())
    service_date = ck.date("service_date", req.service_date, latest=latest_date)
    admission = ck.date("admission_date", req.admission_date, latest=latest_date)
    discharge = ck.date("discharge_date", req.discharge_date, latest=latest_date)
    for name in (
        "request_id",
        "institution_code",
        "card_no",
        "accident_case_id",
        "prescription_ref",
    ):
        ck.printable(name, getattr(req, name))
    for i, code in enumerate(req.diagnoses[: alimits.diagnoses_max + 1]):
        ck.printable(f"diagnoses[{i}]", code)
    for i, line in enumerate(req.lines[: alimits.claim_lines_max + 1]):
        ck.printable(f"lines[{i}].item_code", line.item_code)

    claim = model.Claim(
        request_id=req.request_id,
        institution_code=req.institution_code,
        card_no=req.card_no,
        # A placeholder when the visit type is bad, so the rest is still checked.
        visit_type=VISIT_TYPE_FROM_PB.get(req.visit_type, model.VisitType.OUTPATIENT),
        lines=claim_lines(req.lines, alimits.claim_lines_max),
        service_date=service_date,
        admission_date=admission,
        discharge_date=discharge,
        diagnoses=tuple(req.diagnoses[: alimits.diagnoses_max + 1]),
        injury_cause=INJURY_CAUSE_FROM_PB.get(req.injury_cause, model.InjuryCause.NONE),
        accident_case_id=req.accident_case_id,
        prescription_ref=req.prescription_ref,
        use_individual_account=not req.skip_individual_account,
    )
    flagged = {v.field for v in ck.violations}
    if not visit_ok:
        # Which dates and diagnoses are required depends on the visit type.
        flagged |= {"service_date", "admission_date", "discharge_date", "diagnoses"}
    for v in validate_claim(claim):
        if v.field not in flagged:
            ck.add(v.field, v.description)
    if ck.violations:
        return None, ck.violations
    return claim, []


def claim_lines(lines: Sequence[pb.ClaimLine], lines_max: int) -> tuple[model.ClaimLine, ...]:
    """The lines of a request, no more than one past `lines_max` (the count is then refused)."""
    return tuple(
        model.ClaimLine(
            line_no=line.line_no,
            item_code=line.item_code,
            quantity=line.quantity,
            unit_price_fen=line.unit_price_fen,
            amount_fen=line.amount_fen,
            days_supply=line.days_supply,
            approved=line.approved,
            discharge_medication=line.discharge_medication,
        )
        for line in lines[: lines_max + 1]
    )


REQUEST_DIGEST_BYTES = 32  # SHA-256


def request_digest(req: Any) -> bytes:
    """SHA-256 of a request's deterministic serialisation, its PIN (if any) left out.

    What a retry must repeat to be the same request (the PIN is compared
    separately, through its keyed hash). Computed once per call, over the
    bytes protobuf already knows how to make.
    """
    if "pin" not in req.DESCRIPTOR.fields_by_name:
        return hashlib.sha256(req.SerializeToString(deterministic=True)).digest()
    pin = req.pin
    req.pin = ""
    try:
        return hashlib.sha256(req.SerializeToString(deterministic=True)).digest()
    finally:
        req.pin = pin


def claim_total_fen(claim: model.Claim) -> int:
    return sum(line.amount_fen for line in claim.lines)


# --------------------------------------------------------------------------
# Domain -> wire


def split_to_pb(split: model.Split) -> pb.Split:
    return pb.Split(**split.as_dict())


def line_to_pb(line: model.LineResult) -> pb.LineResult:
    return pb.LineResult(
        line_no=line.line_no,
        item_class=line.item_class,
        full_selfpay_fen=line.full_selfpay_fen,
        overlimit_selfpay_fen=line.overlimit_selfpay_fen,
        preselfpay_fen=line.preselfpay_fen,
        in_scope_fen=line.in_scope_fen,
        reasons=list(line.reasons),
    )


def settle_response(view: SettlementView) -> pb.SettleResponse:
    return pb.SettleResponse(
        settlement_id=view.settlement_id,
        request_id=view.request_id,
        status=pb.SettlementStatus.Value(f"SETTLEMENT_STATUS_{view.status.value}"),
        business_date=view.business_date.isoformat() if view.business_date else "",
        member_id=view.member_id,
        institution_code=view.institution_code,
        reasons=list(view.reasons),
        warnings=list(view.warnings),
        split=split_to_pb(view.split),
        lines=[line_to_pb(line) for line in view.lines],
        balance_after_fen=view.balance_after_fen,
    )


def mask_card(card_no: str) -> str:
    """The last four characters of a card number, the rest masked (for logs)."""
    keep = 4 if len(card_no) > 6 else 0
    return "*" * (len(card_no) - keep) + card_no[len(card_no) - keep :]


def member_to_pb(member: MemberView) -> pb.Member:
    answer = pb.Member(
        member_id=member.member_id,
        name_masked=member.name_masked,
        category=MEMBER_CATEGORY_TO_PB[member.category],
        status=MEMBER_STATUS_TO_PB[member.status],
        region_code=member.region_code,
        balance_fen=member.balance_fen,
        special_diseases=[
            pb.ApprovedDisease(
                code=d.code, valid_from=d.valid_from.isoformat(), valid_to=d.valid_to.isoformat()
            )
            for d in member.special_diseases
        ],
    )
    if member.benefits is not None:
        answer.benefits.CopyFrom(benefits_to_pb(member.benefits))
    if member.open_encounter is not None:
        answer.open_encounter.CopyFrom(encounter_to_pb(member.open_encounter))
    return answer


def benefits_to_pb(benefits: Benefits) -> pb.Benefits:
    """The year's accumulators and what is left; a limit without a cap says so."""
    acc = benefits.year
    return pb.Benefits(
        benefit_year=acc.year,
        policy_version=benefits.policy_version,
        outpatient_deductible_used_fen=acc.outpatient_deductible_used_fen,
        outpatient_pooled_fen=acc.outpatient_pooled_fen,
        basic_pooled_fen=acc.basic_pooled_fen,
        inpatient_above_deductible_fen=acc.inpatient_above_deductible_fen,
        new_admissions=acc.new_admissions,
        serious_illness_base_fen=acc.serious_illness_base_fen,
        serious_illness_paid_fen=acc.serious_illness_paid_fen,
        outpatient_deductible_left_fen=benefits.outpatient_deductible_left_fen,
        outpatient_pooled_left_fen=benefits.outpatient_pooled_left_fen or 0,
        outpatient_pooled_unlimited=benefits.outpatient_pooled_left_fen is None,
        inpatient_deductible_fen=benefits.inpatient_deductible_fen or 0,
        inpatient_deductible_level=benefits.inpatient_level,
        basic_pooled_left_fen=benefits.basic_pooled_left_fen or 0,
        basic_pooled_unlimited=benefits.basic_pooled_left_fen is None,
        serious_illness_left_fen=benefits.serious_illness_left_fen,
    )


# The ledger's entry kinds a member's statement shows as they are; any other
# posting on the account (an opening balance, a contribution) is a CREDIT.
_STATEMENT_KINDS = {"SETTLEMENT": pb.SETTLEMENT, "CANCELLATION": pb.CANCELLATION}


def entry_to_pb(entry: AccountEntry) -> pb.AccountEntry:
    return pb.AccountEntry(
        posted_at=entry.posted_at.isoformat(),
        business_date=entry.business_date.isoformat(),
        institution_code=entry.institution_code,
        settlement_id=entry.settlement_id,
        kind=_STATEMENT_KINDS.get(entry.kind, pb.CREDIT),
        amount_fen=entry.amount_fen,
        balance_after_fen=entry.balance_after_fen,
    )


def catalog_item_to_pb(entry: CatalogEntry) -> pb.CatalogItem:
    return pb.CatalogItem(
        code=entry.code,
        name=entry.name,
        kind=pb.CatalogKind.Value(entry.kind) if entry.kind else pb.CATALOG_KIND_UNSPECIFIED,
        item_class=entry.item_class,
        preselfpay_bp=entry.preselfpay_bp,
        price_cap_fen=entry.price_cap_fen,
        rx=entry.rx,
        restrictions=list(entry.restrictions),
        version=entry.version,
        deleted=entry.deleted,
    )


# --------------------------------------------------------------------------
# Encounters


def _encounter_call(ck: Checker, req: Any) -> EncounterCall:
    ck.request_id(req.request_id)
    ck.institution(req.institution_code)
    ck.text("encounter_id", req.encounter_id, limits.encounter_id_len_max, required=True)
    return EncounterCall(req.request_id, req.institution_code, req.encounter_id)


def _checked(ck: Checker) -> None:
    if ck.violations:
        raise invalid(ck.violations)


def admission_command(req: pb.RegisterAdmissionRequest) -> AdmissionCommand:
    """The admission a RegisterAdmissionRequest asks for, or INVALID_ARGUMENT."""
    ck = Checker()
    ck.request_id(req.request_id)
    ck.institution(req.institution_code)
    ck.card(req.card_no)
    ck.text("pin", req.pin, limits.pin_len_max)
    admitted = ck.date(
        "admission_date", req.admission_date, required=True, latest=latest_service_date()
    )
    ck.text("department", req.department, limits.department_len_max, required=True)
    diagnoses = ck.diagnoses("diagnoses", req.diagnoses)
    ck.enum("injury_cause", req.injury_cause, INJURY_CAUSE_FROM_PB.keys())
    ck.text("accident_case_id", req.accident_case_id, alimits.accident_case_id_len_max)
    _checked(ck)
    assert admitted is not None
    return AdmissionCommand(
        request_id=req.request_id,
        institution_code=req.institution_code,
        card_no=req.card_no,
        pin=req.pin,
        admission_date=admitted,
        department=req.department,
        diagnoses=diagnoses,
        injury_cause=INJURY_CAUSE_FROM_PB[req.injury_cause],
        accident_case_id=req.accident_case_id,
    )


def cancel_admission_call(req: pb.CancelAdmissionRequest) -> EncounterCall:
    ck = Checker()
    call = _encounter_call(ck, req)
    ck.text("reason", req.reason, limits.cancel_reason_len_max)
    _checked(ck)
    return call


def upload_command(req: pb.UploadFeeDetailsRequest) -> UploadCommand:
    """1-1,000 lines, each well formed as a claim's line (rules section 1)."""
    ck = Checker()
    call = _encounter_call(ck, req)
    lines = claim_lines(req.lines, alimits.upload_lines_max)
    for i, line in enumerate(lines[: alimits.upload_lines_max]):
        ck.printable(f"lines[{i}].item_code", line.item_code)
    for v in validate_lines(lines, alimits.upload_lines_max):
        ck.add(v.field, v.description)
    _checked(ck)
    return UploadCommand(call, lines)


def void_command(req: pb.VoidFeeDetailsRequest) -> VoidCommand:
    ck = Checker()
    call = _encounter_call(ck, req)
    ck.text("reason", req.reason, limits.cancel_reason_len_max)
    line_nos = tuple(req.line_nos[: limits.void_line_nos_max + 1])
    if not line_nos:
        ck.add("line_nos", "at least one line number is required")
    elif len(line_nos) > limits.void_line_nos_max:
        ck.add("line_nos", f"more than {limits.void_line_nos_max} line numbers")
    for i, no in enumerate(line_nos):
        if no < 1:
            ck.add(f"line_nos[{i}]", "must be 1 or more")
        elif no in line_nos[:i]:
            ck.add(f"line_nos[{i}]", f"duplicate line number {no}")
    _checked(ck)
    return VoidCommand(call, line_nos, req.reason)


def discharge_command(req: pb.RecordDischargeRequest) -> DischargeCommand:
    ck = Checker()
    call = _encounter_call(ck, req)
    discharged = ck.date(
        "discharge_date", req.discharge_date, required=True, latest=latest_service_date()
    )
    diagnoses = ck.diagnoses("diagnoses", req.diagnoses)
    _checked(ck)
    assert discharged is not None
    return DischargeCommand(call, discharged, diagnoses)


def settle_encounter_command(req: pb.SettleEncounterRequest) -> SettleEncounterCommand:
    ck = Checker()
    call = _encounter_call(ck, req)
    ck.card(req.card_no)
    ck.text("pin", req.pin, limits.pin_len_max)
    _checked(ck)
    return SettleEncounterCommand(call, req.card_no, req.pin, not req.skip_individual_account)


def get_encounter_request(req: pb.GetEncounterRequest) -> tuple[str, str]:
    ck = Checker()
    ck.institution(req.institution_code)
    ck.text("encounter_id", req.encounter_id, limits.encounter_id_len_max, required=True)
    _checked(ck)
    return req.institution_code, req.encounter_id


def encounter_to_pb(view: EncounterView) -> pb.Encounter:
    return pb.Encounter(
        encounter_id=view.encounter_id,
        request_id=view.request_id,
        institution_code=view.institution_code,
        member_id=view.member_id,
        status=pb.EncounterStatus.Value(f"ENCOUNTER_STATUS_{view.status.value}"),
        admission_date=view.admission_date.isoformat(),
        department=view.department,
        admission_diagnoses=list(view.admission_diagnoses),
        injury_cause=INJURY_CAUSE_TO_PB[view.injury_cause],
        accident_case_id=view.accident_case_id,
        discharge_date=view.discharge_date.isoformat() if view.discharge_date else "",
        discharge_diagnoses=list(view.discharge_diagnoses),
        line_count=view.line_count,
        total_fen=view.total_fen,
        settlement_id=view.settlement_id,
    )


def upload_response(view: FeeDetailsView) -> pb.UploadFeeDetailsResponse:
    return pb.UploadFeeDetailsResponse(
        encounter_id=view.encounter_id,
        request_id=view.request_id,
        lines=[line_to_pb(line) for line in view.lines],
        line_count=view.line_count,
        total_fen=view.total_fen,
    )


def void_response(view: FeeDetailsView) -> pb.VoidFeeDetailsResponse:
    return pb.VoidFeeDetailsResponse(
        encounter_id=view.encounter_id,
        request_id=view.request_id,
        voided_line_nos=list(view.voided_line_nos),
        line_count=view.line_count,
        total_fen=view.total_fen,
    )
