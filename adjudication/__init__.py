"""Adjudication: how one claim is split between the funds, the account and cash.

Pure Python (standard library only, no clock, no I/O), so the same claim,
member state, policy and catalog always give the same split, to the fen.
"""
