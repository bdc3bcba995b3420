"""The A/B tool's built-in bound must keep tracking the migrations' ms_post_set."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from loadtest.ab_ledger import no_postings_sql


def test_the_no_postings_bound_is_the_latest_ms_post_set_without_its_posting_rows() -> None:
    sql = no_postings_sql()
    assert sql.startswith("CREATE OR REPLACE FUNCTION ms_post_set(")
    assert "INSERT INTO postings" not in sql
    # everything else of the function stays: entries, chain, balances
    for kept in ("ms_append_entries(", "UPDATE account_balances", "RETURN v_entries;"):
        assert kept in sql
    assert sql.rstrip().endswith("DROP TRIGGER chain_lanes_entries_balanced ON chain_lanes;")


def test_a_b_tree_without_the_tool_is_refused_before_any_cluster_is_made(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "loadtest/ab_ledger.py", "--b-tree", str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 2
    assert f"--b-tree: no {tmp_path / 'nowhere' / 'loadtest' / 'ab_ledger.py'}" in done.stderr
    assert list(tmp_path.glob("msab-*")) == []  # no throw-away cluster was started
