"""What every RPC goes through before and after its servicer: the edge.

One place for the rules that must hold for all methods alike: the request is
bound to the institution of the client certificate, the number of requests
in flight is bounded (RESOURCE_EXHAUSTED beyond it, never a queue), an
expired deadline stops the call before any work, domain errors become a gRPC
status with google.rpc.ErrorInfo (and BadRequest field violations) through
the table in switch/errors.py, and each call leaves exactly one structured
log event and its metrics. Never a PIN, a full card number or an ID number in
a log.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import grpc
import structlog
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from switch import limits, metrics
from switch.convert import mask_card
from switch.errors import ERROR_DOMAIN, ErrorReason, SwitchError

T = TypeVar("T")

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


def peer_institution(context: grpc.aio.ServicerContext) -> str:
    """The institution code of the client certificate (its subject CN)."""
    names = context.auth_context().get("x509_common_name") or []
    for name in names:
        return name.decode() if isinstance(name, bytes) else str(name)
    return ""


class Edge:
    """Admission, binding, errors, logs and metrics for every RPC."""

    def __init__(self, inflight_max: int) -> None:
        self.inflight_max = inflight_max
        self.inflight = 0

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
                f"this certificate is for institution {peer}, not {institution_code}",
                metadata={"certificate_institution": peer},
            )
        return peer

    def _admit(self, context: grpc.aio.ServicerContext) -> None:
        if self.inflight >= self.inflight_max:
            raise SwitchError(
                ErrorReason.OVERLOADED,
                f"more than {self.inflight_max} requests in flight; retry with backoff",
            )
        remaining_s = context.time_remaining()
        if remaining_s is not None and remaining_s <= 0:
            raise SwitchError(ErrorReason.DEADLINE_EXCEEDED, "deadline expired before work began")

    @asynccontextmanager
    async def _call(
        self,
        method: str,
        context: grpc.aio.ServicerContext,
        institution_code: str,
        request_id: str = "",
        card_no: str = "",
    ) -> AsyncIterator[dict[str, Any]]:
        """Admits, binds and accounts for one call; yields the log fields to fill."""
        started = time.perf_counter()
        admitted = False
        code = grpc.StatusCode.OK
        reason = ""
        fields: dict[str, Any] = {}
        try:
            self._admit(context)
            admitted = True
            self.inflight += 1
            metrics.INFLIGHT.set(self.inflight)
            self.bind(context, institution_code)
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
            log.exception("rpc_failed", method=method, request_id=request_id)
            internal = SwitchError(
                ErrorReason.INTERNAL, "internal error; the request may be retried"
            )
            await context.abort_with_status(error_status(internal))
        finally:
            if admitted:
                self.inflight -= 1
                metrics.INFLIGHT.set(self.inflight)
            duration_ms = (time.perf_counter() - started) * 1000.0
            metrics.REQUESTS.labels(method=method, code=code.name).inc()
            metrics.LATENCY_MS.labels(method=method).observe(duration_ms)
            event: dict[str, Any] = {
                "method": method,
                "status": code.name,
                "duration_ms": round(duration_ms, 3),
                # who called: the certificate's institution, never the claim's
                "institution": peer_institution(context) or institution_code,
            }
            if institution_code and institution_code != event["institution"]:
                event["claimed_institution"] = institution_code
            if request_id:
                event["request_id"] = request_id
            if card_no:
                event["card"] = mask_card(card_no)
            if reason:
                event["error_reason"] = reason
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
        async with self._call(method, context, institution_code, request_id, card_no) as fields:
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
        async with self._call(method, context, institution_code) as fields:
            fields["items"] = 0
            async for item in work():
                fields["items"] += 1
                yield item


def _result_fields(result: object) -> dict[str, Any]:
    """What a response adds to the log line (ids and outcome, nothing personal)."""
    out: dict[str, Any] = {}
    for name in ("settlement_id", "reversal_id"):
        value = getattr(result, name, "")
        if isinstance(value, str) and value:
            out[name] = value
    return out
