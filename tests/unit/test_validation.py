"""Section 1 of the rules: a malformed claim is refused naming every bad field.

adjudicate raises InvalidClaim (INVALID_ARGUMENT at the edge) before any
rule runs, so nothing is decided and nothing changes.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any

import pytest

from adjudication import limits
from adjudication.model import Claim, ClaimLine, VisitType
from adjudication.validation import InvalidClaim, validate_claim
from tests.kit import CONSULT_A, claim, line, run

GOOD_LINE = line(CONSULT_A, 1000, quantity=2)
GOOD = claim(VisitType.OUTPATIENT, GOOD_LINE, line(CONSULT_A, 500))


def fields(c: Claim) -> list[str]:
    return [v.field for v in validate_claim(c)]


def refused(c: Claim, *expected: str) -> None:
    assert fields(c) == list(expected)
    with pytest.raises(InvalidClaim) as err:
        run(c)
    assert [v.field for v in err.value.violations] == list(expected)
    for name in expected:
        assert name in str(err.value)


def with_line(i: int, **change: Any) -> Claim:
    lines = list(GOOD.lines)
    lines[i] = replace(lines[i], **change)
    return replace(GOOD, lines=tuple(lines))


def test_good_claim_has_no_violations() -> None:
    assert fields(GOOD) == []
    assert run(GOOD).accepted


def test_no_lines() -> None:
    refused(replace(GOOD, lines=()), "lines")


def test_more_than_500_lines() -> None:
    many = tuple(ClaimLine(i, CONSULT_A, 1, 10, 10) for i in range(1, limits.claim_lines_max + 2))
    refused(replace(GOOD, lines=many), "lines")
    assert fields(replace(GOOD, lines=many[:-1])) == []  # exactly 500 is fine


def test_duplicate_line_no() -> None:
    refused(with_line(1, line_no=1), "lines[1].line_no")


@pytest.mark.parametrize("quantity", [0, -3])
def test_quantity_not_positive(quantity: int) -> None:
    refused(with_line(0, quantity=quantity), "lines[0].quantity")


def test_negative_price() -> None:
    refused(with_line(1, unit_price_fen=-1, amount_fen=-1), "lines[1].unit_price_fen")


@pytest.mark.parametrize("amount", [1999, 2001, 0])
def test_amount_not_quantity_times_price(amount: int) -> None:
    """amount_fen must equal quantity x unit_price_fen (2 x 1000 = 2000)."""
    refused(with_line(0, amount_fen=amount), "lines[0].amount_fen")


def test_zero_price_line_is_valid() -> None:
    assert fields(with_line(0, unit_price_fen=0, amount_fen=0)) == []


def test_several_violations_all_named() -> None:
    bad = replace(
        with_line(1, quantity=0, unit_price_fen=-5),
        request_id="",
    )
    refused(bad, "request_id", "lines[1].quantity", "lines[1].unit_price_fen")


def test_inpatient_needs_both_dates_in_order() -> None:
    inp = claim(VisitType.INPATIENT, GOOD_LINE, admitted=date(2026, 3, 1))
    assert fields(inp) == []
    refused(replace(inp, admission_date=None), "admission_date")
    refused(replace(inp, discharge_date=None), "discharge_date")
    refused(replace(inp, discharge_date=date(2026, 2, 28)), "discharge_date")
    # same-day admission and discharge is fine
    assert fields(replace(inp, admission_date=inp.discharge_date)) == []


def test_service_date_required_outside_inpatient() -> None:
    refused(replace(GOOD, service_date=None), "service_date")


@pytest.mark.parametrize(
    ("name", "len_max"),
    [
        ("request_id", limits.request_id_len_max),
        ("institution_code", limits.institution_code_len_max),
        ("card_no", limits.card_no_len_max),
        ("accident_case_id", limits.accident_case_id_len_max),
        ("prescription_ref", limits.prescription_ref_len_max),
    ],
)
def test_text_fields_over_their_length_limit(name: str, len_max: int) -> None:
    """Exactly len_max characters is fine; one more is refused naming the field."""
    assert fields(replace(GOOD, **{name: "x" * len_max})) == []
    refused(replace(GOOD, **{name: "x" * (len_max + 1)}), name)


@pytest.mark.parametrize("name", ["request_id", "institution_code", "card_no"])
def test_required_text_fields(name: str) -> None:
    refused(replace(GOOD, **{name: ""}), name)


def test_item_code_required_and_limited() -> None:
    refused(with_line(0, item_code=""), "lines[0].item_code")
    refused(with_line(1, item_code="x" * (limits.item_code_len_max + 1)), "lines[1].item_code")


def test_diagnoses() -> None:
    refused(replace(GOOD, diagnoses=()), "diagnoses")
    refused(replace(GOOD, diagnoses=("J06.9", "")), "diagnoses[1]")
    refused(replace(GOOD, diagnoses=("J06.9", "x" * 17)), "diagnoses[1]")
    # a pharmacy claim may come without a diagnosis
    ph = claim(VisitType.PHARMACY, line("XN02BEA001A001010100004", 500), diagnoses=())
    assert fields(ph) == []


def test_days_supply_out_of_range() -> None:
    refused(with_line(0, days_supply=-1), "lines[0].days_supply")


def test_invalid_claim_is_raised_before_any_rule() -> None:
    """Even at a suspended institution a malformed claim is INVALID, not REJECTED."""
    from adjudication.model import Institution, InstitutionKind, InstitutionStatus

    closed = Institution("H", InstitutionKind.HOSPITAL, "L1", InstitutionStatus.REVOKED)
    with pytest.raises(InvalidClaim):
        run(replace(GOOD, lines=()), inst=closed)
