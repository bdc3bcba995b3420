"""Bank statements of the fund's account, read into one exact shape.

Two formats arrive, told apart by content (not by file name): ISO 20022
camt.053.001.02 XML, and the switch's CSV format (docs/operations.md). Either
way a statement is refused, with what is wrong and where, when it does not
parse, is for another account, or does not add up from its opening to its
closing balance: reconciling against a statement that is itself wrong would
settle payouts on false evidence.

The CSV format has no place for the account or the balances in its header,
so a CSV statement may carry them in `#key=value` lines before the header
(`#account=`, `#opening_balance_fen=`, `#closing_balance_fen=`); when given
they are checked exactly like the XML ones.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from lxml import etree

from ledger.bankfiles.amounts import AmountError, fen_text_to_fen, yuan_text_to_fen
from ledger.bankfiles.safexml import UnsafeXmlError, parse_xml_safely, schema
from ledger.bankfiles.text import unfit_character
from ledger.limits import statement_bytes_max, statement_entries_max, statement_total_fen_max

DEBIT = "DEBIT"
CREDIT = "CREDIT"
CAMT053_NAMESPACE = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"
CAMT053 = "camt.053.001.02"
CSV_FORMAT = "csv"
CURRENCY = "CNY"
CSV_HEADER = (
    "booking_date",
    "value_date",
    "direction",
    "amount_fen",
    "end_to_end_id",
    "bank_reference",
    "counterparty_account",
    "counterparty_name",
)
CSV_META_KEYS = ("account", "opening_balance_fen", "closing_balance_fen")
# ISO's placeholder for "the initiating party gave no end-to-end id".
_NO_END_TO_END_ID = "NOTPROVIDED"


class StatementError(ValueError):
    """A statement that must not be reconciled; `where` points into the file."""

    def __init__(self, where: str, what: str) -> None:
        super().__init__(f"{where}: {what}")
        self.where = where
        self.what = what


@dataclass(frozen=True, slots=True)
class StatementEntry:
    position: str  # where in the file, for messages and the report ("line 7", "Ntry 3")
    booking_date: date
    value_date: date | None
    direction: str  # DEBIT (money left the fund's account) or CREDIT
    amount_fen: int  # always > 0; the direction carries the sign
    end_to_end_id: str  # "" when the bank reports none
    bank_reference: str
    counterparty_account: str
    counterparty_name: str

    @property
    def signed_fen(self) -> int:
        return self.amount_fen if self.direction == CREDIT else -self.amount_fen


@dataclass(frozen=True, slots=True)
class Statement:
    format: str
    account_id: str | None  # None: a CSV statement that does not name its account
    statement_id: str
    opening_balance_fen: int | None  # None: not given (CSV only)
    closing_balance_fen: int | None
    entries: tuple[StatementEntry, ...]
    sha256: str  # of the file's bytes: the same file is recognised when read again

    @property
    def balances_checked(self) -> bool:
        return self.opening_balance_fen is not None and self.closing_balance_fen is not None


def normalise_account(account_id: str) -> str:
    return "".join(account_id.split()).upper()


def read_statement(data: bytes, *, source: str, fund_account_id: str) -> Statement:
    """The statement in `data` (camt.053.001.02 or CSV, chosen by content).

    `source` names the file in error messages. Raises StatementError.
    """
    if len(data) > statement_bytes_max:
        raise StatementError(source, f"larger than {statement_bytes_max:,} bytes")
    start = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    if start.startswith(b"<") or data.startswith((b"\xff\xfe", b"\xfe\xff")):
        statement = _read_camt053(data, source)
    else:
        statement = _read_csv(data, source)
    if statement.account_id is not None and normalise_account(
        statement.account_id
    ) != normalise_account(fund_account_id):
        raise StatementError(
            source,
            f"statement is for account {statement.account_id}, "
            f"not the fund's account {fund_account_id}",
        )
    _check_total(statement, source)
    _check_balances(statement, source)
    return statement


def read_statement_file(path: Path) -> bytes:
    """The bytes of the statement at `path`, read no further than the limit
    (a device such as /dev/zero, or a runaway file, is refused, not exhausted)."""
    with path.open("rb") as file:
        data = file.read(statement_bytes_max + 1)
    if len(data) > statement_bytes_max:
        raise StatementError(str(path), f"larger than {statement_bytes_max:,} bytes")
    return data


def _check_total(statement: Statement, source: str) -> None:
    """Refuses, at the entry that crosses it, a statement whose amounts add up
    past the limit: the ledger's 64-bit balances must hold whatever is posted."""
    total_fen = 0
    for entry in statement.entries:
        total_fen += entry.amount_fen
        if total_fen > statement_total_fen_max:
            raise StatementError(
                f"{source} {entry.position}",
                f"the entries add up to more than {statement_total_fen_max:,} fen",
            )


