"""Every limit the switch puts on a request, in one place.

A limit is named with its qualifier last (`claim_lines_max`). They bound what
one request can make the switch do or store, so a broken or hostile
front-end machine cannot exhaust memory, the database or a column. Changing a
limit changes the API for hospitals: list it in CHANGELOG.md.
"""

from __future__ import annotations

# The limits of a claim itself (lines, text lengths, amounts) belong to the
# engine's validation and live in adjudication/limits.py; these are the ones
# only the switch's own messages have.
pin_len_max = 32
settlement_id_len_max = 64
cancel_reason_len_max = 256

# Streams
reconcile_records_max = 1_000_000  # one institution's business day

# Server
inflight_requests_max = 256  # beyond it: RESOURCE_EXHAUSTED, never a queue
drain_grace_s = 10.0  # SIGTERM: how long in-flight calls get to finish
violations_reported_max = 50  # field violations sent back in one status (trailer size)
db_pool_max = 20  # database connections of one server process
health_probe_interval_s = 2.0  # how often the database is probed for grpc.health
health_probe_timeout_s = 1.0
db_connect_retry_max_s = 10.0  # backoff cap while waiting for the database at start
settle_batch_max = 64  # group commit: Settle calls recorded in one statement at most
settle_loads_max = 8  # a Settle whose member keeps moving under it: CONFLICT_RETRIES_EXHAUSTED
