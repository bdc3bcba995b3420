"""Settle, as one unit of work: take a batch, load, adjudicate, record, answer.

Every Settle must be durable before it is answered, and a durable commit
costs a disk flush, so the Settle calls waiting at the same moment share
one. One writer per serve process does, in a straight line (`_run`):

1. take the calls queued now (at most `batch_max`, one per card);
2. load every claim's state in one statement (`Ledger.load_states`: no
   transaction, no lock);
3. adjudicate each claim (the pure engine), answering at once the ones that
   need no record: a retry gets its stored answer, a reused or cancelled
   request id or a missing business day its error;
4. record them all in one statement, committed on its own
   (`Ledger.record`), and answer each from the view it was decided with.

While a batch loads and records, the calls that arrive collect in the queue
and make the next batch: the busier the switch, the larger the batch and
the fewer statements and flushes a settlement costs. The writer does not
load the next batch while one records: measured, that overlap made batches
half as large, cost PostgreSQL and the serve process more a settlement and
answered later (BENCHMARKS.md). No connection is ever idle in a
transaction while Python runs. A process never decides twice on one
member's state at once (a batch holds one call per card, and one batch is
in hand at a time); another process, a cancellation or a PIN check may
still move a member between load and record: `record` then refuses the
stale rows (StaleRows), which go back to the front of the queue to be
loaded and decided again.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import asyncpg
import structlog

from adjudication import limits as alimits
from adjudication.catalog import CatalogBook
from adjudication.engine import adjudicate, benefit_date, uses_member_history
from adjudication.model import Claim
from adjudication.policy import PolicyBook
from ledger.store import (
    Busy,
    Ledger,
    LedgerError,
    LoadRequest,
    RequestIdReused,
    SettlementRow,
    StaleRows,
    StateRow,
    StoredSettlement,
    prior_outcome,
)
from switch import limits, metrics
from switch.backend import SettlementView, settlement_view, view_from_dict
from switch.convert import REQUEST_DIGEST_BYTES
from switch.errors import ErrorReason, SwitchError
from switch.postings import settlement_record
from switch.state import engine_context

log = structlog.get_logger("medswitch.settle")


@dataclass(slots=True, eq=False)
class Pending:
    """One Settle call waiting for its answer."""

    claim: Claim
    pin: str
    fingerprint: bytes
    load: LoadRequest
    future: asyncio.Future[SettlementView]
    loads: int = 0  # how many times its state was loaded (stale rows load again)
    queued_at: float = field(default_factory=time.perf_counter)

    def answer(self, view: SettlementView) -> None:
        if not self.future.done():  # the caller may have gone (deadline)
            self.future.set_result(view)

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


@dataclass(slots=True)
class Decided:
    """A claim adjudicated from its loaded state, ready to record."""

    pending: Pending
    view: SettlementView
    row: SettlementRow
    legs: list[tuple[str, int]]


@dataclass(slots=True)
class Batch:
    """What one load decided: the claims to record on the day they were loaded in."""

    business_date: date | None = None
    decided: list[Decided] = field(default_factory=list)


class SettleWriter:
    """The process's one writer of settlements (see the module's docstring)."""

    def __init__(
        self, ledger: Ledger, policies: PolicyBook, catalogs: CatalogBook, *, batch_max: int
    ) -> None:
        assert batch_max >= 1
        self.ledger = ledger
        self.policies = policies
        self.catalogs = catalogs
        self.batch_max = batch_max
        self._queue: deque[Pending] = deque()
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        # Set when the writer died (raised, returned, or was cancelled but not by
        # close()): Settle is refused from then on and health turns NOT_SERVING.
        self.failure: BaseException | None = None

    async def settle(self, claim: Claim, pin: str, fingerprint: bytes) -> SettlementView:
        """The claim settled (or refused) and durable; raises what the ledger refuses."""
        if self.failure is not None:
            raise RuntimeError("the settlement writer has stopped") from self.failure
        self._start()
        day = benefit_date(claim)
        card_hmac = self.ledger.keys.card_lookup(claim.card_no)
        load = LoadRequest(
            claim.institution_code,
            card_hmac,
            day.year,
            day,
            claim.request_id,
            history=uses_member_history(claim),
        )
        future: asyncio.Future[SettlementView] = asyncio.get_running_loop().create_future()
        self._queue.append(Pending(claim, pin, fingerprint, load, future))
        self._arrived.set()
        # If the caller goes away (deadline), the claim may still be recorded;
        # a retry with the same request id then gets the stored answer.
        return await future

    # ------------------------------------------------------------ the loop

    async def _run(self) -> None:
        while True:
            batch = await self._take()
            metrics.SETTLE_BATCH_SIZE.observe(len(batch))
            metrics.SETTLE_STAGE_MS.labels(stage="queue").observe(
                1000 * (time.perf_counter() - sum(p.queued_at for p in batch) / len(batch))
            )
            try:
                await self._settle_batch(batch)
            except BaseException as exc:  # closing, or a bug: no call of the batch is left waiting
                closing = isinstance(exc, asyncio.CancelledError)
                for pending in batch:  # those already answered keep their answer
                    pending.fail(ConnectionError("the switch is shutting down") if closing else exc)
                raise

    async def _settle_batch(self, batch: list[Pending]) -> None:
        try:
            decided = await self._load_and_decide(batch)
        except Exception as exc:  # the database went away: each call learns
            for pending in batch:
                pending.fail(exc)
            return
        if decided.decided:
            await self._record(decided)

    async def _take(self) -> list[Pending]:
        """The calls queued now, at most batch_max, one per card."""
        while not self._queue:
            self._arrived.clear()
            await self._arrived.wait()
        batch: list[Pending] = []
        held: list[Pending] = []
        cards: set[bytes] = set()
        while self._queue and len(batch) < self.batch_max:
            pending = self._queue.popleft()
            card = pending.load.card_hmac
            if card in cards:
                held.append(pending)
            else:
                cards.add(card)
                batch.append(pending)
        self._queue.extendleft(reversed(held))
        return batch

    async def _load_and_decide(self, batch: list[Pending]) -> Batch:
        """Load the batch's state in one statement and adjudicate each claim."""
        started = time.perf_counter()
        states = await self.ledger.load_states([p.load for p in batch])
        loaded = time.perf_counter()
        metrics.SETTLE_STAGE_MS.labels(stage="load").observe(1000 * (loaded - started))
        out = Batch()
        replays: dict[str, list[Pending]] = {}
        wrong_pins: list[tuple[Pending, str]] = []
        for pending, state in zip(batch, states, strict=True):
            pending.loads += 1
            prior: str | Exception | None = prior_outcome(state, pending.fingerprint)
            if _a_retry(state, pending.fingerprint):
                # The same request again: its answer is the member's, given only
                # for the PIN it was settled with, and never to a locked card.
                if (state.pin_failures or 0) >= alimits.pin_failures_max:
                    prior = SwitchError(ErrorReason.PIN_LOCKED, "the card is locked")
                elif isinstance(prior, LedgerError) and state.member_id is not None:
                    wrong_pins.append((pending, state.member_id))
                    continue
            if isinstance(prior, str):
                replays.setdefault(prior, []).append(pending)
            elif prior is not None:
                pending.fail(prior)
            else:
                out.business_date = state.business_date
                try:
                    out.decided.append(self._decide(pending, state))
                except Exception as exc:  # invalid claim, or a bug: this call alone learns
                    pending.fail(exc)
        metrics.SETTLE_STAGE_MS.labels(stage="decide").observe(
            1000 * (time.perf_counter() - loaded)
        )
        for pending, member_id in wrong_pins:  # counted toward the card's lock, like any
            counted = await self.ledger.record_pin_check(
                member_id, ok=False, failures_max=alimits.pin_failures_max
            )
            pending.fail(
                RequestIdReused("this request id was settled with another PIN")
                if counted is not None
                else SwitchError(ErrorReason.PIN_LOCKED, "the card is locked")
            )
        if replays:
            for stored in await self.ledger.stored_settlements(list(replays)):
                for pending in replays[stored.settlement_id]:
                    pending.answer(_replayed(stored))
        return out

    def _decide(self, pending: Pending, state: StateRow) -> Decided:
        claim = pending.claim
        context = engine_context(
            state, pending.load.benefit_year, pin_ok=self.ledger.pin_matches(state, pending.pin)
        )
        result = adjudicate(claim, context, self.policies, self.catalogs)
        assert state.settlement_id is not None, "a Settle's state carries its new id"
        view = settlement_view(
            result,
            settlement_id=state.settlement_id,
            request_id=claim.request_id,
            institution_code=claim.institution_code,
            business_date=state.business_date,
            preview=False,
        )
        row, legs = settlement_record(claim, result, view, state, pending.fingerprint)
        return Decided(pending, view, row, legs)

    async def _record(self, batch: Batch) -> None:
        """Record the batch in one statement; stale rows go back to the queue."""
        decided = batch.decided
        business_date = batch.business_date
        assert business_date is not None, "a decided claim was loaded on an open day"
        try:
            while decided:
                try:
                    started = time.perf_counter()
                    await self.ledger.record(
                        business_date,
                        [d.row for d in decided],
                        [d.legs for d in decided],
                    )
                    metrics.SETTLE_STAGE_MS.labels(stage="record").observe(
                        1000 * (time.perf_counter() - started)
                    )
                except StaleRows as stale:
                    again = set(stale.positions)
                    self._load_again([d.pending for i, d in enumerate(decided) if i in again])
                    decided = [d for i, d in enumerate(decided) if i not in again]
                    continue
                except (LedgerError, asyncpg.PostgresError, ValueError) as exc:
                    if len(decided) == 1:
                        raise
                    log.warning("settle_batch_refused", size=len(decided), error=str(exc))
                    await self._record_alone(batch, decided)
                    return
                for d in decided:
                    d.pending.answer(d.view)
                return
        except asyncio.CancelledError:
            for d in decided:
                d.pending.fail(ConnectionError("the switch is shutting down"))
            raise
        except Exception as exc:  # the database went away, or a bug: each call learns
            for d in decided:
                d.pending.fail(exc)

    async def _record_alone(self, batch: Batch, decided: Sequence[Decided]) -> None:
        """A refused batch, one settlement at a time, so one bad row fails only itself."""
        for d in decided:
            alone = Batch(batch.business_date, [d])
            await self._record(alone)

    def _load_again(self, stale: list[Pending]) -> None:
        for pending in reversed(stale):
            if pending.loads >= limits.settle_loads_max:
                pending.fail(Busy(f"the member's state kept moving ({pending.loads} loads)"))
            else:
                pending.queued_at = time.perf_counter()  # its queue stage starts again
                self._queue.appendleft(pending)
        self._arrived.set()

    # ------------------------------------------------------------ lifecycle

    def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="settle-writer")
            self._task.add_done_callback(self._stopped)

    def _stopped(self, task: asyncio.Task[None]) -> None:
        """The writer ended unasked (raised, returned, or was cancelled but not by
        close()): every call waiting fails, and so will every new one."""
        if self._closing:
            return
        if task.cancelled():
            failure: BaseException = RuntimeError("the settlement writer was cancelled")
        else:
            failure = task.exception() or RuntimeError("the settlement writer returned")
        self.failure = failure
        log.error("settle_writer_died", worker="settle_writer", error=repr(failure))
        self._fail_queued(failure)

    def _fail_queued(self, exc: BaseException) -> None:
        while self._queue:
            self._queue.popleft().fail(exc)

    async def close(self) -> None:
        """Stops the writer (after the server has drained its calls)."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)  # a death was reported
        self._task = None
        self._fail_queued(ConnectionError("the switch is shutting down"))


def _a_retry(state: StateRow, fingerprint: bytes) -> bool:
    """Whether the request was settled before (whatever PIN came with it then and now).

    A fingerprint is the request's digest (its PIN left out) followed by the
    keyed tag of its PIN (LedgerBackend.settle).
    """
    stored = state.existing_fingerprint
    return (
        stored is not None and stored[:REQUEST_DIGEST_BYTES] == fingerprint[:REQUEST_DIGEST_BYTES]
    )


def _replayed(stored: StoredSettlement) -> SettlementView:
    return view_from_dict(stored.answer)
