"""Section 1 of the adjudication rules: is the claim well-formed at all?

A malformed claim is not a business rejection: it is refused before anything
is recorded (INVALID_ARGUMENT at the gRPC edge). Every problem is reported,
each naming its field the way the wire names it (`lines[2].amount_fen`), so an
integrator can fix the request in one go.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from adjudication import limits
from adjudication.model import Claim, ClaimLine, VisitType


@dataclass(frozen=True, slots=True)
class Violation:
    field: str
    description: str


class InvalidClaim(ValueError):
    """The claim is malformed; `violations` names every bad field."""

    def __init__(self, violations: tuple[Violation, ...]) -> None:
        self.violations = violations
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in violations))


def _text(out: list[Violation], name: str, value: str, len_max: int, required: bool) -> None:
    if required and not value:
        out.append(Violation(name, "is required"))
    elif len(value) > len_max:
        out.append(Violation(name, f"is longer than {len_max} characters"))


def validate_claim(claim: Claim) -> tuple[Violation, ...]:
    """Every violation of section 1 of the rules, in field order; () when well-formed."""
    out: list[Violation] = []
    _text(out, "request_id", claim.request_id, limits.request_id_len_max, True)
    _text(out, "institution_code", claim.institution_code, limits.institution_code_len_max, True)
    _text(out, "card_no", claim.card_no, limits.card_no_len_max, True)
    _check_dates(out, claim)
    _check_diagnoses(out, claim)
    _text(out, "accident_case_id", claim.accident_case_id, limits.accident_case_id_len_max, False)
    _text(out, "prescription_ref", claim.prescription_ref, limits.prescription_ref_len_max, False)

    lines_max = limits.encounter_lines_max if claim.encounter_id else limits.claim_lines_max
    out.extend(validate_lines(claim.lines, lines_max))
    return tuple(out)


def validate_lines(lines: Sequence[ClaimLine], lines_max: int) -> list[Violation]:
    """Every violation of the line rules of section 1, naming `lines[i].field`.

    A claim's lines (at most `lines_max`: 500 for a Settle, more for the
    claim of an encounter), or one upload of an encounter's fee details.
    """
    out: list[Violation] = []
    if not lines:
        out.append(Violation("lines", "at least one line is required"))
    elif len(lines) > lines_max:
        out.append(Violation("lines", f"more than {lines_max} lines"))
    seen: set[int] = set()
    for i, line in enumerate(lines[:lines_max]):
        at = f"lines[{i}]"
        if line.line_no < 1:
            out.append(Violation(f"{at}.line_no", "must be 1 or more"))
        elif line.line_no in seen:
            out.append(Violation(f"{at}.line_no", f"duplicate line_no {line.line_no}"))
        seen.add(line.line_no)
        _check_line(out, at, line)
    return out


def _check_dates(out: list[Violation], claim: Claim) -> None:
    """An inpatient claim has its stay's dates in order; any other its service date."""
    if claim.visit_type is not VisitType.INPATIENT:
        if claim.service_date is None:
            out.append(Violation("service_date", "is required"))
        return
    if claim.admission_date is None:
        out.append(Violation("admission_date", "is required for an inpatient claim"))
    if claim.discharge_date is None:
        out.append(Violation("discharge_date", "is required for an inpatient claim"))
    if (
        claim.admission_date is not None
        and claim.discharge_date is not None
        and claim.discharge_date < claim.admission_date
    ):
        out.append(Violation("discharge_date", "is before admission_date"))


def _check_diagnoses(out: list[Violation], claim: Claim) -> None:
    if claim.visit_type is not VisitType.PHARMACY and not claim.diagnoses:
        out.append(Violation("diagnoses", "at least the primary diagnosis is required"))
    if len(claim.diagnoses) > limits.diagnoses_max:
        out.append(Violation("diagnoses", f"more than {limits.diagnoses_max} diagnoses"))
    for i, code in enumerate(claim.diagnoses):
        _text(out, f"diagnoses[{i}]", code, limits.diagnosis_len_max, True)


def _check_line(out: list[Violation], at: str, line: ClaimLine) -> None:
    """One line's own fields (its line_no is checked against the others by the caller)."""
    _text(out, f"{at}.item_code", line.item_code, limits.item_code_len_max, True)
    quantity_ok = 0 < line.quantity <= limits.line_quantity_max
    price_ok = 0 <= line.unit_price_fen <= limits.line_unit_price_fen_max
    if line.quantity <= 0:
        out.append(Violation(f"{at}.quantity", "must be greater than 0"))
    elif not quantity_ok:
        out.append(Violation(f"{at}.quantity", f"must be at most {limits.line_quantity_max}"))
    if line.unit_price_fen < 0:
        out.append(Violation(f"{at}.unit_price_fen", "must not be negative"))
    elif not price_ok:
        out.append(
            Violation(f"{at}.unit_price_fen", f"must be at most {limits.line_unit_price_fen_max}")
        )
    if line.amount_fen > limits.line_amount_fen_max:
        out.append(Violation(f"{at}.amount_fen", f"must be at most {limits.line_amount_fen_max}"))
    elif quantity_ok and price_ok and line.amount_fen != line.quantity * line.unit_price_fen:
        out.append(
            Violation(
                f"{at}.amount_fen",
                f"must equal quantity x unit_price_fen "
                f"({line.quantity} x {line.unit_price_fen} = "
                f"{line.quantity * line.unit_price_fen})",
            )
        )
    if not 0 <= line.days_supply <= limits.days_supply_max:
        out.append(
            Violation(f"{at}.days_supply", f"must be between 0 and {limits.days_supply_max}")
        )
