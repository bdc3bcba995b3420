"""The one interface between the gRPC edge and everything behind it.

Servicers (switch/servicers.py) only translate: proto -> these calls ->
proto. Whatever answers them (the composition of engine and ledger in
switch/service.py) speaks domain values only, so the edge can be tested, and
the storage swapped, without either knowing the other. Errors are raised as
`switch.errors.SwitchError` with a stable reason.

Every value here is plain data: money int fen, dates `date`, instants aware
`datetime`. What the ledger already lists as a typed record (a member's
AccountEntry, an institution's DayTotals and DetailRecords) is passed on as
it is, not copied into a look-alike.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any, Protocol

from adjudication import model
from adjudication.benefits import Benefits
from adjudication.catalog import Catalog, CatalogBook, CatalogItem
from adjudication.engine import member_disclosed
from ledger.store import AccountEntry, DayTotals, DetailRecord


class SettlementStatus(StrEnum):
    PREVIEW = "PREVIEW"
    SETTLED = "SETTLED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"


@dataclass(frozen=True, slots=True)
class SettlementView:
    """A settlement (or preview) as the caller sees it: one SettleResponse."""

    settlement_id: str
    request_id: str
    status: SettlementStatus
    business_date: date | None
    member_id: str
    institution_code: str
    reasons: tuple[str, ...]
    warnings: tuple[str, ...]
    split: model.Split
    lines: tuple[model.LineResult, ...]
    balance_after_fen: int


def settlement_view(
    adjudication: model.Adjudication,
    *,
    settlement_id: str,
    request_id: str,
    institution_code: str,
    business_date: date | None,
    preview: bool,
) -> SettlementView:
    """The caller's view of one adjudicated claim.

    A rejection carries its reasons, the claim total as split.total_fen and
    patient_cash_fen, every other money field 0 and no lines (docs/integrators.md).
    """
    if adjudication.accepted:
        status = SettlementStatus.PREVIEW if preview else SettlementStatus.SETTLED
        split = adjudication.split
        lines = adjudication.lines
    else:
        status = SettlementStatus.REJECTED
        total = adjudication.split.total_fen
        split = model.Split(total_fen=total, patient_cash_fen=total)
        lines = ()
    return SettlementView(
        settlement_id=settlement_id,
        request_id=request_id,
        status=status,
        business_date=business_date,
        member_id=adjudication.member_id if member_disclosed(adjudication) else "",
        institution_code=institution_code,
        reasons=adjudication.reasons,
        warnings=adjudication.warnings,
        split=split,
        lines=lines,
        balance_after_fen=adjudication.balance_after_fen,
    )


@dataclass(frozen=True, slots=True)
class CancelCommand:
    request_id: str
    institution_code: str
    settlement_id: str  # "" when cancelling by original_request_id
    original_request_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class CancelView:
    settlement_id: str  # "": the request was cancelled before it arrived (REQUEST_CANCELLED)
    reversal_id: str
    balance_after_fen: int


@dataclass(frozen=True, slots=True)
class MemberView:
    member_id: str
    name_masked: str  # first character then *s: the clear name never leaves the ledger
    category: model.MemberCategory
    status: model.MemberStatus
    region_code: str
    balance_fen: int
    special_diseases: tuple[model.ApprovedDisease, ...]
    benefits: Benefits | None = None  # None: no policy in force today
    open_encounter: EncounterView | None = None  # the latest neither settled nor cancelled


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    code: str
    name: str
    kind: str  # DRUG, TREATMENT, FACILITY, MATERIAL, GOODS
    item_class: str
    preselfpay_bp: int
    price_cap_fen: int  # 0 = no cap
    rx: str  # "RX", "OTC", ""
    restrictions: tuple[str, ...]
    version: int
    deleted: bool


def catalog_entries(catalogs: CatalogBook, since_version: int) -> Iterator[CatalogEntry]:
    """DownloadCatalog: each version after `since_version`, its items, then those it dropped."""
    ordered = catalogs.catalogs
    for previous, cat in zip((None, *ordered), ordered, strict=False):
        if cat.version <= since_version:
            continue
        for item in cat.items.values():
            yield _catalog_entry(item, cat.version, deleted=False)
        for item in _dropped(previous, cat):
            yield _catalog_entry(item, cat.version, deleted=True)


def _dropped(previous: Catalog | None, current: Catalog) -> list[CatalogItem]:
    """The items of `previous` that `current` no longer lists, by code."""
    if previous is None:
        return []
    return [previous.items[code] for code in sorted(previous.items.keys() - current.items.keys())]


def _catalog_entry(item: CatalogItem, version: int, *, deleted: bool) -> CatalogEntry:
    return CatalogEntry(
        code=item.code,
        name=item.name,
        kind=item.kind.value,
        item_class=item.item_class.value,
        preselfpay_bp=item.preselfpay_bp,
        price_cap_fen=item.price_cap_fen or 0,
        rx=item.rx.value,
        restrictions=tuple(sorted(r.value for r in item.restrictions)),
        version=version,
        deleted=deleted,
    )


@dataclass(frozen=True, slots=True)
class PoolStats:
    size: int
    in_use: int


class SettlementBackend(Protocol):
    """What the switch does, in domain terms. Implemented by switch.service."""

    @property
    def encounters(self) -> EncounterBackend:
        """The EncounterService's calls."""
        ...

    async def pre_settle(self, claim: model.Claim, pin: str) -> SettlementView:
        """Adjudicates without recording anything but a PIN failure count."""
        ...

    async def settle(self, claim: model.Claim, pin: str, request_digest: bytes) -> SettlementView:
        """Adjudicates and records exactly once per (institution, request id).

        `request_digest` identifies the request without its PIN
        (convert.request_digest). A retry of the same request with the same
        PIN returns the first answer; the same request id with a different
        request or PIN raises REQUEST_ID_REUSED; a request id that was
        cancelled before it arrived raises REQUEST_CANCELLED.
        """
        ...

    async def cancel(self, command: CancelCommand, request_digest: bytes) -> CancelView:
        """Reverses a settlement once per (institution, request id); `request_digest`
        (convert.request_digest) tells a resend from another request under the id."""
        ...

    async def get_settlement(
        self, institution_code: str, settlement_id: str, request_id: str
    ) -> SettlementView: ...

    async def get_member(self, institution_code: str, card_no: str, pin: str) -> MemberView: ...

    async def account_activity(
        self,
        institution_code: str,
        card_no: str,
        pin: str,
        from_date: date | None,
        to_date: date | None,
    ) -> Sequence[AccountEntry]:
        """The member's own statement, read by an active institution after the PIN check."""
        ...

    async def institution_totals(self, institution_code: str, business_date: date) -> DayTotals: ...

    async def institution_details(
        self, institution_code: str, business_date: date
    ) -> Sequence[DetailRecord]: ...

    def catalog(self, since_version: int) -> AsyncIterator[CatalogEntry]: ...

    def pool_stats(self) -> PoolStats: ...

    async def ping(self) -> bool:
        """Whether the storage answers now (health checking)."""
        ...

    def dead_worker(self) -> str | None:
        """The name of a background task of the backend that has died, if one has
        (health checking: the switch cannot serve without it)."""
        ...


