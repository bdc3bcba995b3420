"""The settle and cancel transactions the switch calls, and the reads around them.

One `Ledger` over an asyncpg pool (application role). Every write is one
short transaction of a few round trips: a server-side function loads the
member's state under the member row lock (ms_load_batch), the caller's pure
`decide` callback turns it into a Decision (the switch runs the engine
there), and a second function records it all (ms_record_batch):
settlement record, balanced entry, accumulators, stay, pharmacy count, PIN
failures. Both take a batch, so a group commit of N settlements costs the
same two round trips as one. Nothing about claims is known here: the engine's values travel as
plain dicts keyed with the engine's own field names (YearAccumulators,
InpatientStay, StateChanges.as_dict()), so the switch converts them with
`YearAccumulators(**row)` and friends.

Idempotency is per (institution_code, request_id): the key is locked with a
transaction-scoped advisory lock first, so two identical requests racing
settle exactly once and the second gets the stored answer.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, TypeVar

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
    reason = "LEDGER_ERROR"


class RequestIdReused(LedgerError):
    """Same (institution_code, request_id), different request."""

    reason = "REQUEST_ID_REUSED"


class LateOriginal(LedgerError):
    """A Settle whose request id was cancelled (by original_request_id) before it arrived."""

    reason = "CANCELLED_BEFORE_ARRIVAL"


class SettlementNotFound(LedgerError):
    reason = "SETTLEMENT_NOT_FOUND"


class NotYourSettlement(LedgerError):
    """Only the institution that settled may cancel or read a settlement."""

    reason = "NOT_SETTLING_INSTITUTION"


class DayClosed(LedgerError):
    """The settlement's business day is closed: correct by an adjustment."""

    reason = "BUSINESS_DAY_CLOSED"


class NotCancellable(LedgerError):
    """A rejected settlement has nothing to cancel."""

    reason = "NOT_CANCELLABLE"


class NoOpenDay(LedgerError):
    reason = "NO_OPEN_BUSINESS_DAY"


class InsufficientBalance(LedgerError):
    """The member's balance row refused the debit (CHECK balance_fen >= 0)."""

    reason = "INSUFFICIENT_BALANCE"


class Busy(LedgerError):
    """Transient conflicts persisted past the retry limit: retry later."""

    reason = "LEDGER_BUSY"


# --------------------------------------------------------------------------
# Values


@dataclass(frozen=True, slots=True)
class ClaimInputs:
    """The member's state as stored, for the engine.

    `institution`: dict with code, name, kind, level, region, status (the
    fields of adjudication.model.Institution) or None when unknown.
    `member`: dict with member_id, category, status, card_status, birth_date
    (date), region, name_masked, balance_fen, pin_hash (bytes), pin_failures,
    special_diseases (list of {code, valid_from, valid_to} with dates) or None
    when no member holds the card.
    `year`: the YearAccumulators fields (year included) -- zeros when none.
    `stays`: InpatientStay fields (dates as date) of stays discharged in the
    look-back window, oldest first.
    `settlement_id`: the id this settlement will get (Settle only, else "").
    """

    business_date: date | None
    institution: dict[str, Any] | None
    member: dict[str, Any] | None
    year: dict[str, Any]
    stays: list[dict[str, Any]]
    pharmacy_purchases_today: int
    settlement_id: str = ""


@dataclass(frozen=True, slots=True)
class Decision:
    """What `decide` returns: the ledger records exactly this.

    status: "SETTLED" or "REJECTED". answer: the full response as JSON-able
    dict, returned verbatim to retries (include settlement_id in it).
    postings: [(account_key, signed_fen)] summing to zero (see
    accounts.settlement_postings), empty for a rejection. changes:
    StateChanges.as_dict() or None. pin_failures_after: new PIN failure count
    or None when unchanged.
    """

    status: str
    answer: dict[str, Any]
    member_id: str | None = None
    service_date: date | None = None
    benefit_year: int | None = None
    policy_version: str = ""
    catalog_version: int = 0
    total_fen: int = 0
    pooled_fund_fen: int = 0
    serious_illness_fen: int = 0
    individual_account_fen: int = 0
    postings: list[tuple[str, int]] = field(default_factory=list)
    changes: dict[str, Any] | None = None
    pin_failures_after: int | None = None


