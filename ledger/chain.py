"""Proof that nobody changed the books behind the application's back.

Every entry carries SHA-256(previous hash || canonical bytes of the entry and
its postings). A single global chain would make every settlement wait for the
one before it to commit, so entries are appended to one of 64 *lanes*
(chain_lanes; a writer takes the first lane no other transaction holds,
starting from its backend's pid mod 64): each lane is a chain with
contiguous sequence numbers, and its head (last_seq, last_hash) is stored
too, so a removed last entry is caught as well as a changed, inserted or
removed middle one. Concurrent writers never share a lane while fewer than
64 are writing, so the chain adds no wait.

`verify` recomputes everything here in Python, independently of the SQL that
wrote it (ms_entry_hash_of): the canonical bytes are

    entry_id|lane|lane_seq|YYYY-MM-DD|kind|ref|seq:account_id:amount;...

It also re-checks that each entry balances and recomputes every stored
balance row from the postings.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import NamedTuple

import asyncpg

from ledger import accounts
from ledger.bankfiles.files import write_atomically

GENESIS_HASH = bytes(32)
FETCH_ROWS = 5_000


class ChainEnd(NamedTuple):
    """Where a lane's chain ends: its last sequence number and that entry's hash."""

    seq: int
    hash: bytes


EMPTY_LANE = ChainEnd(0, GENESIS_HASH)


def entry_hash(
    prev_hash: bytes,
    entry_id: int,
    lane: int,
    lane_seq: int,
    business_date: date,
    kind: str,
    ref: str,
    postings: Sequence[tuple[int, int, int]],  # (seq, account_id, amount_fen) by seq
) -> bytes:
    body = f"{entry_id}|{lane}|{lane_seq}|{business_date.isoformat()}|{kind}|{ref}|"
    body += ";".join(f"{s}:{a}:{amount}" for s, a, amount in postings)
    return hashlib.sha256(prev_hash + body.encode()).digest()


@dataclass(slots=True)
class VerifyReport:
    entries: int = 0
    postings: int = 0
    lanes: int = 0
    balances: int = 0
    problems: list[str] = field(default_factory=list)
    ends: dict[int, ChainEnd] = field(default_factory=dict)  # by lane, as walked

    @property
    def sound(self) -> bool:
        return not self.problems


# The record checks below read every record, or those of one business day:
# each takes that day (NULL: all days) as its last parameter.
def _of_day(column: str, param: int = 1) -> str:
    return f"(${param}::date IS NULL OR {column} = ${param}::date)"


# A settlement's stated amounts (what end of day pays out from) against the
# legs its entry posts (accounts.settlement_postings): one row per
# disagreeing account, the first 20. $1-$5: the fund keys, the member key's
# prefix, the institution payable key's prefix and suffix.
_SETTLEMENT_LEGS_SQL = f"""
WITH stated AS (
    SELECT s.settlement_id, l.account_key, l.amount
    FROM settlements s
    CROSS JOIN LATERAL (VALUES
        ($1::text, s.pooled_fund_fen),
        ($2::text, s.serious_illness_fen),
        ($3::text || s.member_id, s.individual_account_fen),
        ($4::text || s.institution_code || $5::text,
         -(s.pooled_fund_fen + s.serious_illness_fen + s.individual_account_fen))
    ) AS l(account_key, amount)
    WHERE l.amount <> 0 AND {_of_day("s.business_date", 6)}
), posted AS (
    SELECT s.settlement_id, a.account_key, sum(p.amount_fen)::bigint AS amount
    FROM settlements s
    JOIN postings p ON p.entry_id = s.entry_id
    JOIN accounts a ON a.account_id = p.account_id
    WHERE {_of_day("s.business_date", 6)}
    GROUP BY s.settlement_id, a.account_key
)
SELECT coalesce(t.settlement_id, p.settlement_id) AS settlement_id,
       coalesce(t.account_key, p.account_key) AS account_key,
       coalesce(t.amount, 0) AS stated, coalesce(p.amount, 0) AS posted
FROM stated t FULL JOIN posted p
    ON p.settlement_id = t.settlement_id AND p.account_key = t.account_key
