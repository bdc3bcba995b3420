"""Settlement records and the reads around them, over an application-role pool.

Settling is two statements, neither holding a transaction open while the
switch decides: `load_states` reads what the engine needs about a batch of
claims (with each member's `state_seq`), and `record` writes the batch's
settlement records, balanced entries and member-state changes in one
statement that commits on its own, after re-checking, under the members'
row locks, that every member is still at the version loaded (else
StaleRows: nothing is written, the caller loads and decides again). The
ledger knows accounts, entries and settlement records, not claims: what to
record arrives as typed `SettlementRow`s and their postings.

Idempotency is per (institution_code, request_id): `record` locks the keys
(advisory) and refuses a key settled or cancelled since the load, so two
identical requests racing settle exactly once; the loser, loaded again,
finds the stored answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, NamedTuple, TypeVar

import asyncpg

from ledger import accounts
from ledger.crypto import DataKeys, mask_name

T = TypeVar("T")

TRANSIENT_RETRIES_MAX = 5
STAYS_LOOKBACK_DAYS = 400  # stays discharged this long before the service date are loaded
TRANSIENT_ERRORS = (
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
)


# --------------------------------------------------------------------------
# Errors (stable; the switch maps each to a gRPC status)


class LedgerError(Exception):
    """A refusal by the ledger (each kind is mapped to a gRPC status by the switch)."""


class RequestIdReused(LedgerError):
    """Same (institution_code, request_id), different request."""


class RequestCancelled(LedgerError):
    """A Settle whose request id was cancelled (by original_request_id) before it arrived."""


class SettlementNotFound(LedgerError):
    """No such settlement (or request id) for this institution."""


class NotYourSettlement(LedgerError):
    """Only the institution that settled may cancel or read a settlement."""


class DayClosed(LedgerError):
    """The settlement's business day is closed: correct by an adjustment."""


class NotCancellable(LedgerError):
    """A rejected settlement has nothing to cancel."""


class NoOpenDay(LedgerError):
    """No business day is open."""


class Busy(LedgerError):
    """Transient conflicts persisted past the retry limit: retry later."""


class StaleRows(LedgerError):
    """Rows decided on state that has moved since it was loaded; nothing was recorded."""

    def __init__(self, positions: list[int]) -> None:
        super().__init__(f"{len(positions)} rows were decided on stale state")
        self.positions = positions  # 0-based, into the rows given to `record`


# --------------------------------------------------------------------------
# Values


class LoadRequest(NamedTuple):
    """One claim's keys for ms_load_states (request_id None: a read, no settlement id).

    history False: the claim needs neither the member's approved special
    diseases nor their recent stays (engine.uses_member_history), which are
    then not loaded (None).
    """

    institution_code: str
    card_hmac: bytes
    benefit_year: int
    service_date: date
    request_id: str | None
    history: bool = True


class StateRow(NamedTuple):
    """One row of ms_load_states, its columns in order (a test holds them equal).

    The state of the member holding a card as stored, with the institution,
    the open day and the idempotency facts of the request: institution and
    member fields are None when unknown, accumulators None when the member
    has no row for the year. `special_diseases` and `stays` are lists of
    dicts (jsonb, dates as ISO text) or None. `state_seq` is the version a
    record must still find (ms_record_checked).
    """

    business_date: date | None
    settlement_id: str | None  # the id this settlement will get (Settle only)
    existing_settlement_id: str | None
    existing_fingerprint: bytes | None
    request_cancelled: bool  # the request was cancelled before it arrived (REQUEST_CANCELLED)
    institution_code: str | None
    institution_name: str | None
    institution_kind: str | None
    institution_level: str | None
    institution_region: str | None
    institution_status: str | None
    member_id: str | None
    state_seq: int | None
    category: str | None
    status: str | None
    card_status: str | None
    birth_date: date | None
    region: str | None
    balance_fen: int | None
    pin_hash: bytes | None
    pin_failures: int | None
    special_diseases: list[dict[str, Any]] | None
    outpatient_deductible_used_fen: int | None
    outpatient_pooled_fen: int | None
    basic_pooled_fen: int | None
    inpatient_above_deductible_fen: int | None
    new_admissions: int | None
    serious_illness_base_fen: int | None
    serious_illness_paid_fen: int | None
    stays: list[dict[str, Any]] | None
    pharmacy_purchases_today: int


