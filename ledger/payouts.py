"""Clearing a closed business day into payouts, and the payout files.

What the funds owe each institution for day D is the pooled fund + serious
illness + individual account amounts of its settlements booked in D, minus
those of its cancellations booked in D. A negative net (more cancelled than
settled) is never paid as a negative transfer: it becomes a receivable the
institution's next payout is reduced by. `net_payouts` is that rule as a pure
function; the files are written from its result, the ledger posts the same
numbers.

A payout's `amount_fen` is what the bank is asked to pay: the day's three
components minus any receivable carried in (`offset_fen`), so it equals the
sum of the components exactly when nothing was carried.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from ledger.bankfiles.files import spreadsheet_csv, write_atomically
from ledger.bankfiles.pain001 import CreditTransfer, DebtorAccount, build_pain001

PAYOUTS_CSV_HEADER = (
    "business_date",
    "end_to_end_id",
    "institution_code",
    "institution_name",
    "amount_fen",
    "pooled_fund_fen",
    "serious_illness_fen",
    "individual_account_fen",
    "settlement_count",
)


@dataclass(frozen=True, slots=True)
class InstitutionDayAmount:
    """One institution's clearing for one business day (may be negative)."""

    institution_code: str
    institution_name: str
    pooled_fund_fen: int
    serious_illness_fen: int
    individual_account_fen: int
    settlement_count: int

    @property
    def amount_fen(self) -> int:
        return self.pooled_fund_fen + self.serious_illness_fen + self.individual_account_fen


@dataclass(frozen=True, slots=True)
class Payout:
    business_date: date
    institution_code: str
    institution_name: str
    amount_fen: int  # > 0: what the bank pays
    pooled_fund_fen: int
    serious_illness_fen: int
    individual_account_fen: int
    settlement_count: int
    offset_fen: int  # receivable from earlier days deducted from this payout

    @property
    def end_to_end_id(self) -> str:
        return end_to_end_id(self.business_date, self.institution_code)


@dataclass(frozen=True, slots=True)
class PayoutFiles:
    """A day's payout files as bytes: the same payouts, debtor and creation time
    always give the same bytes, so an export run again writes the same files."""

    business_date: date
    csv: bytes
    xml: bytes | None  # None: nothing to pay


@dataclass(frozen=True, slots=True)
class NettingResult:
    payouts: tuple[Payout, ...]  # sorted by institution code
    receivables_fen: dict[str, int]  # institution -> what it owes the funds (> 0) afterwards

    @property
    def total_fen(self) -> int:
        return sum(p.amount_fen for p in self.payouts)


def end_to_end_id(business_date: date, institution_code: str) -> str:
    """`MS` + YYYYMMDD + institution code: how the bank statement names a payout."""
    return f"MS{business_date:%Y%m%d}{institution_code}"


def net_payouts(
    business_date: date,
    day_amounts: Iterable[InstitutionDayAmount],
    receivables_fen: Mapping[str, int],
) -> NettingResult:
    """Payouts for `business_date` and the receivables carried forward.

    `receivables_fen` are what institutions still owe from earlier negative
    days. Conservation: total paid - receivables after = day net - receivables
    before. An institution whose net is exactly zero gets no payout.
    """
    for code, owed_fen in receivables_fen.items():
        if owed_fen < 0:
            raise ValueError(f"receivable of {code} is negative ({owed_fen} fen)")
    carried = {code: owed_fen for code, owed_fen in receivables_fen.items() if owed_fen}
    payouts: list[Payout] = []
    seen: set[str] = set()
    for day in sorted(day_amounts, key=lambda d: d.institution_code):
        code = day.institution_code
        if code in seen:
            raise ValueError(f"institution {code} appears twice in the day's amounts")
        seen.add(code)
        owed_fen = carried.pop(code, 0)
        net_fen = day.amount_fen - owed_fen
        if net_fen > 0:
            payouts.append(
                Payout(
                    business_date=business_date,
                    institution_code=code,
                    institution_name=day.institution_name,
                    amount_fen=net_fen,
                    pooled_fund_fen=day.pooled_fund_fen,
                    serious_illness_fen=day.serious_illness_fen,
                    individual_account_fen=day.individual_account_fen,
                    settlement_count=day.settlement_count,
                    offset_fen=owed_fen,
                )
            )
        elif net_fen < 0:
            carried[code] = -net_fen
    return NettingResult(payouts=tuple(payouts), receivables_fen=carried)


def payouts_csv(payouts: Sequence[Payout]) -> str:
    return spreadsheet_csv(
        PAYOUTS_CSV_HEADER,
        (
            (
                p.business_date.isoformat(),
                p.end_to_end_id,
                p.institution_code,
                p.institution_name,
                p.amount_fen,
                p.pooled_fund_fen,
                p.serious_illness_fen,
                p.individual_account_fen,
                p.settlement_count,
            )
            for p in payouts
        ),
    )


def payouts_message_id(business_date: date) -> str:
    # Stable per day: a bank refuses a second file with the same MsgId, which
    # is what we want if the same day is ever sent twice.
    return f"MSPAYOUTS{business_date:%Y%m%d}"


def payouts_pain001(
    business_date: date,
    payouts: Sequence[Payout],
    *,
    debtor: DebtorAccount,
    created_at: datetime,
) -> bytes:
    transfers = [
        CreditTransfer(
            end_to_end_id=p.end_to_end_id,
            amount_fen=p.amount_fen,
            creditor_name=p.institution_name,
            creditor_id=p.institution_code,
            remittance_info=f"MedSwitch settlements {business_date.isoformat()} "
            f"({p.settlement_count})",
        )
        for p in payouts
    ]
    return build_pain001(
        message_id=payouts_message_id(business_date),
        created_at=created_at,
        debtor=debtor,
        transfers=transfers,
    )


def payout_file_names(business_date: date) -> tuple[str, str]:
    stem = f"payouts-{business_date:%Y%m%d}"
    return f"{stem}.csv", f"{stem}.xml"


def payout_files(
    business_date: date,
    payouts: Sequence[Payout],
    *,
    debtor: DebtorAccount,
    created_at: datetime,
) -> PayoutFiles:
    """A day's payout files, built in full (ValueError naming the payout and
    field a file cannot carry): what export builds before it posts anything."""
    xml = (
        payouts_pain001(business_date, payouts, debtor=debtor, created_at=created_at)
        if payouts
        else None
    )
    return PayoutFiles(business_date, csv=payouts_csv(payouts).encode("utf-8"), xml=xml)


def write_payout_files(out_dir: Path, files: PayoutFiles) -> tuple[Path, Path | None]:
    """Writes payouts-YYYYMMDD.csv and, when anything is to be paid, .xml.

    Each file is written to a temporary name and renamed, so a reader never
    sees half a file. A day with no payouts has a header-only CSV and no XML
    (the pain.001 schema has no empty payment file).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_name, xml_name = payout_file_names(files.business_date)
    csv_path = write_atomically(out_dir / csv_name, files.csv)
    if files.xml is None:
        (out_dir / xml_name).unlink(missing_ok=True)
        return csv_path, None
    return csv_path, write_atomically(out_dir / xml_name, files.xml)
