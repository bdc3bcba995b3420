"""Locust load test of the switch: front-end machines over mutual TLS, at peak mix.

Each locust user is one front-end machine's worth of traffic, drawn from
workload.FULL_MIX: pharmacy purchases 60 %, outpatient visits 25 %, special-disease visits 5 %,
inpatient care 5 % (discharges settled as one claim 2 %, and 3 % the calls of
stays run through the EncounterService: admission, uploads, a void now and
then, discharge, settlement), and the rest client retries of an already-sent
settlement (2 %; the same settlement id must come back), cancellations (1 %),
PreSettle and GetSettlement (1 % each). Requests and the judgement of each
answer come from loadtest/workload.py, so a wrong answer (parts not summing
to the total, a retry with another settlement id, a rejection the request
does not call for) is a failure in locust's statistics, with the problem as
its message, not only a gRPC error.

gRPC runs under gevent as locust documents for gRPC users
(`grpc.experimental.gevent.init_gevent()` before any channel exists). Every
institution's certificate (`medswitch pki issue CODE`) opens its own
channel; a channel is shared by all users of the process.

    python loadtest/population.py --members 100000 --institutions 60 --out var/pop \
        --import --issue-certs
    medswitch serve &
    locust -f loadtest/locustfile.py --host 127.0.0.1:50051 --population var/pop \
        --headless -u 64 -r 16 -t 60s --csv out/run

Options (after locust's own): --population DIR (manifest.json of
population.py), --tls-dir (default $MEDSWITCH_TLS_DIR or
$MEDSWITCH_DATA_DIR/tls), --mix full|pharmacy, --card-slots N (how many
disjoint slices of the cards the users take; default the user count).
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path
from typing import Any, ClassVar

import grpc
import grpc.experimental.gevent as grpc_gevent
from locust import User, constant, events, task
from locust.env import Environment

grpc_gevent.init_gevent()  # before any grpc object exists

from workload import MIXES, Kind, Manifest, Session, pick_kind  # noqa: E402

from switch.proto import medswitch_pb2_grpc as pb_grpc  # noqa: E402

CALL_TIMEOUT_S = 10.0


class WrongAnswer(Exception):
    """The switch answered, but not what the request calls for."""


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument(
        "--population",
        default=os.environ.get("LOADTEST_POPULATION", "var/pop"),
        help="directory written by loadtest/population.py",
    )
    parser.add_argument("--tls-dir", default="", help="default $MEDSWITCH_TLS_DIR")
    parser.add_argument("--mix", choices=sorted(MIXES), default="full")
    parser.add_argument("--card-slots", type=int, default=0, help="default: the user count")
    parser.add_argument(
        "--cards-used-today",
        action="store_true",
        help="the database already took purchases today (an earlier run): the daily"
        " purchase limit cannot be predicted, so R_FREQUENT_PURCHASE is accepted",
    )


def _tls_dir(option: str) -> Path:
    if option:
        return Path(option)
    if os.environ.get("MEDSWITCH_TLS_DIR"):
        return Path(os.environ["MEDSWITCH_TLS_DIR"])
    return Path(os.environ.get("MEDSWITCH_DATA_DIR") or "./var") / "tls"


class _Shared:
    """Per process: the manifest (read once), one channel per institution and its stubs."""

    manifest: Manifest | None = None
    channels: ClassVar[dict[str, grpc.Channel]] = {}
    stubs: ClassVar[dict[tuple[str, str], Any]] = {}  # (institution, service) -> stub
    users = itertools.count()

    @classmethod
    def load(cls, population: str) -> Manifest:
        if cls.manifest is None:
            cls.manifest = Manifest.load(population)
        return cls.manifest

    @classmethod
    def stub(cls, host: str, tls_dir: Path, code: str, service: str) -> Any:
        """The `service` stub (SettlementService, EncounterService, MemberService) of `code`."""
        stub = cls.stubs.get((code, service))
        if stub is None:
            channel = cls.channels.get(code)
            if channel is None:
                creds = grpc.ssl_channel_credentials(
                    root_certificates=(tls_dir / "ca.crt").read_bytes(),
                    private_key=(tls_dir / "clients" / f"{code}.key").read_bytes(),
                    certificate_chain=(tls_dir / "clients" / f"{code}.crt").read_bytes(),
                )
                target = host.split("://", 1)[-1].rstrip("/")
                channel = cls.channels[code] = grpc.secure_channel(target, creds)
            stub = cls.stubs[code, service] = getattr(pb_grpc, f"{service}Stub")(channel)
        return stub


class SwitchUser(User):
    """One front-end machine's stream of calls, each judged on its answer."""

    wait_time = constant(0)  # closed loop: the next call as soon as the answer is in

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        opts = environment.parsed_options
        self.population = getattr(opts, "population", None) or "var/pop"
        self.tls_dir = _tls_dir(getattr(opts, "tls_dir", "") or "")
        self.mix = getattr(opts, "mix", "full")
        users = int(getattr(opts, "num_users", 0) or 1)
        self.slots = int(getattr(opts, "card_slots", 0) or users)
        self.session: Session | None = None

    def on_start(self) -> None:
        manifest = _Shared.load(self.population)
        # Users of every worker process interleave: worker w of W takes the
        # slots w, w + W, w + 2W, ... so no two users share a card slice.
        worker = getattr(self.environment.runner, "worker_index", 0) or 0
        processes = int(getattr(self.environment.parsed_options, "processes", 0) or 0)
        workers = processes if processes > 0 else (os.cpu_count() or 1) if processes < 0 else 1
        slot = (next(_Shared.users) * workers + worker) % self.slots
        fresh = not getattr(self.environment.parsed_options, "cards_used_today", False)
        self.session = Session(manifest, slot=slot, slots=self.slots, fresh_day=fresh)

    @task
    def next_call(self) -> None:
        """One call, its kind drawn from the mix (workload.FULL_MIX by default)."""
        assert self.session is not None
        self.call(pick_kind(self.session.rng, MIXES[self.mix]))

    def call(self, kind: Kind) -> None:
        assert self.session is not None
        action = self.session.action(kind)
        stub = _Shared.stub(
            self.host or "127.0.0.1:50051", self.tls_dir, action.institution, action.service
        )
        response = None
        exception: Exception | None = None
        started = time.perf_counter()
        try:
            response = getattr(stub, action.method)(action.request, timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as exc:
            exception = exc
        elapsed_ms = (time.perf_counter() - started) * 1000
        if response is not None:
            problem = action.check(response)
            if problem is not None:
                exception = WrongAnswer(problem)
        self.environment.events.request.fire(
            request_type="grpc",
            name=action.name,
            response_time=elapsed_ms,
            response_length=response.ByteSize() if response is not None else 0,
            response=response,
            context={},
            exception=exception,
        )
