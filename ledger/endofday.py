"""End of day on the database: close a day, export its payouts, reconcile the bank.

The numbers come from the pure modules (`payouts.net_payouts`,
`recon.match_statement`); this module reads their inputs, records their
results and posts the ledger entries, each operation in one transaction.

Accounts moved (posting amounts positive for a debit):
- close D: the day's clearing is what its settlement and cancellation
  entries moved on each institution's payable, once the day's records are
  found to agree with them (day_clearing); for each institution whose
  receivable changes, the change moves
  between its payable and its receivable (a negative day becomes owed by the
  institution; a later positive day uses it up);
- export D: payable +P, payouts in transit -P for each payout P;
- reconcile: a MATCHED payout: in transit +b, settled at bank -b; any other
  line that carries a bank entry: suspense +b, settled at bank -b, so the
  ledger's view of the bank follows the statement while a person resolves
  the difference. MISSING_IN_BANK posts nothing (it stays in transit).

Concurrency: settle and cancel take the open day's row FOR SHARE; close locks
the business_days table EXCLUSIVE (and the row FOR UPDATE), so every
settlement commits wholly before the close (and is in D) or reads the open
day after it (and is in D+1). Exports and reconciliations take a
transaction advisory lock so two operators cannot post the same thing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import NamedTuple

import asyncpg

from ledger import accounts, chain
from ledger.bankfiles.pain001 import DebtorAccount
from ledger.bankfiles.statement import Statement, normalise_account
from ledger.payouts import (
    InstitutionDayAmount,
    NettingResult,
    Payout,
    PayoutFiles,
    end_to_end_id,
    net_payouts,
    payout_files,
)
from ledger.recon import MATCHED, ExpectedPayout, Reconciliation, ReconLine

EOD_LOCK_KEY = 0x4D534544  # "MSED": exports and reconciliations, one at a time
# The open day's lock: every writing transaction holds it shared
# (ms_day_share in ledger/migrations/0001_baseline.sql), closing takes it
# exclusively.
DAY_LOCK_KEY = 7370001


class EndOfDayError(Exception):
    """An end-of-day operation that cannot be done as asked; nothing was changed."""


@dataclass(frozen=True, slots=True)
class CloseResult:
    closed_date: date
    opened_date: date
    institution_count: int
    payout_count: int
    payout_total_fen: int
    receivables_fen: dict[str, int]


@dataclass(frozen=True, slots=True)
class ExportResult:
    business_date: date
    payouts: tuple[Payout, ...]
    created_at: datetime  # the first export's time: files written again are identical
    posted: bool  # False: exported before, nothing posted this time
    files: PayoutFiles  # built before anything was posted


@dataclass(frozen=True, slots=True)
class DayStatus:
    business_date: date
    status: str  # OPEN or CLOSED
    payout_count: int
    payout_total_fen: int
    exported: bool
    statements: int  # bank statements reconciled against the day
    open_exceptions: int  # non-MATCHED lines of the day's latest statement


@dataclass(frozen=True, slots=True)
class ReconRecord:
    already_recorded: bool  # the same statement was reconciled before: nothing posted
    entries_posted: int


_CLEARING_SQL = """
WITH moves AS (
    SELECT institution_code, pooled_fund_fen, serious_illness_fen, individual_account_fen,
           1 AS settlement_count
    FROM settlements WHERE business_date = $1 AND status = 'SETTLED'
    UNION ALL
    SELECT s.institution_code, -s.pooled_fund_fen, -s.serious_illness_fen,
           -s.individual_account_fen, -1
    FROM cancellations c JOIN settlements s USING (settlement_id)
    WHERE c.business_date = $1 AND s.status = 'SETTLED'
)
SELECT m.institution_code, coalesce(i.name, m.institution_code) AS institution_name,
       sum(m.pooled_fund_fen)::bigint AS pooled_fund_fen,
       sum(m.serious_illness_fen)::bigint AS serious_illness_fen,
       sum(m.individual_account_fen)::bigint AS individual_account_fen,
       sum(m.settlement_count)::integer AS settlement_count
