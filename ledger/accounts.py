"""The chart of accounts: keys, kinds and normal sides.

Account keys are stable strings, so the switch can name the legs of a
settlement without knowing database ids. A posting's amount is positive for
a debit and negative for a credit; an account's balance on its normal side
is normal_sign * sum(postings).

| key | kind | normal side | meaning |
|---|---|---|---|
| member:{member_id} | MEMBER_INDIVIDUAL | CREDIT | what the fund holds for the member (never < 0) |
| fund:pooled | POOLED_FUND | CREDIT | the basic pooled fund |
| fund:serious_illness | SERIOUS_ILLNESS_FUND | CREDIT | the serious-illness insurance fund |
| institution:{code}:payable | INSTITUTION_PAYABLE | CREDIT | owed to the institution |
| institution:{code}:receivable | INSTITUTION_RECEIVABLE | DEBIT | a negative net carried forward |
| bank:fund | FUND_BANK | DEBIT | the fund's bank account |
| payouts:in_transit | PAYOUTS_IN_TRANSIT | DEBIT | payouts sent, not yet seen on a statement |
| bank:settled | SETTLED_AT_BANK | DEBIT | payouts the bank statement confirmed |
| suspense | SUSPENSE | DEBIT | unexplained items awaiting a person |
| equity:opening | OPENING_BALANCE | DEBIT | counter-account of imported opening balances |
"""

from __future__ import annotations

POOLED_FUND = "fund:pooled"
SERIOUS_ILLNESS_FUND = "fund:serious_illness"
FUND_BANK = "bank:fund"
PAYOUTS_IN_TRANSIT = "payouts:in_transit"
SETTLED_AT_BANK = "bank:settled"
SUSPENSE = "suspense"
OPENING_BALANCE = "equity:opening"
# The parts of the keys made per member and per institution (SQL builds them too).
MEMBER_PREFIX = "member:"
INSTITUTION_PREFIX = "institution:"
PAYABLE_SUFFIX = ":payable"
RECEIVABLE_SUFFIX = ":receivable"


def member_account(member_id: str) -> str:
    return MEMBER_PREFIX + member_id


def institution_payable(code: str) -> str:
    return INSTITUTION_PREFIX + code + PAYABLE_SUFFIX


def institution_receivable(code: str) -> str:
    return INSTITUTION_PREFIX + code + RECEIVABLE_SUFFIX


def settlement_postings(
    member_id: str,
    institution_code: str,
    *,
    pooled_fund_fen: int,
    serious_illness_fen: int,
    individual_account_fen: int,
) -> list[tuple[str, int]]:
    """The legs of a settlement: each paying source is debited, the
    institution's payable credited with their sum. Empty when nothing is paid
    (patient cash and waivers never pass through the switch)."""
    postings: list[tuple[str, int]] = []
    total = 0
    for name, key, value in (
        ("pooled_fund_fen", POOLED_FUND, pooled_fund_fen),
        ("serious_illness_fen", SERIOUS_ILLNESS_FUND, serious_illness_fen),
        ("individual_account_fen", None, individual_account_fen),
    ):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative int fen, not {value!r}")
        if value:
            postings.append((key or member_account(member_id), value))
            total += value
    if total:
        postings.append((institution_payable(institution_code), -total))
    return postings
