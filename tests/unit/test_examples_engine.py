"""Every step of shared/reference/examples.json, reproduced by the engine alone.

The steps share state (balances, accumulators, PIN counts) in order, kept
here by the in-memory region, the model the database-backed switch follows.
"""

from __future__ import annotations

import json
from typing import Any

from adjudication.memory import load_region
from tests.claims import REFERENCE, claim_from_request

SPLIT_FIELDS = (
    "total_fen",
    "full_selfpay_fen",
    "overlimit_selfpay_fen",
    "preselfpay_fen",
    "in_scope_fen",
    "deductible_fen",
    "pooled_fund_fen",
    "serious_illness_fen",
    "institution_waiver_fen",
    "individual_account_fen",
    "patient_cash_fen",
)


def _status(accepted: bool, op: str) -> str:
    if not accepted:
        return "SETTLEMENT_STATUS_REJECTED"
    return "SETTLEMENT_STATUS_PREVIEW" if op == "presettle" else "SETTLEMENT_STATUS_SETTLED"


def test_every_worked_example_is_reproduced_exactly() -> None:
    examples = json.loads((REFERENCE / "examples.json").read_text(encoding="utf-8"))
    region = load_region(REFERENCE)
    ids: dict[int, str] = {}
    answers: dict[int, Any] = {}
    for index, step in enumerate(examples["steps"]):
        expect = step["expect"]
        note = f"step {index}: {step['note']}"
        if step["op"] == "cancel":
            balance = region.cancel(ids[step["ref"]])
            assert expect["status"] == "SETTLEMENT_STATUS_CANCELLED", note
            assert balance == expect["balance_after_fen"], note
            continue
        if "retry_of" in step:
            # A retry is answered from the record, not adjudicated again.
            assert step["request"] == examples["steps"][step["retry_of"]]["request"], note
            ids[index] = ids[step["retry_of"]]
            result = answers[step["retry_of"]]
        else:
            claim, pin = claim_from_request(step["request"])
            ids[index], result = region.adjudicate(claim, pin, apply=step["op"] == "settle")
            answers[index] = result
        assert _status(result.accepted, step["op"]) == expect["status"], note
        assert list(result.reasons) == expect["reasons"], note
        assert list(result.warnings) == expect["warnings"], note
        split = result.split.as_dict()
        assert split == {f: expect["split"].get(f, 0) for f in SPLIT_FIELDS}, note
        got_lines = [
            {
                "line_no": ln.line_no,
                "item_class": ln.item_class,
                "full_selfpay_fen": ln.full_selfpay_fen,
                "overlimit_selfpay_fen": ln.overlimit_selfpay_fen,
                "preselfpay_fen": ln.preselfpay_fen,
                "in_scope_fen": ln.in_scope_fen,
                "reasons": list(ln.reasons),
            }
            for ln in result.lines
        ]
        assert got_lines == expect["lines"], note
        if "balance_after_fen" in expect:
            assert result.balance_after_fen == expect["balance_after_fen"], note
