"""The medswitch.v1 services: proto -> domain -> proto, nothing more.

Each method validates and converts its request (switch/convert.py), asks the
backend (switch/backend.py) and converts the answer back, inside the edge
(switch/edge.py) that binds the caller's certificate, bounds the load and
maps errors. No business rule lives here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date
from typing import Any, TypeAlias, TypeVar

import grpc

from adjudication import limits as alimits
from adjudication.model import Claim
from ledger.store import DetailRecord
from switch import convert, limits, metrics
from switch.backend import (
    CancelCommand,
    EncounterBackend,
    SettlementBackend,
    SettlementStatus,
)
from switch.convert import Checker
from switch.edge import Edge, Undecodable, peer_institution
from switch.errors import FieldViolation, invalid
from switch.proto import medswitch_pb2 as pb
from switch.proto import medswitch_pb2_grpc as pb_grpc
from switch.reconcile import compare_details, compare_totals

Ctx: TypeAlias = grpc.aio.ServicerContext
T = TypeVar("T")


def _status_from_pb(value: int, field: str, ck: Checker) -> SettlementStatus | None:
    name = pb.SettlementStatus.Name(value) if value in pb.SettlementStatus.values() else ""
    if not name or value == pb.SETTLEMENT_STATUS_UNSPECIFIED:
        ck.add(field, f"unknown or missing status {value}")
        return None
    return SettlementStatus(name.removeprefix("SETTLEMENT_STATUS_"))


def _claim(request: pb.SettleRequest) -> Claim:
    """The request's claim, if well formed and not dated in the future."""
    claim, violations = convert.claim_from_request(
        request, latest_date=convert.latest_service_date()
    )
    if claim is None:
        raise invalid(violations)
    return claim


class SettlementServicer(pb_grpc.SettlementServiceServicer):
    def __init__(self, backend: SettlementBackend, edge: Edge) -> None:
        self.backend = backend
        self.edge = edge

    async def PreSettle(self, request: pb.SettleRequest, context: Ctx) -> pb.SettleResponse:
        async def work() -> pb.SettleResponse:
            claim = _claim(request)
            return convert.settle_response(await self.backend.pre_settle(claim, request.pin))

        return await self.edge.unary(
            "PreSettle",
            context,
            work,
            institution_code=request.institution_code,
            request_id=request.request_id,
            card_no=request.card_no,
        )

    async def Settle(self, request: pb.SettleRequest, context: Ctx) -> pb.SettleResponse:
        async def work() -> pb.SettleResponse:
            claim = _claim(request)
            view = await self.backend.settle(claim, request.pin, convert.request_digest(request))
            metrics.SETTLEMENTS.labels(outcome=view.status.value).inc()
            return convert.settle_response(view)

        return await self.edge.unary(
            "Settle",
            context,
            work,
            institution_code=request.institution_code,
            request_id=request.request_id,
            card_no=request.card_no,
        )

    async def CancelSettlement(
        self, request: pb.CancelSettlementRequest, context: Ctx
    ) -> pb.CancelSettlementResponse:
        async def work() -> pb.CancelSettlementResponse:
            ck = Checker()
            if not request.request_id:
                ck.add("request_id", "required (1-64 characters)")
            ck.text("request_id", request.request_id, alimits.request_id_len_max)
            ck.institution(request.institution_code)
            ck.text("settlement_id", request.settlement_id, limits.settlement_id_len_max)
            ck.text(
                "original_request_id", request.original_request_id, limits.settlement_id_len_max
            )
            ck.text("reason", request.reason, limits.cancel_reason_len_max)
            if bool(request.settlement_id) == bool(request.original_request_id):
                ck.add("settlement_id", "give exactly one of settlement_id, original_request_id")
            if ck.violations:
                raise invalid(ck.violations)
            view = await self.backend.cancel(
                CancelCommand(
                    request_id=request.request_id,
                    institution_code=request.institution_code,
                    settlement_id=request.settlement_id,
                    original_request_id=request.original_request_id,
                    reason=request.reason,
                ),
                convert.request_digest(request),
            )
            return pb.CancelSettlementResponse(
                settlement_id=view.settlement_id,
                status=pb.SETTLEMENT_STATUS_CANCELLED,
                reversal_id=view.reversal_id,
                balance_after_fen=view.balance_after_fen,
            )

        return await self.edge.unary(
            "CancelSettlement",
            context,
            work,
            institution_code=request.institution_code,
            request_id=request.request_id,
        )

    async def GetSettlement(
        self, request: pb.GetSettlementRequest, context: Ctx
    ) -> pb.SettleResponse:
        async def work() -> pb.SettleResponse:
            ck = Checker()
            ck.institution(request.institution_code)
            ck.text("settlement_id", request.settlement_id, limits.settlement_id_len_max)
            ck.text("request_id", request.request_id, limits.settlement_id_len_max)
            if bool(request.settlement_id) == bool(request.request_id):
                ck.add("settlement_id", "give exactly one of settlement_id, request_id")
            if ck.violations:
                raise invalid(ck.violations)
            view = await self.backend.get_settlement(
                request.institution_code, request.settlement_id, request.request_id
            )
            return convert.settle_response(view)

        return await self.edge.unary(
            "GetSettlement",
            context,
            work,
            institution_code=request.institution_code,
            request_id=request.request_id,
        )