class SettlementRow(NamedTuple):
    """One ms_settle_row, field for field (a test holds them equal).

    A settlement record and the member-state changes it makes (the fields of
    adjudication's StateChanges; change_year None when it changes no state).
    `entry_no` is set by Ledger.record; `answer` is the response as JSON
    text, returned verbatim to retries; `pin_failures` None leaves the count.
    """

    settlement_id: str
    institution_code: str
    request_id: str
    fingerprint: bytes
    status: str  # SETTLED or REJECTED
    member_id: str | None
    service_date: date
    benefit_year: int
    policy_version: str
    catalog_version: int
    total_fen: int
    pooled_fund_fen: int
    serious_illness_fen: int
    individual_account_fen: int
    answer: str
    pin_failures: int | None
    entry_no: int | None
    change_year: int | None
    outpatient_deductible_used_fen: int | None
    outpatient_pooled_fen: int | None
    basic_pooled_fen: int | None
    inpatient_above_deductible_fen: int | None
    new_admissions: int | None
    serious_illness_base_fen: int | None
    serious_illness_paid_fen: int | None
    pharmacy_date: date | None
    account_debit_fen: int | None
    stay_settlement_id: str | None
    stay_primary_diagnosis: str | None
    stay_admission_date: date | None
    stay_discharge_date: date | None
    stay_new_admission: bool | None
    state_seq: int | None  # the member's version as loaded


@dataclass(frozen=True, slots=True)
class Recorded:
    """What Ledger.record wrote: each row's entry id (None: it posted nothing)."""

    entry_ids: list[int | None]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class StoredSettlement:
    settlement_id: str
    institution_code: str
    request_id: str
    status: str  # SETTLED, REJECTED (see `cancellation` for CANCELLED)
    member_id: str | None
    business_date: date
    answer: dict[str, Any]
    changes: dict[str, Any] | None
    entry_id: int | None
    policy_version: str
    catalog_version: int
    created_at: datetime
    replayed: bool = False  # True: a retry, answered from the stored record
    cancellation: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class StoredCancellation:
    reversal_id: str
    institution_code: str
    request_id: str
    settlement_id: str | None  # None: its request was cancelled before it arrived
    original_request_id: str | None
    business_date: date
    balance_after_fen: int
    entry_id: int | None
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class AccountEntry:
    """One posting on a member's individual account, as their statement lists it."""

    entry_id: int
    posted_at: datetime
    business_date: date
    kind: str  # the entry's: SETTLEMENT, CANCELLATION, OPENING, CREDIT...
    settlement_id: str  # "" unless a SETTLEMENT or CANCELLATION
    institution_code: str
    amount_fen: int  # signed: spending negative
    balance_after_fen: int


@dataclass(frozen=True, slots=True)
class DayTotals:
    """An institution's figures for one business day (3201, ReconcileTotals)."""

    institution_code: str
    business_date: date
    settlement_count: int  # settled and not cancelled
    medical_total_fen: int
    pooled_fund_fen: int
    serious_illness_fen: int
    individual_account_fen: int


@dataclass(frozen=True, slots=True)
class DetailRecord:
    """One settlement of an institution's day, as both sides list it (3202, ReconcileDetails)."""

    settlement_id: str
    request_id: str
    total_fen: int
    fund_total_fen: int  # pooled + serious illness + individual account
    status: str  # SETTLED, REJECTED, CANCELLED (switch.backend.SettlementStatus values)


