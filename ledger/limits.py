"""Every limit the ledger puts on what it reads from outside, in one place.

Named with the qualifier last, like adjudication/limits.py and
switch/limits.py. A bank statement is a file someone hands the operator: it
is bounded before it is read, while it is parsed and before anything of it
reaches the books, so a wrong or hostile file is refused with where it went
wrong instead of exhausting memory or a 64-bit column.
"""

from __future__ import annotations

# A statement file, either format: about 50,000 camt.053 entries, many more
# CSV rows. Read no further than this (a device or a runaway file ends here).
statement_bytes_max = 64 * 1024 * 1024
# Entries of one statement: twenty times a day of 5,000 payouts.
statement_entries_max = 100_000
# What one statement's entries may add up to: 10^13 yuan, several years of
# every fund in the country, so the ledger's 64-bit balances cannot overflow
# from statements however many are reconciled.
statement_total_fen_max = 10**15
