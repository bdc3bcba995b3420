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


@pytest.mark.parametrize(
    ("amounts", "named"),
    [
        ({"pooled_fund_fen": -1, "individual_account_fen": "x"}, "pooled_fund_fen"),
        ({"serious_illness_fen": None, "individual_account_fen": -1}, "serious_illness_fen"),
    ],
)
def test_of_several_bad_amounts_the_first_in_the_legs_order_is_named(
    amounts: dict[str, object], named: str
) -> None:
    given_amounts: dict[str, object] = {
        "pooled_fund_fen": 1,
        "serious_illness_fen": 2,
        "individual_account_fen": 3,
        **amounts,
    }
    with pytest.raises(ValueError, match=f"^{named} must be"):
        accounts.settlement_postings("M0001", "H001", **given_amounts)  # type: ignore[arg-type]


def test_a_bool_counts_as_the_int_it_is() -> None:
    # bool is an int subclass; the engine never passes one, and it is not refused
    legs = accounts.settlement_postings(
        "M0001", "H001", pooled_fund_fen=True, serious_illness_fen=False, individual_account_fen=0
    )
    assert legs == [("fund:pooled", True), ("institution:H001:payable", -1)]