FROM moves m LEFT JOIN institutions i ON i.code = m.institution_code
GROUP BY m.institution_code, i.name
ORDER BY m.institution_code
"""

_RECEIVABLES_SQL = """
SELECT a.account_key, sum(p.amount_fen)::bigint AS owed
FROM accounts a JOIN postings p USING (account_id)
WHERE a.kind = 'INSTITUTION_RECEIVABLE'
GROUP BY a.account_key
HAVING sum(p.amount_fen) <> 0
"""


# What the ledger posted in a day for settlements and cancellations, per
# institution payable account the entries moved (end of day pays from
# this): what each credited the payable, and the legs that paid it (funds,
# members' accounts; debits positive, so a cancellation's are negative).
_POSTED_SQL = """
WITH per_entry AS (
    SELECT min(a.account_key) FILTER (WHERE a.kind = 'INSTITUTION_PAYABLE') AS payable,
           -coalesce(sum(p.amount_fen) FILTER (WHERE a.kind = 'INSTITUTION_PAYABLE'), 0)
               AS credited,
           coalesce(sum(p.amount_fen) FILTER (WHERE a.kind = 'POOLED_FUND'), 0)
               AS pooled_fund_fen,
           coalesce(sum(p.amount_fen) FILTER (WHERE a.kind = 'SERIOUS_ILLNESS_FUND'), 0)
               AS serious_illness_fen,
           coalesce(sum(p.amount_fen) FILTER (WHERE a.kind = 'MEMBER_INDIVIDUAL'), 0)
               AS individual_account_fen
    FROM entries e
    JOIN postings p ON p.entry_id = e.entry_id
    JOIN accounts a ON a.account_id = p.account_id
    WHERE e.business_date = $1 AND e.kind IN ('SETTLEMENT', 'CANCELLATION')
    GROUP BY e.entry_id
)
SELECT payable, sum(credited)::bigint AS credited,
       sum(pooled_fund_fen)::bigint AS pooled_fund_fen,
       sum(serious_illness_fen)::bigint AS serious_illness_fen,
       sum(individual_account_fen)::bigint AS individual_account_fen