def _check_balances(statement: Statement, source: str) -> None:
    opening, closing = statement.opening_balance_fen, statement.closing_balance_fen
    if opening is None or closing is None:
        return
    credits_fen = sum(e.amount_fen for e in statement.entries if e.direction == CREDIT)
    debits_fen = sum(e.amount_fen for e in statement.entries if e.direction == DEBIT)
    computed = opening + credits_fen - debits_fen
    if computed != closing:
        raise StatementError(
            source,
            f"does not add up: opening balance {opening} + credits {credits_fen} "
            f"- debits {debits_fen} = {computed} fen, but the closing balance is "
            f"{closing} fen",
        )


# --- camt.053.001.02 ------------------------------------------------------------

_NS = {"c": CAMT053_NAMESPACE}


def _text(element: etree._Element, path: str) -> str:
    found = element.find(path, _NS)
    return "" if found is None or found.text is None else found.text.strip()


def _where(source: str, element: etree._Element, label: str) -> str:
    return f"{source} line {element.sourceline} ({label})"


def _amount(element: etree._Element, path: str, where: str) -> int:
    found = element.find(path, _NS)
    if found is None:
        raise StatementError(where, f"{path.replace('c:', '')} is missing")
    currency = found.get("Ccy", "")
    if currency != CURRENCY:
        raise StatementError(where, f"amount in {currency or 'no currency'}, expected {CURRENCY}")
    try:
        return yuan_text_to_fen(found.text or "")
    except AmountError as exc:
        raise StatementError(where, str(exc)) from None


def _date(element: etree._Element, path: str, where: str) -> date | None:
    found = element.find(path, _NS)
    if found is None:
        return None
    text = _text(found, "c:Dt") or _text(found, "c:DtTm")
    try:
        # A DtTm keeps its own local date: the bank's booking day is what counts.
        return date.fromisoformat(text[:10])
    except ValueError:
        raise StatementError(where, f"{path.replace('c:', '')} {text!r} is not a date") from None


def _signed_balance(stmt: etree._Element, code: str, source: str) -> int | None:
    for balance in stmt.findall("c:Bal", _NS):
        if _text(balance, "c:Tp/c:CdOrPrtry/c:Cd") == code:
            where = _where(source, balance, f"Bal {code}")
            amount = _amount(balance, "c:Amt", where)
            return -amount if _text(balance, "c:CdtDbtInd") == "DBIT" else amount
    return None


def _account_id(stmt: etree._Element) -> str:
    return _text(stmt, "c:Acct/c:Id/c:IBAN") or _text(stmt, "c:Acct/c:Id/c:Othr/c:Id")


def _party(details: etree._Element, direction: str) -> tuple[str, str]:
    # The counterparty of a debit is the creditor (the institution paid).
    side = "Cdtr" if direction == DEBIT else "Dbtr"
    parties = details.find("c:RltdPties", _NS)
    if parties is None:
        return "", ""
    account = _text(parties, f"c:{side}Acct/c:Id/c:IBAN") or _text(
        parties, f"c:{side}Acct/c:Id/c:Othr/c:Id"
    )
    return account, _text(parties, f"c:{side}/c:Nm")


def _end_to_end_id(details: etree._Element) -> str:
    value = _text(details, "c:Refs/c:EndToEndId")
    return "" if value == _NO_END_TO_END_ID else value


