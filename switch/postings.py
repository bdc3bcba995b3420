"""The one place that turns an adjudication into what the ledger records.

The engine decides the split; the ledger records settlement records,
balanced entries and state changes without knowing claims. Between them,
this module says which accounts a settlement touches and with how much:
each paying source (pooled fund, serious-illness fund, the member's
individual account) is debited and the institution's payable credited with
their sum. Patient cash and the institution's waiver never pass through the
switch, so they post nothing.
"""

from __future__ import annotations

import json

from adjudication.engine import benefit_date
from adjudication.model import Adjudication, Claim, StateChanges
from ledger import accounts
from ledger.store import SettlementRow, StateRow
from switch.backend import SettlementView, view_to_dict

_NO_CHANGES: tuple[None, ...] = (None,) * 15  # change_year ... stay_new_admission


def _changes(changes: StateChanges, settlement_id: str) -> tuple[object, ...]:
    """The changes' fields in SettlementRow's order (change_year .. stay_new_admission)."""
    stay = changes.stay
    return (
        changes.benefit_year,
        changes.outpatient_deductible_used_fen,
        changes.outpatient_pooled_fen,
        changes.basic_pooled_fen,
        changes.inpatient_above_deductible_fen,
        changes.new_admissions,
        changes.serious_illness_base_fen,
        changes.serious_illness_paid_fen,
        changes.pharmacy_date,
        changes.account_debit_fen,
        # The engine cannot know the id: the stay is keyed by its settlement.
        *(
            (None,) * 5
            if stay is None
            else (
                settlement_id,
                stay.primary_diagnosis,
                stay.admission_date,
                stay.discharge_date,
                stay.new_admission,
            )
        ),
    )


def settlement_record(
    claim: Claim,
    adjudication: Adjudication,
    view: SettlementView,
    state: StateRow,
    fingerprint: bytes,
) -> tuple[SettlementRow, list[tuple[str, int]]]:
    """What the ledger records for one Settle: the settlement row and its postings."""
    split = adjudication.split
    accepted = adjudication.accepted
    legs: list[tuple[str, int]] = []
    changes: tuple[object, ...] = _NO_CHANGES
    if accepted:
        assert adjudication.changes is not None
        assert adjudication.changes.account_debit_fen == split.individual_account_fen
        legs = accounts.settlement_postings(
            adjudication.member_id,
            claim.institution_code,
            pooled_fund_fen=split.pooled_fund_fen,
            serious_illness_fen=split.serious_illness_fen,
            individual_account_fen=split.individual_account_fen,
        )
        changes = _changes(adjudication.changes, view.settlement_id)
    day = benefit_date(claim)
    row = SettlementRow._make(
        (
            view.settlement_id,
            claim.institution_code,
            claim.request_id,
            fingerprint,
            "SETTLED" if accepted else "REJECTED",
            adjudication.member_id or None,
            claim.service_date or day,
            day.year,
            adjudication.policy_version,
            adjudication.catalog_version,
            split.total_fen,
            # A rejection pays nothing: only the total is kept, for the audit trail.
            split.pooled_fund_fen if accepted else 0,
            split.serious_illness_fen if accepted else 0,
            split.individual_account_fen if accepted else 0,
            json.dumps(view_to_dict(view), separators=(",", ":"), ensure_ascii=False),
            adjudication.pin_failures_after,
            None,  # entry_no: numbered by Ledger.record
            *changes,
            state.state_seq,
        )
    )
    return row, legs