@dataclass(frozen=True, slots=True)
class SettleItem:
    """One request for Ledger.settle_batch (the arguments of Ledger.settle)."""

    key: tuple[str, str]
    fingerprint: bytes
    card_no: str
    benefit_year: int
    service_date: date
    decide: Callable[[ClaimInputs], Decision]
    # A stored fingerprint also taken as this request's (the form an earlier
    # version computed), so a retry across an upgrade gets its stored answer.
    legacy_fingerprint: bytes = b""


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
    settlement_id: str | None  # None: tombstone (the original was never received)
    original_request_id: str | None
    business_date: date
    balance_after_fen: int
    entry_id: int | None
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class ActivityRow:
    entry_id: int
    posted_at: datetime
    business_date: date
    kind: str  # SETTLEMENT, CANCELLATION, OPENING, CREDIT...
    settlement_id: str
    institution_code: str
    amount_fen: int  # signed: spending negative
    balance_after_fen: int


@dataclass(frozen=True, slots=True)
class DayTotals:
    institution_code: str
    business_date: date
    settlement_count: int  # settled and not cancelled
    medical_total_fen: int
    pooled_fund_fen: int
    serious_illness_fen: int
    individual_account_fen: int


@dataclass(frozen=True, slots=True)
class DetailRow:
    settlement_id: str
    request_id: str
    total_fen: int
    fund_total_fen: int  # pooled + serious illness + individual account
    status: str  # SETTLED, REJECTED, CANCELLED


_YEAR_FIELDS = (
    "outpatient_deductible_used_fen",
    "outpatient_pooled_fen",
    "basic_pooled_fen",
    "inpatient_above_deductible_fen",
    "new_admissions",
    "serious_illness_base_fen",
    "serious_illness_paid_fen",
)


def _d(value: Any) -> date | None:
    """A date from its ISO text (as jsonb carries it), a date as is, else None."""
    if isinstance(value, date):
        return value
    return date.fromisoformat(value) if isinstance(value, str) else None


# One claim's state, one typed row per claim (see ms_load_batch).
_LOAD_BATCH = "SELECT * FROM ms_load_batch($1, $2, $3, $4, $5, $6, $7)"
_INSTITUTION_FIELDS = ("code", "name", "kind", "level", "region", "status")
_MEMBER_FIELDS = (
    "member_id",
    "category",
    "status",
    "card_status",
    "birth_date",
    "region",
    "name_masked",
    "balance_fen",
    "pin_hash",
    "pin_failures",
)


def _inputs(row: asyncpg.Record, year: int) -> ClaimInputs:
    """ClaimInputs from one row of ms_load_batch."""
    member: dict[str, Any] | None = None
    if row["member_id"] is not None:
        member = {name: row[name] for name in _MEMBER_FIELDS}
        member["special_diseases"] = [
            {"code": d["code"], "valid_from": _d(d["valid_from"]), "valid_to": _d(d["valid_to"])}
            for d in row["special_diseases"] or ()
        ]
    institution: dict[str, Any] | None = None
    if row["institution_code"] is not None:
        institution = {name: row[f"institution_{name}"] for name in _INSTITUTION_FIELDS}
    year_values: dict[str, Any] = {"year": year}
    year_values.update({name: row[name] or 0 for name in _YEAR_FIELDS})
    stays = [
        {
            "settlement_id": s["settlement_id"],
            "primary_diagnosis": s["primary_diagnosis"],
            "admission_date": _d(s["admission_date"]),
            "discharge_date": _d(s["discharge_date"]),
            "new_admission": bool(s["new_admission"]),
        }
        for s in row["stays"] or ()
    ]
    return ClaimInputs(
        business_date=row["business_date"],
        institution=institution,
        member=member,
        year=year_values,
        stays=stays,
        pharmacy_purchases_today=row["pharmacy_purchases_today"],
        settlement_id=row["settlement_id"] or "",
    )


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


class MalformedDecision(ValueError):
    """A programming error in the caller's `decide`: nothing is written."""