FROM per_entry GROUP BY payable
"""
_SHOWN_PROBLEMS_MAX = 5


async def day_clearing(conn: asyncpg.Connection, business_date: date) -> list[InstitutionDayAmount]:
    """Per institution: what the ledger posted in `business_date` to its payable
    account for settlements and cancellations, by paying source, and how many
    settlements minus cancellations its records count.

    The day's settlement and cancellation records must agree with its
    entries, record by record and institution by institution, to the fen:
    otherwise EndOfDayError names the disagreements (nothing is paid from
    books that contradict themselves).
    """
    problems = await chain.record_problems(conn, business_date)
    posted: dict[str, tuple[int, int, int]] = {}
    for row in await conn.fetch(_POSTED_SQL, business_date):
        key = row["payable"] or "(no institution payable)"
        code = key.removeprefix(accounts.INSTITUTION_PREFIX).removesuffix(accounts.PAYABLE_SUFFIX)
        legs = _paid_from(row)
        if row["credited"] != sum(legs):
            problems.append(
                f"the ledger credited {key} with {row['credited']} fen on {business_date}"
                f" but its settlements' legs paid {_split(*legs)}"
            )
        posted[code] = legs
    recorded = {r["institution_code"]: r for r in await conn.fetch(_CLEARING_SQL, business_date)}
    for code in sorted(posted.keys() | recorded.keys()):
        r = recorded.get(code)
        stated = _paid_from(r) if r else (0, 0, 0)
        if posted.get(code, (0, 0, 0)) != stated:
            problems.append(
                f"institution {code}: its records on {business_date} say {_split(*stated)},"
                f" the ledger posted {_split(*posted.get(code, (0, 0, 0)))}"
            )
    if problems:
        shown = "; ".join(problems[:_SHOWN_PROBLEMS_MAX])
        more = len(problems) - _SHOWN_PROBLEMS_MAX
        raise EndOfDayError(
            f"business day {business_date}: its settlement records and its ledger entries"
            f" disagree, so it is not cleared ({shown}{f'; {more} more' if more > 0 else ''});"
            " nothing was changed; `medswitch ledger verify` lists what is wrong"
        )
    return [
        InstitutionDayAmount(
            code, r["institution_name"], *posted.get(code, (0, 0, 0)), r["settlement_count"]
        )
        for code, r in sorted(recorded.items())
    ]


def _paid_from(row: asyncpg.Record) -> tuple[int, int, int]:
    """(pooled fund, serious illness, individual accounts) of a row that sums them by source."""
    return row["pooled_fund_fen"], row["serious_illness_fen"], row["individual_account_fen"]


def _split(pooled: int, serious: int, account: int) -> str:
    return (
        f"{pooled + serious + account} fen (pooled fund {pooled}, serious illness {serious},"
        f" individual accounts {account})"
    )


async def receivables(conn: asyncpg.Connection) -> dict[str, int]:
    """What institutions owe the funds now, from the ledger (receivable balances)."""
    owed: dict[str, int] = {}
    for row in await conn.fetch(_RECEIVABLES_SQL):
        key: str = row["account_key"]
        code = key.removeprefix(accounts.INSTITUTION_PREFIX)
        code = code.removesuffix(accounts.RECEIVABLE_SUFFIX)
        if row["owed"] < 0:
            raise EndOfDayError(f"receivable of {code} has a credit balance ({row['owed']} fen)")
        owed[code] = row["owed"]
    return owed


async def _post(
    conn: asyncpg.Connection, kind: str, ref: str, legs: Sequence[tuple[str, int]]
) -> int:
    (entry_id,) = await _post_many(conn, kind, [(ref, legs)])
    return entry_id


async def _post_many(
    conn: asyncpg.Connection, kind: str, entries: Sequence[tuple[str, Sequence[tuple[str, int]]]]
) -> list[int]:
    """Post entries of one kind in one call (ms_post_set); their ids, in order."""
    refs: list[str] = []
    entry_of: list[int] = []
    keys: list[str] = []
    amounts: list[int] = []
    for ref, legs in entries:
        legs = [(key, amount) for key, amount in legs if amount]
        assert sum(amount for _, amount in legs) == 0, legs
        refs.append(ref)
        for key, amount in legs:
            entry_of.append(len(refs))
            keys.append(key)
            amounts.append(amount)
    if not refs:
        return []
    entry_ids: list[int] = await conn.fetchval(
        "SELECT ms_post_set($1, $2::text[], $3::integer[], $4::text[], $5::bigint[])",
        kind,
        refs,
        entry_of,
        keys,
        amounts,
    )
    return entry_ids


async def close_day(conn: asyncpg.Connection, *, expected_date: date | None = None) -> CloseResult:
    """Close the open business day, open the next, and clear the closed one.

    `expected_date`, when given, must be the open day (an operator closing
    "2026-11-22" must not close another day by mistake). A day whose
    records and entries disagree is refused (day_clearing), nothing changed.
    """
    async with conn.transaction():
        day = await _lock_open_day(conn, expected_date)
        # Every settlement of `day` has committed (the day lock waited for
        # them): what it cleared is read, and checked, before anything is written.
        amounts = await day_clearing(conn, day)
        next_day = day + timedelta(days=1)
        await conn.execute(
            "UPDATE business_days SET status = 'CLOSED', closed_at = now()"
            " WHERE business_date = $1",
            day,
        )
        await conn.execute(
            "INSERT INTO business_days (business_date, status) VALUES ($1, 'OPEN')", next_day
        )
        owed_before = await receivables(conn)
        netting = net_payouts(day, amounts, owed_before)
        await _record_clearing(conn, day, amounts, owed_before, netting)
    return CloseResult(
        closed_date=day,
        opened_date=next_day,
        institution_count=len(amounts),
        payout_count=len(netting.payouts),
        payout_total_fen=netting.total_fen,
        receivables_fen=netting.receivables_fen,
    )


async def _lock_open_day(conn: asyncpg.Connection, expected_date: date | None) -> date:
    """The open day, locked so that no settlement is in it or starts while we close it."""
    # The table lock, not only the row's: a settlement already holding the
    # open day FOR SHARE finishes first (it is in D), and one that asks
    # after us waits *before* taking its snapshot, so it then sees D+1
    # open. With the row lock alone a waiter re-checks the old row, finds
    # it CLOSED, and is left with no open day at all.
    # Settlements hold the day's advisory lock shared (ms_day_share), not
    # the row FOR SHARE: taking it exclusively waits for those in flight
    # and makes later ones wait until D+1 is open.
    await conn.execute("SELECT pg_advisory_xact_lock($1)", DAY_LOCK_KEY)
    await conn.execute("LOCK TABLE business_days IN EXCLUSIVE MODE")
    day: date | None = await conn.fetchval(
        "SELECT business_date FROM business_days WHERE status = 'OPEN' FOR UPDATE"
    )
    if day is None:
        raise EndOfDayError("no business day is open")
    if expected_date is not None and day != expected_date:
        raise EndOfDayError(f"the open business day is {day}, not {expected_date}")
    return day


async def _record_clearing(
    conn: asyncpg.Connection,
    day: date,
    amounts: Sequence[InstitutionDayAmount],
    owed_before: dict[str, int],
    netting: NettingResult,
) -> None:
    """Carry each changed receivable forward (an entry) and record the day's clearing rows."""
    paid = {p.institution_code: p.amount_fen for p in netting.payouts}
    rows = []
    for amount in amounts:
        code = amount.institution_code
        before = owed_before.get(code, 0)
        after = netting.receivables_fen.get(code, 0)
        change = after - before
        carry_entry = None
        if change:
            await conn.execute(
                "INSERT INTO accounts (account_key, kind, normal_side)"
                " VALUES ($1, 'INSTITUTION_RECEIVABLE', 'DEBIT'),"
                " ($2, 'INSTITUTION_PAYABLE', 'CREDIT') ON CONFLICT DO NOTHING",
                accounts.institution_receivable(code),
                accounts.institution_payable(code),
            )
            carry_entry = await _post(
                conn,
                "ADJUSTMENT",
                f"carry:{end_to_end_id(day, code)}",
                [
                    (accounts.institution_receivable(code), change),
                    (accounts.institution_payable(code), -change),
                ],
            )
        rows.append(
            (
                day,
                code,
                amount.institution_name,
                amount.pooled_fund_fen,
                amount.serious_illness_fen,
                amount.individual_account_fen,
                amount.settlement_count,
                before,
                after,
                paid.get(code, 0),
                carry_entry,
            )
        )
    await conn.copy_records_to_table(
        "day_clearing",
        records=rows,
        columns=(
            "business_date",
            "institution_code",
            "institution_name",
            "pooled_fund_fen",
            "serious_illness_fen",
            "individual_account_fen",
            "settlement_count",
            "receivable_before_fen",
            "receivable_after_fen",
            "payout_fen",
            "carry_entry_id",
        ),
    )


