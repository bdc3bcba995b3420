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

    async def cancel(self, command: CancelCommand) -> CancelView: ...

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
        "lines": [
            {
                "line_no": line.line_no,
                "item_class": line.item_class,
                "full_selfpay_fen": line.full_selfpay_fen,
                "overlimit_selfpay_fen": line.overlimit_selfpay_fen,
                "preselfpay_fen": line.preselfpay_fen,
                "in_scope_fen": line.in_scope_fen,
                "reasons": list(line.reasons),
                "counts_toward_fund": line.counts_toward_fund,
            }
            for line in view.lines
        ],
        "balance_after_fen": view.balance_after_fen,
    }


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
        lines=tuple(
            model.LineResult(
                line_no=int(line["line_no"]),
                item_class=str(line["item_class"]),
                full_selfpay_fen=int(line["full_selfpay_fen"]),
                overlimit_selfpay_fen=int(line["overlimit_selfpay_fen"]),
                preselfpay_fen=int(line["preselfpay_fen"]),
                in_scope_fen=int(line["in_scope_fen"]),
                reasons=tuple(line["reasons"]),
                counts_toward_fund=bool(line.get("counts_toward_fund", True)),
            )
            for line in data["lines"]
        ),
        balance_after_fen=int(data["balance_after_fen"]),
    )
