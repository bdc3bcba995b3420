"""Statements as the fund's bank would send them, built from entries.

For tests, the benchmark and demonstrations: the inverse of the readers in
`statement.py`, so a generated statement can be read back exactly. Never
used on the production path.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import datetime

from lxml import etree

from ledger.bankfiles.amounts import fen_to_yuan_text
from ledger.bankfiles.safexml import xml_child
from ledger.bankfiles.statement import (
    CAMT053_NAMESPACE,
    CREDIT,
    CSV_HEADER,
    CURRENCY,
    DEBIT,
    StatementEntry,
)


def closing_balance_fen(opening_fen: int, entries: Sequence[StatementEntry]) -> int:
    return opening_fen + sum(e.signed_fen for e in entries)


def _sub(parent: etree._Element, tag: str, text: str | None = None) -> etree._Element:
    return xml_child(parent, CAMT053_NAMESPACE, tag, text)


def _amount(parent: etree._Element, tag: str, amount_fen: int) -> None:
    _sub(parent, tag, fen_to_yuan_text(abs(amount_fen))).set("Ccy", CURRENCY)


def _balance(stmt: etree._Element, code: str, amount_fen: int, when: datetime) -> None:
    balance = _sub(stmt, "Bal")
    _sub(_sub(_sub(balance, "Tp"), "CdOrPrtry"), "Cd", code)
    _amount(balance, "Amt", amount_fen)
    _sub(balance, "CdtDbtInd", "DBIT" if amount_fen < 0 else "CRDT")
    _sub(_sub(balance, "Dt"), "Dt", when.date().isoformat())


def camt053_statement(
    *,
    account_id: str,
    entries: Sequence[StatementEntry],
    opening_balance_fen: int,
    created_at: datetime,
    statement_id: str = "STMT-1",
    closing_balance_fen_override: int | None = None,
) -> bytes:
    """A camt.053.001.02 document; the closing balance is computed unless overridden."""
    closing = (
        closing_balance_fen(opening_balance_fen, entries)
        if closing_balance_fen_override is None
        else closing_balance_fen_override
    )
    root = etree.Element(f"{{{CAMT053_NAMESPACE}}}Document", nsmap={None: CAMT053_NAMESPACE})
    report = _sub(root, "BkToCstmrStmt")
    header = _sub(report, "GrpHdr")
    _sub(header, "MsgId", f"MSG-{statement_id}")
    _sub(header, "CreDtTm", created_at.isoformat(timespec="seconds"))
    stmt = _sub(report, "Stmt")
    _sub(stmt, "Id", statement_id)
    _sub(stmt, "CreDtTm", created_at.isoformat(timespec="seconds"))
    account = _sub(_sub(stmt, "Acct"), "Id")
    _sub(_sub(account, "Othr"), "Id", account_id)
    _balance(stmt, "OPBD", opening_balance_fen, created_at)
    _balance(stmt, "CLBD", closing, created_at)
    for entry in entries:
        ntry = _sub(stmt, "Ntry")
        _amount(ntry, "Amt", entry.amount_fen)
        _sub(ntry, "CdtDbtInd", "DBIT" if entry.direction == DEBIT else "CRDT")
        _sub(ntry, "Sts", "BOOK")
        _sub(_sub(ntry, "BookgDt"), "Dt", entry.booking_date.isoformat())
        if entry.value_date is not None:
            _sub(_sub(ntry, "ValDt"), "Dt", entry.value_date.isoformat())
        if entry.bank_reference:
            _sub(ntry, "AcctSvcrRef", entry.bank_reference)
        code = _sub(ntry, "BkTxCd")
        domain = _sub(code, "Domn")
        _sub(domain, "Cd", "PMNT")
        family = _sub(domain, "Fmly")
        _sub(family, "Cd", "ICDT" if entry.direction == DEBIT else "RCDT")
        _sub(family, "SubFmlyCd", "ESCT" if entry.direction == DEBIT else "RRTN")
        tx = _sub(_sub(ntry, "NtryDtls"), "TxDtls")
        _sub(_sub(tx, "Refs"), "EndToEndId", entry.end_to_end_id or "NOTPROVIDED")
        if entry.counterparty_name or entry.counterparty_account:
            side = "Cdtr" if entry.direction == DEBIT else "Dbtr"
            parties = _sub(tx, "RltdPties")
            if entry.counterparty_name:
                _sub(_sub(parties, side), "Nm", entry.counterparty_name)
            if entry.counterparty_account:
                acct = _sub(_sub(parties, f"{side}Acct"), "Id")
                _sub(_sub(acct, "Othr"), "Id", entry.counterparty_account)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))


def csv_statement(
    entries: Sequence[StatementEntry],
    *,
    account_id: str | None = None,
    opening_balance_fen: int | None = None,
    closing_balance_fen_override: int | None = None,
) -> bytes:
    """The CSV format; `#` lines for account and balances only when given."""
    out = io.StringIO()
    if account_id is not None:
        out.write(f"#account={account_id}\n")
    if opening_balance_fen is not None:
        closing = (
            closing_balance_fen(opening_balance_fen, entries)
            if closing_balance_fen_override is None
            else closing_balance_fen_override
        )
        out.write(f"#opening_balance_fen={opening_balance_fen}\n")
        out.write(f"#closing_balance_fen={closing}\n")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for e in entries:
        writer.writerow(
            (
                e.booking_date.isoformat(),
                "" if e.value_date is None else e.value_date.isoformat(),
                e.direction,
                e.amount_fen,
                e.end_to_end_id,
                e.bank_reference,
                e.counterparty_account,
                e.counterparty_name,
            )
        )
    return out.getvalue().encode("utf-8")


__all__ = ["CREDIT", "DEBIT", "camt053_statement", "closing_balance_fen", "csv_statement"]
