"""Every limit the engine enforces, in one place (qualifier last: `*_max`)."""

from __future__ import annotations

request_id_len_max = 64
institution_code_len_max = 32
card_no_len_max = 32
item_code_len_max = 64
diagnosis_len_max = 16
diagnoses_max = 20
accident_case_id_len_max = 64
prescription_ref_len_max = 64
claim_lines_max = 500
# An inpatient stay run as an encounter: its fee details arrive in uploads of
# at most upload_lines_max lines each, and the claim settled from it holds
# the lines not voided, at most encounter_lines_max (a long stay has
# thousands; this is the claim-line limit of a claim made from an encounter).
upload_lines_max = 1_000
encounter_lines_max = 20_000
line_quantity_max = 1_000_000
# 1e10 fen per unit and 1e11 fen per line keep any claim total (even an
# encounter's 20,000 lines: 2e15) far inside int64, whatever the client sends.
line_unit_price_fen_max = 10_000_000_000
line_amount_fen_max = 100_000_000_000
days_supply_max = 3_660
# A card is locked after this many consecutive wrong PINs (R_PIN_LOCKED).
pin_failures_max = 5
