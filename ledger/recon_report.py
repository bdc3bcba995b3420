"""The reconciliation report finance staff read: recon-YYYYMMDD.csv and .html.

The CSV is for spreadsheets and scripts (the header is a contract). The HTML
is for a person: one self-contained file (no scripts, fonts or images from
anywhere), totals by status, a bar chart of expected against paid per
institution as inline SVG, and the list of exceptions to work through. All
text from the statement is escaped: a bank reference is data, never markup.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from html import escape
from pathlib import Path

from ledger.bankfiles.amounts import fen_to_yuan_text
from ledger.bankfiles.files import spreadsheet_csv, write_atomically
from ledger.recon import MATCHED, Reconciliation

RECON_CSV_HEADER = (
    "business_date",
    "end_to_end_id",
    "institution_code",
    "expected_fen",
    "bank_fen",
    "status",
    "bank_reference",
)
# Limits that keep the page readable (and small) on a day of 5,000 payouts.
chart_institutions_max = 60
html_exception_rows_max = 2_000

_STATUS_COLOURS = {
    "MATCHED": "#2e7d32",
    "AMOUNT_MISMATCH": "#c62828",
    "MISSING_IN_BANK": "#ef6c00",
    "UNEXPECTED_IN_BANK": "#6a1b9a",
    "DUPLICATE_IN_BANK": "#ad1457",
    "RETURNED": "#1565c0",
}


@dataclass(frozen=True, slots=True)
class ReportContext:
    """Where the figures came from, printed at the top of the page."""

    statement_name: str
    statement_format: str
    account_id: str
    balances_checked: bool
    generated_at: datetime


def recon_file_names(business_date: date) -> tuple[str, str]:
    stem = f"recon-{business_date:%Y%m%d}"
    return f"{stem}.csv", f"{stem}.html"


def recon_csv(recon: Reconciliation) -> str:
    day = recon.business_date.isoformat()
    return spreadsheet_csv(
        RECON_CSV_HEADER,
        (
            (
                day,
                line.end_to_end_id,
                line.institution_code,
                "" if line.expected_fen is None else line.expected_fen,
                "" if line.bank_fen is None else line.bank_fen,
                line.status,
                line.bank_reference,
            )
            for line in recon.lines
        ),
    )


def _yuan(amount_fen: int) -> str:
    text = fen_to_yuan_text(amount_fen)
    sign = "-" if text.startswith("-") else ""
    whole, _, fraction = text.lstrip("-").partition(".")
    return f"{sign}{int(whole):,}.{fraction}"


def _chart_rows(recon: Reconciliation) -> tuple[list[tuple[str, int, int]], int]:
    per_institution = recon.by_institution()
    exception_codes = {
        line.institution_code
        for line in recon.lines
        if line.status != MATCHED and line.institution_code
    }
    # Institutions with exceptions first, then the largest amounts: what a
    # reader needs to see when not every institution fits.
    ordered = sorted(
        per_institution.items(),
        key=lambda item: (item[0] not in exception_codes, -max(item[1]), item[0]),
    )
    rows = [(code, exp, paid) for code, (exp, paid) in ordered[:chart_institutions_max]]
    return rows, len(per_institution)


def _svg_chart(rows: list[tuple[str, int, int]]) -> str:
    if not rows:
        return "<p>No payouts and no entries naming a payout.</p>"
    label_w, bar_w, row_h, top = 150, 520, 30, 30
    scale_fen = max(max(abs(e), abs(p)) for _, e, p in rows) or 1
    height = top + row_h * len(rows) + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 160}" '
        f'height="{height}" role="img" aria-label="Expected against paid per institution">',
        '<rect x="0" y="0" width="12" height="10" fill="#90a4ae"/>'
        '<text x="16" y="10" font-size="11">expected</text>'
        '<rect x="90" y="0" width="12" height="10" fill="#2e7d32"/>'
        '<text x="106" y="10" font-size="11">paid (net of returns)</text>',
    ]
    for number, (code, expected_fen, paid_fen) in enumerate(rows):
        y = top + number * row_h
        exp_w = round(bar_w * abs(expected_fen) / scale_fen)
        paid_w = round(bar_w * abs(paid_fen) / scale_fen)
        colour = "#2e7d32" if paid_fen == expected_fen else "#c62828"
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 14}" font-size="11" text-anchor="end">'
            f"{escape(code)}</text>"
            f'<rect x="{label_w}" y="{y}" width="{exp_w}" height="11" fill="#90a4ae">'
            f"<title>{escape(code)} expected {_yuan(expected_fen)} CNY</title></rect>"
            f'<rect x="{label_w}" y="{y + 13}" width="{paid_w}" height="11" fill="{colour}">'
            f"<title>{escape(code)} paid {_yuan(paid_fen)} CNY</title></rect>"
            f'<text x="{label_w + max(exp_w, paid_w) + 6}" y="{y + 18}" font-size="10">'
            f"{_yuan(expected_fen)} / {_yuan(paid_fen)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def recon_html(recon: Reconciliation, context: ReportContext) -> str:
    day = recon.business_date.isoformat()
    totals = recon.totals_by_status()
    total_rows = "".join(
        f'<tr><td><span class="dot" style="background:{_STATUS_COLOURS[status]}"></span>'
        f"{status}</td><td class=n>{t.count:,}</td><td class=n>{_yuan(t.expected_fen)}</td>"
        f"<td class=n>{_yuan(t.bank_fen)}</td></tr>"
        for status, t in totals.items()
    )
    exceptions = [line for line in recon.lines if line.status != MATCHED]
    exception_rows = "".join(
        f"<tr><td>{escape(line.status)}</td><td>{escape(line.end_to_end_id)}</td>"
        f"<td>{escape(line.institution_code)}</td>"
        f"<td class=n>{'' if line.expected_fen is None else _yuan(line.expected_fen)}</td>"
        f"<td class=n>{'' if line.bank_fen is None else _yuan(line.bank_fen)}</td>"
        f"<td>{escape(line.bank_reference)}</td></tr>"
        for line in exceptions[:html_exception_rows_max]
    )
    more = len(exceptions) - html_exception_rows_max
    more_note = f"<p>{more:,} more exceptions are in the CSV report.</p>" if more > 0 else ""
    chart_rows, institution_count = _chart_rows(recon)
    chart_note = (
        f"<p>Showing {len(chart_rows):,} of {institution_count:,} institutions: those "
        "with exceptions first, then the largest amounts.</p>"
        if institution_count > len(chart_rows)
        else ""
    )
    verdict = (
        '<p class="ok">Every payout matched the bank statement.</p>'
        if not recon.has_exceptions
        else f'<p class="bad">{len(exceptions):,} lines need a person to resolve them.</p>'
    )
    balances = (
        "opening + entries = closing, checked"
        if context.balances_checked
        else "not given in this statement (not checked)"
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Bank reconciliation {day}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}
td.n{{text-align:right;font-variant-numeric:tabular-nums}}
.dot{{display:inline-block;width:10px;height:10px;margin-right:6px;border-radius:50%}}
.ok{{color:#2e7d32;font-weight:bold}} .bad{{color:#c62828;font-weight:bold}}
</style></head><body>
<h1>Bank reconciliation, business day {day}</h1>
<p>Statement <b>{escape(context.statement_name)}</b> ({escape(context.statement_format)}),
account {escape(context.account_id)}; balances: {balances}.
Generated {escape(context.generated_at.isoformat(timespec="seconds"))}. Amounts in CNY;
bank amounts are positive for money paid out, negative for money returned.</p>
{verdict}
<h2>Totals by status</h2>
<table><tr><th>status</th><th>lines</th><th>expected</th><th>bank</th></tr>
{total_rows}</table>
<h2>Expected against paid, per institution</h2>
{chart_note}{_svg_chart(chart_rows)}
<h2>Exceptions</h2>
<table><tr><th>status</th><th>end-to-end id</th><th>institution</th><th>expected</th>
<th>bank</th><th>bank reference</th></tr>
{exception_rows}</table>
{more_note}
</body></html>
"""


def write_recon_files(
    out_dir: Path, recon: Reconciliation, context: ReportContext
) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_name, html_name = recon_file_names(recon.business_date)
    csv_path, html_path = out_dir / csv_name, out_dir / html_name
    write_atomically(csv_path, recon_csv(recon).encode("utf-8"))
    write_atomically(html_path, recon_html(recon, context).encode("utf-8"))
    return csv_path, html_path