def _camt_entries(stmt: etree._Element, source: str) -> Iterator[StatementEntry]:
    for number, entry in enumerate(stmt.findall("c:Ntry", _NS), start=1):
        label = f"Ntry {number}"
        where = _where(source, entry, label)
        status = _text(entry, "c:Sts")
        if status != "BOOK":
            raise StatementError(where, f"entry status {status}; only booked entries (BOOK)")
        indicator = _text(entry, "c:CdtDbtInd")
        direction = DEBIT if indicator == "DBIT" else CREDIT
        amount_fen = _amount(entry, "c:Amt", where)
        if amount_fen == 0:
            raise StatementError(where, "entry amount is zero")
        booking = _date(entry, "c:BookgDt", where)
        if booking is None:
            raise StatementError(where, "BookgDt is missing")
        value = _date(entry, "c:ValDt", where)
        entry_ref = _text(entry, "c:AcctSvcrRef")
        details = entry.findall("c:NtryDtls/c:TxDtls", _NS)
        if len(details) <= 1:
            tx = details[0] if details else None
            account, name = _party(tx, direction) if tx is not None else ("", "")
            yield StatementEntry(
                position=label,
                booking_date=booking,
                value_date=value,
                direction=direction,
                amount_fen=amount_fen,
                end_to_end_id=_end_to_end_id(tx) if tx is not None else "",
                bank_reference=entry_ref
                or (_text(tx, "c:Refs/c:AcctSvcrRef") if tx is not None else ""),
                counterparty_account=account,
                counterparty_name=name,
            )
            continue
        # A batch booking: one entry, several transactions; each must carry
        # its own amount and together they must make the entry's amount.
        parts_fen = 0
        for part, tx in enumerate(details, start=1):
            tx_where = _where(source, tx, f"{label} TxDtls {part}")
            tx_fen = _amount(tx, "c:AmtDtls/c:TxAmt/c:Amt", tx_where)
            if tx_fen == 0:
                raise StatementError(tx_where, "transaction amount is zero")
            parts_fen += tx_fen
            account, name = _party(tx, direction)
            tx_ref = _text(tx, "c:Refs/c:AcctSvcrRef")
            yield StatementEntry(
                position=f"{label}.{part}",
                booking_date=booking,
                value_date=value,
                direction=direction,
                amount_fen=tx_fen,
                end_to_end_id=_end_to_end_id(tx),
                # no reference at all: none is made up ("/1" would be the same
                # key for every such batch); the line is then keyed by position
                bank_reference=tx_ref or (f"{entry_ref}/{part}" if entry_ref else ""),
                counterparty_account=account,
                counterparty_name=name,
            )
        if parts_fen != amount_fen:
            raise StatementError(
                where,
                f"batch entry of {amount_fen} fen but its transactions add up to {parts_fen}",
            )


def _read_camt053(data: bytes, source: str) -> Statement:
    try:
        root = parse_xml_safely(data)
    except UnsafeXmlError as exc:
        raise StatementError(source, str(exc)) from None
    namespace = etree.QName(root).namespace
    if namespace != CAMT053_NAMESPACE or etree.QName(root).localname != "Document":
        raise StatementError(
            source,
            f"not a {CAMT053} statement: root element is "
            f"{etree.QName(root).localname} in namespace {namespace or '(none)'}",
        )
    validator = schema(CAMT053)
    if not validator.validate(root):
        first = validator.error_log[0]
        raise StatementError(
            f"{source} line {first.line}", f"does not match the {CAMT053} schema: {first.message}"
        )
    statements = root.findall("c:BkToCstmrStmt/c:Stmt", _NS)
    if len(statements) != 1:
        raise StatementError(source, f"{len(statements)} Stmt elements; expected exactly one")
    stmt = statements[0]
    currency = _text(stmt, "c:Acct/c:Ccy")
    if currency and currency != CURRENCY:
        raise StatementError(_where(source, stmt, "Acct"), f"account in {currency}, not CNY")
    opening = _signed_balance(stmt, "OPBD", source)
    if opening is None:  # some banks report the opening as "previously closed booked"
        opening = _signed_balance(stmt, "PRCD", source)
    closing = _signed_balance(stmt, "CLBD", source)
    if opening is None or closing is None:
        missing = "opening (OPBD)" if opening is None else "closing (CLBD)"
        raise StatementError(_where(source, stmt, "Stmt"), f"no {missing} balance")
    entries = tuple(_camt_entries(stmt, source))
    if len(entries) > statement_entries_max:
        raise StatementError(source, f"more than {statement_entries_max:,} entries")
    return Statement(
        format=CAMT053,
        account_id=_account_id(stmt),
        statement_id=_text(stmt, "c:Id"),
        opening_balance_fen=opening,
        closing_balance_fen=closing,
        entries=entries,
        sha256=hashlib.sha256(data).hexdigest(),
    )


# --- CSV -------------------------------------------------------------------------


