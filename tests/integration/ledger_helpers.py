"""Building Decisions for ledger tests without the engine (the ledger knows no claims)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from ledger.accounts import settlement_postings
from ledger.store import ClaimInputs, Decision

INSTITUTION = "H33039900001"
OTHER_INSTITUTION = "H33039900002"
DAY = date(2026, 11, 20)


def changes_for(member_id: str, debit_fen: int, **deltas: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "member_id": member_id,
        "benefit_year": 2026,
        "outpatient_deductible_used_fen": 0,
        "outpatient_pooled_fen": 0,
        "basic_pooled_fen": 0,
        "inpatient_above_deductible_fen": 0,
        "new_admissions": 0,
        "serious_illness_base_fen": 0,
        "serious_illness_paid_fen": 0,
        "pharmacy_date": None,
        "account_debit_fen": debit_fen,
        "stay": None,
    }
    out.update(deltas)
    return out


def debit(
    debit_fen: int, *, pooled_fen: int = 0, honest: bool = True, **deltas: Any
) -> Callable[[ClaimInputs], Decision]:
    """A decide callback paying `debit_fen` from the account (rejecting when short, if honest)."""

    def decide(inputs: ClaimInputs) -> Decision:
        member = inputs.member
        assert member is not None
        if honest and member["balance_fen"] < debit_fen:
            return Decision(
                status="REJECTED",
                answer={"settlement_id": inputs.settlement_id, "status": "REJECTED"},
                member_id=member["member_id"],
            )
        return Decision(
            status="SETTLED",
            answer={
                "settlement_id": inputs.settlement_id,
                "status": "SETTLED",
                "balance_after_fen": member["balance_fen"] - debit_fen,
            },
            member_id=member["member_id"],
            total_fen=debit_fen + pooled_fen,
            pooled_fund_fen=pooled_fen,
            individual_account_fen=debit_fen,
            policy_version="2026.1",
            catalog_version=1,
            postings=settlement_postings(
                member["member_id"],
                INSTITUTION,
                pooled_fund_fen=pooled_fen,
                serious_illness_fen=0,
                individual_account_fen=debit_fen,
            ),
            changes=changes_for(member["member_id"], debit_fen, **deltas),
        )

    return decide
