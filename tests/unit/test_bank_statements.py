"""Bank statements: both formats read exactly, and every refusal says what and where."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.bankfiles import CREDIT, DEBIT, StatementEntry, StatementError, read_statement
from ledger.bankfiles.simulate import camt053_statement, csv_statement
from ledger.limits import statement_bytes_max, statement_entries_max, statement_total_fen_max

FUND_ACCOUNT = "6222020200112233445"
AT = datetime(2026, 11, 23, 18, 0, tzinfo=timezone(timedelta(hours=8)))
BOOKED = date(2026, 11, 23)


def entry(
    e2e: str, amount_fen: int, direction: str = DEBIT, ref: str = "", name: str = "H"
) -> StatementEntry:
    return StatementEntry(
        position="",
        booking_date=BOOKED,
        value_date=BOOKED,
        direction=direction,
        amount_fen=amount_fen,
        end_to_end_id=e2e,
        bank_reference=ref or f"REF-{e2e}-{amount_fen}",
        counterparty_account="6217000011112222",
        counterparty_name=name,
    )


ENTRIES = [
    entry("MS20261122H1", 1029),
    entry("MS20261122H2", 1, name="市第一人民医院"),
    entry("MS20261122H1", 1029, CREDIT),
    entry("", 2500, CREDIT),
]


def _fields(e: StatementEntry) -> tuple[object, ...]:
    return (
        e.booking_date,
        e.value_date,
        e.direction,
        e.amount_fen,
        e.end_to_end_id,
        e.bank_reference,
        e.counterparty_account,
        e.counterparty_name,
    )


def camt(entries=ENTRIES, **kw) -> bytes:
    kw.setdefault("account_id", FUND_ACCOUNT)
    kw.setdefault("opening_balance_fen", 1_000_000)
    return camt053_statement(entries=entries, created_at=AT, **kw)


def test_camt053_entries_balances_and_account_are_read_exactly() -> None:
    statement = read_statement(camt(), source="s.xml", fund_account_id=FUND_ACCOUNT)
    assert statement.format == "camt.053.001.02"
    assert statement.account_id == FUND_ACCOUNT
    assert statement.opening_balance_fen == 1_000_000
    assert statement.closing_balance_fen == 1_000_000 - 1029 - 1 + 1029 + 2500
    assert [_fields(e) for e in statement.entries] == [_fields(e) for e in ENTRIES]
    assert [e.position for e in statement.entries] == ["Ntry 1", "Ntry 2", "Ntry 3", "Ntry 4"]


def test_csv_entries_and_balances_are_read_exactly() -> None:
    data = csv_statement(ENTRIES, account_id=FUND_ACCOUNT, opening_balance_fen=-500)
    statement = read_statement(data, source="s.csv", fund_account_id=FUND_ACCOUNT)
    assert statement.format == "csv" and statement.balances_checked
    assert statement.opening_balance_fen == -500
    assert [_fields(e) for e in statement.entries] == [_fields(e) for e in ENTRIES]


def test_plain_csv_without_account_or_balances_is_read_but_not_balance_checked() -> None:
    statement = read_statement(csv_statement(ENTRIES), source="s.csv", fund_account_id="X")
    assert not statement.balances_checked and statement.account_id is None
    assert len(statement.entries) == 4


def test_the_format_is_chosen_by_content_not_by_name() -> None:
    as_xml = read_statement(camt(), source="statement.csv", fund_account_id=FUND_ACCOUNT)
    as_csv = read_statement(csv_statement(ENTRIES), source="statement.xml", fund_account_id="X")
    assert (as_xml.format, as_csv.format) == ("camt.053.001.02", "csv")


def test_the_same_file_is_recognised_by_its_digest() -> None:
    first = read_statement(camt(), source="a", fund_account_id=FUND_ACCOUNT)
    again = read_statement(camt(), source="b", fund_account_id=FUND_ACCOUNT)
    other = read_statement(camt(ENTRIES[:1]), source="c", fund_account_id=FUND_ACCOUNT)
    assert first.sha256 == again.sha256 != other.sha256


def test_batch_booking_is_split_into_its_transactions() -> None:
    data = camt([entry("MS20261122H1", 300)]).decode()
    # Turn the single transaction into two of 100 + 200 under one entry.
    tx = data[data.index("<TxDtls>") : data.index("</TxDtls>") + len("</TxDtls>")]
    parts = [
        tx.replace("MS20261122H1", e2e)
        .replace("<Refs>", f"<Refs><AcctSvcrRef>R{i}</AcctSvcrRef>")
        .replace("</Refs>", f'</Refs><AmtDtls><TxAmt><Amt Ccy="CNY">{amt}</Amt></TxAmt></AmtDtls>')
        for i, (e2e, amt) in enumerate([("MS20261122H1", "1.00"), ("MS20261122H2", "2.00")])
    ]
    statement = read_statement(
        data.replace(tx, "".join(parts)).encode(), source="s", fund_account_id=FUND_ACCOUNT
    )
    assert [(e.end_to_end_id, e.amount_fen, e.bank_reference) for e in statement.entries] == [
        ("MS20261122H1", 100, "R0"),
        ("MS20261122H2", 200, "R1"),
    ]


def _batch_of(amounts: list[str], *, with_refs: bool) -> bytes:
    data = camt([entry("MS20261122H1", sum(int(a.replace(".", "")) for a in amounts))]).decode()
    if not with_refs:
        data = re.sub(r"<AcctSvcrRef>[^<]*</AcctSvcrRef>", "", data)
    tx = data[data.index("<TxDtls>") : data.index("</TxDtls>") + len("</TxDtls>")]
    parts = [
        tx.replace("MS20261122H1", f"MS20261122H{i + 1}").replace(
            "</Refs>", f'</Refs><AmtDtls><TxAmt><Amt Ccy="CNY">{amt}</Amt></TxAmt></AmtDtls>'
        )
        for i, amt in enumerate(amounts)
    ]
    return data.replace(tx, "".join(parts)).encode()


def test_a_batch_without_bank_references_makes_none_up() -> None:
    # "/1", "/2" would be the same keys for every such batch of a statement
    statement = read_statement(
        _batch_of(["1.00", "2.00"], with_refs=False), source="s", fund_account_id=FUND_ACCOUNT
    )
    assert [(e.amount_fen, e.bank_reference) for e in statement.entries] == [(100, ""), (200, "")]


def test_a_zero_transaction_in_a_batch_is_refused() -> None:
    with pytest.raises(StatementError, match="transaction amount is zero"):
        read_statement(
            _batch_of(["1.00", "0.00"], with_refs=True), source="s", fund_account_id=FUND_ACCOUNT
        )


REFUSALS_XML = [
    ("another account", lambda: camt(account_id="999"), "not the fund's account"),
    (
        "closing off by one fen",
        lambda: camt(closing_balance_fen_override=1_000_000 - 1029 - 1 + 1029 + 2500 + 1),
        "does not add up",
    ),
    ("not XML at all", lambda: b"<Document><unclosed>", "not well-formed"),
    (
        "another message",
        lambda: camt().replace(b"camt.053.001.02", b"camt.054.001.02"),
        "not a camt.053.001.02 statement",
    ),
    ("a fraction of a fen", lambda: camt().replace(b">10.29<", b">10.295<"), "line"),
    (
        "a currency other than CNY",
        lambda: camt().replace(b'Ccy="CNY">10.29', b'Ccy="EUR">10.29'),
        "EUR",
    ),
    (
        "a pending entry",
        lambda: camt().replace(b"<Sts>BOOK</Sts>", b"<Sts>PDNG</Sts>", 1),
        "only booked entries",
    ),
    (
        "no closing balance",
        lambda: camt().replace(b"<Cd>CLBD</Cd>", b"<Cd>ITBD</Cd>"),
        "no closing (CLBD) balance",
    ),
]


@pytest.mark.parametrize(
    ("name", "make", "message"), REFUSALS_XML, ids=[r[0] for r in REFUSALS_XML]
)
def test_camt053_refusals_say_what_and_where(name: str, make, message: str) -> None:
    with pytest.raises(StatementError) as caught:
        read_statement(make(), source="bank.xml", fund_account_id=FUND_ACCOUNT)
    assert message in str(caught.value)
    assert caught.value.where.startswith("bank.xml")


def test_camt053_amount_with_a_fraction_of_a_fen_is_refused_by_the_amount_rule() -> None:
    # The schema allows up to five decimals; a fraction of a fen is no sum of money.
    data = camt().replace(b">10.29<", b">10.295<")
    with pytest.raises(StatementError, match="not a whole number of fen"):
        read_statement(data, source="bank.xml", fund_account_id=FUND_ACCOUNT)


@pytest.mark.parametrize("written", [b"10.290", b"10.29000", b"10.2900"])
def test_camt053_amounts_with_trailing_zero_decimals_are_read_exactly(written: bytes) -> None:
    """The camt.053 schema allows five decimals: "18.150" is 18.15 yuan exactly."""
    data = camt().replace(b">10.29<", b">" + written + b"<")
    assert data != camt()
    statement = read_statement(data, source="bank.xml", fund_account_id=FUND_ACCOUNT)
    assert [e.amount_fen for e in statement.entries] == [e.amount_fen for e in ENTRIES]


def _csv(text: str) -> bytes:
    return text.encode()


HEADER = (
    "booking_date,value_date,direction,amount_fen,end_to_end_id,bank_reference,"
    "counterparty_account,counterparty_name\n"
)
REFUSALS_CSV = [
    ("wrong header", _csv("date,amount\n2026-11-23,5\n"), "line 1", "header must be"),
    ("bad direction", _csv(HEADER + "2026-11-23,,OUT,5,E,R,A,N\n"), "line 2", "direction"),
    ("decimal fen", _csv(HEADER + "2026-11-23,,DEBIT,5.5,E,R,A,N\n"), "line 2", "amount_fen"),
    ("zero amount", _csv(HEADER + "2026-11-23,,DEBIT,0,E,R,A,N\n"), "line 2", "positive"),
    ("bad date", _csv(HEADER + "23.11.2026,,DEBIT,5,E,R,A,N\n"), "line 2", "booking_date"),
    ("short row", _csv(HEADER + "2026-11-23,,DEBIT,5\n"), "line 2", "4 fields"),
    ("another account", _csv("#account=999\n" + HEADER), "s.csv", "not the fund's account"),
    ("only one balance", _csv("#opening_balance_fen=5\n" + HEADER), "s.csv", "both"),
    ("unknown meta", _csv("#acount=1\n" + HEADER), "line 1", "key one of"),
    (
        "does not add up",
        _csv(
            "#opening_balance_fen=100\n#closing_balance_fen=90\n"
            + HEADER
            + "2026-11-23,,DEBIT,5,E,R,A,N\n"
        ),
        "s.csv",
        "does not add up",
    ),
    ("binary", b"\x00\xff\xfe garbage", "s.csv", "UTF-8"),
    # NUL reached the database ("database: ..." and exit 1) before.
    ("NUL", _csv(HEADER + "2026-11-23,,DEBIT,5,E,R\x00,A,N\n"), "line 2 bank_reference", "U+0000"),
    (
        "a control character",
        _csv(HEADER + "2026-11-23,,DEBIT,5,E,R,A,N\n2026-11-23,,DEBIT,5,E\x1b,R,A,N\n"),
        "line 3 end_to_end_id",
        "U+001B",
    ),
    # str.splitlines() broke the line at U+2028 and counted lines wrong after it.
    (
        "U+2028",
        _csv(HEADER + "2026-11-23,,DEBIT,5,E,R,A,N\u2028x\n2026-11-23,,DEBIT,0,E,R,A,N\n"),
        "line 2 counterparty_name",
        "U+2028",
    ),
    (
        "a quoted line break",
        _csv(HEADER + '2026-11-23,,DEBIT,5,E,R,A,"N\nN"\n'),
        "line 3 counterparty_name",
        "U+000A",
    ),
    (
        "amounts past the limit",
        _csv(
            HEADER
            + f"2026-11-23,,DEBIT,{statement_total_fen_max},E,R,A,N\n"
            + "2026-11-23,,CREDIT,1,E,R,A,N\n"
        ),
        "line 3",
        "add up to more than",
    ),
]


@pytest.mark.parametrize(
    ("name", "data", "where", "message"), REFUSALS_CSV, ids=[r[0] for r in REFUSALS_CSV]
)
def test_csv_refusals_say_what_and_where(name: str, data: bytes, where: str, message: str) -> None:
    with pytest.raises(StatementError) as caught:
        read_statement(data, source="s.csv", fund_account_id=FUND_ACCOUNT)
    assert where in caught.value.where
    assert message in str(caught.value)


amounts = st.integers(min_value=1, max_value=10**12)
entries_strategy = st.lists(
    st.builds(
        entry,
        st.sampled_from(["", "MS20261122H1", "MS20261122H2", "X"]),
        amounts,
        st.sampled_from([DEBIT, CREDIT]),
    ),
    max_size=12,
)


@given(entries_strategy, st.integers(-(10**12), 10**12))
def test_generated_statements_read_back_identically_in_both_formats(entries, opening) -> None:
    for data in (
        camt(entries, opening_balance_fen=opening),
        csv_statement(entries, account_id=FUND_ACCOUNT, opening_balance_fen=opening),
    ):
        statement = read_statement(data, source="s", fund_account_id=FUND_ACCOUNT)
        assert [_fields(e) for e in statement.entries] == [_fields(e) for e in entries]
        assert statement.closing_balance_fen == opening + sum(e.signed_fen for e in entries)


def test_camt053_account_given_as_an_iban_is_compared_without_spaces() -> None:
    iban = "CN12BANK0000000000001234"
    data = re.sub(
        rb"<Acct>\s*<Id>\s*<Othr>\s*<Id>[^<]*</Id>\s*</Othr>",
        f"<Acct><Id><IBAN>{iban}</IBAN>".encode(),
        camt(),
        count=1,
    )
    statement = read_statement(
        data, source="s.xml", fund_account_id="cn12 bank 0000 0000 0000 1234"
    )
    assert statement.account_id == iban


def test_camt053_with_two_statements_is_refused() -> None:
    data = camt().decode()
    stmt = data[data.index("<Stmt>") : data.index("</Stmt>") + len("</Stmt>")]
    doubled = data.replace(stmt, stmt + stmt).encode()
    with pytest.raises(StatementError, match="expected exactly one"):
        read_statement(doubled, source="s.xml", fund_account_id=FUND_ACCOUNT)


def test_line_numbers_after_a_meta_line_and_crlf_count_physical_lines() -> None:
    data = _csv("#account=" + FUND_ACCOUNT + "\r\n" + HEADER.replace("\n", "\r\n"))
    data += b"2026-11-23,,DEBIT,5,E,R,A,N\r\n2026-11-23,,DEBIT,5,E,R,A\r\n"
    with pytest.raises(StatementError) as caught:
        read_statement(data, source="s.csv", fund_account_id=FUND_ACCOUNT)
    assert caught.value.where == "s.csv line 4"


def test_a_statement_past_the_entry_limit_is_refused_while_it_is_read() -> None:
    row = b"2026-11-23,,DEBIT,5,E,R,A,N\n"
    data = HEADER.encode() + row * (statement_entries_max + 1)
    with pytest.raises(StatementError, match=f"more than {statement_entries_max:,} entries"):
        read_statement(data, source="s.csv", fund_account_id=FUND_ACCOUNT)
    fits = read_statement(data[: -len(row)], source="s.csv", fund_account_id=FUND_ACCOUNT)
    assert len(fits.entries) == statement_entries_max


def test_camt053_amounts_past_the_limit_are_refused_at_the_entry() -> None:
    big = [entry("MS1", statement_total_fen_max // 2), entry("MS2", statement_total_fen_max // 2)]
    read_statement(camt(big), source="bank.xml", fund_account_id=FUND_ACCOUNT)
    with pytest.raises(StatementError, match="add up to more than") as caught:
        read_statement(
            camt([*big, entry("MS3", 1)]), source="bank.xml", fund_account_id=FUND_ACCOUNT
        )
    assert caught.value.where == "bank.xml Ntry 3"


def test_a_statement_file_is_read_no_further_than_the_limit(tmp_path) -> None:
    """/dev/zero ended in a MemoryError; any file past the limit is refused."""
    from ledger.bankfiles.statement import read_statement_file

    with pytest.raises(StatementError, match="larger than"):
        read_statement_file(Path("/dev/zero"))
    exact = tmp_path / "exact.csv"
    exact.write_bytes(b"x" * statement_bytes_max)
    assert len(read_statement_file(exact)) == statement_bytes_max
    with pytest.raises(StatementError, match="larger than"):
        read_statement(b"x" * (statement_bytes_max + 1), source="s", fund_account_id="F")
