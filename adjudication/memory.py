"""An in-memory region: the engine driven with state kept in plain values.

This is the model the database-backed switch must agree with. The tests
replay the worked examples and hypothesis' stateful runs against it, and
`medswitch adjudicate` uses it for what-if questions without a database.
`apply_changes` and `revert_changes` are the exact state arithmetic of
section 6 of the rules: a settlement adds its changes, a cancellation takes
them away again, and nothing else is recomputed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

from adjudication.catalog import CatalogBook, load_catalog
from adjudication.engine import adjudicate, benefit_date
from adjudication.model import (
    Adjudication,
    ApprovedDisease,
    CardStatus,
    Claim,
    Context,
    InpatientStay,
    Institution,
    MemberCategory,
    MemberState,
    MemberStatus,
    StateChanges,
    YearAccumulators,
)
from adjudication.policy import PolicyBook, load_policy
from adjudication.reference import (
    DiseaseRow,
    MemberRow,
    parse_institutions,
    parse_members,
    parse_special_diseases,
    read_text,
)

_YEAR_FIELDS = tuple(f.name for f in dataclasses.fields(YearAccumulators) if f.name != "year")


def add_year(acc: YearAccumulators, changes: StateChanges, sign: int) -> YearAccumulators:
    """The year's accumulators plus (sign=1) or minus (sign=-1) the changes."""
    assert acc.year == changes.benefit_year
    values = {name: getattr(acc, name) + sign * getattr(changes, name) for name in _YEAR_FIELDS}
    return YearAccumulators(year=acc.year, **values)


def apply_changes(state: MemberState, changes: StateChanges, settlement_id: str) -> MemberState:
    """The member state after a settlement (state projected on its claim's day)."""
    stays = state.stays
    if changes.stay is not None:
        stays = (*stays, replace(changes.stay, settlement_id=settlement_id))
    return replace(
        state,
        balance_fen=state.balance_fen - changes.account_debit_fen,
        year=add_year(state.year, changes, 1),
        stays=stays,
        pharmacy_purchases_today=state.pharmacy_purchases_today
        + (1 if changes.pharmacy_date is not None else 0),
    )


def revert_changes(state: MemberState, changes: StateChanges, settlement_id: str) -> MemberState:
    """The member state after cancelling that settlement: exactly its changes undone."""
    return replace(
        state,
        balance_fen=state.balance_fen + changes.account_debit_fen,
        year=add_year(state.year, changes, -1),
        stays=tuple(s for s in state.stays if s.settlement_id != settlement_id),
        pharmacy_purchases_today=state.pharmacy_purchases_today
        - (1 if changes.pharmacy_date is not None else 0),
    )


@dataclass(slots=True)
class MemberRecord:
    """Everything the region knows of one member, across years and days."""

    member_id: str
    card_no: str
    pin: str
    category: MemberCategory
    status: MemberStatus
    card_status: CardStatus
    birth_date: date
    balance_fen: int
    pin_failures: int = 0
    special_diseases: list[ApprovedDisease] = field(default_factory=list)
    years: dict[int, YearAccumulators] = field(default_factory=dict)
    pharmacy_days: dict[date, int] = field(default_factory=dict)
    stays: list[InpatientStay] = field(default_factory=list)

    def state_for(self, claim: Claim) -> MemberState:
        day = benefit_date(claim)
        return MemberState(
            member_id=self.member_id,
            category=self.category,
            status=self.status,
            card_status=self.card_status,
            birth_date=self.birth_date,
            balance_fen=self.balance_fen,
            year=self.years.get(day.year, YearAccumulators(year=day.year)),
            pin_failures=self.pin_failures,
            special_diseases=tuple(self.special_diseases),
            stays=tuple(self.stays),
            pharmacy_purchases_today=self.pharmacy_days.get(day, 0),
        )

    def store(self, state: MemberState, day: date) -> None:
        self.balance_fen = state.balance_fen
        self.years[state.year.year] = state.year
        self.pharmacy_days[day] = state.pharmacy_purchases_today
        self.stays = list(state.stays)


