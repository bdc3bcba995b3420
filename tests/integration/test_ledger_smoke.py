"""The fixtures give a migrated, reference-loaded database the application role can use."""

from __future__ import annotations

from ledger.store import Ledger


async def test_reference_database_has_members_and_an_open_day(ledger: Ledger) -> None:
    inputs = await ledger.load_for_claim(
        "H33039900001", "C3303990001", 2026, __import__("datetime").date(2026, 11, 20)
    )
    assert inputs.member is not None and inputs.member["member_id"] == "M0001"
    assert inputs.member["balance_fen"] == 320000
    assert inputs.institution is not None and inputs.institution["level"] == "L3"
    assert str(inputs.business_date) == "2026-11-20"
