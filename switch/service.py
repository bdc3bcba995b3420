"""The switch's backend: the pure engine joined to the PostgreSQL ledger.

This is the composition behind every RPC (switch.backend.SettlementBackend).
Settle goes through the process's one writer (switch/settle.py: take a
batch, load, adjudicate, record, answer); PreSettle and the member reads
load the card's state, run the engine or the PIN check, and count PIN
failures. The answer is returned only after the commit.

Ledger and database failures become SwitchError here, through one table, so
the edge maps them to gRPC like any other domain error; a database that
cannot be reached is UNAVAILABLE, never a guessed answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import date, datetime

import asyncpg

from adjudication import limits as alimits
from adjudication.benefits import benefits
from adjudication.catalog import (
    Catalog,
    CatalogBook,
    CatalogItem,
    ItemClass,
    ItemKind,
    Restriction,
    Rx,
)
from adjudication.engine import adjudicate, benefit_date
from adjudication.model import (
    Adjudication,
    CardStatus,
    Claim,
    InstitutionStatus,
    MemberCategory,
    MemberStatus,
)
from adjudication.policy import PolicyBook, parse_policy
from adjudication.validation import InvalidClaim
from ledger import db
from ledger import encounters as le
from ledger import store as ls
from ledger.reference_rows import load_reference_rows
from ledger.store import AccountEntry, DayTotals, DetailRecord, Ledger, StateRow
from switch import limits
from switch.backend import (
    CancelCommand,
    CancelView,
    CatalogEntry,
    MemberView,
    PoolStats,
    SettlementStatus,
    SettlementView,
    catalog_entries,
    settlement_view,
    view_from_dict,
)
from switch.errors import ErrorReason, FieldViolation, SwitchError, invalid
from switch.settle import SettleWriter
from switch.state import engine_context, special_diseases, year_accumulators

# Ledger errors -> the switch's reasons (the gRPC code follows from the reason).
LEDGER_REASONS: dict[type[ls.LedgerError], ErrorReason] = {
    ls.RequestIdReused: ErrorReason.REQUEST_ID_REUSED,
    ls.RequestCancelled: ErrorReason.REQUEST_CANCELLED,
    ls.SettlementNotFound: ErrorReason.SETTLEMENT_NOT_FOUND,
    ls.NotYourSettlement: ErrorReason.NOT_SETTLING_INSTITUTION,
    ls.DayClosed: ErrorReason.BUSINESS_DAY_CLOSED,
    ls.NotCancellable: ErrorReason.NOT_CANCELLABLE,
    ls.NoOpenDay: ErrorReason.NO_OPEN_BUSINESS_DAY,
    ls.StaleRows: ErrorReason.CONFLICT_RETRIES_EXHAUSTED,
    ls.Busy: ErrorReason.CONFLICT_RETRIES_EXHAUSTED,
    le.EncounterNotFound: ErrorReason.ENCOUNTER_NOT_FOUND,
    le.NotAdmittingInstitution: ErrorReason.NOT_ADMITTING_INSTITUTION,
    le.EncounterClosed: ErrorReason.ENCOUNTER_CLOSED,
    le.EncounterNotReady: ErrorReason.ENCOUNTER_NOT_READY,
    le.EncounterFull: ErrorReason.ENCOUNTER_FULL,
    le.EncounterChanged: ErrorReason.ENCOUNTER_CHANGED,
    le.MemberInHospital: ErrorReason.MEMBER_IN_HOSPITAL,
}

# Connection-level failures: the database is not there (or went away mid-call).
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # the protocol state a dying server's FATAL leaves behind
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    TimeoutError,
)


@contextmanager
def domain_errors() -> Iterator[None]:
    """Ledger and database failures as SwitchError (one table, above)."""
    try:
        yield
    except le.EncounterFieldRefused as exc:
        raise invalid([FieldViolation(f, why) for f, why in exc.violations]) from exc
    except ls.LedgerError as exc:
        reason = next(
            (r for cls, r in LEDGER_REASONS.items() if isinstance(exc, cls)), ErrorReason.INTERNAL
        )
        raise SwitchError(reason, str(exc)) from exc
    except InvalidClaim as exc:
        raise invalid([FieldViolation(v.field, v.description) for v in exc.violations]) from exc
    except UNAVAILABLE_ERRORS as exc:
        raise SwitchError(
            ErrorReason.DATABASE_UNAVAILABLE, "the database is unavailable; retry later"
        ) from exc


async def load_reference(pool: asyncpg.Pool) -> tuple[PolicyBook, CatalogBook]:
    """Every policy and catalog version stored by import-reference."""
    rows = await load_reference_rows(pool)
    policies = PolicyBook([parse_policy(p.toml_text, f"policy {p.version}") for p in rows.policies])
    items: dict[int, dict[str, CatalogItem]] = {version: {} for version, _ in rows.catalog_versions}
    for r in rows.catalog_items:
        items[r.version][r.code] = CatalogItem(
            code=r.code,
            name=r.name,
            kind=ItemKind(r.kind),
            item_class=ItemClass(r.item_class),
            preselfpay_bp=r.preselfpay_bp,
            price_cap_fen=r.price_cap_fen,
            rx=Rx(r.rx),
            restrictions=frozenset(Restriction(x) for x in r.restrictions),
        )
    catalogs = CatalogBook(
        [Catalog(version, since, items[version]) for version, since in rows.catalog_versions]
    )
    return policies, catalogs


class LedgerBackend:
    """SettlementBackend over ledger.store.Ledger and the adjudication engine."""

    def __init__(self, writer: SettleWriter, probe: db.Probe) -> None:
        self.writer = writer
        self.probe = probe
        self.ledger = writer.ledger
        self.policies = writer.policies
        self.catalogs = writer.catalogs
        # Imported here: switch.encounters builds on this module.
        from switch.encounters import LedgerEncounters

        self.encounters = LedgerEncounters(self)

    @classmethod
    async def open(
        cls, pool: asyncpg.Pool, ledger: Ledger, *, probe: db.Probe, group_commit: bool = True
    ) -> LedgerBackend:
        """The backend over an open pool; `probe` (the same database, a connection
        of its own) tells health checks whether the database answers.

        With `group_commit` (the default of `medswitch serve`) the Settle calls
        waiting at the same moment share one commit; without, each commits
        alone (batches of one).
        """
        policies, catalogs = await load_reference(pool)
        batch_max = limits.settle_batch_max if group_commit else 1
        return cls(SettleWriter(ledger, policies, catalogs, batch_max=batch_max), probe)

    async def close(self) -> None:
        """After the server has drained: stops the settlement writer and the probe."""
        await self.writer.close()
        self.probe.close()

    # ------------------------------------------------------------ settlement

    def _adjudicate(self, claim: Claim, state: StateRow, year: int, pin: str) -> Adjudication:
        context = engine_context(state, year, pin_ok=self.ledger.pin_matches(state, pin))
        return adjudicate(claim, context, self.policies, self.catalogs)

    async def pre_settle(self, claim: Claim, pin: str) -> SettlementView:
        with domain_errors():
            day = benefit_date(claim)
            state = await self.ledger.load_for_claim(
                claim.institution_code, claim.card_no, day.year, day
            )
            result = self._adjudicate(claim, state, day.year, pin)
            after = result.pin_failures_after
            counted = (
                await self._count_pin(state.member_id, ok=after == 0)
                if state.member_id is not None and after is not None
                else 0
            )
            if counted is None:  # locked by guesses counted since the load
                locked = state._replace(pin_failures=alimits.pin_failures_max)
                result = self._adjudicate(claim, locked, day.year, pin)
        return settlement_view(
            result,
            settlement_id="",
            request_id=claim.request_id,
            institution_code=claim.institution_code,
            business_date=state.business_date,
            preview=True,
        )

    async def _count_pin(self, member_id: str, *, ok: bool) -> int | None:
        """The PIN check counted where every process counts it (None: locked)."""
        return await self.ledger.record_pin_check(
            member_id, ok=ok, failures_max=alimits.pin_failures_max
        )

    def fingerprint(self, request_digest: bytes, card_no: str, pin: str) -> bytes:
        """What a retry must repeat to get the stored answer: the same request (its
        digest, PIN left out) and the same PIN (a keyed hash of it; the PIN
        itself is never stored)."""
        return request_digest + self.ledger.keys.pin_hash(f"request:{card_no}", pin)

    async def settle(self, claim: Claim, pin: str, request_digest: bytes) -> SettlementView:
        fingerprint = self.fingerprint(request_digest, claim.card_no, pin)
        with domain_errors():
            return await self.writer.settle(claim, pin, fingerprint)

    async def cancel(self, command: CancelCommand, request_digest: bytes) -> CancelView:
        with domain_errors():
            done = await self.ledger.cancel(
                (command.institution_code, command.request_id),
                request_digest,
                settlement_id=command.settlement_id or None,
                original_request_id=command.original_request_id or None,
                reason=command.reason,
            )
        return CancelView(done.settlement_id or "", done.reversal_id, done.balance_after_fen)

    async def get_settlement(
        self, institution_code: str, settlement_id: str, request_id: str
    ) -> SettlementView:
        with domain_errors():
            stored = await self.ledger.get_settlement(
                institution_code,
                settlement_id=settlement_id or None,
                request_id=None if settlement_id else request_id,
            )
        view = view_from_dict(stored.answer)
        if stored.cancellation is not None:
            # The settlement as it stands now; the balance is that of its cancellation.
            balance = int(stored.cancellation.get("balance_after_fen", view.balance_after_fen))
            view = replace(view, status=SettlementStatus.CANCELLED, balance_after_fen=balance)
        return view

    # ---------------------------------------------------------------- member

    async def _member_checked(
        self, institution_code: str, card_no: str, pin: str, today: date | None = None
    ) -> StateRow:
        """The member holding the card, after the PIN check (which counts failures),
        with the accumulators of `today`'s year (default: today in the region)."""
        today = today or datetime.now(db.REGION_TZ).date()
        state = await self.ledger.load_for_claim(institution_code, card_no, today.year, today)
        if state.institution_status != InstitutionStatus.ACTIVE.value:
            # checked first: an institution that may not read members learns
            # nothing of the card, and its guesses count toward no lock
            raise SwitchError(
                ErrorReason.INSTITUTION_NOT_ACTIVE, "only an active institution may read members"
            )
        if state.member_id is None or state.card_status != CardStatus.ACTIVE.value:
            raise SwitchError(ErrorReason.CARD_INVALID, "no member holds this card")
        locked = SwitchError(ErrorReason.PIN_LOCKED, "the card is locked (too many wrong PINs)")
        if (state.pin_failures or 0) >= alimits.pin_failures_max:
            raise locked
        ok = self.ledger.pin_matches(state, pin)
        if await self._count_pin(state.member_id, ok=ok) is None:
            raise locked  # by guesses counted since it was loaded
        if not ok:
            raise SwitchError(ErrorReason.PIN_INVALID, "wrong PIN")
        return state

    async def get_member(self, institution_code: str, card_no: str, pin: str) -> MemberView:
        """The member, their benefits left this year and their open encounter."""
        today = datetime.now(db.REGION_TZ).date()
        with domain_errors():
            state = await self._member_checked(institution_code, card_no, pin, today)
            assert state.member_id is not None
            name_masked = await self.ledger.member_name_masked(state.member_id)
            open_encounter = await self.encounters.open_of(state.member_id)
        category = MemberCategory(state.category or "")
        policy = self.policies.in_force(today)
        return MemberView(
            member_id=state.member_id,
            name_masked=name_masked,
            category=category,
            status=MemberStatus(state.status or ""),
            region_code=state.region or "",
            balance_fen=state.balance_fen or 0,
            special_diseases=special_diseases(state),
            benefits=None
            if policy is None
            else benefits(
                policy,
                category,
                state.institution_level or "",
                year_accumulators(state, today.year),
            ),
            open_encounter=open_encounter,
        )

    async def account_activity(
        self,
        institution_code: str,
        card_no: str,
        pin: str,
        from_date: date | None,
        to_date: date | None,
    ) -> Sequence[AccountEntry]:
        with domain_errors():
            state = await self._member_checked(institution_code, card_no, pin)
            assert state.member_id is not None
            return await self.ledger.account_activity(state.member_id, from_date, to_date)

    # -------------------------------------------------------- reconciliation

    async def institution_totals(self, institution_code: str, business_date: date) -> DayTotals:
        with domain_errors():
            return await self.ledger.day_totals(institution_code, business_date)

    async def institution_details(
        self, institution_code: str, business_date: date
    ) -> Sequence[DetailRecord]:
        with domain_errors():
            return await self.ledger.day_details(institution_code, business_date)

    # --------------------------------------------------------------- catalog

    async def catalog(self, since_version: int) -> AsyncIterator[CatalogEntry]:
        for entry in catalog_entries(self.catalogs, since_version):
            yield entry

    async def ping(self) -> bool:
        """Whether the database answers within the probe's timeout, asked on the
        probe's own connection (db.Probe), so also while every pooled one is busy."""
        try:
            await self.probe.check(limits.health_probe_timeout_s)
        except (*UNAVAILABLE_ERRORS, asyncpg.PostgresError):
            return False
        return True

    def dead_worker(self) -> str | None:
        return "settle_writer" if self.writer.failure is not None else None

    def pool_stats(self) -> PoolStats:
        pool = self.ledger.pool
        size = pool.get_size()
        return PoolStats(size=size, in_use=size - pool.get_idle_size())