async def _day_status(conn: asyncpg.Connection, business_date: date) -> str | None:
    status: str | None = await conn.fetchval(
        "SELECT status FROM business_days WHERE business_date = $1", business_date
    )
    return status


async def day_payouts(conn: asyncpg.Connection, business_date: date) -> tuple[Payout, ...]:
    """The payouts a close computed for `business_date` (refuses a day not closed)."""
    status = await _day_status(conn, business_date)
    if status is None:
        raise EndOfDayError(f"there is no business day {business_date}")
    if status != "CLOSED":
        raise EndOfDayError(f"business day {business_date} is still open: close it first")
    rows = await conn.fetch(
        "SELECT * FROM day_clearing WHERE business_date = $1 AND payout_fen > 0"
        " ORDER BY institution_code",
        business_date,
    )
    return tuple(
        Payout(
            business_date=business_date,
            institution_code=r["institution_code"],
            institution_name=r["institution_name"],
            amount_fen=r["payout_fen"],
            pooled_fund_fen=r["pooled_fund_fen"],
            serious_illness_fen=r["serious_illness_fen"],
            individual_account_fen=r["individual_account_fen"],
            settlement_count=r["settlement_count"],
            offset_fen=r["receivable_before_fen"] - r["receivable_after_fen"],
        )
        for r in rows
    )


def _build_files(
    business_date: date,
    payouts: Sequence[Payout],
    debtor: DebtorAccount,
    created_at: datetime,
    *,
    exported_before: bool,
) -> PayoutFiles:
    try:
        return payout_files(business_date, payouts, debtor=debtor, created_at=created_at)
    except ValueError as exc:
        outcome = (
            "they were exported (moved into transit) before, and their files cannot be built again"
            if exported_before
            else "nothing was posted"
        )
        raise EndOfDayError(
            f"the payout files of {business_date} cannot be built: {exc}; {outcome}"
        ) from None