_LOAD_STATES = "SELECT * FROM ms_load_states($1, $2, $3, $4, $5, $6, $7)"
_RECORD_CHECKED = "SELECT * FROM ms_record_checked($1, $2, $3, $4, $5)"
STALE_SQLSTATE = "MS001"  # ms_record_checked: rows decided on stale state

_SETTLEMENT_COLUMNS = (
    "s.settlement_id, s.institution_code, s.request_id, s.status, s.member_id, s.business_date,"
    " s.answer, s.changes, s.entry_id, s.policy_version, s.catalog_version, s.created_at,"
    " s.fingerprint, (SELECT to_jsonb(c) - 'fingerprint' FROM cancellations c"
    " WHERE c.settlement_id = s.settlement_id) AS cancellation"
)


def _stored(row: asyncpg.Record, *, replayed: bool = False) -> StoredSettlement:
    return StoredSettlement(
        settlement_id=row["settlement_id"],
        institution_code=row["institution_code"],
        request_id=row["request_id"],
        status=row["status"],
        member_id=row["member_id"],
        business_date=row["business_date"],
        answer=row["answer"],
        changes=row["changes"],
        entry_id=row["entry_id"],
        policy_version=row["policy_version"],
        catalog_version=row["catalog_version"],
        created_at=row["created_at"],
        replayed=replayed,
        cancellation=row["cancellation"],
    )


def _cancellation(raw: dict[str, Any], *, replayed: bool) -> StoredCancellation:
    return StoredCancellation(
        reversal_id=raw["reversal_id"],
        institution_code=raw["institution_code"],
        request_id=raw["request_id"],
        settlement_id=raw.get("settlement_id"),
        original_request_id=raw.get("original_request_id"),
        business_date=date.fromisoformat(raw["business_date"]),
        balance_after_fen=int(raw["balance_after_fen"]),
        entry_id=raw.get("entry_id"),
        replayed=replayed,
    )


def prior_outcome(state: StateRow, fingerprint: bytes) -> str | LedgerError | None:
    """What the stored facts say of a Settle before anything is decided.

    None: a new request on an open day, to be decided. A settlement id: a
    retry of that settlement (same fingerprint), answered from its record.
    A LedgerError: the request id was used for another request, cancelled
    before it arrived, or no business day is open.
    """
    if state.existing_settlement_id is not None:
        if state.existing_fingerprint == fingerprint:
            return state.existing_settlement_id
        return RequestIdReused("this request id was used for another request")
    if state.request_cancelled:
        return RequestCancelled("this request id was cancelled before the settlement arrived")
    if state.business_date is None:
        return NoOpenDay("no business day is open")
    return None


class MalformedDecision(ValueError):
    """A programming error in what the caller asked to record: nothing is written."""


def _check_row(row: SettlementRow, legs: Sequence[tuple[str, int]]) -> None:
    """The ledger's own checks of one settlement before anything is written.

    On the hot path of every settlement: each check is a plain test, and its
    message is only made when it fails.
    """
    if row.status not in ("SETTLED", "REJECTED"):
        raise MalformedDecision(f"status {row.status!r}")
    total = 0
    member_leg = 0
    own = accounts.member_account(str(row.member_id))
    for key, amount in legs:
        if type(amount) is not int or amount == 0:
            raise MalformedDecision("postings are non-zero int fen")
        total += amount
        if key == own:
            member_leg += amount
    if total != 0 or len(legs) == 1:
        raise MalformedDecision("postings must balance")
    changes = row.change_year is not None
    if row.status == "REJECTED" and (legs or changes):
        raise MalformedDecision("a rejection changes no money")
    if (legs or changes) and row.member_id is None:
        raise MalformedDecision("money moves only for the card's member")
    if member_leg != (row.account_debit_fen or 0):
        raise MalformedDecision("the member's posting must equal account_debit_fen")
    if legs and not changes:
        raise MalformedDecision("a settlement that moves money changes the member's state")


