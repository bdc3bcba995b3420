"""The A/B tool's built-in bound must keep tracking the migrations' ms_post_set."""

from __future__ import annotations

from loadtest.ab_ledger import no_postings_sql


def test_the_no_postings_bound_is_the_latest_ms_post_set_without_its_posting_rows() -> None:
    sql = no_postings_sql()
    assert sql.startswith("CREATE OR REPLACE FUNCTION ms_post_set(")
    assert "INSERT INTO postings" not in sql
    # everything else of the function stays: entries, chain, balances
    for kept in ("ms_append_entries(", "UPDATE account_balances", "RETURN v_entries;"):
        assert kept in sql
    assert sql.rstrip().endswith("DROP TRIGGER chain_lanes_entries_balanced ON chain_lanes;")