async def export_payouts(
    conn: asyncpg.Connection, business_date: date, *, debtor: DebtorAccount, created_at: datetime
) -> ExportResult:
    """Build a closed day's payout files, then record the export and move the
    payouts into transit, once.

    The files are built in full before anything is posted: a file that
    cannot be built (a name XML cannot carry, a bank code the schema
    refuses) is an EndOfDayError and nothing changes. A second export of the
    same day posts nothing and builds the files from the first export's
    creation time, so they are identical: an export interrupted after it
    posted (the files not yet written) is finished by running it again.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", EOD_LOCK_KEY)
        payouts = await day_payouts(conn, business_date)
        previous = await conn.fetchrow(
            "SELECT created_at, debtor_account FROM payout_exports WHERE business_date = $1",
            business_date,
        )
        if previous is not None:
            if normalise_account(previous["debtor_account"]) != normalise_account(
                debtor.account_id
            ):
                raise EndOfDayError(
                    f"payouts of {business_date} were exported from account "
                    f"{previous['debtor_account']}, not {debtor.account_id}"
                )
            first: datetime = previous["created_at"].astimezone(created_at.tzinfo)
            files = _build_files(business_date, payouts, debtor, first, exported_before=True)
            return ExportResult(business_date, payouts, first, posted=False, files=files)
        files = _build_files(business_date, payouts, debtor, created_at, exported_before=False)
        await _record_export(conn, business_date, payouts, debtor.account_id, created_at)
    return ExportResult(business_date, payouts, created_at, posted=True, files=files)


async def _record_export(
    conn: asyncpg.Connection,
    business_date: date,
    payouts: Sequence[Payout],
    debtor_account: str,
    created_at: datetime,
) -> None:
    """The export's record, and each payout moved from payable into transit."""
    await conn.execute(
        "INSERT INTO payout_exports (business_date, created_at, debtor_account, payout_count,"
        " total_fen) VALUES ($1, $2, $3, $4, $5)",
        business_date,
        created_at,
        debtor_account,
        len(payouts),
        sum(p.amount_fen for p in payouts),
    )
    entry_ids = await _post_many(
        conn,
        "PAYOUT",
        [
            (
                payout.end_to_end_id,
                [
                    (accounts.institution_payable(payout.institution_code), payout.amount_fen),
                    (accounts.PAYOUTS_IN_TRANSIT, -payout.amount_fen),
                ],
            )
            for payout in payouts
        ],
    )
    links = [
        (payout.end_to_end_id, business_date, entry_id)
        for payout, entry_id in zip(payouts, entry_ids, strict=True)
    ]
    await conn.copy_records_to_table(
        "payout_export_entries",
        records=links,
        columns=("end_to_end_id", "business_date", "entry_id"),
    )


async def expected_payouts(conn: asyncpg.Connection, business_date: date) -> list[ExpectedPayout]:
    """The exported payouts of `business_date`, as reconciliation expects them."""
    exported = await conn.fetchval(
        "SELECT 1 FROM payout_exports WHERE business_date = $1", business_date
    )
    if exported is None:
        status = await _day_status(conn, business_date)
        if status is None:
            raise EndOfDayError(f"there is no business day {business_date}")
        raise EndOfDayError(f"payouts of {business_date} were not exported: nothing to reconcile")
    return [
        ExpectedPayout(p.end_to_end_id, p.institution_code, p.amount_fen)
        for p in await day_payouts(conn, business_date)
    ]


def _posting_keys(
    account_id: str, statement: Statement, line: ReconLine, occurrence: int
) -> list[str]:
    """What a line moves in the ledger, as keys that are posted once, ever.

    A bank entry is named by the bank's reference, or, when it has none, by
    its content and its occurrence among identical entries of the statement,
    never by the file: a statement the bank issues again (a new creation
    time, the same entries) then moves nothing twice.
    """
    account = normalise_account(account_id)
    if line.bank_reference:
        entry_key = f"ref:{account}:{line.bank_reference}"
    else:
        assert line.entry_index is not None
        e = statement.entries[line.entry_index]
        entry_key = (
            f"entry:{account}:{e.booking_date}:{e.value_date}:{e.direction}:{e.amount_fen}"
            f":{e.end_to_end_id}:{normalise_account(e.counterparty_account)}:{occurrence}"
        )
    if line.status == MATCHED:
        return [f"settled:{line.end_to_end_id}", entry_key]
    return [entry_key]


