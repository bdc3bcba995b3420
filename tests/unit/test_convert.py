"""Wire-format validation (docs/rules.md section 1) and wire <-> domain conversion."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

import pytest

from adjudication import limits as alimits
from adjudication import model
from ledger.store import AccountEntry
from switch.backend import settlement_view
from switch.convert import (
    claim_from_request,
    entry_to_pb,
    mask_card,
    request_digest,
    settle_response,
)
from switch.proto import medswitch_pb2 as pb


def good_request() -> pb.SettleRequest:
    return pb.SettleRequest(
        request_id="req-1",
        institution_code="H33039900001",
        card_no="C3303990001",
        pin="135790",
        visit_type=pb.VISIT_TYPE_OUTPATIENT,
        service_date="2026-05-10",
        diagnoses=["J06.9"],
        lines=[
            pb.ClaimLine(
                line_no=1,
                item_code="X1",
                quantity=2,
                unit_price_fen=450,
                amount_fen=900,
                days_supply=3,
            ),
            pb.ClaimLine(line_no=2, item_code="X2", quantity=1, unit_price_fen=0, amount_fen=0),
        ],
    )


def test_good_request_becomes_claim() -> None:
    """A well-formed request converts field by field; the PIN is not in the claim."""
    claim, violations = claim_from_request(good_request())
    assert violations == []
    assert claim is not None
    assert claim.visit_type is model.VisitType.OUTPATIENT
    assert claim.service_date == date(2026, 5, 10)
    assert claim.lines[0] == model.ClaimLine(1, "X1", 2, 450, 900, 3, False, False)
    assert claim.use_individual_account is True
    assert claim.injury_cause is model.InjuryCause.NONE
    assert not hasattr(claim, "pin")


def _set(field: str, value: object) -> Callable[[pb.SettleRequest], None]:
    def apply(req: pb.SettleRequest) -> None:
        setattr(req, field, value)

    return apply


def _line(i: int, field: str, value: object) -> Callable[[pb.SettleRequest], None]:
    def apply(req: pb.SettleRequest) -> None:
        setattr(req.lines[i], field, value)

    return apply


def _inpatient(adm: str, dis: str) -> Callable[[pb.SettleRequest], None]:
    def apply(req: pb.SettleRequest) -> None:
        req.visit_type = pb.VISIT_TYPE_INPATIENT
        req.service_date = ""
        req.admission_date = adm
        req.discharge_date = dis

    return apply


def _no_lines(req: pb.SettleRequest) -> None:
    del req.lines[:]


def _too_many_lines(req: pb.SettleRequest) -> None:
    del req.lines[:]
    for n in range(alimits.claim_lines_max + 1):
        req.lines.add(line_no=n + 1, item_code="X", quantity=1, unit_price_fen=1, amount_fen=1)


def _too_long_diagnosis(req: pb.SettleRequest) -> None:
    req.diagnoses[0] = "E" * (alimits.diagnosis_len_max + 1)


def _too_many_diagnoses(req: pb.SettleRequest) -> None:
    req.diagnoses.extend(["A00"] * alimits.diagnoses_max)


CASES: list[tuple[str, Callable[[pb.SettleRequest], None], str]] = [
    ("empty request id", _set("request_id", ""), "request_id"),
    ("request id of 65 chars", _set("request_id", "r" * 65), "request_id"),
    ("missing institution", _set("institution_code", ""), "institution_code"),
    ("missing card", _set("card_no", ""), "card_no"),
    ("overlong card", _set("card_no", "C" * 33), "card_no"),
    ("missing visit type", _set("visit_type", 0), "visit_type"),
    ("unknown visit type", _set("visit_type", 9), "visit_type"),
    ("unknown injury cause", _set("injury_cause", 42), "injury_cause"),
    ("missing service date", _set("service_date", ""), "service_date"),
    ("malformed date", _set("service_date", "2026/05/10"), "service_date"),
    ("impossible date", _set("service_date", "2026-02-30"), "service_date"),
    ("inpatient without admission", _inpatient("", "2026-05-10"), "admission_date"),
    ("inpatient without discharge", _inpatient("2026-05-01", ""), "discharge_date"),
    ("discharge before admission", _inpatient("2026-05-10", "2026-05-01"), "discharge_date"),
    ("too many diagnoses", _too_many_diagnoses, "diagnoses"),
    ("overlong diagnosis", _too_long_diagnosis, "diagnoses[0]"),
    ("overlong accident case id", _set("accident_case_id", "a" * 65), "accident_case_id"),
    ("overlong prescription ref", _set("prescription_ref", "p" * 65), "prescription_ref"),
    ("control character", _set("card_no", "C1\n2"), "card_no"),
    ("C1 control character", _set("prescription_ref", "RX\x851"), "prescription_ref"),
    ("line separator", _set("accident_case_id", "A\u20281"), "accident_case_id"),
    ("NUL in item code", _line(1, "item_code", "X\x00"), "lines[1].item_code"),
    ("escape in item code", _line(0, "item_code", "\x1b[2J"), "lines[0].item_code"),
    ("no lines", _no_lines, "lines"),
    ("501 lines", _too_many_lines, "lines"),
    ("duplicate line_no", _line(1, "line_no", 1), "lines[1].line_no"),
    ("line_no zero", _line(0, "line_no", 0), "lines[0].line_no"),
    ("zero quantity", _line(0, "quantity", 0), "lines[0].quantity"),
    ("negative quantity", _line(0, "quantity", -1), "lines[0].quantity"),
    ("negative price", _line(1, "unit_price_fen", -5), "lines[1].unit_price_fen"),
    ("amount != quantity * price", _line(0, "amount_fen", 901), "lines[0].amount_fen"),
    ("missing item code", _line(1, "item_code", ""), "lines[1].item_code"),
    ("overlong item code", _line(1, "item_code", "X" * 65), "lines[1].item_code"),
    ("negative days supply", _line(0, "days_supply", -1), "lines[0].days_supply"),
]


@pytest.mark.parametrize(("rule", "mutate", "field"), CASES, ids=[c[0] for c in CASES])
def test_malformed_request_names_the_field(
    rule: str, mutate: Callable[[pb.SettleRequest], None], field: str
) -> None:
    """Each malformed request yields no claim and a violation naming the field."""
    req = good_request()
    mutate(req)
    claim, violations = claim_from_request(req)
    assert claim is None, rule
    assert field in [v.field for v in violations], (rule, violations)


def test_every_violation_is_reported_at_once() -> None:
    """A client learns all its problems in one answer, not one per retry."""
    req = good_request()
    req.request_id = ""
    req.lines[0].quantity = 0
    req.lines[1].unit_price_fen = -1
    _, violations = claim_from_request(req)
    assert {v.field for v in violations} >= {
        "request_id",
        "lines[0].quantity",
        "lines[1].unit_price_fen",
    }


def test_inpatient_needs_no_service_date() -> None:
    """An inpatient claim is dated by admission and discharge."""
    req = good_request()
    _inpatient("2026-05-01", "2026-05-10")(req)
    claim, violations = claim_from_request(req)
    assert violations == []
    assert claim is not None and claim.discharge_date == date(2026, 5, 10)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (_set("service_date", "9999-12-31"), "service_date"),
        (_set("service_date", "2026-05-12"), "service_date"),
        (_inpatient("2026-05-01", "2026-05-12"), "discharge_date"),
        (_inpatient("2026-05-12", "2026-05-20"), "admission_date"),
    ],
)
def test_a_date_after_the_latest_is_refused(
    mutate: Callable[[pb.SettleRequest], None], field: str
) -> None:
    """Settle and PreSettle refuse claims dated in the future (later than `latest_date`)."""
    req = good_request()
    mutate(req)
    claim, violations = claim_from_request(req, latest_date=date(2026, 5, 11))
    assert claim is None
    assert {v.field: v.description for v in violations}[field] == (
        "in the future: 2026-05-11 at the latest"
    )


def test_the_latest_date_itself_is_accepted() -> None:
    req = good_request()
    req.service_date = "2026-05-11"
    claim, violations = claim_from_request(req, latest_date=date(2026, 5, 11))
    assert violations == [] and claim is not None


def _adjudication(outcome: model.Outcome) -> model.Adjudication:
    split = model.Split(
        total_fen=2900,
        overlimit_selfpay_fen=200,
        preselfpay_fen=90,
        in_scope_fen=2610,
        individual_account_fen=2700,
        patient_cash_fen=200,
    )
    line = model.LineResult(2, "B", 0, 200, 90, 1710, ("L_OVER_PRICE_CAP",))
    return model.Adjudication(
        outcome=outcome,
        reasons=() if outcome is model.Outcome.ACCEPTED else ("R_PIN_INVALID",),
        warnings=(),
        split=split,
        lines=(line,),
        balance_after_fen=247300,
        member_id="M1",
        benefit_date=date(2026, 5, 10),
        policy_version="p",
        catalog_version=1,
        changes=None,
    )


def test_accepted_response_carries_split_and_lines() -> None:
    resp = settle_response(
        settlement_view(
            _adjudication(model.Outcome.ACCEPTED),
            settlement_id="S1",
            request_id="r",
            institution_code="P1",
            business_date=date(2026, 5, 10),
            preview=False,
        )
    )
    assert resp.status == pb.SETTLEMENT_STATUS_SETTLED
    assert resp.split.individual_account_fen == 2700
    assert resp.lines[0].reasons == ["L_OVER_PRICE_CAP"]
    assert resp.business_date == "2026-05-10"
    preview = settle_response(
        settlement_view(
            _adjudication(model.Outcome.ACCEPTED),
            settlement_id="",
            request_id="r",
            institution_code="P1",
            business_date=None,
            preview=True,
        )
    )
    assert preview.status == pb.SETTLEMENT_STATUS_PREVIEW


def test_rejected_response_is_total_as_cash_and_no_lines() -> None:
    """A rejection has total = patient cash, every other money field 0, no lines
    (docs/integrators.md, Answers)."""
    resp = settle_response(
        settlement_view(
            _adjudication(model.Outcome.REJECTED),
            settlement_id="S2",
            request_id="r",
            institution_code="P1",
            business_date=date(2026, 5, 10),
            preview=False,
        )
    )
    assert resp.status == pb.SETTLEMENT_STATUS_REJECTED
    assert resp.reasons == ["R_PIN_INVALID"]
    assert resp.split == pb.Split(total_fen=2900, patient_cash_fen=2900)
    assert list(resp.lines) == []


def test_masks() -> None:
    assert mask_card("C3303990015") == "*******0015"
    assert "3303990" not in mask_card("C3303990015")


def test_request_digest_leaves_out_the_pin_and_nothing_else() -> None:
    req = pb.SettleRequest(
        request_id="r-1",
        institution_code="P1",
        card_no="C1",
        pin="123456",
        service_date="2026-05-10",
    )
    first = request_digest(req)
    assert req.pin == "123456", "the request is given back as it came"
    assert request_digest(pb.SettleRequest(**{**_fields(req), "pin": "654321"})) == first
    for name, value in (("request_id", "r-2"), ("card_no", "C2"), ("service_date", "2026-05-11")):
        assert request_digest(pb.SettleRequest(**{**_fields(req), name: value})) != first, name
    longer = pb.SettleRequest(**_fields(req))
    longer.lines.add(line_no=1, item_code="X", quantity=1, unit_price_fen=1, amount_fen=1)
    assert request_digest(longer) != first


def _fields(req: pb.SettleRequest) -> dict[str, object]:
    return {f.name: v for f, v in req.ListFields()}


@pytest.mark.parametrize(
    ("ledger_kind", "shown"),
    [
        ("SETTLEMENT", pb.SETTLEMENT),
        ("CANCELLATION", pb.CANCELLATION),
        ("OPENING", pb.CREDIT),
        ("CREDIT", pb.CREDIT),
    ],
)
def test_statement_shows_settlements_and_cancellations_and_any_other_posting_as_credit(
    ledger_kind: str, shown: int
) -> None:
    entry = AccountEntry(
        entry_id=7,
        posted_at=datetime(2026, 5, 10, 9, 30, tzinfo=UTC),
        business_date=date(2026, 5, 10),
        kind=ledger_kind,
        settlement_id="S1" if shown != pb.CREDIT else "",
        institution_code="H1",
        amount_fen=-500,
        balance_after_fen=9_500,
    )
    got = entry_to_pb(entry)
    assert got.kind == shown
    assert (got.business_date, got.settlement_id, got.amount_fen, got.balance_after_fen) == (
        "2026-05-10",
        entry.settlement_id,
        -500,
        9_500,
    )
