"""Every limit the switch puts on a request, in one place.

A limit is named with its qualifier last (`claim_lines_max`). They bound what
one request can make the switch do or store, so a broken or hostile
front-end machine cannot exhaust memory, the database or a column. Changing a
limit changes the API for hospitals: list it in CHANGELOG.md.
"""

from __future__ import annotations

# Identifiers
request_id_len_max = 64  # api.md: request_id is 1-64 characters
institution_code_len_max = 32
card_no_len_max = 32
pin_len_max = 32
settlement_id_len_max = 64
member_id_len_max = 32

# Claim text
diagnoses_max = 20
diagnosis_len_max = 16  # ICD-10 with extensions, e.g. "S72.001A"
item_code_len_max = 64  # national codes are 20-27 characters
accident_case_id_len_max = 64
prescription_ref_len_max = 64
cancel_reason_len_max = 256

# Claim lines (adjudication.md section 1: 1..500 lines)
claim_lines_min = 1
claim_lines_max = 500
line_no_max = 100_000
quantity_max = 1_000_000
unit_price_fen_max = 10_000_000_000  # 1e8 yuan: no single item costs more
days_supply_max = 3_650

# Streams
reconcile_records_max = 1_000_000  # one institution's business day

# Server
inflight_requests_max = 256  # beyond it: RESOURCE_EXHAUSTED, never a queue
drain_grace_s = 10.0  # SIGTERM: how long in-flight calls get to finish
