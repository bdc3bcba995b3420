"""Test helpers for the gRPC switch: certificates, mTLS channels, status details.

Servers under test are real grpc.aio servers with mutual TLS on port 0; the
helpers here only create certificates and read google.rpc details back.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from switch import pki


@dataclass(frozen=True)
class Pki:
    tls_dir: Path
    foreign_dir: Path  # a second CA the switch does not trust

    def creds(self, code: str, *, foreign: bool = False) -> grpc.ChannelCredentials:
        own = pki.TlsPaths(self.tls_dir)
        issuer = pki.TlsPaths(self.foreign_dir if foreign else self.tls_dir)
        if not issuer.client_crt(code).exists():
            pki.issue(issuer.tls_dir, code)
        return grpc.ssl_channel_credentials(
            root_certificates=own.ca_crt.read_bytes(),
            private_key=issuer.client_key(code).read_bytes(),
            certificate_chain=issuer.client_crt(code).read_bytes(),
        )

    def server_only_creds(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=pki.TlsPaths(self.tls_dir).ca_crt.read_bytes()
        )


def make_pki(base: Path) -> Pki:
    pki.init(base / "tls")
    pki.init(base / "foreign")
    return Pki(base / "tls", base / "foreign")


def free_port() -> int:
    """A port nobody listens on right now (for a server started in a subprocess)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def channel(port: int, creds: grpc.ChannelCredentials) -> grpc.aio.Channel:
    return grpc.aio.secure_channel(f"127.0.0.1:{port}", creds)


async def health_becomes(ch: grpc.aio.Channel, status: int, timeout_s: float = 30) -> None:
    """Returns when the switch's overall health (service "") is `status`, as a
    load balancer watching it would learn (grpc.health.v1 Watch)."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service=""))
    try:
        async with asyncio.timeout(timeout_s):
            async for answer in watch:
                if answer.status == status:
                    return
    except TimeoutError:
        raise AssertionError(f"health did not become {status} in {timeout_s} s") from None
    finally:
        watch.cancel()  # a Watch left open would hold the server's drain
    raise AssertionError(f"the health Watch ended before {status}")


@dataclass(frozen=True)
class ErrorDetails:
    code: grpc.StatusCode
    reason: str
    domain: str
    violations: dict[str, str]  # field -> description
    metadata: dict[str, str]  # ErrorInfo.metadata
    message: str  # the status message


def error_details(err: grpc.aio.AioRpcError) -> ErrorDetails:
    """The ErrorInfo and BadRequest an error status carries."""
    raw = [v for k, v in (err.trailing_metadata() or ()) if k == "grpc-status-details-bin"]
    assert raw, f"{err.code()} without google.rpc.Status details: {err.details()}"
    st = status_pb2.Status.FromString(raw[0])
    assert st.code == err.code().value[0]
    reason = domain = ""
    violations: dict[str, str] = {}
    metadata: dict[str, str] = {}
    for detail in st.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, domain = info.reason, info.domain
            metadata = dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.update({v.field: v.description for v in bad.field_violations})
    return ErrorDetails(err.code(), reason, domain, violations, metadata, st.message)


def pharmacy_request(
    request_id: str,
    institution: str,
    card_no: str,
    pin: str,
    service_date: str,
    *,
    quantity: int = 1,
) -> Any:
    """A pharmacy purchase of the reference catalog's 4.50-yuan OTC drug."""
    from switch.proto import medswitch_pb2 as pb

    return pb.SettleRequest(
        request_id=request_id,
        institution_code=institution,
        card_no=card_no,
        pin=pin,
        visit_type=pb.VISIT_TYPE_PHARMACY,
        service_date=service_date,
        lines=[
            pb.ClaimLine(
                line_no=1,
                item_code="XN02BEA001A001010100004",
                quantity=quantity,
                unit_price_fen=450,
                amount_fen=quantity * 450,
            )
        ],
    )