WHERE t.amount IS DISTINCT FROM p.amount
ORDER BY 1, 2
LIMIT 20
"""

# Settlements and cancellations with the entries they name: each names one of
# its own kind (SETTLEMENT; CANCELLATION), made for it (ref: the settlement's
# id) on its business day, and no entry is named twice. Otherwise a record
# could borrow another's entry and its amounts would still add up.
_CLAIMS = f"""
WITH claims AS (
    SELECT 'settlement' AS what, s.settlement_id AS record, s.settlement_id AS ref,
           'SETTLEMENT' AS kind, s.entry_id, s.business_date
    FROM settlements s WHERE s.entry_id IS NOT NULL AND {_of_day("s.business_date")}
    UNION ALL
    SELECT 'cancellation', c.reversal_id, c.settlement_id, 'CANCELLATION', c.entry_id,
           c.business_date
    FROM cancellations c WHERE c.entry_id IS NOT NULL AND {_of_day("c.business_date")}
)
"""
_CLAIMS_SQL = (
    _CLAIMS
    + """
SELECT * FROM (
    SELECT c.what, c.record, c.entry_id, e.kind AS entry_kind, e.ref AS entry_ref,
           e.business_date AS entry_day,
           c.kind <> e.kind OR c.ref IS DISTINCT FROM e.ref
               OR c.business_date <> e.business_date AS mismatched,
           count(*) OVER (PARTITION BY c.entry_id) AS claimants
    FROM claims c JOIN entries e ON e.entry_id = c.entry_id
) x
WHERE x.mismatched OR x.claimants > 1
ORDER BY x.entry_id, x.record
LIMIT 20
"""
)
# SETTLEMENT and CANCELLATION entries that no record (of their day) names.
_UNCLAIMED_SQL = (
    _CLAIMS
    + f"""
SELECT e.entry_id, e.kind, e.ref FROM entries e
WHERE e.kind IN ('SETTLEMENT', 'CANCELLATION') AND {_of_day("e.business_date")}
  AND NOT EXISTS (SELECT 1 FROM claims c WHERE c.entry_id = e.entry_id)
ORDER BY e.entry_id
LIMIT 20
"""
)

# A cancellation's entry against the exact reverse of its settlement's.
_REVERSAL_LEGS_SQL = f"""
WITH pairs AS (
    SELECT c.reversal_id, c.entry_id AS reversal_entry, s.entry_id AS original_entry
    FROM cancellations c JOIN settlements s ON s.settlement_id = c.settlement_id
    WHERE {_of_day("c.business_date")}
), reversed AS (
    SELECT x.reversal_id, p.account_id, sum(p.amount_fen)::bigint AS amount
    FROM pairs x JOIN postings p ON p.entry_id = x.reversal_entry
    GROUP BY 1, 2
), original AS (
    SELECT x.reversal_id, p.account_id, -sum(p.amount_fen)::bigint AS amount
    FROM pairs x JOIN postings p ON p.entry_id = x.original_entry
    GROUP BY 1, 2
)
SELECT coalesce(r.reversal_id, o.reversal_id) AS reversal_id,
       coalesce(r.account_id, o.account_id) AS account_id,
       coalesce(r.amount, 0) AS reversed, coalesce(-o.amount, 0) AS original
FROM reversed r FULL JOIN original o
    ON o.reversal_id = r.reversal_id AND o.account_id = r.account_id
WHERE r.amount IS DISTINCT FROM o.amount
ORDER BY 1, 2
LIMIT 20
"""


class ChainEntry(NamedTuple):
    """One entry as the chain walk reads it, with its postings (seq, account_id, amount_fen)."""

    entry_id: int
    lane: int
    lane_seq: int
    business_date: date
    kind: str
    ref: str
    prev_hash: bytes
    hash: bytes
    postings: list[tuple[int, int, int]]

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> ChainEntry:
        return cls(
            entry_id=row["entry_id"],
            lane=row["lane"],
            lane_seq=row["lane_seq"],
            business_date=row["business_date"],
            kind=row["kind"],
            ref=row["ref"],
            prev_hash=bytes(row["prev_hash"]),
            hash=bytes(row["hash"]),
            postings=list(
                zip(row["seqs"] or [], row["accounts"] or [], row["amounts"] or [], strict=True)
            ),
        )

    def computed_hash(self) -> bytes:
        """The hash the entry's content and its stored link call for."""
        return entry_hash(
            self.prev_hash,
            self.entry_id,
            self.lane,
            self.lane_seq,
            self.business_date,
            self.kind,
            self.ref,
            self.postings,
        )


