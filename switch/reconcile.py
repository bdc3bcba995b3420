"""Comparing an institution's books with the switch's (3201 totals, 3202 details).

Pure functions: the figures come from the ledger, the comparison is here, so
the rule of what counts as a difference is one readable place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ledger.store import DayTotals, DetailRecord
from switch.backend import SettlementStatus
from switch.proto import medswitch_pb2 as pb

TOTAL_FIELDS = (
    "settlement_count",
    "medical_total_fen",
    "pooled_fund_fen",
    "serious_illness_fen",
    "individual_account_fen",
)


def compare_totals(theirs: pb.ReconcileTotalsRequest, ours: DayTotals) -> list[str]:
    """Names of the figures where the institution and the switch differ."""
    return [name for name in TOTAL_FIELDS if getattr(theirs, name) != getattr(ours, name)]


@dataclass(frozen=True, slots=True)
class DetailComparison:
    matched_count: int
    missing_at_switch: tuple[str, ...]
    missing_at_institution: tuple[str, ...]
    mismatched: tuple[str, ...]


def compare_details(
    theirs: Sequence[DetailRecord], ours: Sequence[DetailRecord]
) -> DetailComparison:
    """Matches records by settlement id, else by request id (a caller that never
    got its answer knows only the request id), then compares amounts and status.
    """
    by_settlement = {r.settlement_id: r for r in ours}
    by_request = {r.request_id: r for r in ours}
    seen: set[str] = set()
    matched = 0
    missing_at_switch: list[str] = []
    mismatched: list[str] = []
    for rec in theirs:
        mine = by_settlement.get(rec.settlement_id) if rec.settlement_id else None
        if mine is None and rec.request_id:
            mine = by_request.get(rec.request_id)
        if mine is None or mine.settlement_id in seen:
            missing_at_switch.append(rec.settlement_id or rec.request_id)
            continue
        seen.add(mine.settlement_id)
        if (rec.total_fen, rec.fund_total_fen, rec.status) == (
            mine.total_fen,
            mine.fund_total_fen,
            mine.status,
        ):
            matched += 1
        else:
            mismatched.append(mine.settlement_id)
    # A rejection moved no money: the institution need not list it, but if it
    # does, it is compared like any other record.
    missing_at_institution = [
        r.settlement_id
        for r in ours
        if r.settlement_id not in seen and r.status != SettlementStatus.REJECTED
    ]
    return DetailComparison(
        matched, tuple(missing_at_switch), tuple(missing_at_institution), tuple(mismatched)
    )