def _check_decision(decision: Decision, inputs: ClaimInputs) -> None:
    """Programming errors in the caller, caught before anything is written.

    On the hot path of every settlement: each check is a plain test, and its
    message is only made when it fails.
    """
    if decision.status not in ("SETTLED", "REJECTED"):
        raise MalformedDecision(f"status {decision.status!r}")
    postings = decision.postings
    total = 0
    for _, amount in postings:
        if type(amount) is not int or amount == 0:
            raise MalformedDecision("postings are non-zero int fen")
        total += amount
    if total != 0:
        raise MalformedDecision("postings must balance")
    changes = decision.changes
    if decision.status == "REJECTED" and (postings or changes is not None):
        raise MalformedDecision("a rejection changes no money")
    if postings or changes:
        member = inputs.member
        if member is None or decision.member_id != member["member_id"]:
            raise MalformedDecision("money moves only for the card's member")
    if changes is not None:
        own = accounts.member_account(str(decision.member_id))
        member_leg = 0
        for key, amount in postings:
            if key == own:
                member_leg += amount
        if member_leg != int(changes.get("account_debit_fen", 0)):
            raise MalformedDecision("the member's posting must equal changes.account_debit_fen")
        if changes.get("member_id") != decision.member_id:
            raise MalformedDecision("changes name the member")
        if not isinstance(changes.get("benefit_year"), int):
            raise MalformedDecision("changes name the benefit year")
        if not changes.keys() <= _CHANGES_KEYS:
            raise MalformedDecision(f"unknown changes {changes.keys() - _CHANGES_KEYS}")


def _settle_row(
    item: SettleItem, inputs: ClaimInputs, decision: Decision, entry_no: int | None
) -> tuple[Any, ...]:
    """One ms_settle_row (migration 0006), its fields in the type's order.

    The stored `changes` jsonb is made from the typed fields
    (ms_changes_json), so they must be all there is to the changes.
    """
    changes = decision.changes
    if changes is None:
        state: tuple[Any, ...] = _NO_CHANGES
    else:  # checked by _check_decision
        get = changes.get
        stay = get("stay")
        state = (
            int(changes["benefit_year"]),
            *[int(get(name) or 0) for name in _YEAR_FIELDS],
            _d(get("pharmacy_date")),
            int(get("account_debit_fen") or 0),
            *(
                _NO_STAY
                if stay is None
                else (
                    stay["settlement_id"],
                    stay["primary_diagnosis"],
                    _d(stay["admission_date"]),
                    _d(stay["discharge_date"]),
                    bool(stay["new_admission"]),
                )
            ),
        )
    return (
        inputs.settlement_id,
        item.key[0],
        item.key[1],
        item.fingerprint,
        decision.status,
        decision.member_id,
        decision.service_date or item.service_date,
        decision.benefit_year or item.benefit_year,
        decision.policy_version,
        decision.catalog_version,
        decision.total_fen,
        decision.pooled_fund_fen,
        decision.serious_illness_fen,
        decision.individual_account_fen,
        json.dumps(decision.answer),
        decision.pin_failures_after,
        entry_no,
        *state,
    )


