"""3201/3202 comparison rules (switch/reconcile.py)."""

from __future__ import annotations

from datetime import date

from ledger.store import DayTotals, DetailRecord
from switch.backend import SettlementStatus
from switch.proto import medswitch_pb2 as pb
from switch.reconcile import compare_details, compare_totals

S, C, R = SettlementStatus.SETTLED, SettlementStatus.CANCELLED, SettlementStatus.REJECTED


def test_totals_name_every_differing_figure() -> None:
    ours = DayTotals("H1", date(2026, 5, 10), 3, 1000, 400, 0, 300)
    same = pb.ReconcileTotalsRequest(
        settlement_count=3, medical_total_fen=1000, pooled_fund_fen=400, individual_account_fen=300
    )
    assert compare_totals(same, ours) == []
    off = pb.ReconcileTotalsRequest(
        settlement_count=2,
        medical_total_fen=1000,
        pooled_fund_fen=400,
        serious_illness_fen=1,
        individual_account_fen=300,
    )
    assert compare_totals(off, ours) == ["settlement_count", "serious_illness_fen"]


def test_details_each_kind_of_difference() -> None:
    ours = [
        DetailRecord("S1", "r1", 100, 80, S),  # matched
        DetailRecord("S2", "r2", 200, 150, S),  # institution has 149: mismatched
        DetailRecord("S3", "r3", 300, 0, C),  # the institution missed it
        DetailRecord("S4", "r4", 50, 0, R),  # a rejection it need not list
        DetailRecord("S5", "r5", 70, 70, C),  # matched by request id only
    ]
    theirs = [
        DetailRecord("S1", "r1", 100, 80, S),
        DetailRecord("S2", "r2", 200, 149, S),
        DetailRecord("", "r5", 70, 70, C),
        DetailRecord("", "r9", 10, 10, S),  # never reached the switch
        DetailRecord("S1", "r1", 100, 80, S),  # listed twice: the second is extra
    ]
    result = compare_details(theirs, ours)
    assert result.matched_count == 2
    assert result.mismatched == ("S2",)
    assert result.missing_at_institution == ("S3",)
    assert result.missing_at_switch == ("r9", "S1")


def test_a_status_difference_is_a_mismatch() -> None:
    ours = [DetailRecord("S1", "r1", 100, 80, C)]
    theirs = [DetailRecord("S1", "r1", 100, 80, S)]
    assert compare_details(theirs, ours).mismatched == ("S1",)
