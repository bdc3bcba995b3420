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
# A service (or admission, discharge) date later than this many days after
# today in the region is refused: one day of slack for clocks around midnight.
service_date_ahead_days_max = 1
settlement_id_len_max = 64
cancel_reason_len_max = 256

# Encounters (inpatient stays). The lines of one upload and of the stay's
# claim are the engine's limits (adjudication/limits.py: upload_lines_max,
# encounter_lines_max); these bound the rest of what a stay stores.
encounter_id_len_max = 64
department_len_max = 64
void_line_nos_max = 1_000  # lines one VoidFeeDetails may void
# Every line uploaded is kept, voided ones too: a stay stores at most this
# many, so uploading and voiding cannot grow it without bound.
encounter_stored_lines_max = 40_000

# Client streams (ReconcileDetails). Each open stream buffers its records
# (about 330 bytes of memory each, ids at their longest), so together these
# bound that memory: client_streams_max x reconcile_records_max x 330 B, about
# 530 MB, besides the bounds in time that free a stream's slot.
reconcile_records_max = 200_000  # one institution's business day (a large hospital: ~20,000)
client_stream_bytes_max = 48 * 1024 * 1024  # a stream's messages on the wire, in all
client_stream_idle_max_s = 30.0  # longest pause before the next message of a stream
client_stream_duration_max_s = 600.0  # longest a client stream may take to send everything
client_streams_max = 8  # client streams open at once, whole server
client_streams_per_institution_max = 2  # so one institution cannot hold them all
# Every connection is asked to reconnect (HTTP/2 GOAWAY) after an hour, and
# the calls still open on it get a grace to finish, after which it is closed.
# Front-end machines reconnect by themselves; what it bounds is a call that
# never ends on its own: a DownloadCatalog its client stopped reading holds its
# call slot until its connection closes (a write waiting on flow control cannot
# be ended from the handler), so at most age + grace.
connection_age_max_s = 3600.0
connection_age_grace_s = 600.0

# Server
inflight_requests_max = 256  # beyond it: RESOURCE_EXHAUSTED, never a queue
inflight_per_institution_max = 64  # one institution's share, so none can take every slot
inflight_reserved_for_settlement = 32  # slots of the 256 only SettlementService calls may use
# Health Watch and reflection streams stay open as long as their client
# wants; these keep idle ones from filling grpc's own bound on calls.
health_reflection_streams_max = 64
health_reflection_streams_per_institution_max = 8  # a balancer watches a few services
drain_grace_s = 10.0  # SIGTERM: how long in-flight calls get to finish
violations_reported_max = 50  # field violations sent back in one status (trailer size)
client_text_shown_max = 64  # characters of a client's text logged or echoed (ids are 64 at most)
db_pool_max = 20  # database connections of one server process
health_probe_interval_s = 2.0  # how often the database is probed for grpc.health
health_probe_timeout_s = 1.0
db_connect_retry_max_s = 10.0  # backoff cap while waiting for the database at start
settle_batch_max = 64  # group commit: Settle calls recorded in one statement at most
settle_loads_max = 8  # a Settle whose member keeps moving under it: CONFLICT_RETRIES_EXHAUSTED

# medswitch adjudicate (what-if, no server): the claim and state files it reads
what_if_file_bytes_max = 4 * 1024 * 1024  # gRPC's default message size
json_number_digits_max = 20  # int64 has 19 digits: a longer number is no field's value
what_if_message_chars_max = 300  # how much of a refused input a message repeats