# --------------------------------------------------------------------------
# Encounters: inpatient stays run as hospitals run them (the EncounterService)


class EncounterStatus(StrEnum):
    ADMITTED = "ADMITTED"
    DISCHARGED = "DISCHARGED"
    SETTLED = "SETTLED"
    CANCELLED = "CANCELLED"


@dataclass(frozen=True, slots=True)
class EncounterView:
    """An encounter as the caller sees it: one Encounter message."""

    encounter_id: str
    request_id: str  # of the call it answers; "" when read
    institution_code: str
    member_id: str
    status: EncounterStatus
    admission_date: date
    department: str
    admission_diagnoses: tuple[str, ...]
    injury_cause: model.InjuryCause
    accident_case_id: str
    discharge_date: date | None
    discharge_diagnoses: tuple[str, ...]
    line_count: int  # lines not voided
    total_fen: int  # their amounts
    settlement_id: str  # the settlement that stands, when SETTLED


@dataclass(frozen=True, slots=True)
class FeeDetailsView:
    """The answer to an upload (its lines' results) or a void (the lines voided)."""

    encounter_id: str
    request_id: str
    lines: tuple[model.LineResult, ...]
    voided_line_nos: tuple[int, ...]
    line_count: int  # the encounter's lines not voided, after the call
    total_fen: int


@dataclass(frozen=True, slots=True)
class EncounterCall:
    """The encounter a call changes, and the call's idempotency key."""

    request_id: str
    institution_code: str
    encounter_id: str

    @property
    def key(self) -> tuple[str, str]:
        return self.institution_code, self.request_id


@dataclass(frozen=True, slots=True)
class AdmissionCommand:
    request_id: str
    institution_code: str
    card_no: str
    pin: str
    admission_date: date
    department: str
    diagnoses: tuple[str, ...]
    injury_cause: model.InjuryCause
    accident_case_id: str


@dataclass(frozen=True, slots=True)
class UploadCommand:
    call: EncounterCall
    lines: tuple[model.ClaimLine, ...]


