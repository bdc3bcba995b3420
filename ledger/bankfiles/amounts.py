"""Exact conversion between integer fen and the yuan text banks exchange.

Bank files carry decimal yuan ("1234.50"); the switch keeps integer fen. A
float anywhere in between can turn 0.29 yuan into 28 fen, so both directions
work on digits only.
"""

from __future__ import annotations

import re

# Unsigned decimal yuan; banks never sign amounts in these formats (the
# direction is a separate field). camt.053 allows up to five decimals (and 18
# digits in all): "18.150" is 18.15 yuan exactly, "18.155" is no sum of fen.
_YUAN_RE = re.compile(r"^(\d{1,16})(?:\.(\d{1,2})(\d{0,16}))?$")
_FEN_RE = re.compile(r"^-?\d{1,18}$")


class AmountError(ValueError):
    """An amount in a bank file is not a valid non-negative sum of money."""


def fen_to_yuan_text(amount_fen: int) -> str:
    """1234 -> "12.34"; always exactly two decimals, "-" for negatives."""
    if isinstance(amount_fen, bool) or not isinstance(amount_fen, int):
        raise TypeError(f"amount_fen must be int, not {type(amount_fen).__name__}")
    sign = "-" if amount_fen < 0 else ""
    yuan, fen = divmod(abs(amount_fen), 100)
    return f"{sign}{yuan}.{fen:02d}"


def yuan_text_to_fen(text: str) -> int:
    """ "12.3" -> 1230, "12.300" -> 1230; refuses signs, exponents, blanks and
    decimals past the second that are not zero (a fraction of a fen)."""
    match = _YUAN_RE.match(text.strip())
    if match is None:
        raise AmountError(f"{text!r} is not an amount in yuan")
    whole, frac, beyond_fen = match.group(1), match.group(2) or "", match.group(3) or ""
    if beyond_fen.strip("0"):
        raise AmountError(
            f"{text!r} is not a whole number of fen: past the second decimal only zeros"
        )
    return int(whole) * 100 + int(frac.ljust(2, "0"))


def fen_text_to_fen(text: str) -> int:
    """ "-1230" -> -1230; integer fen as written in the switch's own CSV files."""
    stripped = text.strip()
    if _FEN_RE.match(stripped) is None:
        raise AmountError(f"{text!r} is not a whole number of fen")
    return int(stripped)
