"""`python -m switch.healthcheck [ADDRESS]`: exit 0 if the switch says SERVING.

For container health checks (Docker's HEALTHCHECK, compose, an exec probe):
asks grpc.health.v1 on the plaintext health-only listener (`medswitch serve
--health-listen`, MEDSWITCH_HEALTH_LISTEN), which needs no client
certificate. NOT_SERVING (the database does not answer, or the switch is
draining), no answer within the timeout, or no listener: exit 1, with the
reason on stderr. Imports only grpc, so a probe costs little.
"""

from __future__ import annotations

import argparse
import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

PROBE_TIMEOUT_S = 3.0


def check(address: str, timeout_s: float = PROBE_TIMEOUT_S, service: str = "") -> str | None:
    """None when `service` ("" the switch as a whole) is SERVING, else why not."""
    with grpc.insecure_channel(address) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
            )
        except grpc.RpcError as err:
            return f"{address}: {err.code().name} {err.details()}"
    if answer.status != health_pb2.HealthCheckResponse.SERVING:
        return f"{address}: {health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "address",
        nargs="?",
        default=os.environ.get("MEDSWITCH_HEALTH_LISTEN") or "127.0.0.1:8081",
        help="the health listener (default $MEDSWITCH_HEALTH_LISTEN, else 127.0.0.1:8081)",
    )
    parser.add_argument("--timeout-s", type=float, default=PROBE_TIMEOUT_S)
    parser.add_argument(
        "--service", default="", help='"liveness": the process only, not the database'
    )
    args = parser.parse_args(argv)
    address = args.address.replace("0.0.0.0:", "127.0.0.1:")  # a bind-all address: ask locally
    problem = check(address, args.timeout_s, args.service)
    if problem is not None:
        print(f"medswitch health: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
