"""Matching: every expected payout and every statement entry gets exactly one status."""

from __future__ import annotations

from collections import Counter
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.bankfiles import CREDIT, DEBIT, StatementEntry, read_statement
from ledger.bankfiles.simulate import csv_statement
from ledger.recon import (
    AMOUNT_MISMATCH,
    DUPLICATE_IN_BANK,
    MATCHED,
    MISSING_IN_BANK,
    RETURNED,
    STATUSES,
    UNEXPECTED_IN_BANK,
    ExpectedPayout,
    match_statement,
)

DAY = date(2026, 11, 22)


def payout(code: str, fen: int) -> ExpectedPayout:
    return ExpectedPayout(f"MS20261122{code}", code, fen)


def entry(e2e: str, fen: int, direction: str = DEBIT, ref: str = "") -> StatementEntry:
    return StatementEntry("", date(2026, 11, 23), None, direction, fen, e2e, ref, "", "")


CASES = [
    # (name, expected payouts, entries, [(status, e2e, institution, expected, bank)])
    (
        "matched",
        [payout("H1", 500)],
        [entry("MS20261122H1", 500)],
        [(MATCHED, "MS20261122H1", "H1", 500, 500)],
    ),
    (
        "amount mismatch",
        [payout("H1", 500)],
        [entry("MS20261122H1", 499)],
        [(AMOUNT_MISMATCH, "MS20261122H1", "H1", 500, 499)],
    ),
    (
        "missing in bank",
        [payout("H1", 500)],
        [],
        [(MISSING_IN_BANK, "MS20261122H1", "H1", 500, None)],
    ),
    (
        "unexpected debit",
        [],
        [entry("MS20261122H9", 70)],
        [(UNEXPECTED_IN_BANK, "MS20261122H9", "", None, 70)],
    ),
    (
        "unexpected credit without id",
        [],
        [entry("", 70, CREDIT)],
        [(UNEXPECTED_IN_BANK, "", "", None, -70)],
    ),
    (
        "duplicate",
        [payout("H1", 500)],
        [entry("MS20261122H1", 500), entry("MS20261122H1", 500)],
        [
            (MATCHED, "MS20261122H1", "H1", 500, 500),
            (DUPLICATE_IN_BANK, "MS20261122H1", "H1", None, 500),
        ],
    ),
    (
        "exact amount wins over an earlier wrong one",
        [payout("H1", 500)],
        [entry("MS20261122H1", 5), entry("MS20261122H1", 500)],
        [
            (MATCHED, "MS20261122H1", "H1", 500, 500),
            (DUPLICATE_IN_BANK, "MS20261122H1", "H1", None, 5),
        ],
    ),
    (
        "returned",
        [payout("H1", 500)],
        [entry("MS20261122H1", 500), entry("MS20261122H1", 500, CREDIT)],
        [(MATCHED, "MS20261122H1", "H1", 500, 500), (RETURNED, "MS20261122H1", "H1", None, -500)],
    ),
    (
        "returned but never debited",
        [payout("H1", 500)],
        [entry("MS20261122H1", 500, CREDIT)],
        [
            (MISSING_IN_BANK, "MS20261122H1", "H1", 500, None),
            (RETURNED, "MS20261122H1", "H1", None, -500),
        ],
    ),
]


@pytest.mark.parametrize(("name", "expected", "entries", "lines"), CASES, ids=[c[0] for c in CASES])
def test_each_status(name, expected, entries, lines) -> None:
    recon = match_statement(DAY, expected, entries)
    got = [
        (line.status, line.end_to_end_id, line.institution_code, line.expected_fen, line.bank_fen)
        for line in recon.lines
    ]
    assert got == lines
    assert recon.exit_code == (0 if all(s == MATCHED for s, *_ in lines) else 3)


