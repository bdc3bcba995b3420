"""Matching a day's expected payouts against the bank statement.

Pure: expected payouts and statement entries in, one line per payout and per
entry out, each with exactly one status (docs/operations.md). The ledger and the
report are both written from this result, so what the finance office reads
is what was posted.

Rules, per end-to-end id of an expected payout:
- its DEBIT entries: one with the expected amount is the match (MATCHED);
  with none of the right amount the first is the AMOUNT_MISMATCH; every
  other DEBIT with that id is DUPLICATE_IN_BANK;
- no DEBIT at all: the payout is MISSING_IN_BANK;
- every CREDIT with that id is RETURNED (the beneficiary bank sent it back).
Any entry whose id names no expected payout of the day (a DEBIT, or a CREDIT
such as an incoming transfer or interest) is UNEXPECTED_IN_BANK: the fund's
account moved and nothing in the day explains it.

Amounts in lines are from the fund's account's point of view: `bank_fen` is
positive for money that left (a DEBIT), negative for money that came back.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from ledger.bankfiles.statement import DEBIT, StatementEntry

MATCHED = "MATCHED"
AMOUNT_MISMATCH = "AMOUNT_MISMATCH"
MISSING_IN_BANK = "MISSING_IN_BANK"
UNEXPECTED_IN_BANK = "UNEXPECTED_IN_BANK"
DUPLICATE_IN_BANK = "DUPLICATE_IN_BANK"
RETURNED = "RETURNED"
STATUSES = (
    MATCHED,
    AMOUNT_MISMATCH,
    MISSING_IN_BANK,
    UNEXPECTED_IN_BANK,
    DUPLICATE_IN_BANK,
    RETURNED,
)

EXIT_ALL_MATCHED = 0
EXIT_UNUSABLE_INPUT = 2
EXIT_EXCEPTIONS = 3


@dataclass(frozen=True, slots=True)
class ExpectedPayout:
    end_to_end_id: str
    institution_code: str
    expected_fen: int


@dataclass(frozen=True, slots=True)
class ReconLine:
    status: str
    end_to_end_id: str
    institution_code: str  # "" for an entry that names no payout of the day
    expected_fen: int | None  # set on the one line that carries a payout
    bank_fen: int | None  # set on lines that carry an entry; signed, + = money left
    bank_reference: str
    entry_index: int | None  # position in the statement's entries


@dataclass(frozen=True, slots=True)
class StatusTotal:
    count: int
    expected_fen: int
    bank_fen: int


@dataclass(frozen=True, slots=True)
class Reconciliation:
    business_date: date
    lines: tuple[ReconLine, ...]

    @property
    def has_exceptions(self) -> bool:
        return any(line.status != MATCHED for line in self.lines)

    @property
    def exit_code(self) -> int:
        return EXIT_EXCEPTIONS if self.has_exceptions else EXIT_ALL_MATCHED

    def totals_by_status(self) -> dict[str, StatusTotal]:
        counts: dict[str, list[int]] = {status: [0, 0, 0] for status in STATUSES}
        for line in self.lines:
            total = counts[line.status]
            total[0] += 1
            total[1] += line.expected_fen or 0
            total[2] += line.bank_fen or 0
        return {status: StatusTotal(*values) for status, values in counts.items()}

    def by_institution(self) -> dict[str, tuple[int, int]]:
        """institution code -> (expected_fen, net paid by the bank in fen)."""
        sums: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for line in self.lines:
            if line.institution_code:
                sums[line.institution_code][0] += line.expected_fen or 0
                sums[line.institution_code][1] += line.bank_fen or 0
        return {code: (values[0], values[1]) for code, values in sums.items()}


def _signed(entry: StatementEntry) -> int:
    return entry.amount_fen if entry.direction == DEBIT else -entry.amount_fen


def match_statement(
    business_date: date,
    expected: Sequence[ExpectedPayout],
    entries: Sequence[StatementEntry],
) -> Reconciliation:
    """Every payout in `expected` and every entry gets exactly one line."""
    by_id: dict[str, ExpectedPayout] = {}
    for payout in expected:
        if payout.end_to_end_id in by_id:
            raise ValueError(f"expected payout {payout.end_to_end_id} given twice")
        by_id[payout.end_to_end_id] = payout

    debits: dict[str, list[int]] = defaultdict(list)
    lines_for_entries: dict[int, ReconLine] = {}
    for index, entry in enumerate(entries):
        named = by_id.get(entry.end_to_end_id) if entry.end_to_end_id else None
        if named is None:
            lines_for_entries[index] = _entry_line(UNEXPECTED_IN_BANK, "", entry, index)
        elif entry.direction == DEBIT:
            debits[named.end_to_end_id].append(index)
        else:
            lines_for_entries[index] = _entry_line(RETURNED, named.institution_code, entry, index)

    payout_lines: list[ReconLine] = []
    for payout in sorted(expected, key=lambda p: p.end_to_end_id):
        candidates = debits.get(payout.end_to_end_id, [])
        if not candidates:
            payout_lines.append(
                ReconLine(
                    status=MISSING_IN_BANK,
                    end_to_end_id=payout.end_to_end_id,
                    institution_code=payout.institution_code,
                    expected_fen=payout.expected_fen,
                    bank_fen=None,
                    bank_reference="",
                    entry_index=None,
                )
            )
            continue
        exact = [i for i in candidates if entries[i].amount_fen == payout.expected_fen]
        primary = exact[0] if exact else candidates[0]
        entry = entries[primary]
        payout_lines.append(
            ReconLine(
                status=MATCHED if exact else AMOUNT_MISMATCH,
                end_to_end_id=payout.end_to_end_id,
                institution_code=payout.institution_code,
                expected_fen=payout.expected_fen,
                bank_fen=_signed(entry),
                bank_reference=entry.bank_reference,
                entry_index=primary,
            )
        )
        for other in candidates:
            if other != primary:
                lines_for_entries[other] = _entry_line(
                    DUPLICATE_IN_BANK, payout.institution_code, entries[other], other
                )

    entry_lines = [lines_for_entries[i] for i in sorted(lines_for_entries)]
    return Reconciliation(business_date=business_date, lines=(*payout_lines, *entry_lines))


def _entry_line(status: str, institution_code: str, entry: StatementEntry, index: int) -> ReconLine:
    return ReconLine(
        status=status,
        end_to_end_id=entry.end_to_end_id,
        institution_code=institution_code,
        expected_fen=None,
        bank_fen=_signed(entry),
        bank_reference=entry.bank_reference,
        entry_index=index,
    )
