"""The benchmark's own arithmetic: URLs, percentiles, profile summaries.

Figures in BENCHMARKS.md come from these helpers, so a wrong percentile or a
pgbench run against the wrong database would publish wrong numbers.
"""

from __future__ import annotations

import argparse
import math

import pytest

from loadtest.bench_switch import (
    latency_start,
    percentile,
    shares,
    summarize_collapsed,
    summary,
    with_database,
    worst_second,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://postgres:@/postgres?host=/tmp/x/pg",
         "postgresql://postgres:@/pgbench?host=/tmp/x/pg"),
        ("postgresql://u:p@db.example:5432/medswitch", "postgresql://u:p@db.example:5432/pgbench"),
    ],
)  # fmt: skip
def test_pgbench_runs_in_its_own_database_on_the_same_server(url: str, expected: str) -> None:
    assert with_database(url, "pgbench") == expected


def test_percentiles_are_order_statistics() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 0.50) == 51.0
    assert percentile(values, 0.99) == 100.0
    assert percentile(list(reversed(values)), 0.50) == 51.0


def test_open_loop_latency_counts_from_the_earlier_of_schedule_and_start() -> None:
    assert latency_start(10.0, 10.004) == 10.0  # late: the wait for the client is charged
    assert latency_start(10.0, 9.9996) == 9.9996  # woken early: from its real start
    assert latency_start(None, 7.5) == 7.5  # closed loop: from its start


def test_open_loop_shares_are_a_list_in_order_and_zero_means_none() -> None:
    assert shares("0.6,0.3") == [0.6, 0.3]
    assert shares("0") == shares("") == []
    with pytest.raises(argparse.ArgumentTypeError, match="between 0 and 1"):
        shares("60")


def test_worst_second_finds_a_stall_the_whole_runs_p99_spreads_thin() -> None:
    # 10 s of calls every 10 ms answered in 5 ms, but the five started 3.00 to
    # 3.04 s in waited 300 ms: half a percent of the run, so the run's p99 is
    # still 5 ms; the p99 of the second they started in is not.
    started = [1000.0 + i / 100 for i in range(1000)]
    latencies = [300.0 if 300 <= i < 305 else 5.0 for i in range(1000)]
    assert percentile(latencies, 0.99) == 5.0
    assert worst_second(started, latencies) == (300.0, 3.0)
    # a ragged last second of three calls, one slow, is not a window of its own
    assert worst_second([*started, 1010.0, 1010.1, 1010.2], [*latencies, 5.0, 5.0, 900.0]) == (
        300.0,
        3.0,
    )
    assert all(math.isnan(v) for v in worst_second([], []))  # no calls, no figure


def test_profile_summary_counts_own_and_total_time() -> None:
    collapsed = "\n".join(
        [
            "main (a/cli.py:1);settle (switch/service.py:10);adjudicate (x/engine.py:5) 30",
            "main (a/cli.py:1);settle (switch/service.py:10) 10",
            "main (a/cli.py:1);write (libc.so.6) 60",
        ]
    )
    text = summarize_collapsed(collapsed)
    assert "100 samples" in text
    own, total = text.split("total time")
    assert "60.0 %  write (libc.so.6)" in own
    assert "30.0 %  adjudicate (x/engine.py)" in own
    assert "40.0 %  settle (switch/service.py)" in total
    assert "100.0 %  main (a/cli.py)" in total


def test_summary_sets_the_open_loop_beside_the_edge_at_the_same_rate() -> None:
    def run(p50: float, p99: float) -> dict[str, object]:
        return {"p50_ms": p50, "p99_ms": p99, "p999_ms": 2 * p99, "errors": {"UNAVAILABLE": 1},
                "wrong_answers": {}}  # fmt: skip

    figures = {
        "edge": {"pharmacy@540/s": run(2.9, 53.0)},
        "full": {"pharmacy@540/s": run(16.2, 32.7)},
    }
    line = summary(figures, None).splitlines()[1]
    assert line == (
        "  open loop, pharmacy@540/s: p50 16.2 ms, p99 32.7 ms, p99.9 65.4 ms; errors 1,"
        " wrong answers 0 (the edge alone: p50 2.9, p99 53.0 ms)"
    )


def test_summary_compares_postgresql_with_the_ledger_alone_before_the_switch() -> None:
    us = {"postgres": 210.0, "switch": 500.0}
    figures = {
        "full": {"pharmacy": {"us_per_settlement": us}},
        "ledger_us": 140.0,
        "ledger_us_after": 154.0,
    }
    lines = summary(figures, None).splitlines()
    assert lines[1] == (
        "  PostgreSQL 210 us a settlement (pharmacy mix) = 1.50x the ledger alone"
        " (140 us; 154 us after the switch, its database's upkeep in it)"
    )
    once = {key: value for key, value in figures.items() if key != "ledger_us_after"}
    assert summary(once, None).splitlines()[1].endswith("= 1.50x the ledger alone (140 us)")
