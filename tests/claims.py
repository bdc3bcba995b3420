"""Test helper: claims written as SettleRequest dicts (enums by name)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from adjudication.model import Claim, ClaimLine, InjuryCause, VisitType

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "shared" / "reference"
SHARED_REFERENCE = ROOT.parent / "shared" / "reference"


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def claim_from_request(req: dict[str, Any]) -> tuple[Claim, str]:
    """(Claim, pin) from a SettleRequest written as a dict."""
    lines = tuple(
        ClaimLine(
            line_no=ln["line_no"],
            item_code=ln["item_code"],
            quantity=ln["quantity"],
            unit_price_fen=ln["unit_price_fen"],
            amount_fen=ln["amount_fen"],
            days_supply=ln.get("days_supply", 0),
            approved=ln.get("approved", False),
            discharge_medication=ln.get("discharge_medication", False),
        )
        for ln in req.get("lines", [])
    )
    claim = Claim(
        request_id=req["request_id"],
        institution_code=req["institution_code"],
        card_no=req["card_no"],
        visit_type=VisitType(req["visit_type"].removeprefix("VISIT_TYPE_")),
        lines=lines,
        service_date=_day(req.get("service_date")),
        admission_date=_day(req.get("admission_date")),
        discharge_date=_day(req.get("discharge_date")),
        diagnoses=tuple(req.get("diagnoses", ())),
        injury_cause=InjuryCause(
            req.get("injury_cause", "INJURY_CAUSE_NONE").removeprefix("INJURY_CAUSE_")
        ),
        accident_case_id=req.get("accident_case_id", ""),
        prescription_ref=req.get("prescription_ref", ""),
        use_individual_account=not req.get("skip_individual_account", False),
    )
    return claim, req.get("pin", "")
