"""The one rounding helper: a ratio in basis points of an amount in fen."""

from __future__ import annotations

BP_WHOLE = 10_000  # 10000 bp = 100 %


def pct(amount_fen: int, ratio_bp: int) -> int:
    """`amount_fen` x `ratio_bp` / 10000, rounded half up to a whole fen.

    Integers only, as the rules require: (x * bp + 5000) // 10000 for x >= 0.
    """
    assert amount_fen >= 0, amount_fen
    assert ratio_bp >= 0, ratio_bp
    return (amount_fen * ratio_bp + BP_WHOLE // 2) // BP_WHOLE


def fen_to_yuan(amount_fen: int) -> str:
    """Display form: 12345 -> '123.45', -5 -> '-0.05'. Never via float."""
    sign = "-" if amount_fen < 0 else ""
    whole, part = divmod(abs(amount_fen), 100)
    return f"{sign}{whole}.{part:02d}"