def test_statuses_survive_a_round_trip_through_a_generated_csv_statement() -> None:
    expected = [payout("H1", 100), payout("H2", 200), payout("H3", 300), payout("H4", 400)]
    entries = [
        entry("MS20261122H1", 100, ref="B1"),
        entry("MS20261122H2", 201, ref="B2"),
        entry("MS20261122H1", 100, ref="B3"),
        entry("MS20261122H4", 400, ref="B4"),
        entry("MS20261122H4", 400, CREDIT, ref="B5"),
        entry("OTHER", 9, ref="B6"),
    ]
    statement = read_statement(csv_statement(entries), source="s.csv", fund_account_id="F")
    recon = match_statement(DAY, expected, statement.entries)
    assert Counter(line.status for line in recon.lines) == Counter(
        {
            MATCHED: 2,
            AMOUNT_MISMATCH: 1,
            MISSING_IN_BANK: 1,
            DUPLICATE_IN_BANK: 1,
            RETURNED: 1,
            UNEXPECTED_IN_BANK: 1,
        }
    )
    assert {line.bank_reference for line in recon.lines if line.status == DUPLICATE_IN_BANK} == {
        "B3"
    }


def test_an_all_matched_day_exits_zero_and_totals_add_up() -> None:
    expected = [payout("H1", 100), payout("H2", 250)]
    recon = match_statement(DAY, expected, [entry("MS20261122H2", 250), entry("MS20261122H1", 100)])
    assert recon.exit_code == 0 and not recon.has_exceptions
    totals = recon.totals_by_status()
    assert (totals[MATCHED].count, totals[MATCHED].expected_fen, totals[MATCHED].bank_fen) == (
        2,
        350,
        350,
    )
    assert recon.by_institution() == {"H1": (100, 100), "H2": (250, 250)}


def test_expected_payouts_must_be_unique() -> None:
    with pytest.raises(ValueError, match="twice"):
        match_statement(DAY, [payout("H1", 1), payout("H1", 2)], [])


codes = st.sampled_from(["H1", "H2", "H3", "H4", "H5"])


@given(
    st.dictionaries(codes, st.integers(1, 10_000)),
    st.lists(
        st.tuples(
            st.one_of(codes.map(lambda c: f"MS20261122{c}"), st.sampled_from(["", "X"])),
            st.integers(1, 10_000),
            st.sampled_from([DEBIT, CREDIT]),
        ),
        max_size=20,
    ),
)
def test_every_payout_and_every_entry_has_exactly_one_status_and_totals_conserve(
    amounts: dict[str, int], raw_entries: list[tuple[str, int, str]]
) -> None:
    expected = [payout(code, fen) for code, fen in amounts.items()]
    entries = [entry(e2e, fen, direction) for e2e, fen, direction in raw_entries]
    recon = match_statement(DAY, expected, entries)

    payout_lines = [line for line in recon.lines if line.expected_fen is not None]
    assert sorted(line.end_to_end_id for line in payout_lines) == sorted(
        p.end_to_end_id for p in expected
    )
    indexes = [line.entry_index for line in recon.lines if line.entry_index is not None]
    assert sorted(indexes) == list(range(len(entries)))
    assert all(line.status in STATUSES for line in recon.lines)

    totals = recon.totals_by_status()
    assert sum(t.count for t in totals.values()) == len(recon.lines)
    assert sum(t.expected_fen for t in totals.values()) == sum(amounts.values())
    assert sum(t.bank_fen for t in totals.values()) == sum(
        e.amount_fen if e.direction == DEBIT else -e.amount_fen for e in entries
    )
    for line in recon.lines:
        if line.status == MATCHED:
            assert line.expected_fen == line.bank_fen
        if line.status == AMOUNT_MISMATCH:
            assert line.expected_fen != line.bank_fen
        if line.status == RETURNED:
            assert line.bank_fen is not None and line.bank_fen < 0 and line.institution_code
    assert recon.exit_code == (0 if all(line.status == MATCHED for line in recon.lines) else 3)
