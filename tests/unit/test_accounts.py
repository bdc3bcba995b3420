"""The legs of a settlement (accounts.settlement_postings)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import accounts

fen = st.integers(min_value=0, max_value=10**12)


@given(pooled=fen, serious=fen, account=fen)
def test_each_paying_source_is_debited_and_the_institution_credited_with_their_sum(
    pooled: int, serious: int, account: int
) -> None:
    legs = accounts.settlement_postings(
        "M0001",
        "H001",
        pooled_fund_fen=pooled,
        serious_illness_fen=serious,
        individual_account_fen=account,
    )
    paid = [
        (key, amount)
        for key, amount in (
            ("fund:pooled", pooled),
            ("fund:serious_illness", serious),
            ("member:M0001", account),
        )
        if amount
    ]
    total = pooled + serious + account
    assert legs == paid + ([("institution:H001:payable", -total)] if total else [])
    assert sum(amount for _, amount in legs) == 0
    assert all(amount != 0 for _, amount in legs)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("pooled_fund_fen", -1),
        ("serious_illness_fen", 1.5),
        ("individual_account_fen", "100"),
        ("individual_account_fen", None),
    ],
)
def test_a_negative_or_non_int_amount_is_refused_by_name(field: str, value: object) -> None:
    amounts: dict[str, object] = {
        "pooled_fund_fen": 1,
        "serious_illness_fen": 2,
        "individual_account_fen": 3,
    }
    amounts[field] = value
    with pytest.raises(ValueError, match=f"^{field} must be a non-negative int fen"):
        accounts.settlement_postings("M0001", "H001", **amounts)  # type: ignore[arg-type]