# change_year, the accumulator deltas, pharmacy_date and account_debit_fen, in ms_settle_row,
# then the stay's five fields.
_CHANGE_FIELDS = ("change_year", *_YEAR_FIELDS, "pharmacy_date", "account_debit_fen")
_NO_STAY = (None,) * 5
_NO_CHANGES = (None,) * (len(_CHANGE_FIELDS) + len(_NO_STAY))
# StateChanges.as_dict()'s keys: what ms_changes_json stores.
_CHANGES_KEYS = frozenset(
    ("member_id", "benefit_year", *_YEAR_FIELDS, "pharmacy_date", "account_debit_fen", "stay")
)


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
                # A unique violation here is a lost race on an idempotency key or
                # id; the retry sees the winner's committed row.
                if attempt == TRANSIENT_RETRIES_MAX - 1:
                    raise Busy(f"gave up after {TRANSIENT_RETRIES_MAX} attempts") from exc
                await asyncio.sleep(0.002 * (attempt + 1))
            except asyncpg.CheckViolationError as exc:
                if "account_balances" in str(exc) or "balance_fen" in str(exc):
                    raise InsufficientBalance(
                        "the member's balance does not cover the debit"
                    ) from exc
                raise
        raise AssertionError("unreachable")

    # ---------------------------------------------------------------- reads

    async def load_for_claim(
        self,
        institution_code: str,
        card_no: str,
        benefit_year: int,
        service_date: date,
    ) -> ClaimInputs:
        """The engine's inputs, one round trip, no lock (PreSettle, GetMember)."""
        row = await self.pool.fetchrow(
            _LOAD_BATCH,
            [institution_code],
            [self.keys.card_lookup(card_no)],
            [benefit_year],
            [service_date],
            STAYS_LOOKBACK_DAYS,
            False,
            [None],
        )
        return _inputs(row, benefit_year)

    async def record_pin_check(self, member_id: str, *, ok: bool) -> int:
        """Count a PIN check made outside a settlement (PreSettle, GetMember).

        A wrong PIN adds one to the stored count in the database's own UPDATE
        (ms_pin_check), so wrong PINs tried at the same moment through several
        serve processes are all counted; a right one resets it. Returns the
        count now stored.
        """
        failures: int = await self.pool.fetchval("SELECT ms_pin_check($1, $2)", member_id, ok)
        return failures

    async def member_name_masked(self, member_id: str) -> str:
        """The member's name as shown (first character, then `*`s), from its ciphertext."""
        sealed = await self.pool.fetchval(
            "SELECT name_enc FROM members WHERE member_id = $1", member_id
        )
        if sealed is None:
            raise LedgerError(f"no member {member_id}")
        return mask_name(self.keys.decrypt(bytes(sealed), f"{member_id}:name"))

    def pin_matches(self, member: dict[str, Any], pin: str) -> bool:
        """Constant-time check of a PIN against a member dict from ClaimInputs."""
        return self.keys.pin_matches(member["member_id"], pin, member["pin_hash"])

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
    ) -> list[ActivityRow]:
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
            ActivityRow(
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
            SELECT count(*) AS n, coalesce(sum(total_fen), 0) AS total,
                   coalesce(sum(pooled_fund_fen), 0) AS pooled,
                   coalesce(sum(serious_illness_fen), 0) AS serious,
                   coalesce(sum(individual_account_fen), 0) AS account
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
            settlement_count=int(row["n"]),
            medical_total_fen=int(row["total"]),
            pooled_fund_fen=int(row["pooled"]),
            serious_illness_fen=int(row["serious"]),
            individual_account_fen=int(row["account"]),
        )

    async def day_details(self, institution_code: str, business_date: date) -> list[DetailRow]:
        """3202: every settlement of the institution booked on the day."""
        rows = await self.pool.fetch(
            """
            SELECT s.settlement_id, s.request_id, s.total_fen,
                   s.pooled_fund_fen + s.serious_illness_fen + s.individual_account_fen AS fund,
                   CASE WHEN c.reversal_id IS NOT NULL THEN 'CANCELLED' ELSE s.status END AS status
            FROM settlements s LEFT JOIN cancellations c ON c.settlement_id = s.settlement_id
            WHERE s.institution_code = $1 AND s.business_date = $2
            ORDER BY s.settlement_id
            """,
            institution_code,
            business_date,
        )
        return [
            DetailRow(
                r["settlement_id"],
                r["request_id"],
                int(r["total_fen"]),
                int(r["fund"]),
                r["status"],
            )
            for r in rows
        ]

    # ---------------------------------------------------------------- settle

    async def settle(
        self,
        key: tuple[str, str],
        fingerprint: bytes,
        card_no: str,
        benefit_year: int,
        service_date: date,
        decide: Callable[[ClaimInputs], Decision],
    ) -> StoredSettlement:
        """Settle (or record the rejection of) one claim, exactly once per key.

        `decide` must be pure and quick: it runs while the member row is locked
        and may run more than once (a transient conflict is retried).
        Raises RequestIdReused, LateOriginal, NoOpenDay, InsufficientBalance, Busy.
        """
        return await self.settle_item(
            SettleItem(key, fingerprint, card_no, benefit_year, service_date, decide)
        )

    async def settle_item(self, item: SettleItem) -> StoredSettlement:
        """`settle` for a SettleItem (its legacy fingerprint included)."""
        hashes = [self.keys.card_lookup(item.card_no)]

        async def work(conn: asyncpg.Connection) -> list[StoredSettlement | LedgerError]:
            return await self._settle_rounds(conn, [item], hashes)

        (result,) = await self._retrying(work)
        if isinstance(result, LedgerError):
            raise result
        return result

    async def _settle_rounds(
        self, conn: asyncpg.Connection, items: Sequence[SettleItem], hashes: Sequence[bytes]
    ) -> list[StoredSettlement | LedgerError]:
        """Settle `items` inside the caller's transaction, two round trips per round.

        A round loads every claim in it (ms_load_batch, member locks taken in
        card-hash order), runs each `decide`, and records them all
        (ms_record_batch). A member or request key seen twice goes to a
        later round, so each decision sees the state the earlier one left.
        RequestIdReused, LateOriginal and NoOpenDay are answers for their item;
        any other error fails the transaction.
        """
        results: list[StoredSettlement | LedgerError | None] = [None] * len(items)
        rounds: list[list[int]] = []
        depth: dict[object, int] = {}
        for i in sorted(range(len(items)), key=lambda i: (hashes[i], items[i].key)):
            n = max(depth.get(hashes[i], 0), depth.get(items[i].key, 0))
            depth[hashes[i]] = depth[items[i].key] = n + 1
            if n == len(rounds):
                rounds.append([])
            rounds[n].append(i)
        if len(rounds) > 1:  # every request key first, in one sorted pass (lock order)
            await conn.execute(
                "SELECT ms_lock_keys($1, $2)",
                [item.key[0] for item in items],
                [item.key[1] for item in items],
            )
        replays: dict[str, list[int]] = {}
        for members in rounds:
            rows = await conn.fetch(
                _LOAD_BATCH,
                [items[i].key[0] for i in members],
                [hashes[i] for i in members],
                [items[i].benefit_year for i in members],
                [items[i].service_date for i in members],
                STAYS_LOOKBACK_DAYS,
                True,
                [items[i].key[1] for i in members],
            )
            recorded: list[tuple[int, ClaimInputs, Decision, int | None]] = []
            settle_rows: list[tuple[Any, ...]] = []
            entry_of: list[int] = []
            keys: list[str] = []
            amounts: list[int] = []
            for i, row in zip(members, rows, strict=True):
                item = items[i]
                if row["existing_settlement_id"] is not None:
                    stored = row["existing_fingerprint"]
                    if stored not in (item.fingerprint, item.legacy_fingerprint or None):
                        results[i] = RequestIdReused("this request id was used for another request")
                    else:
                        replays.setdefault(row["existing_settlement_id"], []).append(i)
                    continue
                if row["tombstoned"]:
                    results[i] = LateOriginal(
                        "this request id was cancelled before the settlement arrived"
                    )
                    continue
                if row["business_date"] is None:
                    results[i] = NoOpenDay("no business day is open")
                    continue
                inputs = _inputs(row, item.benefit_year)
                decision = item.decide(inputs)
                _check_decision(decision, inputs)
                entry_no = None
                if decision.postings:
                    entry_no = 1 + (entry_of[-1] if entry_of else 0)
                    for key, amount in decision.postings:
                        entry_of.append(entry_no)
                        keys.append(key)
                        amounts.append(amount)
                recorded.append((i, inputs, decision, entry_no))
                settle_rows.append(_settle_row(item, inputs, decision, entry_no))
            if not recorded:
                continue
            written = await conn.fetchrow(
                "SELECT * FROM ms_record_batch($1, $2, $3, $4)",
                settle_rows,
                entry_of,
                keys,
                amounts,
            )
            created_at = written["created_at"]
            entry_ids = written["entry_ids"]
            for i, inputs, decision, entry_no in recorded:
                assert inputs.business_date is not None
                results[i] = StoredSettlement(
                    settlement_id=inputs.settlement_id,
                    institution_code=items[i].key[0],
                    request_id=items[i].key[1],
                    status=decision.status,
                    member_id=decision.member_id,
                    business_date=inputs.business_date,
                    answer=decision.answer,
                    changes=decision.changes,
                    entry_id=None if entry_no is None else entry_ids[entry_no - 1],
                    policy_version=decision.policy_version,
                    catalog_version=decision.catalog_version,
                    created_at=created_at,
                )
        if replays:
            for row in await conn.fetch(
                f"SELECT {_SETTLEMENT_COLUMNS} FROM settlements s"
                " WHERE s.settlement_id = ANY($1::text[])",
                list(replays),
            ):
                for i in replays[row["settlement_id"]]:
                    results[i] = _stored(row, replayed=True)
        assert all(r is not None for r in results), "every item is answered"
        return [r for r in results if r is not None]

    async def settle_batch(
        self, items: Sequence[SettleItem]
    ) -> list[StoredSettlement | LedgerError]:
        """Several settlements in one transaction and one durable commit (group commit).

        For a batching writer in front of the ledger: each item gets what
        `settle` would give it (a StoredSettlement, or the LedgerError it
        would raise). The whole batch costs two round trips (more only when a
        member or request key repeats in it). If the database refuses the
        batch (say an item overdraws), every item is settled on its own
        instead, so one bad item never fails the others.
        """
        hashes = [self.keys.card_lookup(item.card_no) for item in items]

        async def work(conn: asyncpg.Connection) -> list[StoredSettlement | LedgerError]:
            return await self._settle_rounds(conn, items, hashes)

        try:
            return await self._retrying(work)
        except (LedgerError, asyncpg.PostgresError):
            alone: list[StoredSettlement | LedgerError] = []
            for item in items:
                try:
                    alone.append(await self.settle_item(item))
                except LedgerError as exc:
                    alone.append(exc)
            return alone

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
        Settle: records a tombstone (settlement_id None) so a later Settle
        with that id raises LateOriginal.
        Raises RequestIdReused, SettlementNotFound, NotYourSettlement,
        NotCancellable, DayClosed, NoOpenDay, Busy.
        """
        if (settlement_id is None) == (original_request_id is None):
            raise ValueError("give exactly one of settlement_id and original_request_id")
        institution_code, request_id = key

        async def work(conn: asyncpg.Connection) -> StoredCancellation:
            raw = await conn.fetchval(
                "SELECT ms_load_cancel($1, $2, $3, $4)",
                institution_code,
                request_id,
                settlement_id,
                original_request_id,
            )
            existing = raw.get("existing")
            if existing is not None:
                if bytes.fromhex(existing["fingerprint"]) != fingerprint:
                    raise RequestIdReused("this request id was used for another request")
                return _cancellation(existing, replayed=True)
            if raw.get("business_date") is None:
                raise NoOpenDay("no business day is open")
            target = raw.get("settlement")
            if target is None:
                if settlement_id is not None:
                    raise SettlementNotFound("no such settlement")
                if raw.get("tombstone") is not None:
                    return _cancellation(raw["tombstone"], replayed=True)
                booked: date = await conn.fetchval(
                    "SELECT ms_record_tombstone($1, $2, $3, $4, $5, $6)",
                    raw["reversal_id"],
                    institution_code,
                    request_id,
                    fingerprint,
                    original_request_id,
                    reason,
                )
                return StoredCancellation(
                    reversal_id=raw["reversal_id"],
                    institution_code=institution_code,
                    request_id=request_id,
                    settlement_id=None,
                    original_request_id=original_request_id,
                    business_date=booked,
                    balance_after_fen=0,
                    entry_id=None,
                )
            if target["institution_code"] != institution_code:
                raise NotYourSettlement("only the settling institution may cancel")
            if raw.get("cancellation") is not None:
                return _cancellation(raw["cancellation"], replayed=True)
            if target["status"] != "SETTLED":
                raise NotCancellable("a rejected settlement cannot be cancelled")
            if target["day_status"] != "OPEN":
                raise DayClosed("the settlement's business day is closed")
            await conn.execute(
                "SELECT ms_record_cancellation($1, $2, $3, $4, $5, $6, $7)",
                raw["reversal_id"],
                institution_code,
                request_id,
                fingerprint,
                target["settlement_id"],
                original_request_id,
                reason,
            )
            row = await conn.fetchval(
                "SELECT to_jsonb(c) - 'fingerprint' FROM cancellations c WHERE reversal_id = $1",
                raw["reversal_id"],
            )
            return _cancellation(row, replayed=False)

        return await self._retrying(work)


def canonical_json(value: Any) -> bytes:
    """Stable bytes of a JSON-able value (for fingerprints)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
