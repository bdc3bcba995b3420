"""`medswitch serve`: the gRPC switch (mTLS, health, reflection) and its metrics.

Opens (and migrates) the database, loads the policies and catalogs stored by
import-reference, and serves until SIGTERM or SIGINT; then it stops
accepting calls, lets those in flight finish within the grace period and
exits 0. Logs are JSON lines on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import asyncpg
import structlog

from switch import limits
from switch.config import Settings


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("serve", help="run the gRPC switch until SIGTERM")
    parser.add_argument("--listen", help="gRPC address (default $MEDSWITCH_LISTEN)")
    parser.add_argument(
        "--metrics-listen", help="metrics address (default $MEDSWITCH_METRICS_LISTEN)"
    )
    parser.add_argument("--tls-dir", type=Path, help="default $MEDSWITCH_TLS_DIR")
    parser.add_argument(
        "--health-listen",
        help="plaintext address serving only grpc.health.v1, for probes without a client"
        " certificate (default $MEDSWITCH_HEALTH_LISTEN; unset: none)",
    )
    parser.add_argument(
        "--inflight-max",
        type=int,
        default=int(os.environ.get("MEDSWITCH_INFLIGHT_MAX") or limits.inflight_requests_max),
        help="requests in flight before RESOURCE_EXHAUSTED (env MEDSWITCH_INFLIGHT_MAX)",
    )
    parser.add_argument(
        "--drain-grace-s",
        type=float,
        default=float(os.environ.get("MEDSWITCH_DRAIN_GRACE_S") or limits.drain_grace_s),
        help="seconds in-flight calls get to finish after SIGTERM",
    )
    parser.add_argument(
        "--db-pool-max",
        type=int,
        default=int(os.environ.get("MEDSWITCH_DB_POOL_MAX") or limits.db_pool_max),
        help="database connections (env MEDSWITCH_DB_POOL_MAX)",
    )
    parser.add_argument(
        "--group-commit",
        action=argparse.BooleanOptionalAction,
        default=os.environ.get("MEDSWITCH_GROUP_COMMIT", "1") != "0",
        help="commit concurrent Settles together; on unless --no-group-commit"
        " or MEDSWITCH_GROUP_COMMIT=0",
    )
    parser.add_argument(
        "--reuse-port",
        action="store_true",
        default=os.environ.get("MEDSWITCH_REUSE_PORT", "") not in ("", "0"),
        help="share the port with other serve processes, to use more cores"
        " (env MEDSWITCH_REUSE_PORT=1; give each its own metrics address)",
    )
    parser.set_defaults(func=run)


async def _serve(args: argparse.Namespace) -> int:
    from ledger import db
    from ledger.store import Ledger
    from switch.commands.db import connect_url, open_ledger
    from switch.edge import EdgeLimits
    from switch.server import (
        ServerConfig,
        configure_logging,
        serve_until_signal,
        server_credentials,
    )
    from switch.service import UNAVAILABLE_ERRORS, LedgerBackend

    configure_logging()
    settings = Settings.from_env()
    config = ServerConfig(
        listen=args.listen or settings.listen,
        tls_dir=args.tls_dir or settings.tls_dir,
        metrics_listen=args.metrics_listen or settings.metrics_listen,
        edge_limits=EdgeLimits.for_inflight_max(args.inflight_max),
        drain_grace_s=args.drain_grace_s,
        reuse_port=args.reuse_port,
        health_listen=args.health_listen or settings.health_listen,
    )
    server_credentials(config.tls_dir)  # no certificates: fail now, not after the database
    log = structlog.get_logger("medswitch.server")
    delay_s = 0.5
    while True:
        # The database may come up after us (boot order, failover): wait for it
        # rather than exit, so the service starts by itself when it returns.
        try:
            # two at least: the settlement writer's, and one ready for every other call
            pool, keys = await open_ledger(
                settings, min_size=min(2, args.db_pool_max), max_size=args.db_pool_max
            )
            break
        except asyncpg.ClientConfigurationError:
            raise  # a malformed URL is a mistake to report, not an outage to wait out
        except UNAVAILABLE_ERRORS as exc:
            log.warning("database_unreachable", error=type(exc).__name__, retry_in_s=delay_s)
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, limits.db_connect_retry_max_s)
    try:
        backend = await LedgerBackend.open(
            pool,
            Ledger(pool, keys),
            probe=db.Probe(connect_url(settings), app_login=settings.app_login),
            group_commit=args.group_commit,
        )
        try:
            return await serve_until_signal(backend, config)
        finally:
            await backend.close()
    finally:
        await pool.close()


def run(args: argparse.Namespace) -> int:
    import uvloop

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(_serve(args))
    except FileNotFoundError as exc:
        print(f"medswitch serve: {exc}", file=sys.stderr)
        return 2
