"""Domain errors of the switch and the one table that maps them to gRPC.

Bad input and refused operations raise `SwitchError` with a stable reason;
the edge (switch/server.py) turns it into a gRPC status carrying
`google.rpc.ErrorInfo` (domain "medswitch", the reason) and, for malformed
requests, `google.rpc.BadRequest` field violations. Business rejections of a
claim are NOT errors: they are normal responses with R_* codes.

Reasons are API for hospitals: append only, never renamed or reused.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import grpc

ERROR_DOMAIN = "medswitch"


class ErrorReason(StrEnum):
    INVALID_REQUEST = "INVALID_REQUEST"
    INSTITUTION_MISMATCH = "INSTITUTION_MISMATCH"  # request names another institution than its cert
    NOT_SETTLING_INSTITUTION = "NOT_SETTLING_INSTITUTION"  # cancel/get of another's settlement
    REQUEST_ID_REUSED = "REQUEST_ID_REUSED"  # same request id, different request
    REQUEST_CANCELLED = "REQUEST_CANCELLED"  # Settle after its reversal by original_request_id
    SETTLEMENT_NOT_FOUND = "SETTLEMENT_NOT_FOUND"
    BUSINESS_DAY_CLOSED = "BUSINESS_DAY_CLOSED"
    NOT_CANCELLABLE = "NOT_CANCELLABLE"  # e.g. a rejection has nothing to cancel
    CARD_INVALID = "CARD_INVALID"
    PIN_INVALID = "PIN_INVALID"
    PIN_LOCKED = "PIN_LOCKED"
    OVERLOADED = "OVERLOADED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"
    CONFLICT_RETRIES_EXHAUSTED = "CONFLICT_RETRIES_EXHAUSTED"
    NOT_IMPLEMENTED = "NOT_IMPLEMENTED"
    INTERNAL = "INTERNAL"
    NO_OPEN_BUSINESS_DAY = "NO_OPEN_BUSINESS_DAY"  # operators must open a day first
    STREAM_TIMEOUT = "STREAM_TIMEOUT"  # a client stream paused or lasted too long
    INSTITUTION_NOT_ACTIVE = "INSTITUTION_NOT_ACTIVE"  # member reads: suspended, revoked, unknown
    ENCOUNTER_NOT_FOUND = "ENCOUNTER_NOT_FOUND"
    NOT_ADMITTING_INSTITUTION = "NOT_ADMITTING_INSTITUTION"  # another institution's encounter
    ENCOUNTER_CLOSED = "ENCOUNTER_CLOSED"  # settled (cancel the settlement first) or cancelled
    ENCOUNTER_NOT_READY = "ENCOUNTER_NOT_READY"  # settled before discharge, or with no lines
    ENCOUNTER_FULL = "ENCOUNTER_FULL"  # an upload past the encounter's line limits
    ENCOUNTER_CHANGED = "ENCOUNTER_CHANGED"  # changed while it settled: retry the same request
    MEMBER_IN_HOSPITAL = "MEMBER_IN_HOSPITAL"  # an admission while one is not yet discharged


# The one table: domain reason -> gRPC status code.
STATUS_BY_REASON: dict[ErrorReason, grpc.StatusCode] = {
    ErrorReason.INVALID_REQUEST: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorReason.INSTITUTION_MISMATCH: grpc.StatusCode.PERMISSION_DENIED,
    ErrorReason.NOT_SETTLING_INSTITUTION: grpc.StatusCode.PERMISSION_DENIED,
    ErrorReason.REQUEST_ID_REUSED: grpc.StatusCode.ALREADY_EXISTS,
    ErrorReason.REQUEST_CANCELLED: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorReason.SETTLEMENT_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorReason.BUSINESS_DAY_CLOSED: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorReason.NOT_CANCELLABLE: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorReason.CARD_INVALID: grpc.StatusCode.NOT_FOUND,
    ErrorReason.PIN_INVALID: grpc.StatusCode.UNAUTHENTICATED,
    ErrorReason.PIN_LOCKED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorReason.INSTITUTION_NOT_ACTIVE: grpc.StatusCode.PERMISSION_DENIED,
    ErrorReason.OVERLOADED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorReason.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorReason.DATABASE_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorReason.CONFLICT_RETRIES_EXHAUSTED: grpc.StatusCode.ABORTED,
    ErrorReason.NOT_IMPLEMENTED: grpc.StatusCode.UNIMPLEMENTED,
    ErrorReason.INTERNAL: grpc.StatusCode.INTERNAL,
    ErrorReason.NO_OPEN_BUSINESS_DAY: grpc.StatusCode.UNAVAILABLE,
    ErrorReason.STREAM_TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorReason.ENCOUNTER_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorReason.NOT_ADMITTING_INSTITUTION: grpc.StatusCode.PERMISSION_DENIED,
    ErrorReason.ENCOUNTER_CLOSED: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorReason.ENCOUNTER_NOT_READY: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorReason.ENCOUNTER_FULL: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorReason.ENCOUNTER_CHANGED: grpc.StatusCode.ABORTED,
    ErrorReason.MEMBER_IN_HOSPITAL: grpc.StatusCode.FAILED_PRECONDITION,
}


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One malformed field: `field` is a path like "lines[2].amount_fen"."""

    field: str
    description: str


class SwitchError(Exception):
    """A request the switch refuses; carries a stable reason for the client."""

    def __init__(
        self,
        reason: ErrorReason,
        message: str,
        violations: tuple[FieldViolation, ...] = (),
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.violations = violations
        self.metadata = dict(metadata or {})

    @property
    def status_code(self) -> grpc.StatusCode:
        return STATUS_BY_REASON[self.reason]


def invalid(violations: tuple[FieldViolation, ...] | list[FieldViolation]) -> SwitchError:
    vs = tuple(violations)
    fields = ", ".join(v.field for v in vs[:5]) + (", ..." if len(vs) > 5 else "")
    return SwitchError(ErrorReason.INVALID_REQUEST, f"malformed request: {fields}", vs)