_ENTRIES_SQL = """
SELECT e.entry_id, e.lane, e.lane_seq, e.business_date, e.kind, e.ref, e.prev_hash, e.hash,
       p.seqs, p.accounts, p.amounts
FROM entries e LEFT JOIN LATERAL (
    SELECT array_agg(seq ORDER BY seq) AS seqs,
           array_agg(account_id ORDER BY seq) AS accounts,
           array_agg(amount_fen ORDER BY seq) AS amounts
    FROM postings WHERE postings.entry_id = e.entry_id) p ON true
ORDER BY e.lane, e.lane_seq
"""


async def verify(
    conn: asyncpg.Connection,
    *,
    problems_max: int = 20,
    anchors: Mapping[int, ChainEnd] | None = None,
) -> VerifyReport:
    """Walk every lane, every entry and every balance row; report what is wrong.

    Problems are listed in lane order, first bad entry first, then those of
    each check of the records in turn. `anchors`: chain ends recorded outside
    the database by an earlier sound run (lane: sequence, hash); each must
    still be on its chain. Without them, someone able to rewrite a whole lane
    (every later hash and its head, as a database superuser can) is not caught.
    """
    anchors = anchors or {}
    report = VerifyReport()
    # One snapshot for all of it, the lane heads included: read apart, a
    # settlement committed in between made a sound ledger look cut short.
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        heads = {
            r["lane"]: ChainEnd(r["last_seq"], bytes(r["last_hash"]))
            for r in await conn.fetch("SELECT lane, last_seq, last_hash FROM chain_lanes")
        }
        problems = await _walk_lanes(conn, report, anchors, problems_max)
        problems += _lane_heads_problems(report.ends, heads)
        problems += _anchor_problems(report.ends, anchors)
        for check in _RECORD_CHECKS:
            problems += await check(conn)
        report.balances = int(await conn.fetchval("SELECT count(*) FROM account_balances"))
    report.problems = problems[:problems_max]
    report.lanes = len(report.ends)
    return report


async def _walk_lanes(
    conn: asyncpg.Connection,
    report: VerifyReport,
    anchors: Mapping[int, ChainEnd],
    problems_max: int,
) -> list[str]:
    """Every entry in lane order: sequence, link, hash, anchor, balance (counted into `report`)."""
    problems: list[str] = []
    ends = report.ends
    async for row in conn.cursor(_ENTRIES_SQL, prefetch=FETCH_ROWS):
        entry = ChainEntry.from_row(row)
        report.entries += 1
        report.postings += len(entry.postings)
        if len(problems) < problems_max:
            previous = ends.get(entry.lane, EMPTY_LANE)
            problems += _entry_problems(entry, previous, anchors.get(entry.lane))
        ends[entry.lane] = ChainEnd(entry.lane_seq, entry.hash)
    return problems


def _entry_problems(entry: ChainEntry, previous: ChainEnd, anchored: ChainEnd | None) -> list[str]:
    """What is wrong with one entry, given where its lane's chain stood before it."""
    problems: list[str] = []
    prev_seq, prev_hash = previous
    at = f"entry {entry.entry_id}"
    if entry.lane_seq != prev_seq + 1:
        problems.append(
            f"{at}: lane {entry.lane} jumps from sequence {prev_seq} to {entry.lane_seq}"
            " (an entry was removed or inserted)"
        )
    if entry.prev_hash != prev_hash:
        problems.append(f"{at}: previous-hash link broken in lane {entry.lane}")
    if entry.computed_hash() != entry.hash:
        problems.append(f"{at}: hash does not match its content (changed)")
    if anchored is not None and anchored.seq == entry.lane_seq and anchored.hash != entry.hash:
        problems.append(
            f"{at}: lane {entry.lane} at sequence {entry.lane_seq} is not the entry"
            " anchored there (the lane was rewritten since)"
        )
    amounts = [amount for _, _, amount in entry.postings]
    if len(amounts) < 2 or sum(amounts) != 0:
        problems.append(f"{at}: {len(amounts)} postings summing to {sum(amounts)} fen")
    return problems


