"""Prometheus metrics of the switch (served on MEDSWITCH_METRICS_LISTEN).

Defined once at import on the default registry, so every server in a process
(tests start several) shares them. Latencies are in milliseconds (`_ms`), as
everywhere in this project's metrics and configuration.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "medswitch_requests", "gRPC requests by method and status code", ["method", "code"]
)
LATENCY_MS = Histogram(
    "medswitch_request_duration_ms",
    "gRPC request latency in milliseconds, by method",
    ["method"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000),
)
SETTLEMENTS = Counter(
    "medswitch_settlements", "Settle answers by outcome (SETTLED, REJECTED)", ["outcome"]
)
INFLIGHT = Gauge("medswitch_inflight_requests", "gRPC requests being processed now")
DB_POOL_SIZE = Gauge("medswitch_db_pool_size", "database connections open in the pool")
DB_POOL_IN_USE = Gauge("medswitch_db_pool_in_use", "database connections checked out now")


def track_pool(size: Callable[[], float], in_use: Callable[[], float]) -> None:
    """Reads the pool figures at scrape time, from the running backend."""
    DB_POOL_SIZE.set_function(size)
    DB_POOL_IN_USE.set_function(in_use)


SETTLE_BATCH_SIZE = Histogram(
    "medswitch_settle_batch_size",
    "Settle calls committed together in one transaction (group commit)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
SETTLE_STAGE_MS = Histogram(
    "medswitch_settle_stage_ms",
    "One settlement batch's stages in milliseconds: queue (its calls' mean wait to be"
    " taken), load (one statement), decide (the engine, every claim of the batch), record"
    " (one statement and its durable commit)",
    ["stage"],
    buckets=(0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
