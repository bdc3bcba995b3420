"""Bank file formats: what the fund sends to its bank and what the bank sends back.

Pure code (no database, no clock): payout initiations in ISO 20022
pain.001.001.03, and bank statements in camt.053.001.02 or the switch's CSV
format, read into one `Statement` shape. Money is integer fen throughout; yuan
text appears only at the file boundary and is converted exactly.
"""

from ledger.bankfiles.amounts import AmountError, fen_to_yuan_text, yuan_text_to_fen
from ledger.bankfiles.pain001 import CreditTransfer, DebtorAccount, build_pain001
from ledger.bankfiles.safexml import UnsafeXmlError, parse_xml_safely, schema
from ledger.bankfiles.statement import (
    CREDIT,
    DEBIT,
    Statement,
    StatementEntry,
    StatementError,
    read_statement,
)

__all__ = [
    "CREDIT",
    "DEBIT",
    "AmountError",
    "CreditTransfer",
    "DebtorAccount",
    "Statement",
    "StatementEntry",
    "StatementError",
    "UnsafeXmlError",
    "build_pain001",
    "fen_to_yuan_text",
    "parse_xml_safely",
    "read_statement",
    "schema",
    "yuan_text_to_fen",
]
