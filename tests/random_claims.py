"""Seeded random Settle requests over the reference region, and the answers the
engine's in-memory model gives them: what the database-backed switch must
answer too (tests/integration/test_switch_agrees_with_model.py, and several
serve processes at once in test_serve_processes.py).
"""

from __future__ import annotations

import csv
import random
from datetime import date, timedelta
from typing import Any

from adjudication.memory import InMemoryRegion
from switch.backend import settlement_view
from switch.convert import claim_from_request, settle_response
from switch.proto import medswitch_pb2 as pb
from tests.switch_pg import REFERENCE


def _rows(name: str) -> list[dict[str, str]]:
    with (REFERENCE / name).open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


class ClaimMaker:
    """Claims of every kind by the reference members (or those of `member_ids`),
    on `days` days from 2026-01-01, request ids `{prefix}-NNNN`."""

    def __init__(
        self,
        rng: random.Random,
        *,
        member_ids: frozenset[str] | None = None,
        days: int = 180,
        prefix: str = "model",
    ) -> None:
        self.rng = rng
        self.days = days
        self.prefix = prefix
        self.members = [
            m for m in _rows("members.csv") if member_ids is None or m["member_id"] in member_ids
        ]
        self.institutions = _rows("institutions.csv")
        self.items = _rows("catalog.csv")
        self.diseases = _rows("member_special_diseases.csv")
        self.n = 0

    def claim(self) -> pb.SettleRequest:
        rng = self.rng
        self.n += 1
        member = rng.choice(self.members)
        inst = rng.choice(self.institutions)
        pharmacy = inst["kind"] == "PHARMACY"
        if rng.random() < 0.05:  # the wrong kind of visit for the institution
            pharmacy = not pharmacy
        visit = (
            pb.VISIT_TYPE_PHARMACY
            if pharmacy
            else rng.choice(
                [
                    pb.VISIT_TYPE_OUTPATIENT,
                    pb.VISIT_TYPE_OUTPATIENT,
                    pb.VISIT_TYPE_INPATIENT,
                    pb.VISIT_TYPE_SPECIAL_DISEASE,
                ]
            )
        )
        day = date(2026, 1, 1) + timedelta(days=rng.randrange(0, self.days))
        req = pb.SettleRequest(
            request_id=f"{self.prefix}-{self.n:04d}",
            institution_code=inst["code"],
            card_no=member["card_no"],
            pin=member["pin"] if rng.random() > 0.03 else "000000",
            visit_type=visit,
        )
        if visit == pb.VISIT_TYPE_INPATIENT:
            req.admission_date = day.isoformat()
            req.discharge_date = (day + timedelta(days=rng.randrange(0, 12))).isoformat()
        else:
            req.service_date = day.isoformat()
        if visit != pb.VISIT_TYPE_PHARMACY:
            own = [
                d["disease_code"] for d in self.diseases if d["member_id"] == member["member_id"]
            ]
            codes = [*own, "J06.9", "K29.7", "I10", "E11.9"]
            req.diagnoses.append(rng.choice(codes))
        if rng.random() < 0.08:
            req.injury_cause = rng.choice(list(pb.InjuryCause.values()))
            if rng.random() < 0.5:
                req.accident_case_id = f"ACC-{self.n}"
        if pharmacy and rng.random() < 0.7:
            req.prescription_ref = f"RX-{self.n}"
        req.skip_individual_account = rng.random() < 0.05
        if pharmacy:  # mostly drugs; now and then toothpaste slips in (套刷)
            kinds = ("DRUG", "GOODS") if rng.random() < 0.05 else ("DRUG",)
        else:
            kinds = ("DRUG", "TREATMENT", "FACILITY", "MATERIAL")
        candidates = [i for i in self.items if i["kind"] in kinds]
        for line_no in range(1, rng.randrange(2, 5)):
            item = rng.choice(candidates)
            cap = int(item["price_cap_fen"] or 2000)
            price = max(1, int(cap * rng.choice([0.5, 0.9, 1.0, 1.2])))
            quantity = rng.randrange(1, 4)
            req.lines.add(
                line_no=line_no,
                item_code=item["code"],
                quantity=quantity,
                unit_price_fen=price,
                amount_fen=price * quantity,
                days_supply=rng.choice([0, 3, 7, 10, 30, 40]) if item["kind"] == "DRUG" else 0,
                approved=rng.random() < 0.5,
                discharge_medication=rng.random() < 0.2,
            )
        return req


def answer_fields(resp: pb.SettleResponse) -> dict[str, Any]:
    return {
        "status": resp.status,
        "reasons": list(resp.reasons),
        "warnings": list(resp.warnings),
        "member_id": resp.member_id,
        "split": resp.split,
        "lines": list(resp.lines),
        "balance_after_fen": resp.balance_after_fen,
    }


def model_answer(model: InMemoryRegion, req: pb.SettleRequest) -> tuple[str, pb.SettleResponse]:
    """The model's settlement id and answer for `req`, settled in the model."""
    claim, violations = claim_from_request(req)
    assert claim is not None, violations
    model_id, result = model.adjudicate(claim, req.pin, apply=True)
    answer: pb.SettleResponse = settle_response(
        settlement_view(
            result,
            settlement_id=model_id,
            request_id=req.request_id,
            institution_code=req.institution_code,
            business_date=None,
            preview=False,
        )
    )
    return model_id, answer