def _record_arrays(
    rows: Sequence[SettlementRow], legs: Sequence[Sequence[tuple[str, int]]]
) -> tuple[list[SettlementRow], list[int], list[str], list[int]]:
    """ms_record_checked's arguments: rows numbered by entry, postings flattened."""
    if len(rows) != len(legs):
        raise MalformedDecision("one list of postings per row")
    numbered: list[SettlementRow] = []
    entry_of: list[int] = []
    keys: list[str] = []
    amounts: list[int] = []
    entry_no = 0
    for row, row_legs in zip(rows, legs, strict=True):
        _check_row(row, row_legs)
        if row_legs:
            entry_no += 1
            row = row._replace(entry_no=entry_no)
            for key, amount in row_legs:
                entry_of.append(entry_no)
                keys.append(key)
                amounts.append(amount)
        elif row.entry_no is not None:
            row = row._replace(entry_no=None)
        numbered.append(row)
    return numbered, entry_of, keys, amounts


def _stale_positions(detail: str | None, count: int) -> list[int]:
    """0-based positions of ms_record_checked's DETAIL (`day`: all of them)."""
    if not detail or detail == "day":
        return list(range(count))
    return [int(p) - 1 for p in detail.split(",")]


class Ledger:
    """Settle, cancel and read, over an application-role pool."""

    def __init__(self, pool: asyncpg.Pool, keys: DataKeys) -> None:
        self.pool = pool
        self.keys = keys

    async def _retrying(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run `work` in a transaction, retrying transient conflicts a bounded number of times."""
        for attempt in range(TRANSIENT_RETRIES_MAX):
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    return await work(conn)
            except (*TRANSIENT_ERRORS, asyncpg.UniqueViolationError) as exc:
                # A unique violation is transient only as a lost race on a
                # cancellation's key (the retry sees the winner's row); any
                # other is a bug, and retrying it cannot succeed.
                lost_race = getattr(exc, "table_name", None) == "cancellations"
                if isinstance(exc, asyncpg.UniqueViolationError) and not lost_race:
                    raise
                if attempt == TRANSIENT_RETRIES_MAX - 1:
                    raise Busy(f"gave up after {TRANSIENT_RETRIES_MAX} attempts") from exc
            await asyncio.sleep(0.002 * (attempt + 1))
        raise AssertionError("unreachable")

    # ---------------------------------------------------------------- reads

    async def load_for_claim(
        self, institution_code: str, card_no: str, benefit_year: int, service_date: date
    ) -> StateRow:
        """The engine's inputs for one card, one round trip, no lock (PreSettle, GetMember)."""
        request = LoadRequest(
            institution_code, self.keys.card_lookup(card_no), benefit_year, service_date, None
        )
        (state,) = await self.load_states([request])
        return state

    async def record_pin_check(self, member_id: str, *, ok: bool, failures_max: int) -> int | None:
        """Count a PIN checked outside a settlement (PreSettle, GetMember), on the
        count as the database holds it now, whichever serve process checked.

        Only while the card is not locked (fewer than `failures_max` failures
        stored): a wrong PIN adds one, a right one resets the count, in the
        owner's function ms_pin_check. Returns the count now stored, or None
        if the card is locked: the PIN then counts for nothing, right or
        wrong. So of wrong PINs tried at once through any number of
        processes, the `failures_max`th locks the card and every other finds
        it locked; a right PIN is judged on the count after the wrong ones
        counted before it, not on the count it was loaded with.
        """
        failures: int | None = await self.pool.fetchval(
            "SELECT ms_pin_check($1, $2, $3)", member_id, ok, failures_max
        )
        return failures

    async def member_name_masked(self, member_id: str) -> str:
        """The member's name as shown (first character, then `*`s), from its ciphertext."""
        sealed = await self.pool.fetchval(
            "SELECT name_enc FROM members WHERE member_id = $1", member_id
        )
        if sealed is None:
            raise LedgerError(f"no member {member_id}")
        return mask_name(self.keys.decrypt(bytes(sealed), f"{member_id}:name"))

    def pin_matches(self, state: StateRow, pin: str) -> bool:
        """Constant-time check of a PIN against the member of a loaded state."""
        if state.member_id is None or state.pin_hash is None:
            return False
        return self.keys.pin_matches(state.member_id, pin, state.pin_hash)

    async def get_settlement(
        self,
        institution_code: str,
        *,
        settlement_id: str | None = None,
        request_id: str | None = None,
    ) -> StoredSettlement:
        if settlement_id is not None:
            row = await self.pool.fetchrow(
                f"SELECT {_SETTLEMENT_COLUMNS} FROM settlements s WHERE s.settlement_id = $1",
                settlement_id,
            )
        else:
            row = await self.pool.fetchrow(
                f"SELECT {_SETTLEMENT_COLUMNS} FROM settlements s"
                " WHERE s.institution_code = $1 AND s.request_id = $2",
                institution_code,
                request_id,
            )
        if row is None:
            raise SettlementNotFound("no such settlement")
        if row["institution_code"] != institution_code:
            raise NotYourSettlement("the settlement belongs to another institution")
        return _stored(row)

    async def account_activity(
        self, member_id: str, from_date: date | None = None, to_date: date | None = None
    ) -> list[AccountEntry]:
        """The member's own statement: every posting on their account, oldest first."""
        rows = await self.pool.fetch(
            """
            SELECT * FROM (
                SELECT e.entry_id, e.posted_at, e.business_date, e.kind, e.ref,
                       coalesce(s.institution_code, '') AS institution_code,
                       -p.amount_fen AS amount_fen,
                       sum(-p.amount_fen) OVER (ORDER BY e.entry_id) AS balance_after_fen
                FROM members m
                JOIN postings p ON p.account_id = m.account_id
                JOIN entries e ON e.entry_id = p.entry_id
                LEFT JOIN settlements s ON s.settlement_id = e.ref
                WHERE m.member_id = $1
            ) t
            WHERE ($2::date IS NULL OR business_date >= $2)
              AND ($3::date IS NULL OR business_date <= $3)
            ORDER BY entry_id
            """,
            member_id,
            from_date,
            to_date,
        )
        return [
            AccountEntry(
                entry_id=r["entry_id"],
                posted_at=r["posted_at"],
                business_date=r["business_date"],
                kind=r["kind"],
                settlement_id=r["ref"] if r["kind"] in ("SETTLEMENT", "CANCELLATION") else "",
                institution_code=r["institution_code"],
                amount_fen=int(r["amount_fen"]),
                balance_after_fen=int(r["balance_after_fen"]),
            )
            for r in rows
        ]

    async def day_totals(self, institution_code: str, business_date: date) -> DayTotals:
        """3201: the switch's figures for one institution and day (settled, not cancelled)."""
        row = await self.pool.fetchrow(
            """
            SELECT count(*) AS settlement_count,
                   coalesce(sum(total_fen), 0) AS medical_total_fen,
                   coalesce(sum(pooled_fund_fen), 0) AS pooled_fund_fen,
                   coalesce(sum(serious_illness_fen), 0) AS serious_illness_fen,
                   coalesce(sum(individual_account_fen), 0) AS individual_account_fen
            FROM settlements s
            WHERE s.institution_code = $1 AND s.business_date = $2 AND s.status = 'SETTLED'
              AND NOT EXISTS (SELECT 1 FROM cancellations c WHERE c.settlement_id = s.settlement_id)
            """,
            institution_code,
            business_date,
        )
        return DayTotals(
            institution_code=institution_code,
            business_date=business_date,
            settlement_count=int(row["settlement_count"]),
            medical_total_fen=int(row["medical_total_fen"]),
            pooled_fund_fen=int(row["pooled_fund_fen"]),
            serious_illness_fen=int(row["serious_illness_fen"]),
            individual_account_fen=int(row["individual_account_fen"]),
        )

    async def day_details(self, institution_code: str, business_date: date) -> list[DetailRecord]:
        """3202: every settlement of the institution booked on the day."""
        rows = await self.pool.fetch(
            """
            SELECT s.settlement_id, s.request_id, s.total_fen,
                   s.pooled_fund_fen + s.serious_illness_fen + s.individual_account_fen
                       AS fund_total_fen,
                   CASE WHEN c.reversal_id IS NOT NULL THEN 'CANCELLED' ELSE s.status END AS status
            FROM settlements s LEFT JOIN cancellations c ON c.settlement_id = s.settlement_id
            WHERE s.institution_code = $1 AND s.business_date = $2
            ORDER BY s.settlement_id
            """,
            institution_code,
            business_date,
        )
        return [
            DetailRecord(
                settlement_id=r["settlement_id"],
                request_id=r["request_id"],
                total_fen=int(r["total_fen"]),
                fund_total_fen=int(r["fund_total_fen"]),
                status=r["status"],
            )
            for r in rows
        ]

    # ---------------------------------------------------------------- settle

    async def load_states(self, requests: Sequence[LoadRequest]) -> list[StateRow]:
        """The stored state behind each request, one statement, no transaction, no lock.

        Each row carries its member's `state_seq`: `record` refuses rows whose
        member has moved on since (StaleRows), so the caller decides from
        this state without holding anything while it does.
        """
        institutions, cards, years, days, request_ids, history = zip(*requests, strict=True)
        rows = await self.pool.fetch(
            _LOAD_STATES,
            institutions,
            cards,
            years,
            days,
            STAYS_LOOKBACK_DAYS,
            request_ids,
            history,
        )
        return [StateRow(*row) for row in rows]

    async def record(
        self,
        business_date: date,
        rows: Sequence[SettlementRow],
        legs: Sequence[Sequence[tuple[str, int]]],
    ) -> Recorded:
        """Record settlements decided from `load_states`, in one statement and one commit.

        `legs[i]` are the postings of rows[i] (account key, signed fen; empty
        for none). Durable when it returns. Raises StaleRows, naming the rows
        whose member, request key or business day moved since they were
        loaded; then nothing is recorded. Raises MalformedDecision before
        writing anything if a row's postings or changes are not a settlement's.
        """
        numbered, entry_of, keys, amounts = _record_arrays(rows, legs)
        try:
            written = await self.pool.fetchrow(
                _RECORD_CHECKED, business_date, numbered, entry_of, keys, amounts
            )
        except asyncpg.PostgresError as exc:
            if exc.sqlstate == STALE_SQLSTATE:
                raise StaleRows(_stale_positions(exc.detail, len(rows))) from exc
            raise
        entry_ids = written["entry_ids"]
        return Recorded(
            [None if row.entry_no is None else entry_ids[row.entry_no - 1] for row in numbered],
            written["created_at"],
        )

    async def stored_settlements(self, settlement_ids: Sequence[str]) -> list[StoredSettlement]:
        """The stored records of settlements (answers for retries), in no particular order."""
        rows = await self.pool.fetch(
            f"SELECT {_SETTLEMENT_COLUMNS} FROM settlements s"
            " WHERE s.settlement_id = ANY($1::text[])",
            list(settlement_ids),
        )
        return [_stored(row, replayed=True) for row in rows]

    # ---------------------------------------------------------------- cancel

    async def cancel(
        self,
        key: tuple[str, str],
        fingerprint: bytes,
        *,
        settlement_id: str | None = None,
        original_request_id: str | None = None,
        reason: str = "",
    ) -> StoredCancellation:
        """Reverse a settlement (by id, or by the request id of its Settle).

        Idempotent per key; a second cancellation of the same settlement under
        another key returns the first. By original_request_id with no such
        Settle: records the request as cancelled before it arrived
        (settlement_id None), so a later Settle with that id raises
        RequestCancelled (REQUEST_CANCELLED).
        Raises RequestIdReused, SettlementNotFound, NotYourSettlement,
        NotCancellable, DayClosed, NoOpenDay, Busy.
        """
        if (settlement_id is None) == (original_request_id is None):
            raise ValueError("give exactly one of settlement_id and original_request_id")
        request = _CancelRequest(*key, fingerprint, settlement_id, original_request_id, reason)
        return await self._retrying(request.run)


class _CancelRequest(NamedTuple):
    """One CancelSettlement, run by Ledger.cancel in a transaction (again on a conflict)."""

    institution_code: str
    request_id: str
    fingerprint: bytes
    settlement_id: str | None
    original_request_id: str | None
    reason: str

    async def run(self, conn: asyncpg.Connection) -> StoredCancellation:
        """Load the facts under the keys' locks, then answer from them or record."""
        facts = await conn.fetchval(
            "SELECT ms_load_cancel($1, $2, $3, $4)",
            self.institution_code,
            self.request_id,
            self.settlement_id,
            self.original_request_id,
        )
        existing = facts.get("existing")
        if existing is not None:
            if bytes.fromhex(existing["fingerprint"]) != self.fingerprint:
                raise RequestIdReused("this request id was used for another request")
            return _cancellation(existing, replayed=True)
        if facts.get("business_date") is None:
            raise NoOpenDay("no business day is open")
        target = facts.get("settlement")
        if target is None:
            return await self._cancel_before_arrival(conn, facts)
        if target["institution_code"] != self.institution_code:
            raise NotYourSettlement("only the settling institution may cancel")
        if facts.get("cancellation") is not None:
            return _cancellation(facts["cancellation"], replayed=True)
        if target["status"] != "SETTLED":
            raise NotCancellable("a rejected settlement cannot be cancelled")
        if target["day_status"] != "OPEN":
            raise DayClosed("the settlement's business day is closed")
        return await self._reverse(conn, facts["reversal_id"], target["settlement_id"])

    async def _cancel_before_arrival(
        self, conn: asyncpg.Connection, facts: dict[str, Any]
    ) -> StoredCancellation:
        """No settlement to reverse: record its request as cancelled before it arrived."""
        if self.settlement_id is not None:
            raise SettlementNotFound("no such settlement")
        # this request id may already have been cancelled before it arrived
        earlier = facts.get("request_cancelled")
        if earlier is not None:
            return _cancellation(earlier, replayed=True)
        business_date: date = await conn.fetchval(  # the day it is booked into
            "SELECT ms_record_request_cancelled($1, $2, $3, $4, $5, $6)",
            facts["reversal_id"],
            self.institution_code,
            self.request_id,
            self.fingerprint,
            self.original_request_id,
            self.reason,
        )
        return StoredCancellation(
            reversal_id=facts["reversal_id"],
            institution_code=self.institution_code,
            request_id=self.request_id,
            settlement_id=None,
            original_request_id=self.original_request_id,
            business_date=business_date,
            balance_after_fen=0,
            entry_id=None,
        )

    async def _reverse(
        self, conn: asyncpg.Connection, reversal_id: str, settlement_id: str
    ) -> StoredCancellation:
        """Post the reversing entry and take the settlement's state changes back."""
        await conn.execute(
            "SELECT ms_record_cancellation($1, $2, $3, $4, $5, $6, $7)",
            reversal_id,
            self.institution_code,
            self.request_id,
            self.fingerprint,
            settlement_id,
            self.original_request_id,
            self.reason,
        )
        row = await conn.fetchval(
            "SELECT to_jsonb(c) - 'fingerprint' FROM cancellations c WHERE reversal_id = $1",
            reversal_id,
        )
        return _cancellation(row, replayed=False)
