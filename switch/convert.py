"""Translation between the wire (medswitch.v1 messages) and the domain values.

Requests become `adjudication.model` values only after every wire-format rule
of adjudication.md section 1 holds; otherwise the caller gets the complete
list of field violations (paths like "lines[2].amount_fen", 0-based as in
google.rpc.BadRequest) and nothing is recorded. Engine answers become
responses here, so servicers stay proto -> domain -> proto and nothing else.

The PIN never enters a domain value: it is checked against its keyed hash by
the ledger and only the verdict reaches the engine.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date

from adjudication import model
from switch import limits
from switch.errors import FieldViolation
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
MEMBER_CATEGORY_TO_PB: dict[model.MemberCategory, int] = {
    c: pb.MemberCategory.Value(f"MEMBER_CATEGORY_{c.value}") for c in model.MemberCategory
}
MEMBER_STATUS_TO_PB: dict[model.MemberStatus, int] = {
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
        elif any(ch < " " or ch == "\x7f" for ch in value):
            self.add(field, "contains control characters")
        return value

    def date(self, field: str, value: str, *, required: bool = False) -> date | None:
        if not value:
            if required:
                self.add(field, "required (YYYY-MM-DD)")
            return None
        if not _DATE_RE.fullmatch(value):
            self.add(field, "not a date in the form YYYY-MM-DD")
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            self.add(field, "not a valid calendar date")
            return None

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


def claim_from_request(req: pb.SettleRequest) -> tuple[model.Claim | None, list[FieldViolation]]:
    """The claim a SettleRequest stands for, or None with every field violation."""
    ck = Checker()
    request_id = req.request_id
    if not request_id:
        ck.add("request_id", "required (1-64 characters)")
    else:
        ck.text("request_id", request_id, limits.request_id_len_max)
    ck.text(
        "institution_code", req.institution_code, limits.institution_code_len_max, required=True
    )
    ck.text("card_no", req.card_no, limits.card_no_len_max, required=True)
    ck.text("pin", req.pin, limits.pin_len_max)
    visit_ok = ck.enum("visit_type", req.visit_type, VISIT_TYPE_FROM_PB.keys() | {0}, required=True)
    injury_ok = ck.enum("injury_cause", req.injury_cause, INJURY_CAUSE_FROM_PB.keys())
    visit = VISIT_TYPE_FROM_PB.get(req.visit_type) if visit_ok else None
    inpatient = visit is model.VisitType.INPATIENT

    service_date = ck.date(
        "service_date", req.service_date, required=visit is not None and not inpatient
    )
    admission = ck.date("admission_date", req.admission_date, required=inpatient)
    discharge = ck.date("discharge_date", req.discharge_date, required=inpatient)
    if admission is not None and discharge is not None and discharge < admission:
        ck.add("discharge_date", "before admission_date")

    if len(req.diagnoses) > limits.diagnoses_max:
        ck.add("diagnoses", f"more than {limits.diagnoses_max} diagnoses")
    else:
        for i, code in enumerate(req.diagnoses):
            ck.text(f"diagnoses[{i}]", code, limits.diagnosis_len_max, required=True)
    ck.text("accident_case_id", req.accident_case_id, limits.accident_case_id_len_max)
    ck.text("prescription_ref", req.prescription_ref, limits.prescription_ref_len_max)

    lines = _claim_lines(ck, req.lines)

    if ck.violations or visit is None or lines is None or not injury_ok:
        return None, ck.violations
    claim = model.Claim(
        request_id=request_id,
        institution_code=req.institution_code,
        card_no=req.card_no,
        visit_type=visit,
        lines=lines,
        service_date=service_date,
        admission_date=admission,
        discharge_date=discharge,
        diagnoses=tuple(req.diagnoses),
        injury_cause=INJURY_CAUSE_FROM_PB[req.injury_cause],
        accident_case_id=req.accident_case_id,
        prescription_ref=req.prescription_ref,
        use_individual_account=not req.skip_individual_account,
    )
    return claim, ck.violations


def _claim_lines(ck: Checker, lines: Iterable[pb.ClaimLine]) -> tuple[model.ClaimLine, ...] | None:
    lines = list(lines)
    if not limits.claim_lines_min <= len(lines) <= limits.claim_lines_max:
        ck.add("lines", f"must have {limits.claim_lines_min} to {limits.claim_lines_max} lines")
        return None
    before = len(ck.violations)
    seen: set[int] = set()
    out: list[model.ClaimLine] = []
    for i, line in enumerate(lines):
        path = f"lines[{i}]"
        if ck.int_range(f"{path}.line_no", line.line_no, 1, limits.line_no_max):
            if line.line_no in seen:
                ck.add(f"{path}.line_no", f"duplicate line_no {line.line_no}")
            seen.add(line.line_no)
        ck.text(f"{path}.item_code", line.item_code, limits.item_code_len_max, required=True)
        quantity_ok = price_ok = True
        if line.quantity <= 0:
            ck.add(f"{path}.quantity", "must be greater than 0")
            quantity_ok = False
        elif line.quantity > limits.quantity_max:
            ck.add(f"{path}.quantity", f"must be at most {limits.quantity_max}")
            quantity_ok = False
        if line.unit_price_fen < 0:
            ck.add(f"{path}.unit_price_fen", "must not be negative")
            price_ok = False
        elif line.unit_price_fen > limits.unit_price_fen_max:
            ck.add(f"{path}.unit_price_fen", f"must be at most {limits.unit_price_fen_max}")
            price_ok = False
        if quantity_ok and price_ok and line.amount_fen != line.quantity * line.unit_price_fen:
            ck.add(f"{path}.amount_fen", "must equal quantity * unit_price_fen")
        ck.int_range(f"{path}.days_supply", line.days_supply, 0, limits.days_supply_max)
        out.append(
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
        )
    return tuple(out) if len(ck.violations) == before else None


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


def settle_response(
    adjudication: model.Adjudication,
    *,
    settlement_id: str,
    request_id: str,
    institution_code: str,
    business_date: date | None,
    preview: bool,
) -> pb.SettleResponse:
    """The answer for one adjudicated claim (Settle, PreSettle or GetSettlement).

    A rejection carries its reasons, the claim total as split.total_fen and
    patient_cash_fen, every other money field 0 and no lines (api.md).
    """
    if adjudication.accepted:
        status = pb.SETTLEMENT_STATUS_PREVIEW if preview else pb.SETTLEMENT_STATUS_SETTLED
        split = split_to_pb(adjudication.split)
        lines = [line_to_pb(line) for line in adjudication.lines]
    else:
        status = pb.SETTLEMENT_STATUS_REJECTED
        total = adjudication.split.total_fen
        split = pb.Split(total_fen=total, patient_cash_fen=total)
        lines = []
    return pb.SettleResponse(
        settlement_id=settlement_id,
        request_id=request_id,
        status=status,
        business_date=business_date.isoformat() if business_date else "",
        member_id=adjudication.member_id,
        institution_code=institution_code,
        reasons=list(adjudication.reasons),
        warnings=list(adjudication.warnings),
        split=split,
        lines=lines,
        balance_after_fen=adjudication.balance_after_fen,
    )


def mask_name(name: str) -> str:
    """First character then one `*` per further character (api.md name_masked)."""
    return name[:1] + "*" * (len(name) - 1) if name else ""


def mask_card(card_no: str) -> str:
    """The last four characters of a card number, the rest masked (for logs)."""
    keep = 4 if len(card_no) > 6 else 0
    return "*" * (len(card_no) - keep) + card_no[len(card_no) - keep :]