@dataclass(frozen=True, slots=True)
class VoidCommand:
    call: EncounterCall
    line_nos: tuple[int, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class DischargeCommand:
    call: EncounterCall
    discharge_date: date
    diagnoses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SettleEncounterCommand:
    call: EncounterCall
    card_no: str
    pin: str
    use_individual_account: bool


class EncounterBackend(Protocol):
    """The encounter calls, in domain terms. Implemented by switch.encounters.

    Every call that changes something takes the digest of its request
    without the PIN (convert.request_digest) and is idempotent per
    (institution, request id), as Settle is.
    """

    async def register_admission(
        self, command: AdmissionCommand, request_digest: bytes
    ) -> EncounterView: ...

    async def cancel_admission(
        self, call: EncounterCall, reason: str, request_digest: bytes
    ) -> EncounterView: ...

    async def upload_fee_details(
        self, command: UploadCommand, request_digest: bytes
    ) -> FeeDetailsView: ...

    async def void_fee_details(
        self, command: VoidCommand, request_digest: bytes
    ) -> FeeDetailsView: ...

    async def record_discharge(
        self, command: DischargeCommand, request_digest: bytes
    ) -> EncounterView: ...

    async def pre_settle_encounter(self, command: SettleEncounterCommand) -> SettlementView:
        """The encounter's claim adjudicated; nothing recorded but PIN failures."""
        ...

    async def settle_encounter(
        self, command: SettleEncounterCommand, request_digest: bytes
    ) -> SettlementView:
        """The encounter's claim settled through the settle path, exactly once."""
        ...

    async def get_encounter(self, institution_code: str, encounter_id: str) -> EncounterView: ...


def encounter_view(data: dict[str, Any]) -> EncounterView:
    """An encounter from the JSON the ledger stores and answers (ms_encounter_json)."""
    discharged = data.get("discharge_date")
    return EncounterView(
        encounter_id=str(data["encounter_id"]),
        request_id=str(data.get("request_id") or ""),
        institution_code=str(data["institution_code"]),
        member_id=str(data["member_id"]),
        status=EncounterStatus(data["status"]),
        admission_date=date.fromisoformat(data["admission_date"]),
        department=str(data["department"]),
        admission_diagnoses=tuple(data["admission_diagnoses"]),
        injury_cause=model.InjuryCause(data["injury_cause"]),
        accident_case_id=str(data["accident_case_id"]),
        discharge_date=date.fromisoformat(discharged) if discharged else None,
        discharge_diagnoses=tuple(data["discharge_diagnoses"]),
        line_count=int(data["line_count"]),
        total_fen=int(data["total_fen"]),
        settlement_id=str(data.get("settlement_id") or ""),
    )


def fee_details_view(data: dict[str, Any]) -> FeeDetailsView:
    """An upload's or a void's answer from the JSON the ledger stores."""
    return FeeDetailsView(
        encounter_id=str(data["encounter_id"]),
        request_id=str(data["request_id"]),
        lines=tuple(line_from_dict(line) for line in data.get("lines", ())),
        voided_line_nos=tuple(int(n) for n in data.get("voided_line_nos", ())),
        line_count=int(data["line_count"]),
        total_fen=int(data["total_fen"]),
    )


def view_to_dict(view: SettlementView) -> dict[str, Any]:
    """The view as plain JSON values: what the ledger stores as the answer."""
    return {
        "settlement_id": view.settlement_id,
        "request_id": view.request_id,
        "status": view.status.value,
        "business_date": view.business_date.isoformat() if view.business_date else None,
        "member_id": view.member_id,
        "institution_code": view.institution_code,
        "reasons": list(view.reasons),
        "warnings": list(view.warnings),
        "split": view.split.as_dict(),
        "lines": [line_to_dict(line) for line in view.lines],
        "balance_after_fen": view.balance_after_fen,
    }


def line_to_dict(line: model.LineResult) -> dict[str, Any]:
    """A line's result as plain JSON values (in a stored answer)."""
    return {
        "line_no": line.line_no,
        "item_class": line.item_class,
        "full_selfpay_fen": line.full_selfpay_fen,
        "overlimit_selfpay_fen": line.overlimit_selfpay_fen,
        "preselfpay_fen": line.preselfpay_fen,
        "in_scope_fen": line.in_scope_fen,
        "reasons": list(line.reasons),
        "counts_toward_fund": line.counts_toward_fund,
    }


def line_from_dict(line: dict[str, Any]) -> model.LineResult:
    """The inverse of line_to_dict."""
    return model.LineResult(
        line_no=int(line["line_no"]),
        item_class=str(line["item_class"]),
        full_selfpay_fen=int(line["full_selfpay_fen"]),
        overlimit_selfpay_fen=int(line["overlimit_selfpay_fen"]),
        preselfpay_fen=int(line["preselfpay_fen"]),
        in_scope_fen=int(line["in_scope_fen"]),
        reasons=tuple(line["reasons"]),
        counts_toward_fund=bool(line.get("counts_toward_fund", True)),
    )


def view_from_dict(data: dict[str, Any]) -> SettlementView:
    """The inverse of view_to_dict (a stored answer, replayed or read back)."""
    day = data.get("business_date")
    return SettlementView(
        settlement_id=str(data["settlement_id"]),
        request_id=str(data["request_id"]),
        status=SettlementStatus(data["status"]),
        business_date=date.fromisoformat(day) if day else None,
        member_id=str(data["member_id"]),
        institution_code=str(data["institution_code"]),
        reasons=tuple(data["reasons"]),
        warnings=tuple(data["warnings"]),
        split=model.Split(**{k: int(v) for k, v in data["split"].items()}),
        lines=tuple(line_from_dict(line) for line in data["lines"]),
        balance_after_fen=int(data["balance_after_fen"]),
    )
