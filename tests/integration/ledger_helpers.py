"""Settling through the ledger in tests without the engine (the ledger knows no claims).

`settle` drives the ledger as the switch's writer does for one claim: load
the state, decide, record, load again when the record finds it stale. The
decisions are made by `debit`, which pays from the member's account.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import date
from typing import Any

from ledger.accounts import settlement_postings
from ledger.store import (
    Ledger,
    LedgerError,
    LoadRequest,
    SettlementRow,
    StaleRows,
    StateRow,
    StoredSettlement,
    prior_outcome,
)

INSTITUTION = "H33039900001"
OTHER_INSTITUTION = "H33039900002"
DAY = date(2026, 11, 20)

Record = tuple[SettlementRow, list[tuple[str, int]]]
Decide = Callable[[StateRow, tuple[str, str], bytes], Record]
_NO_CHANGES = {name: None for name in SettlementRow._fields[17:32]}


def row_for(
    state: StateRow,
    key: tuple[str, str],
    fingerprint: bytes,
    *,
    status: str,
    answer: dict[str, Any],
    debit_fen: int = 0,
    pooled_fen: int = 0,
    **changes: Any,
) -> SettlementRow:
    """A settlement row for `state`'s member; `changes` are the accumulator deltas."""
    assert state.settlement_id is not None
    state_changes = dict(_NO_CHANGES)
    if status == "SETTLED":
        state_changes.update(
            {name: 0 for name in SettlementRow._fields[18:25]},
            change_year=2026,
            account_debit_fen=debit_fen,
            **changes,
        )
    return SettlementRow(
        settlement_id=state.settlement_id,
        institution_code=key[0],
        request_id=key[1],
        fingerprint=fingerprint,
        status=status,
        member_id=state.member_id,
        service_date=DAY,
        benefit_year=2026,
        policy_version="2026.1",
        catalog_version=1,
        total_fen=debit_fen + pooled_fen,
        pooled_fund_fen=pooled_fen,
        serious_illness_fen=0,
        individual_account_fen=debit_fen,
        answer=json.dumps(answer),
        pin_failures=None,
        entry_no=None,
        state_seq=state.state_seq,
        **state_changes,
    )


def debit(debit_fen: int, *, pooled_fen: int = 0, honest: bool = True, **deltas: Any) -> Decide:
    """Decides to pay `debit_fen` from the account (rejecting when short, if honest)."""

    def decide(state: StateRow, key: tuple[str, str], fingerprint: bytes) -> Record:
        assert state.member_id is not None and state.balance_fen is not None
        if honest and state.balance_fen < debit_fen:
            answer = {"settlement_id": state.settlement_id, "status": "REJECTED"}
            return row_for(state, key, fingerprint, status="REJECTED", answer=answer), []
        answer = {
            "settlement_id": state.settlement_id,
            "status": "SETTLED",
            "balance_after_fen": state.balance_fen - debit_fen,
        }
        row = row_for(
            state, key, fingerprint, status="SETTLED", answer=answer,
            debit_fen=debit_fen, pooled_fen=pooled_fen, **deltas,
        )  # fmt: skip
        legs = settlement_postings(
            state.member_id,
            key[0],
            pooled_fund_fen=pooled_fen,
            serious_illness_fen=0,
            individual_account_fen=debit_fen,
        )
        return row, legs

    return decide


async def settle(
    ledger: Ledger, key: tuple[str, str], fingerprint: bytes, card_no: str, decide: Decide
) -> StoredSettlement:
    """One claim through the ledger, as the switch's writer settles it."""
    request = LoadRequest(key[0], ledger.keys.card_lookup(card_no), 2026, DAY, key[1])
    for _ in range(500):  # each round, one of the racers records: progress is certain
        (state,) = await ledger.load_states([request])
        prior = prior_outcome(state, fingerprint)
        if isinstance(prior, LedgerError):
            raise prior
        if prior is not None:
            (stored,) = await ledger.stored_settlements([prior])
            return stored
        assert state.business_date is not None
        row, legs = decide(state, key, fingerprint)
        try:
            await ledger.record(state.business_date, [row], [legs])
        except StaleRows:
            continue
        (stored,) = await ledger.stored_settlements([row.settlement_id])
        return dataclasses.replace(stored, replayed=False)
    raise AssertionError("the member's state kept moving")