class MemberServicer(pb_grpc.MemberServiceServicer):
    def __init__(self, backend: SettlementBackend, edge: Edge) -> None:
        self.backend = backend
        self.edge = edge

    async def GetMember(self, request: pb.GetMemberRequest, context: Ctx) -> pb.Member:
        async def work() -> pb.Member:
            ck = Checker()
            ck.institution(request.institution_code)
            ck.card(request.card_no)
            ck.text("pin", request.pin, limits.pin_len_max)
            if ck.violations:
                raise invalid(ck.violations)
            member = await self.backend.get_member(
                request.institution_code, request.card_no, request.pin
            )
            return convert.member_to_pb(member)

        return await self.edge.unary(
            "GetMember",
            context,
            work,
            institution_code=request.institution_code,
            card_no=request.card_no,
        )

    async def ListAccountActivity(
        self, request: pb.ListAccountActivityRequest, context: Ctx
    ) -> pb.ListAccountActivityResponse:
        async def work() -> pb.ListAccountActivityResponse:
            ck = Checker()
            ck.institution(request.institution_code)
            ck.card(request.card_no)
            ck.text("pin", request.pin, limits.pin_len_max)
            from_date = ck.date("from_date", request.from_date)
            to_date = ck.date("to_date", request.to_date)
            if from_date and to_date and to_date < from_date:
                ck.add("to_date", "before from_date")
            if ck.violations:
                raise invalid(ck.violations)
            entries = await self.backend.account_activity(
                request.institution_code, request.card_no, request.pin, from_date, to_date
            )
            return pb.ListAccountActivityResponse(entries=[convert.entry_to_pb(e) for e in entries])

        return await self.edge.unary(
            "ListAccountActivity",
            context,
            work,
            institution_code=request.institution_code,
            card_no=request.card_no,
        )


def _business_date(ck: Checker, value: str) -> date | None:
    return ck.date("business_date", value, required=True)


