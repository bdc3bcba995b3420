"""Payout files: netting with carried receivables, the CSV contract, pain.001."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from ledger.bankfiles import DebtorAccount, fen_to_yuan_text, schema, yuan_text_to_fen
from ledger.bankfiles.amounts import AmountError
from ledger.payouts import (
    PAYOUTS_CSV_HEADER,
    InstitutionDayAmount,
    net_payouts,
    payout_files,
    payouts_csv,
    payouts_pain001,
    write_payout_files,
)

DAY = date(2026, 11, 22)
SHANGHAI = timezone(timedelta(hours=8))
CREATED_AT = datetime(2026, 11, 23, 9, 30, tzinfo=SHANGHAI)
FUND = DebtorAccount(
    account_id="6222020200112233445",
    owner_name="Pooling region 330399 medical fund",
    agent_id="102331000016",
)
NS = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.001.001.03"}


def day(code: str, pooled: int, serious: int = 0, account: int = 0, n: int = 1):
    return InstitutionDayAmount(code, f"Hospital {code}", pooled, serious, account, n)


@pytest.mark.parametrize(
    ("fen", "text"),
    [
        (0, "0.00"),
        (1, "0.01"),
        (29, "0.29"),
        (100, "1.00"),
        (123456789, "1234567.89"),
        (-5, "-0.05"),
    ],
)
def test_fen_to_yuan_text_has_exactly_two_decimals(fen: int, text: str) -> None:
    assert fen_to_yuan_text(fen) == text


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("0.29", 29),
        ("12", 1200),
        ("12.3", 1230),
        (" 1.05 ", 105),
        ("18.150", 1815),  # decimals past the second are allowed when they are zero
        ("5442.09000", 544209),
    ],
)
def test_yuan_text_is_parsed_exactly(text: str, fen: int) -> None:
    assert yuan_text_to_fen(text) == fen


@pytest.mark.parametrize(
    "text", ["1.234", "18.155", "1.00001", "-1.00", "1e3", "", "1,00", "NaN", "+1.00", "1."]
)
def test_yuan_text_refuses_anything_but_a_plain_whole_number_of_fen(text: str) -> None:
    with pytest.raises(AmountError):
        yuan_text_to_fen(text)


@given(st.integers(min_value=0, max_value=10**15))
def test_yuan_text_round_trips(fen: int) -> None:
    assert yuan_text_to_fen(fen_to_yuan_text(fen)) == fen


def test_netting_pays_positive_nets_and_carries_negative_ones() -> None:
    result = net_payouts(
        DAY,
        [day("H2", 5000, 100, 20), day("H1", 900), day("H3", -700), day("H4", 0)],
        {"H1": 1000, "H5": 300},
    )
    paid = {p.institution_code: p.amount_fen for p in result.payouts}
    assert paid == {"H2": 5120}  # H1: 900 - 1000 owed < 0; H3 negative; H4 zero
    assert result.receivables_fen == {"H1": 100, "H3": 700, "H5": 300}
    assert [p.end_to_end_id for p in result.payouts] == ["MS20261122H2"]


def test_receivable_is_deducted_from_the_next_positive_payout() -> None:
    result = net_payouts(DAY, [day("H1", 5000, 200, 300)], {"H1": 1500})
    (payout,) = result.payouts
    assert payout.amount_fen == 4000 and payout.offset_fen == 1500
    assert result.receivables_fen == {}


@given(
    st.dictionaries(
        st.sampled_from([f"H{i}" for i in range(8)]),
        st.tuples(*(st.integers(-(10**9), 10**9) for _ in range(3))),
    ),
    st.dictionaries(st.sampled_from([f"H{i}" for i in range(10)]), st.integers(0, 10**9)),
)
def test_netting_conserves_money(
    amounts: dict[str, tuple[int, int, int]], receivables: dict[str, int]
) -> None:
    days = [day(code, *parts) for code, parts in amounts.items()]
    result = net_payouts(DAY, days, receivables)
    assert all(p.amount_fen > 0 for p in result.payouts)
    assert all(v > 0 for v in result.receivables_fen.values())
    before = sum(d.amount_fen for d in days) - sum(receivables.values())
    after = result.total_fen - sum(result.receivables_fen.values())
    assert before == after
    paid_codes = {p.institution_code for p in result.payouts}
    assert not paid_codes & set(result.receivables_fen)


def test_payouts_csv_has_the_contract_header_and_one_row_per_payout() -> None:
    result = net_payouts(DAY, [day("H33039900001", 12345, 678, 90, n=3)], {})
    rows = list(csv.reader(io.StringIO(payouts_csv(result.payouts))))
    assert ",".join(rows[0]) == (
        "business_date,end_to_end_id,institution_code,institution_name,amount_fen,"
        "pooled_fund_fen,serious_illness_fen,individual_account_fen,settlement_count"
    )
    assert tuple(rows[0]) == PAYOUTS_CSV_HEADER
    assert rows[1] == [
        "2026-11-22",
        "MS20261122H33039900001",
        "H33039900001",
        "Hospital H33039900001",
        "13113",
        "12345",
        "678",
        "90",
        "3",
    ]


def _pain(amounts: list[InstitutionDayAmount]) -> etree._Element:
    result = net_payouts(DAY, amounts, {})
    xml = payouts_pain001(DAY, result.payouts, debtor=FUND, created_at=CREATED_AT)
    return etree.fromstring(xml)


def test_pain001_validates_against_the_official_schema() -> None:
    root = _pain([day(f"H3303990000{i}", 100 * i + 29, 7, 1) for i in range(1, 6)])
    validator = schema("pain.001.001.03")
    assert validator.validate(root), validator.error_log


def test_pain001_with_an_iban_debtor_and_a_bic_validates() -> None:
    debtor = DebtorAccount("CN12BANK0000000000001234", "Fund", agent_bic="ICBKCNBJXXX")
    result = net_payouts(DAY, [day("H1", 1)], {})
    xml = payouts_pain001(DAY, result.payouts, debtor=debtor, created_at=CREATED_AT)
    root = etree.fromstring(xml)
    assert schema("pain.001.001.03").validate(root)
    assert root.findtext(".//p:DbtrAcct/p:Id/p:IBAN", namespaces=NS) == debtor.account_id


def test_pain001_carries_ids_amounts_and_control_sums_exactly() -> None:
    root = _pain([day("H1", 1029), day("H2", 1, 0, 0), day("H3", 99_999_999_99)])
    assert root.findtext("p:CstmrCdtTrfInitn/p:GrpHdr/p:NbOfTxs", namespaces=NS) == "3"
    assert root.findtext("p:CstmrCdtTrfInitn/p:GrpHdr/p:CtrlSum", namespaces=NS) == ("100000010.29")
    assert root.findtext(".//p:GrpHdr/p:CreDtTm", namespaces=NS) == "2026-11-23T09:30:00+08:00"
    txs = root.findall(".//p:CdtTrfTxInf", NS)
    got = [
        (
            tx.findtext("p:PmtId/p:EndToEndId", namespaces=NS),
            tx.find("p:Amt/p:InstdAmt", NS).text,
            tx.find("p:Amt/p:InstdAmt", NS).get("Ccy"),
        )
        for tx in txs
    ]
    assert got == [
        ("MS20261122H1", "10.29", "CNY"),
        ("MS20261122H2", "0.01", "CNY"),
        ("MS20261122H3", "99999999.99", "CNY"),
    ]
    assert root.findtext(".//p:DbtrAcct/p:Id/p:Othr/p:Id", namespaces=NS) == FUND.account_id


def test_pain001_is_deterministic_for_an_injected_clock() -> None:
    result = net_payouts(DAY, [day("H1", 500), day("H2", 700)], {})
    first = payouts_pain001(DAY, result.payouts, debtor=FUND, created_at=CREATED_AT)
    again = payouts_pain001(DAY, result.payouts, debtor=FUND, created_at=CREATED_AT)
    later = payouts_pain001(
        DAY, result.payouts, debtor=FUND, created_at=datetime(2026, 11, 24, tzinfo=UTC)
    )
    assert first == again and first != later


def test_pain001_refuses_a_naive_clock() -> None:
    result = net_payouts(DAY, [day("H1", 500)], {})
    with pytest.raises(ValueError, match="timezone"):
        payouts_pain001(DAY, result.payouts, debtor=FUND, created_at=datetime(2026, 11, 23))


def test_write_payout_files_names_and_contents(tmp_path) -> None:
    result = net_payouts(DAY, [day("H1", 500)], {})
    files = payout_files(DAY, result.payouts, debtor=FUND, created_at=CREATED_AT)
    csv_path, xml_path = write_payout_files(tmp_path, files)
    assert csv_path.name == "payouts-20261122.csv"
    assert xml_path is not None and xml_path.name == "payouts-20261122.xml"
    assert schema("pain.001.001.03").validate(etree.parse(str(xml_path)))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "payouts-20261122.csv",
        "payouts-20261122.xml",
    ]


def test_a_day_without_payouts_writes_a_header_only_csv_and_no_xml(tmp_path) -> None:
    files = payout_files(DAY, (), debtor=FUND, created_at=CREATED_AT)
    csv_path, xml_path = write_payout_files(tmp_path, files)
    assert xml_path is None
    assert csv_path.read_text().splitlines() == [",".join(PAYOUTS_CSV_HEADER)]


def test_payouts_csv_writes_an_institution_name_no_spreadsheet_runs_as_a_formula() -> None:
    """The same escaping as the reconciliation CSV (one helper serves both)."""
    amounts = [
        InstitutionDayAmount("H1", '=HYPERLINK("http://x")', 100, 0, 0, 1),
        InstitutionDayAmount("H2", "@SUM(A1)", 200, 0, 0, 1),
        InstitutionDayAmount("H3", "市第一人民医院", 300, 0, 0, 1),
    ]
    rows = list(csv.reader(io.StringIO(payouts_csv(net_payouts(DAY, amounts, {}).payouts))))
    assert [r[3] for r in rows[1:]] == ['\'=HYPERLINK("http://x")', "'@SUM(A1)", "市第一人民医院"]
    assert [r[4] for r in rows[1:]] == ["100", "200", "300"]


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x0b", "\x85", "\u2028", "\ufffe"])
def test_pain001_refuses_a_creditor_name_it_cannot_carry_naming_the_payout(char: str) -> None:
    amounts = [day("H1", 100), InstitutionDayAmount("H2", f"Bad{char}Name", 200, 0, 0, 1)]
    result = net_payouts(DAY, amounts, {})
    with pytest.raises(
        ValueError, match=f"'MS20261122H2': creditor name: contains U\\+{ord(char):04X}"
    ):
        payouts_pain001(DAY, result.payouts, debtor=FUND, created_at=CREATED_AT)


def test_pain001_refuses_a_fund_name_it_cannot_carry() -> None:
    debtor = DebtorAccount(FUND.account_id, "Fund\x1b[31m", agent_id="102331000016")
    result = net_payouts(DAY, [day("H1", 100)], {})
    with pytest.raises(ValueError, match="the fund's name: contains U\\+001B"):
        payouts_pain001(DAY, result.payouts, debtor=debtor, created_at=CREATED_AT)


def test_pain001_that_the_schema_refuses_is_not_returned() -> None:
    """A malformed BIC would be refused by the bank: it is refused here, before posting."""
    debtor = DebtorAccount(FUND.account_id, "Fund", agent_bic="NOT A BIC")
    result = net_payouts(DAY, [day("H1", 100)], {})
    with pytest.raises(ValueError, match=r"not a valid pain\.001\.001\.03 file: .*BIC"):
        payouts_pain001(DAY, result.payouts, debtor=debtor, created_at=CREATED_AT)


def test_payout_files_are_the_same_bytes_when_built_again() -> None:
    result = net_payouts(DAY, [day("H1", 500), day("H2", 700)], {})
    first = payout_files(DAY, result.payouts, debtor=FUND, created_at=CREATED_AT)
    again = payout_files(DAY, result.payouts, debtor=FUND, created_at=CREATED_AT)
    assert first == again and first.xml is not None
    assert first.csv == payouts_csv(result.payouts).encode("utf-8")
