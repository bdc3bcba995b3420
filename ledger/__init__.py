"""The double-entry ledger on PostgreSQL: accounts, entries, postings,
settlement records, member state, business days and reconciliation.

It knows nothing about claims or gRPC; all SQL lives here.
"""
