"""bench_ledger.py --ledger-only runs as documented and leaves a sound ledger.

BENCHMARKS.md rests on its figures: each round must settle, count the
accumulator rows it starts from (the first round creates them, the later
ones update them) and end with `ledger verify` over what was written.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ledger_only_rounds_settle_update_and_verify_sound(tmp_path: Path) -> None:
    small = ["--members", "400", "--seconds", "1", "--rounds", "2", "--writers", "2"]
    done = subprocess.run(
        [sys.executable, "loadtest/bench_ledger.py", "--ledger-only", *small, "--batch", "16"],
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    rounds = re.findall(
        r"round (\d): ledger alone, batches of 16, 2 writers: ([\d,]+) settlements/s"
        r" \(([\d,]+) accumulator rows before the round\)",
        done.stdout,
    )
    assert [r[0] for r in rounds] == ["1", "2"], done.stdout
    assert all(int(r[1].replace(",", "")) > 0 for r in rounds)
    assert rounds[0][2] == "0" and int(rounds[1][2].replace(",", "")) > 0
    assert re.search(r"verify after the run: \d+ entries, sound", done.stdout), done.stdout
    assert "pgbench" not in done.stdout
    assert list(tmp_path.glob("msbench-*")) == []  # the throw-away cluster is gone