def _lane_heads_problems(ends: Mapping[int, ChainEnd], heads: Mapping[int, ChainEnd]) -> list[str]:
    """Each lane's chain must end where its head says, and no lane may lack a head."""
    problems = [
        f"lane {lane}: chain ends at sequence {ends.get(lane, EMPTY_LANE).seq} but its"
        f" head says {head.seq} (an entry was removed or replaced)"
        for lane, head in sorted(heads.items())
        if ends.get(lane, EMPTY_LANE) != head
    ]
    problems += [
        f"lane {lane} has entries but no head (its entries were inserted)"
        for lane in sorted(ends.keys() - heads.keys())
    ]
    return problems


def _anchor_problems(ends: Mapping[int, ChainEnd], anchors: Mapping[int, ChainEnd]) -> list[str]:
    """No lane may end before a sequence an earlier run anchored."""
    return [
        f"lane {lane}: chain ends at sequence {ends.get(lane, EMPTY_LANE).seq}, before its"
        f" anchor at {anchored.seq} (entries were removed)"
        for lane, anchored in sorted(anchors.items())
        if ends.get(lane, EMPTY_LANE).seq < anchored.seq
    ]


# ---------------------------------------------------------------------------
# The records against the entries: each check returns its problems.


async def _orphan_postings(conn: asyncpg.Connection) -> list[str]:
    orphans = await conn.fetchval(
        "SELECT count(*) FROM postings p WHERE NOT EXISTS"
        " (SELECT 1 FROM entries e WHERE e.entry_id = p.entry_id)"
    )
    return [f"{orphans} postings belong to no entry"] if orphans else []


async def _unknown_accounts(conn: asyncpg.Connection) -> list[str]:
    unknown = await conn.fetchval(
        "SELECT count(*) FROM postings p WHERE NOT EXISTS"
        " (SELECT 1 FROM accounts a WHERE a.account_id = p.account_id)"
    )
    return [f"{unknown} postings name an account that does not exist"] if unknown else []


