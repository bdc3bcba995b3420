"""The fixtures give a migrated, reference-loaded database the application role can use,
and the typed rows that cross the ledger's boundary match the SQL they read and feed."""

from __future__ import annotations

from datetime import date

import asyncpg

from ledger.store import Ledger, SettlementRow, StateRow


async def test_reference_database_has_members_and_an_open_day(ledger: Ledger) -> None:
    state = await ledger.load_for_claim("H33039900001", "C3303990001", 2026, date(2026, 11, 20))
    assert state.member_id == "M0001"
    assert state.balance_fen == 320000
    assert state.institution_level == "L3"
    assert state.business_date == date(2026, 11, 20)
    assert state.settlement_id is None, "a read takes no settlement id"


async def test_state_row_is_ms_load_states_column_for_column(app_pool: asyncpg.Pool) -> None:
    columns = await app_pool.fetchval(
        "SELECT array_agg(name ORDER BY n) FROM pg_proc p,"
        " unnest(p.proargnames, p.proargmodes) WITH ORDINALITY AS a(name, mode, n)"
        " WHERE p.proname = 'ms_load_states' AND a.mode = 't'"
    )
    assert list(StateRow._fields) == columns


async def test_settlement_row_is_ms_settle_row_field_for_field(app_pool: asyncpg.Pool) -> None:
    attributes = await app_pool.fetchval(
        "SELECT array_agg(attname::text ORDER BY attnum) FROM pg_attribute"
        " WHERE attrelid = 'ms_settle_row'::regclass AND attnum > 0 AND NOT attisdropped"
    )
    assert list(SettlementRow._fields) == attributes