def _csv_meta(stream: io.StringIO, source: str) -> tuple[dict[str, str], int]:
    """The `#key=value` lines before the header, and how many there were."""
    meta: dict[str, str] = {}
    count = 0
    while True:
        start = stream.tell()
        line = stream.readline()
        if not line.startswith("#"):
            stream.seek(start)  # the header: the CSV reader's
            return meta, count
        count += 1
        key, sep, value = line[1:].partition("=")
        key = key.strip()
        if not sep or key not in CSV_META_KEYS:
            raise StatementError(
                f"{source} line {count}",
                f"expected #key=value with key one of {', '.join(CSV_META_KEYS)}",
            )
        if key in meta:
            raise StatementError(f"{source} line {count}", f"{key} given twice")
        meta[key] = value.strip()


def _csv_balances(meta: dict[str, str], source: str) -> dict[str, int]:
    balances: dict[str, int] = {}
    for key in ("opening_balance_fen", "closing_balance_fen"):
        if key in meta:
            try:
                balances[key] = fen_text_to_fen(meta[key])
            except AmountError as exc:
                raise StatementError(f"{source} #{key}", str(exc)) from None
    if len(balances) == 1:
        raise StatementError(source, "give both #opening_balance_fen and #closing_balance_fen")
    return balances


def _csv_entries(stream: io.StringIO, source: str, header_line: int) -> list[StatementEntry]:
    """The header, at line `header_line` of the file, then each row as an entry.

    Lines are counted as the CSV reader reads them, broken at CR and LF only
    (never at U+2028 and the other breaks str.splitlines knows).
    """
    reader = csv.reader(stream, strict=True)
    entries: list[StatementEntry] = []
    try:
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != CSV_HEADER:
            raise StatementError(
                f"{source} line {header_line}",
                f"not a statement: the header must be {','.join(CSV_HEADER)}",
            )
        for row in reader:
            if not row:
                continue
            if len(entries) == statement_entries_max:
                raise StatementError(source, f"more than {statement_entries_max:,} entries")
            entries.append(_csv_entry(row, source, header_line - 1 + reader.line_num))
    except csv.Error as exc:
        raise StatementError(
            f"{source} line {header_line - 1 + reader.line_num}", str(exc)
        ) from None
    return entries


def _read_csv(data: bytes, source: str) -> Statement:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise StatementError(source, f"neither XML nor UTF-8 CSV: {exc}") from None
    stream = io.StringIO(text, newline="")
    del text  # the stream holds its own copy
    meta, meta_lines = _csv_meta(stream, source)
    balances = _csv_balances(meta, source)
    entries = _csv_entries(stream, source, meta_lines + 1)
    return Statement(
        format=CSV_FORMAT,
        account_id=meta.get("account") or None,
        statement_id="",
        opening_balance_fen=balances.get("opening_balance_fen"),
        closing_balance_fen=balances.get("closing_balance_fen"),
        entries=tuple(entries),
        sha256=hashlib.sha256(data).hexdigest(),
    )


def _csv_date(text: str, where: str, field: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise StatementError(where, f"{field} {text!r} is not a date (YYYY-MM-DD)") from None


def _csv_entry(row: list[str], source: str, line: int) -> StatementEntry:
    where = f"{source} line {line}"
    if len(row) != len(CSV_HEADER):
        raise StatementError(where, f"{len(row)} fields, expected {len(CSV_HEADER)}")
    fields = dict(zip(CSV_HEADER, (value.strip() for value in row), strict=True))
    for field, value in fields.items():
        problem = unfit_character(value)
        if problem is not None:
            raise StatementError(f"{where} {field}", problem)
    direction = fields["direction"]
    if direction not in (DEBIT, CREDIT):
        raise StatementError(where, f"direction {direction!r} is not DEBIT or CREDIT")
    try:
        amount_fen = fen_text_to_fen(fields["amount_fen"])
    except AmountError as exc:
        raise StatementError(f"{where} amount_fen", str(exc)) from None
    if amount_fen <= 0:
        raise StatementError(where, f"amount_fen {amount_fen} must be positive")
    value_text = fields["value_date"]
    return StatementEntry(
        position=f"line {line}",
        booking_date=_csv_date(fields["booking_date"], where, "booking_date"),
        value_date=_csv_date(value_text, where, "value_date") if value_text else None,
        direction=direction,
        amount_fen=amount_fen,
        end_to_end_id=fields["end_to_end_id"],
        bank_reference=fields["bank_reference"],
        counterparty_account=fields["counterparty_account"],
        counterparty_name=fields["counterparty_name"],
    )