async def _entryless_settlements(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch(
        "SELECT s.settlement_id, s.entry_id FROM settlements s WHERE s.entry_id IS NOT NULL"
        " AND NOT EXISTS (SELECT 1 FROM entries e WHERE e.entry_id = s.entry_id)"
        " ORDER BY s.settlement_id LIMIT 1"
    )
    return [
        f"settlement {row['settlement_id']}: its entry {row['entry_id']} does not exist"
        for row in rows
    ]


async def _dayless_entries(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch(
        "SELECT e.entry_id FROM entries e WHERE NOT EXISTS"
        " (SELECT 1 FROM business_days d WHERE d.business_date = e.business_date)"
        " ORDER BY e.entry_id LIMIT 1"
    )
    return [
        f"entry {row['entry_id']}: booked into a business day that does not exist" for row in rows
    ]


async def record_problems(conn: asyncpg.Connection, business_date: date | None = None) -> list[str]:
    """Where settlement and cancellation records and their entries disagree.

    Of one business day's records and entries, or of all (None). Each
    settlement's amounts must be exactly what its entry posts, each
    cancellation's entry the exact reverse of its settlement's, each record
    must name an entry of its own kind made for it on its day that no other
    record names, and every settlement or cancellation entry must be named.
    At most 20 of each kind of problem.
    """
    problems: list[str] = []
    for check in _RECORD_ENTRY_CHECKS:
        problems += await check(conn, business_date)
    return problems


async def _settlement_legs(conn: asyncpg.Connection, business_date: date | None) -> list[str]:
    rows = await conn.fetch(
        _SETTLEMENT_LEGS_SQL,
        accounts.POOLED_FUND,
        accounts.SERIOUS_ILLNESS_FUND,
        accounts.MEMBER_PREFIX,
        accounts.INSTITUTION_PREFIX,
        accounts.PAYABLE_SUFFIX,
        business_date,
    )
    return [
        f"settlement {row['settlement_id']}: its amounts are not what its entry posts"
        f" ({row['account_key']}: {row['stated']} stated, {row['posted']} posted)"
        for row in rows
    ]


async def _claimed_entries(conn: asyncpg.Connection, business_date: date | None) -> list[str]:
    return [
        f"entry {row['entry_id']}: claimed by {row['claimants']} records"
        f" ({row['what']} {row['record']} among them)"
        if row["claimants"] > 1
        else f"{row['what']} {row['record']}: its entry {row['entry_id']} is a"
        f" {row['entry_kind']} entry for {row['entry_ref']!r} on {row['entry_day']}"
        for row in await conn.fetch(_CLAIMS_SQL, business_date)
    ]


async def _unclaimed_entries(conn: asyncpg.Connection, business_date: date | None) -> list[str]:
    return [
        f"entry {row['entry_id']}: a {row['kind']} entry for {row['ref']!r}"
        " that no settlement or cancellation records"
        for row in await conn.fetch(_UNCLAIMED_SQL, business_date)
    ]


async def _reversal_legs(conn: asyncpg.Connection, business_date: date | None) -> list[str]:
    return [
        f"cancellation {row['reversal_id']}: its entry does not reverse the settlement's"
        f" (account {row['account_id']}: {row['reversed']} reversed, {row['original']} posted)"
        for row in await conn.fetch(_REVERSAL_LEGS_SQL, business_date)
    ]


_RECORD_ENTRY_CHECKS: tuple[
    Callable[[asyncpg.Connection, date | None], Awaitable[list[str]]], ...
] = (_settlement_legs, _claimed_entries, _unclaimed_entries, _reversal_legs)


async def _stored_balances(conn: asyncpg.Connection) -> list[str]:
    """Every stored balance row recomputed from the postings."""
    rows = await conn.fetch(
        """
        WITH sums AS (SELECT account_id, sum(amount_fen) AS total FROM postings
                      GROUP BY account_id)
        SELECT a.account_key, b.balance_fen,
               (b.normal_sign * coalesce(s.total, 0))::bigint AS computed
        FROM account_balances b JOIN accounts a USING (account_id)
        LEFT JOIN sums s USING (account_id)
        WHERE b.balance_fen <> b.normal_sign * coalesce(s.total, 0)
        ORDER BY a.account_id LIMIT 20
        """
    )
    return [
        f"account {row['account_key']}: stored balance {row['balance_fen']} fen,"
        f" postings say {row['computed']} fen"
        for row in rows
    ]


async def _postings_total(conn: asyncpg.Connection) -> list[str]:
    total = await conn.fetchval("SELECT coalesce(sum(amount_fen), 0) FROM postings")
    return [f"all postings together sum to {total} fen, not 0"] if total != 0 else []


_RECORD_CHECKS: tuple[Callable[[asyncpg.Connection], Awaitable[list[str]]], ...] = (
    _orphan_postings,
    _unknown_accounts,
    _entryless_settlements,
    _dayless_entries,
    record_problems,
    _stored_balances,
    _postings_total,
)


ANCHORS_FORMAT = "medswitch-ledger-anchors/1"


def read_anchors(path: Path, *, first: bool = False) -> dict[int, ChainEnd]:
    """The chain ends an earlier sound `verify` recorded in `path`.

    `first`: there is no such record yet, and `path` must not exist (none is
    returned). ValueError naming the file when it is missing (a deleted or
    mistyped anchor must not pass for a first run), present on a first run,
    or not such a record.
    """
    if first:
        if path.exists():
            raise ValueError(f"{path} already exists: it is not a first anchor")
        return {}
    if not path.exists():
        raise ValueError(f"{path} does not exist (--first-anchor starts one)")
    try:
        raw = json.loads(path.read_text("utf-8"))
        if raw.get("format") != ANCHORS_FORMAT:
            raise ValueError(f"format is not {ANCHORS_FORMAT}")
        return {
            int(lane): ChainEnd(int(seq), bytes.fromhex(digest))
            for lane, (seq, digest) in raw["lanes"].items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise ValueError(f"{path}: not a ledger anchors file ({exc})") from None


def write_anchors(path: Path, ends: Mapping[int, ChainEnd]) -> None:
    """Record where each lane's chain ends, replacing the file in one step."""
    record = {
        "format": ANCHORS_FORMAT,
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "lanes": {str(lane): [seq, digest.hex()] for lane, (seq, digest) in sorted(ends.items())},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # on disk before it replaces the last good record, never through a planted link
    write_atomically(path, (json.dumps(record, indent=1) + "\n").encode("utf-8"))
