"""The one place that turns an adjudication into what the ledger records.

The engine decides the split; the ledger records balanced entries and state
changes without knowing claims. Between them, this module says which
accounts a settlement touches and with how much: each paying source (pooled
fund, serious-illness fund, the member's individual account) is debited and
the institution's payable credited with their sum. Patient cash and the
institution's waiver never pass through the switch, so they post nothing.
"""

from __future__ import annotations

from dataclasses import replace

from adjudication.engine import benefit_date
from adjudication.model import Adjudication, Claim
from ledger import accounts
from ledger.store import Decision
from switch.backend import SettlementView, view_to_dict


def settlement_decision(claim: Claim, adjudication: Adjudication, view: SettlementView) -> Decision:
    """What the ledger records for one Settle: the answer, the postings, the changes."""
    split = adjudication.split
    accepted = adjudication.accepted
    postings: list[tuple[str, int]] = []
    if accepted:
        postings = accounts.settlement_postings(
            adjudication.member_id,
            claim.institution_code,
            pooled_fund_fen=split.pooled_fund_fen,
            serious_illness_fen=split.serious_illness_fen,
            individual_account_fen=split.individual_account_fen,
        )
        assert adjudication.changes is not None
        assert adjudication.changes.account_debit_fen == split.individual_account_fen
    day = benefit_date(claim)
    changes = None
    if accepted and adjudication.changes is not None:
        stay = adjudication.changes.stay
        # The engine cannot know the id; the stay is keyed by its settlement.
        if stay is not None:
            stay = replace(stay, settlement_id=view.settlement_id)
        changes = replace(adjudication.changes, stay=stay).as_dict()
    return Decision(
        status="SETTLED" if accepted else "REJECTED",
        answer=view_to_dict(view),
        member_id=adjudication.member_id or None,
        service_date=claim.service_date or day,
        benefit_year=day.year,
        policy_version=adjudication.policy_version,
        catalog_version=adjudication.catalog_version,
        total_fen=split.total_fen,
        # A rejection pays nothing: only the total is kept, for the audit trail.
        pooled_fund_fen=split.pooled_fund_fen if accepted else 0,
        serious_illness_fen=split.serious_illness_fen if accepted else 0,
        individual_account_fen=split.individual_account_fen if accepted else 0,
        postings=postings,
        changes=changes,
        pin_failures_after=adjudication.pin_failures_after,
    )
