"""The reconciliation report: the CSV contract and a self-contained, escaped HTML page."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime

from lxml import etree, html

from ledger.bankfiles import CREDIT, DEBIT, StatementEntry
from ledger.recon import ExpectedPayout, match_statement
from ledger.recon_report import (
    RECON_CSV_HEADER,
    ReportContext,
    recon_csv,
    recon_html,
    write_recon_files,
)

DAY = date(2026, 11, 22)
CONTEXT = ReportContext(
    statement_name="stmt<1>.xml",
    statement_format="camt.053.001.02",
    account_id="6222020200112233445",
    balances_checked=True,
    generated_at=datetime(2026, 11, 23, 10, 0, tzinfo=UTC),
)


def entry(e2e: str, fen: int, direction: str = DEBIT, ref: str = "R") -> StatementEntry:
    return StatementEntry("", DAY, None, direction, fen, e2e, ref, "", "")


def sample():
    expected = [
        ExpectedPayout("MS20261122H1", "H1", 10029),
        ExpectedPayout("MS20261122H2", "H2", 500),
        ExpectedPayout("MS20261122H3", "H3", 700),
    ]
    entries = [
        entry("MS20261122H1", 10029, ref="B1"),
        entry("MS20261122H2", 400, ref='<script>alert("x")</script>'),
        entry("MS20261122H1", 10029, CREDIT, ref="B3"),
        entry("", 12, ref="FEE"),
    ]
    return match_statement(DAY, expected, entries)


def test_recon_csv_has_the_contract_header_and_signed_bank_amounts() -> None:
    rows = list(csv.reader(io.StringIO(recon_csv(sample()))))
    assert ",".join(rows[0]) == (
        "business_date,end_to_end_id,institution_code,expected_fen,bank_fen,status,bank_reference"
    )
    assert tuple(rows[0]) == RECON_CSV_HEADER
    assert rows[1:] == [
        ["2026-11-22", "MS20261122H1", "H1", "10029", "10029", "MATCHED", "B1"],
        [
            "2026-11-22",
            "MS20261122H2",
            "H2",
            "500",
            "400",
            "AMOUNT_MISMATCH",
            '<script>alert("x")</script>',
        ],
        ["2026-11-22", "MS20261122H3", "H3", "700", "", "MISSING_IN_BANK", ""],
        ["2026-11-22", "MS20261122H1", "H1", "", "-10029", "RETURNED", "B3"],
        ["2026-11-22", "", "", "", "12", "UNEXPECTED_IN_BANK", "FEE"],
    ]


def test_html_is_self_contained_escaped_and_has_totals_and_an_svg_chart() -> None:
    page = recon_html(sample(), CONTEXT)
    doc = html.fromstring(page)
    # Nothing loaded from anywhere: no scripts, links, images or external URLs.
    assert not doc.xpath("//script | //link | //img | //iframe | //object")
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page
    # Statement text is data: the bank reference and file name are escaped.
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "stmt&lt;1&gt;.xml" in page
    totals = {
        tr.xpath("string(td[1])").strip(): tr.xpath("string(td[2])").strip()
        for tr in doc.xpath("//table[1]//tr[td]")
    }
    assert totals == {
        "MATCHED": "1",
        "AMOUNT_MISMATCH": "1",
        "MISSING_IN_BANK": "1",
        "UNEXPECTED_IN_BANK": "1",
        "DUPLICATE_IN_BANK": "0",
        "RETURNED": "1",
    }
    svg = page[page.index("<svg") : page.index("</svg>") + len("</svg>")]
    chart = etree.fromstring(svg.encode())
    labels = chart.xpath("//s:text/text()", namespaces={"s": "http://www.w3.org/2000/svg"})
    assert {"H1", "H2", "H3"} <= set(labels)
    assert "100.29 / 0.00" in labels  # H1 expected 100.29, net paid 0 after the return


def test_chart_keeps_institutions_with_exceptions_when_not_all_fit() -> None:
    expected = [ExpectedPayout(f"MS20261122H{i:04d}", f"H{i:04d}", 10_000 + i) for i in range(500)]
    entries = [entry(p.end_to_end_id, p.expected_fen) for p in expected[1:]]
    page = recon_html(match_statement(DAY, expected, entries), CONTEXT)
    assert "Showing 60 of 500 institutions" in page
    assert ">H0000<" in page  # the one missing payout is charted even though it is small


def test_write_recon_files_names(tmp_path) -> None:
    csv_path, html_path = write_recon_files(tmp_path, sample(), CONTEXT)
    assert (csv_path.name, html_path.name) == ("recon-20261122.csv", "recon-20261122.html")
    assert html_path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_statement_text_cannot_become_a_spreadsheet_formula() -> None:
    recon = match_statement(
        DAY, [], [entry('=HYPERLINK("http://x")', 5, ref="@SUM(A1)"), entry("E2E", 6, ref="-1")]
    )
    rows = list(csv.reader(io.StringIO(recon_csv(recon))))
    assert [(r[1], r[6]) for r in rows[1:]] == [
        ('\'=HYPERLINK("http://x")', "'@SUM(A1)"),
        ("E2E", "'-1"),
    ]
