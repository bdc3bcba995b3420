"""The A/B tool's built-in bound must keep tracking the migrations' ms_post_set."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from loadtest import ab_ledger
from loadtest.ab_ledger import no_postings_sql


def test_the_no_postings_bound_is_the_latest_ms_post_set_without_its_posting_rows() -> None:
    sql = no_postings_sql()
    assert sql.startswith("CREATE OR REPLACE FUNCTION ms_post_set(")
    assert "INSERT INTO postings" not in sql
    # everything else of the function stays: entries, chain, balances
    for kept in ("ms_append_entries(", "UPDATE account_balances", "RETURN v_entries;"):
        assert kept in sql
    assert sql.rstrip().endswith("DROP TRIGGER chain_lanes_entries_balanced ON chain_lanes;")


def test_a_b_tree_without_the_tool_is_refused_before_any_cluster_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_cluster(*args: object, **kwargs: object) -> str:
        raise AssertionError("a cluster was being made")

    monkeypatch.setattr(ab_ledger.tempfile, "mkdtemp", no_cluster)
    monkeypatch.setattr(ab_ledger.db, "embedded_url", no_cluster)
    monkeypatch.setattr(sys, "argv", ["ab_ledger.py", "--b-tree", str(tmp_path / "nowhere")])
    with pytest.raises(SystemExit) as exited:
        ab_ledger.main()
    assert exited.value.code == 2
    tool = tmp_path / "nowhere" / "loadtest" / "ab_ledger.py"
    assert f"--b-tree: no {tool}" in capsys.readouterr().err