class ReconciliationServicer(pb_grpc.ReconciliationServiceServicer):
    def __init__(self, backend: SettlementBackend, edge: Edge) -> None:
        self.backend = backend
        self.edge = edge

    async def ReconcileTotals(
        self, request: pb.ReconcileTotalsRequest, context: Ctx
    ) -> pb.ReconcileTotalsResponse:
        async def work() -> pb.ReconcileTotalsResponse:
            ck = Checker()
            ck.institution(request.institution_code)
            day = _business_date(ck, request.business_date)
            if ck.violations or day is None:
                raise invalid(ck.violations)
            ours = await self.backend.institution_totals(request.institution_code, day)
            differences = compare_totals(request, ours)
            return pb.ReconcileTotalsResponse(
                matched=not differences,
                switch_settlement_count=ours.settlement_count,
                switch_medical_total_fen=ours.medical_total_fen,
                switch_pooled_fund_fen=ours.pooled_fund_fen,
                switch_serious_illness_fen=ours.serious_illness_fen,
                switch_individual_account_fen=ours.individual_account_fen,
                differences=differences,
            )

        return await self.edge.unary(
            "ReconcileTotals", context, work, institution_code=request.institution_code
        )

    async def ReconcileDetails(
        self, request_iterator: AsyncIterator[pb.ReconcileDetailRecord | Undecodable], context: Ctx
    ) -> pb.ReconcileDetailsResponse:
        async def work(
            records: AsyncIterator[pb.ReconcileDetailRecord],
        ) -> pb.ReconcileDetailsResponse:
            theirs: list[DetailRecord] = []
            day: date | None = None
            async for i, rec in _aenumerate(records):
                ck = Checker()
                at = f"records[{i}]"
                self.edge.bind(context, rec.institution_code)
                rec_day = ck.date(f"{at}.business_date", rec.business_date, required=True)
                if day is not None and rec_day is not None and rec_day != day:
                    ck.add(f"{at}.business_date", "all records must be of one business day")
                day = day or rec_day
                if not rec.settlement_id and not rec.request_id:
                    ck.add(f"{at}.settlement_id", "settlement_id or request_id required")
                ck.text(f"{at}.settlement_id", rec.settlement_id, limits.settlement_id_len_max)
                ck.text(f"{at}.request_id", rec.request_id, alimits.request_id_len_max)
                status = _status_from_pb(rec.status, f"{at}.status", ck)
                if ck.violations or status is None:
                    raise invalid(ck.violations)
                theirs.append(
                    DetailRecord(
                        rec.settlement_id, rec.request_id, rec.total_fen, rec.fund_total_fen, status
                    )
                )
            if day is None:
                raise invalid([FieldViolation("records", "no records sent")])
            ours = await self.backend.institution_details(peer_institution(context), day)
            result = compare_details(theirs, ours)
            return pb.ReconcileDetailsResponse(
                matched_count=result.matched_count,
                missing_at_switch=list(result.missing_at_switch),
                missing_at_institution=list(result.missing_at_institution),
                mismatched=list(result.mismatched),
            )

        # Each record names its institution; the edge binds them one by one in work().
        return await self.edge.client_stream(
            "ReconcileDetails",
            context,
            request_iterator,
            work,
            field="records",
            count_max=limits.reconcile_records_max,
        )


async def _aenumerate(
    it: AsyncIterator[pb.ReconcileDetailRecord],
) -> AsyncIterator[tuple[int, pb.ReconcileDetailRecord]]:
    i = 0
    async for item in it:
        yield i, item
        i += 1


class CatalogServicer(pb_grpc.CatalogServiceServicer):
    def __init__(self, backend: SettlementBackend, edge: Edge) -> None:
        self.backend = backend
        self.edge = edge

    async def DownloadCatalog(
        self, request: pb.DownloadCatalogRequest, context: Ctx
    ) -> AsyncIterator[pb.CatalogItem]:
        async def work() -> AsyncIterator[pb.CatalogItem]:
            if request.since_version < 0:
                raise invalid([FieldViolation("since_version", "must not be negative")])
            async for entry in self.backend.catalog(request.since_version):
                yield convert.catalog_item_to_pb(entry)

        async for item in self.edge.stream("DownloadCatalog", context, work):
            yield item


