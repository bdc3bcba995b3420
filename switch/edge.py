"""What every RPC goes through before and after its servicer: the edge.

One place for the rules that must hold for all methods alike: the request is
bound to the institution of the client certificate, the number of requests
in flight is bounded (RESOURCE_EXHAUSTED beyond it, never a queue) in all and
for each institution, with slots kept for settlement calls so reconciliation
traffic cannot crowd them out; a client stream is bounded in messages, bytes,
pauses and duration; an expired deadline stops the call before any work,
domain errors become a gRPC status with google.rpc.ErrorInfo (and BadRequest
field violations) through the table in switch/errors.py, and each call leaves
exactly one structured log event and its metrics. Never a PIN, a full card
number or an ID number in a log.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import structlog
from google.protobuf import any_pb2, message
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message_factory import GetMessageClass
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from switch import limits, metrics
from switch.convert import mask_card
from switch.errors import ERROR_DOMAIN, ErrorReason, FieldViolation, SwitchError, invalid
from switch.proto import medswitch_pb2 as pb

T = TypeVar("T")
M = TypeVar("M", bound=message.Message)

# The calls that may use the slots kept for settlement: all of
# SettlementService, and of EncounterService (an inpatient stay's admission,
# fee details, discharge and settlement).
SETTLEMENT_METHODS = frozenset(
    name
    for service in ("SettlementService", "EncounterService")
    for name in pb.DESCRIPTOR.services_by_name[service].methods_by_name
)

log = structlog.get_logger("medswitch.rpc")


def error_status(err: SwitchError) -> grpc.Status:
    """The gRPC status for a domain error: code from the table, ErrorInfo, BadRequest."""
    details: list[Any] = [
        error_details_pb2.ErrorInfo(
            reason=err.reason.value, domain=ERROR_DOMAIN, metadata=err.metadata
        )
    ]
    if err.violations:
        # Trailers are small (8 KiB by default): report the first violations only.
        shown = err.violations[: limits.violations_reported_max]
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in shown
                ]
            )
        )
    packed = []
    for detail in details:
        msg = any_pb2.Any()
        msg.Pack(detail)
        packed.append(msg)
    code = err.status_code
    st = status_pb2.Status(code=getattr(code_pb2, code.name), message=err.message, details=packed)
    return rpc_status.to_status(st)


def clip(text: str) -> str:
    """A client's text as logged or echoed back: its beginning, and its length if
    longer (a refused request may carry megabytes where an id belongs)."""
    shown_max = limits.client_text_shown_max
    return text if len(text) <= shown_max else f"{text[:shown_max]}...({len(text)} characters)"


def peer_institution(context: grpc.aio.ServicerContext) -> str:
    """The institution code of the client certificate (its subject CN)."""
    names = context.auth_context().get("x509_common_name") or []
    for name in names:
        return name.decode() if isinstance(name, bytes) else str(name)
    return ""


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    """The bounds the edge puts on calls; the defaults and their reasons are in switch/limits.py."""

    inflight_max: int = limits.inflight_requests_max
    inflight_per_institution_max: int = limits.inflight_per_institution_max
    inflight_reserved_for_settlement: int = limits.inflight_reserved_for_settlement
    client_streams_max: int = limits.client_streams_max
    client_streams_per_institution_max: int = limits.client_streams_per_institution_max
    client_stream_idle_max_s: float = limits.client_stream_idle_max_s
    client_stream_duration_max_s: float = limits.client_stream_duration_max_s
    client_stream_bytes_max: int = limits.client_stream_bytes_max
    health_reflection_streams_max: int = limits.health_reflection_streams_max
    health_reflection_streams_per_institution_max: int = (
        limits.health_reflection_streams_per_institution_max
    )

    def __post_init__(self) -> None:
        if not 0 <= self.inflight_reserved_for_settlement < self.inflight_max:
            raise ValueError(
                f"{self.inflight_reserved_for_settlement} slots reserved for settlement"
                f" leave none of {self.inflight_max} for other calls"
            )
        if min(self.inflight_per_institution_max, self.client_streams_per_institution_max) < 1:
            raise ValueError("an institution must be allowed at least one call in flight")

    @classmethod
    def for_inflight_max(cls, inflight_max: int) -> EdgeLimits:
        """The defaults around another total: an institution's share and the
        settlement reserve keep their proportion of it."""
        default = limits.inflight_requests_max
        return cls(
            inflight_max=inflight_max,
            inflight_per_institution_max=max(
                1, inflight_max * limits.inflight_per_institution_max // default
            ),
            inflight_reserved_for_settlement=(
                inflight_max * limits.inflight_reserved_for_settlement // default
            ),
        )


class Occupancy:
    """Calls in flight, in all and per institution, against their two bounds."""

    def __init__(self, what: str, total: tuple[str, int], each: tuple[str, int]) -> None:
        self.what = what  # "requests", "client streams"
        self.total_name, self.total_max = total  # the names of the limits, for the client
        self.each_name, self.each_max = each
        self.total = 0
        self.by_institution: dict[str, int] = {}  # an institution leaves at zero

    def of(self, institution: str) -> int:
        return self.by_institution.get(institution, 0)

    def refusal(self, institution: str, reserved: int = 0) -> SwitchError | None:
        """OVERLOADED, naming the bound, when no slot is left (`reserved` are not for this call)."""
        total_max = self.total_max - reserved
        if self.total >= total_max:
            message = f"{self.total} {self.what} in flight, {total_max} at most"
            name = self.total_name
        elif self.of(institution) >= self.each_max:
            message = f"{self.each_max} {self.what} of this institution in flight, its most"
            name = self.each_name
        else:
            return None
        return SwitchError(
            ErrorReason.OVERLOADED, message + "; retry with backoff", metadata={"limit": name}
        )

    def enter(self, institution: str) -> None:
        self.total += 1
        self.by_institution[institution] = self.of(institution) + 1

    def leave(self, institution: str) -> None:
        self.total -= 1
        left = self.by_institution.pop(institution) - 1
        if left:
            self.by_institution[institution] = left


class Edge:
    """Admission, binding, errors, logs and metrics for every RPC."""

    def __init__(self, bounds: EdgeLimits | None = None) -> None:
        self.limits = bounds = bounds or EdgeLimits()
        self.calls = Occupancy(
            "requests",
            ("inflight_requests_max", bounds.inflight_max),
            ("inflight_per_institution_max", bounds.inflight_per_institution_max),
        )
        self.streams = Occupancy(  # client streams, also counted in calls
            "client streams",
            ("client_streams_max", bounds.client_streams_max),
            ("client_streams_per_institution_max", bounds.client_streams_per_institution_max),
        )
        self.library_streams = Occupancy(  # health Watch, reflection: see admitting()
            "health and reflection streams",
            ("health_reflection_streams_max", bounds.health_reflection_streams_max),
            (
                "health_reflection_streams_per_institution_max",
                bounds.health_reflection_streams_per_institution_max,
            ),
        )

    @property
    def inflight(self) -> int:
        return self.calls.total

    def bind(self, context: grpc.aio.ServicerContext, institution_code: str) -> str:
        """Refuses a request naming another institution than its certificate."""
        peer = peer_institution(context)
        if not peer:
            raise SwitchError(
                ErrorReason.INSTITUTION_MISMATCH, "client certificate names no institution"
            )
        if institution_code and institution_code != peer:
            raise SwitchError(
                ErrorReason.INSTITUTION_MISMATCH,
                f"this certificate is for institution {peer}, not {clip(institution_code)}",
                metadata={"certificate_institution": peer},
            )
        return peer

    def _admit(
        self, context: grpc.aio.ServicerContext, peer: str, method: str, client_stream: bool
    ) -> list[Occupancy]:
        """Takes the call's slots (in all, and as a client stream), or refuses it."""
        reserved = (
            0 if method in SETTLEMENT_METHODS else self.limits.inflight_reserved_for_settlement
        )
        refusal = self.calls.refusal(peer, reserved)
        if client_stream:
            refusal = refusal or self.streams.refusal(peer)
        if refusal is not None:
            raise refusal
        remaining_s = context.time_remaining()
        if remaining_s is not None and remaining_s <= 0:
            raise SwitchError(ErrorReason.DEADLINE_EXCEEDED, "deadline expired before work began")
        occupied = [self.calls, self.streams] if client_stream else [self.calls]
        for occupancy in occupied:
            occupancy.enter(peer)
        metrics.INFLIGHT.set(self.calls.total)
        return occupied

    @asynccontextmanager
    async def _call(
        self, call: CallInfo, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[dict[str, Any]]:
        """Admits, binds and accounts for one call; yields the log fields to fill."""
        started = time.perf_counter()
        peer = peer_institution(context)
        occupied: list[Occupancy] = []
        code = grpc.StatusCode.OK
        reason = ""
        fields: dict[str, Any] = {}
        try:
            occupied = self._admit(context, peer, call.method, call.client_stream)
            self.bind(context, call.institution_code)
            yield fields
        except SwitchError as err:
            code, reason = err.status_code, err.reason.value
            await context.abort_with_status(error_status(err))
        except asyncio.CancelledError:
            remaining_s = context.time_remaining()
            expired = remaining_s is not None and remaining_s <= 0
            code = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
            raise
        except grpc.aio.AbortError:
            raise
        except Exception:
            code, reason = grpc.StatusCode.INTERNAL, ErrorReason.INTERNAL.value
            log.exception("rpc_failed", method=call.method, request_id=clip(call.request_id))
            internal = SwitchError(
                ErrorReason.INTERNAL, "internal error; the request may be retried"
            )
            await context.abort_with_status(error_status(internal))
        finally:
            for occupancy in occupied:
                occupancy.leave(peer)
            metrics.INFLIGHT.set(self.calls.total)
            duration_ms = (time.perf_counter() - started) * 1000.0
            metrics.REQUESTS.labels(method=call.method, code=code.name).inc()
            metrics.LATENCY_MS.labels(method=call.method).observe(duration_ms)
            event = call.log_event(peer, code, reason, duration_ms)
            event.update(fields)
            log.info("rpc", **event)

    async def unary(
        self,
        method: str,
        context: grpc.aio.ServicerContext,
        work: Callable[[], Awaitable[T]],
        *,
        institution_code: str = "",
        request_id: str = "",
        card_no: str = "",
    ) -> T:
        """Runs one unary-response call through the edge."""
        call = CallInfo(method, institution_code, request_id, card_no)
        async with self._call(call, context) as fields:
            result = await work()
            fields.update(_result_fields(result))
            return result
        raise AssertionError("unreachable: errors abort the call")

    async def stream(
        self,
        method: str,
        context: grpc.aio.ServicerContext,
        work: Callable[[], AsyncIterator[T]],
        *,
        institution_code: str = "",
    ) -> AsyncIterator[T]:
        """Runs one server-streaming call through the edge."""
        async with self._call(CallInfo(method, institution_code), context) as fields:
            fields["items"] = 0
            async for item in work():
                fields["items"] += 1
                yield item

    async def client_stream(
        self,
        method: str,
        context: grpc.aio.ServicerContext,
        messages: AsyncIterator[M | Undecodable],
        work: Callable[[AsyncIterator[M]], Awaitable[T]],
        *,
        field: str,
        count_max: int,
    ) -> T:
        """Runs one client-streaming call through the edge: it takes one of the few
        stream slots, and `work` reads the `messages` bounded in number (`count_max`),
        bytes, pauses and duration; past a bound the call ends with the status that
        names it. `field` names the messages in field violations ("records")."""
        async with self._call(CallInfo(method, client_stream=True), context) as fields:
            fields["items"] = 0
            result = await work(self._bounded(messages, field, count_max, fields))
            fields.update(_result_fields(result))
            return result
        raise AssertionError("unreachable: errors abort the call")

    async def _bounded(
        self,
        messages: AsyncIterator[M | Undecodable],
        field: str,
        count_max: int,
        fields: dict[str, Any],
    ) -> AsyncIterator[M]:
        bounds = self.limits
        clock = asyncio.get_running_loop().time
        ends_at = clock() + bounds.client_stream_duration_max_s
        size = 0
        while True:
            wait_s = min(bounds.client_stream_idle_max_s, ends_at - clock())
            try:
                async with asyncio.timeout(wait_s):
                    item = await anext(messages)
            except StopAsyncIteration:
                return
            except TimeoutError:
                idle = wait_s >= bounds.client_stream_idle_max_s
                raise _stream_timeout(bounds, idle=idle) from None
            if isinstance(item, Undecodable):
                raise item.refusal(f"{field}[{fields['items']}]")
            size += item.ByteSize()
            if fields["items"] >= count_max:
                raise invalid([FieldViolation(field, f"more than {count_max} {field}")])
            if size > bounds.client_stream_bytes_max:
                limit = bounds.client_stream_bytes_max
                raise invalid([FieldViolation(field, f"more than {limit} bytes of {field}")])
            fields["items"] += 1
            yield item

    def method_handler(self, method: MethodDescriptor, behavior: Any) -> grpc.RpcMethodHandler:
        """The gRPC handler of one method, serving `behavior` (the servicer's method).

        grpc answers a request that does not parse (corrupt protobuf, invalid
        UTF-8) UNKNOWN, with no ErrorInfo and no log line; here it is handed on
        as Undecodable and refused INVALID_ARGUMENT through the edge like any
        malformed request: before the servicer for a request, where it is read
        for a message of a client stream (client_stream()).
        """
        decode = _tolerant_decoder(GetMessageClass(method.input_type))
        encode = GetMessageClass(method.output_type).SerializeToString
        name = method.name
        if method.client_streaming:
            assert not method.server_streaming, "no bidirectional method in medswitch.v1"
            return grpc.stream_unary_rpc_method_handler(behavior, decode, encode)
        if method.server_streaming:

            async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                if isinstance(request, Undecodable):
                    await self.unary(name, context, request.refuse)
                    return
                async for item in behavior(request, context):
                    yield item

            return grpc.unary_stream_rpc_method_handler(stream, decode, encode)

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, Undecodable):
                return await self.unary(name, context, request.refuse)
            return await behavior(request, context)

        return grpc.unary_unary_rpc_method_handler(unary, decode, encode)

    def admitting(self, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """A handler of another library (health, reflection) whose streams take a
        slot of `library_streams`: left idle, they would fill grpc's own bound on
        calls, which then refuses every caller. Its unary calls are short and pass."""
        replaced = {
            kind: self._in_library_slot(behavior)
            for kind in ("unary_stream", "stream_unary", "stream_stream")
            if (behavior := getattr(handler, kind)) is not None
        }
        return handler._replace(**replaced)

    def _in_library_slot(self, behavior: Any) -> Any:
        if inspect.isasyncgenfunction(behavior):  # responses yielded (reflection)

            async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
                async with self._library_slot(context):
                    async for item in behavior(request, context):
                        yield item

            return stream

        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            async with self._library_slot(context):  # responses written (health Watch)
                return await behavior(request, context)

        return call

    @asynccontextmanager
    async def _library_slot(self, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        peer = peer_institution(context)
        refusal = self.library_streams.refusal(peer)
        if refusal is not None:
            await context.abort_with_status(error_status(refusal))
        self.library_streams.enter(peer)
        try:
            yield
        finally:
            self.library_streams.leave(peer)


@dataclass(frozen=True, slots=True)
class Undecodable:
    """A message that did not parse, in place of the request grpc would have dropped."""

    error: str  # protobuf's, e.g. "Error parsing message with type '...': Wire format was corrupt"

    def refusal(self, field: str) -> SwitchError:
        return invalid([FieldViolation(field, self.error)])

    async def refuse(self) -> Any:
        raise self.refusal("request")


def _tolerant_decoder(message_type: Any) -> Callable[[bytes], Any]:
    """The message type's parser, returning Undecodable where it would raise."""
    parse = message_type.FromString

    def decode(raw: bytes) -> Any:
        try:
            return parse(raw)
        except message.DecodeError as exc:
            return Undecodable(str(exc))

    return decode


def _stream_timeout(bounds: EdgeLimits, *, idle: bool) -> SwitchError:
    if idle:
        message = (
            f"no message for {bounds.client_stream_idle_max_s:g} s: a stream may pause"
            f" {bounds.client_stream_idle_max_s:g} s at most between two messages"
        )
    else:
        message = (
            f"the stream is still sending after {bounds.client_stream_duration_max_s:g} s,"
            " the most it may take"
        )
    return SwitchError(ErrorReason.STREAM_TIMEOUT, message)


@dataclass(frozen=True, slots=True)
class CallInfo:
    """What the edge knows of a call before its servicer runs (for admission and the log)."""

    method: str
    institution_code: str = ""  # as the request claims it; the certificate decides
    request_id: str = ""
    card_no: str = ""
    client_stream: bool = False

    def log_event(
        self, peer: str, code: grpc.StatusCode, reason: str, duration_ms: float
    ) -> dict[str, Any]:
        """The call's one `rpc` log event: who called, what, how it ended; nothing personal."""
        event: dict[str, Any] = {
            "method": self.method,
            "status": code.name,
            "duration_ms": round(duration_ms, 3),
            # who called: the certificate's institution, never the claim's
            "institution": peer or self.institution_code,
        }
        if self.institution_code and self.institution_code != event["institution"]:
            event["claimed_institution"] = clip(self.institution_code)
        if self.request_id:
            event["request_id"] = clip(self.request_id)
        if self.card_no:
            event["card"] = clip(mask_card(self.card_no))
        if reason:
            event["error_reason"] = reason
        return event


def _result_fields(result: object) -> dict[str, Any]:
    """What a response adds to the log line (ids and outcome, nothing personal)."""
    out: dict[str, Any] = {}
    for name in ("settlement_id", "reversal_id"):
        value = getattr(result, name, "")
        if isinstance(value, str) and value:
            out[name] = value
    return out