@dataclass(slots=True)
class Settled:
    settlement_id: str
    claim: Claim
    result: Adjudication
    cancelled: bool = False


class InMemoryRegion:
    """A whole pooling region in memory: settle, preview and cancel claims."""

    def __init__(
        self,
        policies: PolicyBook,
        catalogs: CatalogBook,
        institutions: list[Institution],
        members: list[MemberRow],
        diseases: list[DiseaseRow] = (),  # type: ignore[assignment]
    ) -> None:
        self.policies = policies
        self.catalogs = catalogs
        self.institutions = {i.code: i for i in institutions}
        self.members: dict[str, MemberRecord] = {}
        self._by_card: dict[str, MemberRecord] = {}
        for row in members:
            record = MemberRecord(
                member_id=row.member_id,
                card_no=row.card_no,
                pin=row.pin,
                category=row.category,
                status=row.status,
                card_status=row.card_status,
                birth_date=row.birth_date,
                balance_fen=row.balance_fen,
            )
            self.members[row.member_id] = record
            self._by_card[row.card_no] = record
        for d in diseases:
            self.members[d.member_id].special_diseases.append(d.disease)
        self.settlements: dict[str, Settled] = {}
        self._next = 0

    def member_by_card(self, card_no: str) -> MemberRecord | None:
        return self._by_card.get(card_no)

    def context(self, claim: Claim, pin: str) -> Context:
        record = self._by_card.get(claim.card_no)
        return Context(
            institution=self.institutions.get(claim.institution_code),
            member=record.state_for(claim) if record is not None else None,
            pin_ok=record is not None and pin == record.pin,
        )

    def adjudicate(self, claim: Claim, pin: str, *, apply: bool) -> tuple[str, Adjudication]:
        """Adjudicate; with apply=True record it as Settle would. Returns (id, answer)."""
        context = self.context(claim, pin)
        result = adjudicate(claim, context, self.policies, self.catalogs)
        record = self._by_card.get(claim.card_no)
        if record is not None and result.pin_failures_after is not None:
            record.pin_failures = result.pin_failures_after
        if not apply:
            return "", result
        self._next += 1
        settlement_id = f"S{self._next:08d}"
        if result.changes is not None:
            assert record is not None and context.member is not None
            state = apply_changes(context.member, result.changes, settlement_id)
            record.store(state, benefit_date(claim))
        self.settlements[settlement_id] = Settled(settlement_id, claim, result)
        return settlement_id, result

    def cancel(self, settlement_id: str) -> int:
        """Cancel a settlement; returns the balance after. Twice is the same as once."""
        settled = self.settlements[settlement_id]
        record = self._by_card[settled.claim.card_no]
        changes = settled.result.changes
        if not settled.cancelled and changes is not None:
            state = revert_changes(record.state_for(settled.claim), changes, settlement_id)
            record.store(state, benefit_date(settled.claim))
        settled.cancelled = True
        return record.balance_fen


def load_region(directory: str | Path) -> InMemoryRegion:
    """The region of a reference directory (the five files of shared/reference)."""
    base = Path(directory)
    policies = PolicyBook([load_policy(base / "policy.toml")])
    policy = policies.policies[0]
    catalogs = CatalogBook(
        [load_catalog(base / "catalog.csv", effective_from=policy.effective_from)]
    )
    institutions_path = base / "institutions.csv"
    members_path = base / "members.csv"
    diseases_path = base / "member_special_diseases.csv"
    return InMemoryRegion(
        policies,
        catalogs,
        parse_institutions(read_text(institutions_path), str(institutions_path)),
        list(parse_members(read_text(members_path), str(members_path))),
        list(parse_special_diseases(read_text(diseases_path), str(diseases_path))),
    )
