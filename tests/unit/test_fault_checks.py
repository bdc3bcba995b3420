"""The fault suite's balance check finds a payment decided twice on one balance,
and a balance that the acknowledged answers do not explain (tests/faults)."""

from __future__ import annotations

from switch.proto import medswitch_pb2 as pb
from tests.faults.settle_load import LoadRecord, balance_problems

CARD = "C3303990001"


def _record(*after_fen: int, paid_fen: int = 450) -> LoadRecord:
    record = LoadRecord(balances_before={CARD: 10_000})
    for n, after in enumerate(after_fen):
        request_id = f"r{n}"
        record.requests[request_id] = pb.SettleRequest(request_id=request_id, card_no=CARD)
        record.acknowledged[request_id] = pb.SettleResponse(
            settlement_id=f"S{n}",
            balance_after_fen=after,
            split=pb.Split(individual_account_fen=paid_fen),
        )
    return record


def test_payments_each_from_the_balance_the_one_before_left_are_sound() -> None:
    assert balance_problems(_record(9_550, 9_100, 8_650), {CARD: 8_650}) == []


def test_two_payments_decided_on_one_balance_are_found() -> None:
    problems = balance_problems(_record(9_550, 9_550), {CARD: 9_100})
    assert problems and "decided on another balance" in problems[0]


def test_a_balance_the_answers_do_not_leave_is_found() -> None:
    assert balance_problems(_record(9_550), {CARD: 9_100}) == [
        f"{CARD}: balance 9100, the acknowledged answers leave 9550"
    ]