class EncounterServicer(pb_grpc.EncounterServiceServicer):
    """Inpatient stays: admission, fee details, discharge, settlement (2401-2404, 2301-2304)."""

    def __init__(self, backend: EncounterBackend, edge: Edge) -> None:
        self.backend = backend
        self.edge = edge

    async def _unary(
        self, method: str, context: Ctx, work: Callable[[], Awaitable[T]], request: Any
    ) -> T:
        return await self.edge.unary(
            method,
            context,
            work,
            institution_code=request.institution_code,
            request_id=getattr(request, "request_id", ""),
            card_no=getattr(request, "card_no", ""),
        )

    async def RegisterAdmission(
        self, request: pb.RegisterAdmissionRequest, context: Ctx
    ) -> pb.Encounter:
        async def work() -> pb.Encounter:
            command = convert.admission_command(request)
            view = await self.backend.register_admission(command, convert.request_digest(request))
            return convert.encounter_to_pb(view)

        return await self._unary("RegisterAdmission", context, work, request)

    async def CancelAdmission(
        self, request: pb.CancelAdmissionRequest, context: Ctx
    ) -> pb.Encounter:
        async def work() -> pb.Encounter:
            call = convert.cancel_admission_call(request)
            digest = convert.request_digest(request)
            view = await self.backend.cancel_admission(call, request.reason, digest)
            return convert.encounter_to_pb(view)

        return await self._unary("CancelAdmission", context, work, request)

    async def UploadFeeDetails(
        self, request: pb.UploadFeeDetailsRequest, context: Ctx
    ) -> pb.UploadFeeDetailsResponse:
        async def work() -> pb.UploadFeeDetailsResponse:
            command = convert.upload_command(request)
            view = await self.backend.upload_fee_details(command, convert.request_digest(request))
            return convert.upload_response(view)

        return await self._unary("UploadFeeDetails", context, work, request)

    async def VoidFeeDetails(
        self, request: pb.VoidFeeDetailsRequest, context: Ctx
    ) -> pb.VoidFeeDetailsResponse:
        async def work() -> pb.VoidFeeDetailsResponse:
            command = convert.void_command(request)
            view = await self.backend.void_fee_details(command, convert.request_digest(request))
            return convert.void_response(view)

        return await self._unary("VoidFeeDetails", context, work, request)

    async def RecordDischarge(
        self, request: pb.RecordDischargeRequest, context: Ctx
    ) -> pb.Encounter:
        async def work() -> pb.Encounter:
            command = convert.discharge_command(request)
            view = await self.backend.record_discharge(command, convert.request_digest(request))
            return convert.encounter_to_pb(view)

        return await self._unary("RecordDischarge", context, work, request)

    async def PreSettleEncounter(
        self, request: pb.SettleEncounterRequest, context: Ctx
    ) -> pb.SettleResponse:
        async def work() -> pb.SettleResponse:
            command = convert.settle_encounter_command(request)
            return convert.settle_response(await self.backend.pre_settle_encounter(command))

        return await self._unary("PreSettleEncounter", context, work, request)

    async def SettleEncounter(
        self, request: pb.SettleEncounterRequest, context: Ctx
    ) -> pb.SettleResponse:
        async def work() -> pb.SettleResponse:
            command = convert.settle_encounter_command(request)
            digest = convert.request_digest(request)
            view = await self.backend.settle_encounter(command, digest)
            metrics.SETTLEMENTS.labels(outcome=view.status.value).inc()
            return convert.settle_response(view)

        return await self._unary("SettleEncounter", context, work, request)

    async def GetEncounter(self, request: pb.GetEncounterRequest, context: Ctx) -> pb.Encounter:
        async def work() -> pb.Encounter:
            institution_code, encounter_id = convert.get_encounter_request(request)
            view = await self.backend.get_encounter(institution_code, encounter_id)
            return convert.encounter_to_pb(view)

        return await self._unary("GetEncounter", context, work, request)


def add_all(server: grpc.aio.Server, backend: SettlementBackend, edge: Edge) -> list[str]:
    """Registers every medswitch.v1 service; returns their full names.

    The handlers are built here rather than by grpc_tools' add_*_to_server, so
    that the edge decodes requests (Edge.method_handler).
    """
    servicers = {
        "SettlementService": SettlementServicer(backend, edge),
        "MemberService": MemberServicer(backend, edge),
        "ReconciliationService": ReconciliationServicer(backend, edge),
        "CatalogService": CatalogServicer(backend, edge),
        "EncounterService": EncounterServicer(backend.encounters, edge),
    }
    names = []
    for name, servicer in servicers.items():
        service = pb.DESCRIPTOR.services_by_name[name]
        handlers = {
            method.name: edge.method_handler(method, getattr(servicer, method.name))
            for method in service.methods
        }
        register(server, service.full_name, handlers)
        names.append(service.full_name)
    return names


def register(server: grpc.aio.Server, service: str, handlers: dict[str, Any]) -> None:
    """Serves `service` by `handlers` (method name -> grpc.RpcMethodHandler), as
    grpc_tools' add_*_to_server does."""
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    server.add_registered_method_handlers(service, handlers)
