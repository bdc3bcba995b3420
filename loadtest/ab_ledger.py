"""Two variants of the ledger's SQL settling side by side, at the same time.

Why: on this shared machine the speed of the same command drifts by tens of
percent within minutes, so two variants measured one after the other differ
by more than most changes are worth. Here two databases in one embedded
cluster, A and B, each get a writer process (bench_ledger's `run_ledger`:
the same Python, batches, members and mix) and both run at once, for
`--rounds` rounds: whatever the machine does, it does to both, and B/A is
the figure. Run it with no variant first (an A/A run) to see how far apart
two identical databases land.

Run: .venv/bin/python loadtest/ab_ledger.py [--b-sql FILE | --b-variant no-postings]
     [--a-sql FILE] [--b-tree DIR] [--seconds 10] [--rounds 4] [--writers 4]

A variant is SQL applied to its database after the schema is migrated and
the members imported. The built-in `no-postings` variant is a bound, not a
ledger: `ms_post_set` without its posting rows and the commit-time balance
check without a trigger (what storing no postings at all would save; verify
fails on it, as it should).

`--b-tree DIR` runs B's writer process from another checkout of the project
(say a `git worktree` of a branch): a change to the writers' Python measured
the same way. Both databases are made by this checkout's migrations, so the
other checkout must work on this schema.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import asyncpg
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger import db
from ledger.crypto import DataKeys
from loadtest import bench_ledger

KEYS = bytes(range(32))
MEMBERS = 200_000
BATCH = 128


def no_postings_sql() -> str:
    """ms_post_set as the migrations last define it, without the posting rows."""
    latest = ""
    for migration in db.migrations():
        start = migration.sql.find("FUNCTION ms_post_set(")
        if start >= 0:
            start = migration.sql.rfind("CREATE", 0, start)
            latest = migration.sql[start : migration.sql.index("$$;", start) + 3]
    insert = latest.index("    INSERT INTO postings")
    body = latest[:insert] + latest[latest.index(";", insert) + 1 :]
    return (
        body.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
        + "\nDROP TRIGGER chain_lanes_entries_balanced ON chain_lanes;\n"
    )


def child(url: str, seconds: int, writers: int, tag: str) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        rate = runner.run(
            bench_ledger.run_ledger(url, DataKeys(KEYS), seconds, writers, BATCH, MEMBERS, tag)
        )
    print(json.dumps(rate))


async def prepare(url_for: dict[str, str], variants: dict[str, str | None]) -> None:
    admin = await asyncpg.connect(url_for["postgres"])
    try:
        for name in variants:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    for name, sql in variants.items():
        await bench_ledger.prepare(url_for[name], KEYS, MEMBERS)
        if sql:
            conn = await asyncpg.connect(url_for[name])
            try:
                await conn.execute(sql)
            finally:
                await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a-sql", type=Path, help="SQL applied to database A")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--b-sql", type=Path, help="SQL applied to database B")
    group.add_argument("--b-variant", choices=["no-postings"])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--writers", type=int, default=4, help="per database")
    parser.add_argument(
        "--b-tree", type=Path, help="another checkout whose Python runs B's writer process"
    )
    parser.add_argument("--child", nargs=2, metavar=("URL", "TAG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.seconds, args.writers, args.child[1])
        return
    b_sql = no_postings_sql() if args.b_variant else args.b_sql and args.b_sql.read_text()
    variants = {"ab_a": args.a_sql and args.a_sql.read_text(), "ab_b": b_sql}
    script = {"ab_a": Path(__file__), "ab_b": Path(__file__)}
    if args.b_tree:
        script["ab_b"] = args.b_tree.resolve() / "loadtest" / "ab_ledger.py"
        if not script["ab_b"].is_file():
            parser.error(f"--b-tree: no {script['ab_b']}")
    data_dir = Path(tempfile.mkdtemp(prefix="msab-"))
    base = str(db.embedded_url(data_dir))
    prefix, _, query = base.partition("?")
    root = prefix.rsplit("/", 1)[0]
    url_for = {name: f"{root}/{name}?{query}" for name in ("postgres", *variants)}
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(prepare(url_for, variants))
        ratios = []
        for n in range(1, args.rounds + 1):
            procs = {
                name: subprocess.Popen(
                    [
                        sys.executable,
                        str(script[name]),
                        "--seconds",
                        str(args.seconds),
                        "--writers",
                        str(args.writers),
                        "--child",
                        url_for[name],
                        f"{name}{n}",
                    ],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                )
                for name in variants
            }
            rate = {
                name: float(proc.communicate()[0].strip().splitlines()[-1])
                for name, proc in procs.items()
            }
            ratios.append(rate["ab_b"] / rate["ab_a"])
            print(
                f"round {n}: A {rate['ab_a']:,.0f} settlements/s, B {rate['ab_b']:,.0f}"
                f" settlements/s, B/A {ratios[-1]:.3f}",
                flush=True,
            )
        print(f"mean B/A over {args.rounds} rounds: {sum(ratios) / len(ratios):.3f}")
    finally:
        db.stop_embedded(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
