"""The gRPC server: mutual TLS only, health, reflection, metrics, graceful drain.

The composition of one running switch: it takes a backend (anything that
speaks switch.backend.SettlementBackend) and serves medswitch.v1 on top of
it. Only clients holding a certificate of our CA get a connection; the edge
(switch/edge.py) then binds each request to that certificate's institution.
On SIGTERM the health service turns NOT_SERVING, no new call is accepted,
calls in flight get `drain_grace_s` to finish, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIServer

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc
from prometheus_client import start_http_server

from switch import limits, metrics, servicers
from switch.backend import SettlementBackend
from switch.config import Settings
from switch.edge import Edge, EdgeLimits
from switch.pki import TlsPaths

log = structlog.get_logger("medswitch.server")

# A grpc.health.v1 service name that is SERVING while the process runs, whatever
# the database does: for liveness probes, which must not restart every switch
# while a database fails over. NOT_SERVING once it drains, or once a background
# task has died (only a restart brings that back).
LIVENESS_SERVICE = "liveness"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: str
    tls_dir: Path
    metrics_listen: str | None = None  # None: no metrics endpoint (tests)
    edge_limits: EdgeLimits = field(default_factory=EdgeLimits)  # calls in flight, streams
    drain_grace_s: float = limits.drain_grace_s
    health_probe_interval_s: float = limits.health_probe_interval_s
    # SO_REUSEPORT: several serve processes share the port (the kernel spreads
    # connections). Off by default, so a second switch started by mistake on
    # a port in use fails instead of silently taking half the traffic.
    reuse_port: bool = False
    # A plaintext listener serving grpc.health.v1 and nothing else, for probes
    # that cannot present a client certificate (Kubernetes' `grpc:` probes).
    # None: no such listener; health is then served on the mTLS port only.
    health_listen: str | None = None
    connection_age_max_s: float = limits.connection_age_max_s
    connection_age_grace_s: float = limits.connection_age_grace_s

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerConfig:
        return cls(
            listen=settings.listen,
            tls_dir=settings.tls_dir,
            metrics_listen=settings.metrics_listen,
            health_listen=settings.health_listen,
        )


def configure_logging() -> None:
    """JSON lines on stdout, one object per event (docs/operations.md).

    Libraries that log through the standard library (asyncpg, grpc, the
    embedded PostgreSQL's launcher) are rendered as JSON too, so stdout stays
    one JSON object per line; their chatter below WARNING is dropped.
    """
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=structlog.processors.JSONRenderer(ensure_ascii=False),
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                timestamper,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            timestamper,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ],
        logger_factory=structlog.PrintLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=True,
    )


def server_credentials(tls_dir: Path) -> grpc.ServerCredentials:
    paths = TlsPaths(tls_dir)
    for path in (paths.ca_crt, paths.server_crt, paths.server_key):
        if not path.exists():
            raise FileNotFoundError(f"{path} missing: run `medswitch pki init`")
    return grpc.ssl_server_credentials(
        [(paths.server_key.read_bytes(), paths.server_crt.read_bytes())],
        root_certificates=paths.ca_crt.read_bytes(),
        require_client_auth=True,
    )


def _split_host_port(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


class RunningServer:
    """A started switch; `port` is the bound gRPC port (useful with port 0)."""

    def __init__(
        self,
        server: grpc.aio.Server,
        health_servicer: health.aio.HealthServicer,
        port: int,
        config: ServerConfig,
        edge: Edge,
        metrics_server: WSGIServer | None = None,
        probe: asyncio.Task[None] | None = None,
        health_server: tuple[grpc.aio.Server, int] | None = None,
    ) -> None:
        self.server = server
        self.health = health_servicer
        self.port = port
        self.config = config
        self.edge = edge
        self.metrics_server = metrics_server
        self.metrics_port = metrics_server.server_port if metrics_server else 0
        self.probe = probe
        self.health_server: grpc.aio.Server | None = health_server[0] if health_server else None
        self.health_port = health_server[1] if health_server else 0  # the health-only listener

    async def stop(self, grace_s: float | None = None) -> None:
        """Stops accepting calls and lets those in flight finish (up to the grace)."""
        if self.probe is not None:
            self.probe.cancel()
        await self.health.enter_graceful_shutdown()
        grace = self.config.drain_grace_s if grace_s is None else grace_s
        await self.server.stop(grace)
        if self.health_server is not None:  # after the drain: probes see NOT_SERVING till then
            await self.health_server.stop(0)
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()

    async def wait(self) -> None:
        await self.server.wait_for_termination()


class _Admitted:
    """Where health and reflection register their services: on the server, with
    their streams admitted by the edge (Edge.admitting)."""

    def __init__(self, server: grpc.aio.Server, edge: Edge) -> None:
        self.server = server
        self.edge = edge

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        """Ignored: each library registers the same handlers below as well."""

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        admitted = {name: self.edge.admitting(h) for name, h in handlers.items()}
        servicers.register(self.server, service, admitted)


async def start(backend: SettlementBackend, config: ServerConfig) -> RunningServer:
    edge = Edge(config.edge_limits)
    # grpc's own bound sits above ours, so ours answers with ErrorInfo first;
    # it stops anything that slips past (e.g. health checks) from piling up.
    bounds = config.edge_limits
    server = grpc.aio.server(
        maximum_concurrent_rpcs=bounds.inflight_max * 2 + bounds.health_reflection_streams_max + 16,
        options=[
            ("grpc.so_reuseport", 1 if config.reuse_port else 0),
            ("grpc.max_receive_message_length", 8 * 1024 * 1024),
            ("grpc.max_connection_age_ms", int(config.connection_age_max_s * 1000)),
            ("grpc.max_connection_age_grace_ms", int(config.connection_age_grace_s * 1000)),
        ],
    )
    names = servicers.add_all(server, backend, edge)
    health_servicer = health.aio.HealthServicer()
    admitted = _Admitted(server, edge)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, admitted)
    service_names = [*names, health.SERVICE_NAME, reflection.SERVICE_NAME]
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
        reflection.aio.ReflectionServicer(service_names), admitted
    )
    try:
        port = server.add_secure_port(config.listen, server_credentials(config.tls_dir))
    except RuntimeError as exc:  # grpcio reports a busy or bad address this way
        raise OSError(f"cannot listen on {config.listen}: {exc}") from exc
    if port == 0:
        raise OSError(f"cannot listen on {config.listen}")
    metrics.track_pool(
        lambda: float(backend.pool_stats().size), lambda: float(backend.pool_stats().in_use)
    )
    metrics_server = metrics_thread = None
    if config.metrics_listen:
        host, mport = _split_host_port(config.metrics_listen)
        metrics_server, metrics_thread = start_http_server(mport, addr=host)
    health_server = await _start_health_listener(health_servicer, config.health_listen)
    await server.start()
    health_names = ["", *names]
    for name in (*health_names, LIVENESS_SERVICE):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    probe = asyncio.create_task(
        _watch_health(
            Health(backend, health_servicer, health_names, metrics_thread),
            config.health_probe_interval_s,
        ),
        name="health-probe",
    )
    return RunningServer(
        server, health_servicer, port, config, edge, metrics_server, probe, health_server
    )


async def _start_health_listener(
    health_servicer: health.aio.HealthServicer, listen: str | None
) -> tuple[grpc.aio.Server, int] | None:
    """The plaintext health-only listener (ServerConfig.health_listen), started."""
    if not listen:
        return None
    server = grpc.aio.server(maximum_concurrent_rpcs=64)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        port = server.add_insecure_port(listen)
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {listen}: {exc}") from exc
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    await server.start()
    return server, port


DATABASE_UNREACHABLE = "database_unreachable"  # the one problem that passes by itself


@dataclass(slots=True)
class Health:
    """What the health service reports, and what it is read from."""

    backend: SettlementBackend
    servicer: health.aio.HealthServicer
    names: list[str]  # "" (the whole switch) and every service
    metrics_thread: threading.Thread | None = None
    problem: str | None = None  # why it is NOT_SERVING (None: SERVING)
    metrics_reported: bool = False

    async def set(self, problem: str | None) -> None:
        """SERVING (problem None) or NOT_SERVING, for every name, and a log event saying why.

        A task's death (any problem but the database) is for liveness too.
        """
        self.problem = problem
        serving = problem is None
        log.warning("health", status="SERVING" if serving else "NOT_SERVING", reason=problem or "")
        status = health_pb2.HealthCheckResponse
        names = self.names
        if problem is not None and problem != DATABASE_UNREACHABLE:
            names = [*names, LIVENESS_SERVICE]
        for name in names:
            await self.servicer.set(name, status.SERVING if serving else status.NOT_SERVING)


async def _watch_health(health: Health, interval_s: float) -> None:
    """NOT_SERVING while the switch cannot serve, so balancers route around it: the
    database does not answer, or a background task of the backend (the settlement
    writer) has died, which no retry brings back: the process must be restarted.

    Calls are still accepted meanwhile and answered UNAVAILABLE (the database)
    or INTERNAL (a dead writer); this tells health checkers early. If this
    watcher itself dies, it says so and leaves the switch NOT_SERVING: nothing
    is watching any more.
    """
    try:
        while True:
            await asyncio.sleep(interval_s)
            problem = await _problem(health.backend)
            if problem != health.problem:
                await health.set(problem)
            _report_metrics_death(health)
    except Exception:
        log.exception("health_probe_died")
        await health.set("health_probe_died")


async def _problem(backend: SettlementBackend) -> str | None:
    """Why the switch cannot serve now (None: it can)."""
    if (dead := backend.dead_worker()) is not None:
        return f"{dead}_died"
    try:
        ok = await backend.ping()
    except Exception:  # a probe that fails counts the database as down
        log.exception("health_probe_failed")
        ok = False
    return None if ok else DATABASE_UNREACHABLE


def _report_metrics_death(health: Health) -> None:
    """The metrics endpoint is a thread of its own: its end is logged, once. The
    switch still settles without it, so health does not follow it."""
    thread = health.metrics_thread
    if thread is not None and not thread.is_alive() and not health.metrics_reported:
        health.metrics_reported = True
        log.error("metrics_server_died")


async def serve_until_signal(backend: SettlementBackend, config: ServerConfig) -> int:
    """Serves until SIGTERM or SIGINT, then drains; the exit code (0)."""
    import signal

    running = await start(backend, config)
    # What startup loaded (policies, catalogs, the protobuf and gRPC modules)
    # lives as long as the process: out of the collector's sight, a full
    # collection no longer walks it while calls wait.
    gc.freeze()
    log.info(
        "serving",
        listen=config.listen,
        port=running.port,
        metrics=config.metrics_listen or "",
        health=config.health_listen or "",
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("draining", inflight=running.edge.inflight, grace_s=config.drain_grace_s)
    await running.stop()
    log.info("stopped")
    return 0