def _occurrences(statement: Statement, lines: Sequence[ReconLine]) -> dict[int, int]:
    """For each line without a bank reference, how many identical entries came before."""
    seen: dict[tuple[object, ...], int] = {}
    out: dict[int, int] = {}
    for number, line in enumerate(lines, start=1):
        if line.bank_fen is None or line.bank_reference or line.entry_index is None:
            continue
        e = statement.entries[line.entry_index]
        content = (e.booking_date, e.value_date, e.direction, e.amount_fen, e.end_to_end_id,
                   e.counterparty_account)  # fmt: skip
        out[number] = seen.get(content, 0)
        seen[content] = out[number] + 1
    return out


async def record_reconciliation(
    conn: asyncpg.Connection,
    recon: Reconciliation,
    statement: Statement,
    *,
    source_name: str,
    account_id: str,
) -> ReconRecord:
    """Record the report lines and post what the statement proves, exactly once."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", EOD_LOCK_KEY)
        if not await _record_statement(conn, recon, statement, source_name, account_id):
            return ReconRecord(already_recorded=True, entries_posted=0)
        occurrence = _occurrences(statement, recon.lines)
        keyed = [
            (number, line, _posting_keys(account_id, statement, line, occurrence.get(number, 0)))
            for number, line in enumerate(recon.lines, start=1)
            if line.bank_fen is not None
        ]
        posted_before = await _posted_before(conn, [key for _, _, keys in keyed for key in keys])
        plan = _plan_bank_postings(keyed, posted_before)
        entry_ids: dict[int, int] = {}
        key_rows: list[tuple[str, str, date, int]] = []
        for kind, postings in plan.items():
            ids = await _post_many(conn, kind, [(p.ref, p.legs) for p in postings])
            for posting, entry_id in zip(postings, ids, strict=True):
                entry_ids[posting.line_no] = entry_id
                key_rows.extend(
                    (key, statement.sha256, recon.business_date, entry_id) for key in posting.keys
                )
        await _copy_recon_lines(conn, recon, statement, entry_ids)
        await conn.copy_records_to_table(
            "bank_posting_keys",
            records=key_rows,
            columns=("posting_key", "sha256", "business_date", "entry_id"),
        )
    return ReconRecord(already_recorded=False, entries_posted=len(entry_ids))


async def _record_statement(
    conn: asyncpg.Connection,
    recon: Reconciliation,
    statement: Statement,
    source_name: str,
    account_id: str,
) -> bool:
    """Record the statement for the day; False when it was recorded for the day before."""
    seen = await conn.fetchval(
        "SELECT 1 FROM bank_statements WHERE sha256 = $1 AND business_date = $2",
        statement.sha256,
        recon.business_date,
    )
    if seen is not None:
        return False
    await conn.execute(
        "INSERT INTO bank_statements (sha256, business_date, account_id, format,"
        " statement_id, source_name) VALUES ($1, $2, $3, $4, $5, $6)",
        statement.sha256,
        recon.business_date,
        statement.account_id or account_id,
        statement.format,
        statement.statement_id,
        source_name,
    )
    return True


async def _posted_before(conn: asyncpg.Connection, keys: list[str]) -> dict[str, str]:
    """Which of `keys` earlier reconciliations posted, and as what kind of entry.

    A bank entry another day's reconciliation parked in suspense
    (ADJUSTMENT) may be this day's matched payout.
    """
    rows = await conn.fetch(
        "SELECT k.posting_key, e.kind FROM bank_posting_keys k"
        " JOIN entries e USING (entry_id) WHERE k.posting_key = ANY($1::text[])",
        keys,
    )
    return {r["posting_key"]: r["kind"] for r in rows}


class _BankPosting(NamedTuple):
    """One entry a statement line calls for, and the posting keys it spends."""

    line_no: int
    keys: list[str]
    ref: str
    legs: list[tuple[str, int]]


def _plan_bank_postings(
    keyed: Sequence[tuple[int, ReconLine, list[str]]], posted_before: dict[str, str]
) -> dict[str, list[_BankPosting]]:
    """What to post, by kind of entry, decided before anything is posted.

    `posted_before` grows with each planned posting, so a bank entry
    reported twice posts once.
    """
    plan: dict[str, list[_BankPosting]] = {}
    for number, line, keys in keyed:
        planned = _plan_line(number, line, keys, posted_before)
        if planned is not None:
            kind, posting = planned
            posted_before.update(dict.fromkeys(posting.keys, kind))
            plan.setdefault(kind, []).append(posting)
    return plan


def _plan_line(
    number: int, line: ReconLine, keys: list[str], posted_before: dict[str, str]
) -> tuple[str, _BankPosting] | None:
    """The entry one statement line calls for (its kind and posting), or None."""
    bank_fen = line.bank_fen
    assert bank_fen is not None
    ref = f"{line.status}:{line.end_to_end_id}:{line.bank_reference}"
    used = [key for key in keys if key in posted_before]
    if line.status == MATCHED and used == keys[1:] and posted_before[keys[1]] == "ADJUSTMENT":
        # The bank entry is known, parked in suspense by the reconciliation
        # of another day whose payouts it did not match; it is this day's
        # payout: move it from suspense to settle the payout in transit.
        legs = [(accounts.PAYOUTS_IN_TRANSIT, bank_fen), (accounts.SUSPENSE, -bank_fen)]
        return "BANK_SETTLED", _BankPosting(number, keys[:1], ref, legs)
    if used:
        return None  # another statement already reported this bank entry
    debit_account = accounts.PAYOUTS_IN_TRANSIT if line.status == MATCHED else accounts.SUSPENSE
    kind = {MATCHED: "BANK_SETTLED", "RETURNED": "BANK_RETURN"}.get(line.status, "ADJUSTMENT")
    legs = [(debit_account, bank_fen), (accounts.SETTLED_AT_BANK, -bank_fen)]
    return kind, _BankPosting(number, keys, ref, legs)


async def _copy_recon_lines(
    conn: asyncpg.Connection,
    recon: Reconciliation,
    statement: Statement,
    entry_ids: dict[int, int],
) -> None:
    """Every line of the report, with the entry it posted (if any)."""
    await conn.copy_records_to_table(
        "bank_statement_lines",
        records=[
            (
                statement.sha256,
                recon.business_date,
                number,
                line.status,
                line.end_to_end_id,
                line.institution_code,
                line.expected_fen,
                line.bank_fen,
                line.bank_reference,
                entry_ids.get(number),
            )
            for number, line in enumerate(recon.lines, start=1)
        ],
        columns=(
            "sha256",
            "business_date",
            "line_no",
            "status",
            "end_to_end_id",
            "institution_code",
            "expected_fen",
            "bank_fen",
            "bank_reference",
            "entry_id",
        ),
    )


async def recent_days(conn: asyncpg.Connection, days_max: int = 7) -> list[DayStatus]:
    """The latest `days_max` business days, newest first, with their end-of-day state."""
    rows = await conn.fetch(
        """
        SELECT d.business_date, d.status,
               (SELECT count(*) FROM day_clearing c
                 WHERE c.business_date = d.business_date AND c.payout_fen > 0) AS payout_count,
               (SELECT coalesce(sum(c.payout_fen), 0) FROM day_clearing c
                 WHERE c.business_date = d.business_date)::bigint AS payout_total_fen,
               EXISTS (SELECT 1 FROM payout_exports e
                 WHERE e.business_date = d.business_date) AS exported,
               (SELECT count(*) FROM bank_statements s
                 WHERE s.business_date = d.business_date) AS statements,
               (SELECT count(*) FROM bank_statement_lines l
                 WHERE l.status <> 'MATCHED' AND l.business_date = d.business_date
                   AND l.sha256 = (
                   SELECT s.sha256 FROM bank_statements s
                   WHERE s.business_date = d.business_date
                   ORDER BY s.recorded_at DESC LIMIT 1)) AS open_exceptions
        FROM business_days d ORDER BY d.business_date DESC LIMIT $1
        """,
        days_max,
    )
    return [
        DayStatus(
            business_date=r["business_date"],
            status=r["status"],
            payout_count=r["payout_count"],
            payout_total_fen=r["payout_total_fen"],
            exported=r["exported"],
            statements=r["statements"],
            open_exceptions=r["open_exceptions"],
        )
        for r in rows
    ]
