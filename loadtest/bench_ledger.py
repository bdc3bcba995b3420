"""Ledger write throughput against pgbench's tpcb-like, same server, same run.

Why: issue 3 asks for settlement-shaped transactions (settlement record, one
entry of 3-5 postings, accumulator update, member lock, idempotency key,
chain lane) with durable commits at no less than twice the transactions per
second pgbench gets from the same embedded PostgreSQL. The lever is group
commit: `Ledger.record` puts several settlements in one statement and commit,
so one WAL flush makes many of them durable.

Run: .venv/bin/python loadtest/bench_ledger.py [--seconds 10] [--writers 4]
     [--batch 128] [--pgbench-clients 8] [--members 200000] [--rounds 3]
     [--data-dir DIR] [--ledger-only]

Prints ledger settlements/s for single settlements, then `--rounds` rounds
in which pgbench and the batched ledger take turns (each for --seconds),
each round's figures and ratio, and the ratio of the means. fsync and
synchronous_commit stay on (checked). `--ledger-only` skips pgbench and the
single settlements: `--rounds` batched runs back to back on one database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import asyncpg
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger import db, importer
from ledger.accounts import settlement_postings
from ledger.crypto import DataKeys
from ledger.store import Ledger, LoadRequest, SettlementRow, StaleRows, StateRow

INSTITUTIONS = [f"H{n:011d}" for n in range(1, 21)]
DAY = date(2026, 11, 20)


def pgbench_bin() -> Path:
    from ledger.pgserver_import import import_pgserver

    return Path(import_pgserver().__file__).parent / "pginstall" / "bin" / "pgbench"


def conn_args(url: str) -> list[str]:
    parsed = urlparse(url)
    host = parse_qs(parsed.query).get("host", [parsed.hostname or "localhost"])[0]
    args = ["-h", host, "-U", parsed.username or "postgres"]
    if parsed.port:
        args += ["-p", str(parsed.port)]
    return args


def init_pgbench(url: str) -> None:
    """pgbench's tables at scale 10 (a million accounts), in the database `pgbench`."""
    subprocess.run(
        [str(pgbench_bin()), *conn_args(url), "-i", "-q", "-s", "10", "pgbench"],
        check=True,
        capture_output=True,
    )


def run_pgbench(url: str, seconds: int, clients: int) -> float:
    """pgbench tpcb-like at its strongest here: prepared statements (-M prepared).

    Prints the machine's CPU per transaction (pgbench's client included), to
    set beside the ledger's per settlement.
    """
    base = conn_args(url)
    machine0, _ = cpu_seconds()
    started = time.monotonic()
    out = subprocess.run(
        [
            str(pgbench_bin()),
            *base,
            "-b",
            "tpcb-like",
            "-M",
            "prepared",
            "-c",
            str(clients),
            "-j",
            "2",
            "-T",
            str(seconds),
            "pgbench",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    elapsed = time.monotonic() - started
    machine1, _ = cpu_seconds()
    match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    assert match, out
    tps = float(match.group(1))
    print(
        f"  CPU per pgbench transaction: {1e6 * (machine1 - machine0) / (tps * elapsed):.0f} us"
        f" (server and pgbench); machine {(machine1 - machine0) / elapsed:.2f} cores busy"
    )
    return tps


def bench_record(
    state: StateRow, institution: str, rnd: random.Random
) -> tuple[SettlementRow, list[tuple[str, int]]]:
    """A settlement as the switch would record it: a row and its postings."""
    assert state.member_id is not None and state.balance_fen is not None
    assert state.settlement_id is not None
    pooled = rnd.randrange(1_000, 50_000)
    serious = rnd.choice((0, 0, rnd.randrange(100, 5_000)))
    debit = min(rnd.randrange(1, 2_000), state.balance_fen)
    answer = json.dumps({"settlement_id": state.settlement_id, "balance_after_fen": 0})
    row = SettlementRow(
        state.settlement_id, institution, "", b"fp", "SETTLED", state.member_id, DAY, 2026,
        "2026.1", 1, pooled + serious + debit + 500, pooled, serious, debit, answer, None, None,
        2026, 100, pooled, 0, 0, 0, 0, serious, None, debit, None, None, None, None, None,
        state.state_seq,
    )  # fmt: skip
    legs = settlement_postings(
        state.member_id,
        institution,
        pooled_fund_fen=pooled,
        serious_illness_fen=serious,
        individual_account_fen=debit,
    )
    return row, legs


async def prepare(url: str, keys_raw: bytes, members: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        await db.migrate(conn, first_day=DAY)
        await conn.execute(f"SET ROLE {db.OPERATOR_ROLE}")  # as import-reference does
        await importer.import_reference(
            conn,
            keys_raw,
            policy=importer.PolicyIn("bench", DAY, "# bench"),
            catalog_version=1,
            catalog_effective_from=DAY,
            catalog=[],
            institutions=[
                importer.InstitutionIn(c, c, "HOSPITAL", "L2", "330399", "ACTIVE")
                for c in INSTITUTIONS
            ],
            members=[
                importer.MemberIn(
                    f"M{i:07d}",
                    f"C{i:010d}",
                    "123456",
                    "张三",
                    "330399",
                    date(1980, 1, 1),
                    "EMPLOYEE",
                    "ACTIVE",
                    "ACTIVE",
                    10_000_000,
                    "330399",
                )
                for i in range(members)
            ],
            diseases=[],
        )
    finally:
        await conn.close()


def cpu_seconds() -> tuple[float, float]:
    """(CPU seconds the whole machine has spent busy, those of this process)."""
    with open("/proc/stat") as stat:
        ticks = [int(x) for x in stat.readline().split()[1:9]]
    busy = sum(ticks) - ticks[3] - ticks[4]  # all but idle and iowait
    own = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), own.user + own.system


async def run_ledger(
    url: str, keys: DataKeys, seconds: float, writers: int, batch: int, members: int, tag: str
) -> float:
    """Settlements per second; prints where the CPU went (per settlement)."""
    pool = await db.create_pool(url, min_size=writers, max_size=writers)
    ledger = Ledger(pool, keys)
    done = 0
    deadline = time.monotonic() + seconds

    async def writer(w: int) -> None:
        nonlocal done
        rnd = random.Random(w)
        n = 0
        while time.monotonic() < deadline:
            requests: dict[bytes, LoadRequest] = {}  # one per card, as the switch takes them
            for _ in range(batch):
                n += 1
                card = keys.card_lookup(f"C{rnd.randrange(members):010d}")
                inst = rnd.choice(INSTITUTIONS)
                requests[card] = LoadRequest(inst, card, 2026, DAY, f"{tag}-{w}-{n}")
            loaded = list(requests.values())
            states = await ledger.load_states(loaded)
            records = [
                bench_record(state, req.institution_code, rnd)
                for req, state in zip(loaded, states, strict=True)
            ]
            rows = [row._replace(request_id=req.request_id or "") for req, (row, _) in
                    zip(loaded, records, strict=True)]  # fmt: skip
            try:
                await ledger.record(DAY, rows, [legs for _, legs in records])
            except StaleRows:
                continue  # another writer moved one of these members first
            done += len(rows)

    started = time.monotonic()
    machine0, own0 = cpu_seconds()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    elapsed = time.monotonic() - started
    machine1, own1 = cpu_seconds()
    await pool.close()
    if done:
        own = own1 - own0
        print(
            f"  CPU per settlement: {1e6 * (machine1 - machine0 - own) / done:.0f} us elsewhere"
            f" (PostgreSQL and the rest of the machine), {1e6 * own / done:.0f} us in the"
            f" writers' process; machine {(machine1 - machine0) / elapsed:.2f} cores busy"
        )
    return done / elapsed


async def ledger_rounds(args: argparse.Namespace, url: str, keys: DataKeys) -> None:
    """`--rounds` batched ledger runs back to back, no pgbench: the ledger's own trend.

    The writers draw the same members in the same order every round, so the
    first round creates the members' accumulator rows and a later one
    creates rows only where it settles more than the first did: it mostly
    updates them.
    """
    conn = await asyncpg.connect(url)
    try:
        for n in range(1, args.rounds + 1):
            rows = await conn.fetchval("SELECT count(*) FROM member_year")
            rate = await run_ledger(
                url, keys, args.seconds, args.writers, args.batch, args.members, f"only{n}"
            )
            print(
                f"round {n}: ledger alone, batches of {args.batch}, {args.writers} writers:"
                f" {rate:,.0f} settlements/s ({rows:,} accumulator rows before the round)"
            )
    finally:
        await conn.close()


async def against_pgbench(
    args: argparse.Namespace, url_for: dict[str, str], keys: DataKeys
) -> None:
    """The single-settlement run, then pgbench and the batched ledger taking turns."""
    init_pgbench(url_for["postgres"])
    single = await run_ledger(
        url_for["bench"], keys, args.seconds, args.writers, 1, args.members, "single"
    )
    print(f"ledger, one settlement per commit, {args.writers} writers: {single:,.0f} settlements/s")
    # pgbench and the batched ledger take turns, so a drift in the shared
    # machine's speed falls on both sides of the ratio alike.
    pgbench_runs: list[float] = []
    batched_runs: list[float] = []
    for n in range(1, args.rounds + 1):
        pgbench_runs.append(run_pgbench(url_for["postgres"], args.seconds, args.pgbench_clients))
        batched_runs.append(
            await run_ledger(
                url_for["bench"],
                keys,
                args.seconds,
                args.writers,
                args.batch,
                args.members,
                f"batch{n}",
            )
        )
        print(
            f"round {n}: pgbench tpcb-like -M prepared, {args.pgbench_clients} clients:"
            f" {pgbench_runs[-1]:,.0f} TPS; ledger, batches of {args.batch},"
            f" {args.writers} writers: {batched_runs[-1]:,.0f} settlements/s"
            f" ({batched_runs[-1] / pgbench_runs[-1]:.2f}x)"
        )
    pgbench_tps = sum(pgbench_runs) / len(pgbench_runs)
    batched = sum(batched_runs) / len(batched_runs)
    print(
        f"mean of {args.rounds} rounds: pgbench {pgbench_tps:,.0f} TPS, ledger {batched:,.0f}"
        f" settlements/s: {batched / pgbench_tps:.2f}x pgbench"
        f" (one settlement per commit: {single / pgbench_tps:.2f}x)"
    )


async def main_async(args: argparse.Namespace, url_for: dict[str, str]) -> None:
    keys_raw = bytes(range(32))
    keys = DataKeys(keys_raw)
    admin = await asyncpg.connect(url_for["postgres"])
    try:
        await db.check_durability(admin)
        for name in ("bench", "pgbench"):
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    t = time.monotonic()
    await prepare(url_for["bench"], keys_raw, args.members)
    print(f"prepared {args.members} members in {time.monotonic() - t:.1f} s")

    if args.ledger_only:
        await ledger_rounds(args, url_for["bench"], keys)
    else:
        await against_pgbench(args, url_for, keys)
    conn = await asyncpg.connect(url_for["bench"])
    try:
        from ledger import chain

        started = time.monotonic()
        report = await chain.verify(conn)
        print(
            f"verify after the run: {report.entries} entries,"
            f" {'sound' if report.sound else report.problems[:3]}"
            f" in {time.monotonic() - started:.1f} s"
        )
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument(
        "--pgbench-clients", type=int, default=8, help="8: pgbench's best here (4-16 tried)"
    )
    parser.add_argument("--members", type=int, default=200_000)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="pgbench and the batched ledger take turns (with --ledger-only: ledger runs)",
    )
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument(
        "--ledger-only",
        action="store_true",
        help="no pgbench: --rounds ledger runs back to back (its trend as rows gain versions)",
    )
    args = parser.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="msbench-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    base = str(db.embedded_url(data_dir))  # the product's embedded cluster, as configured
    prefix, _, query = base.partition("?")
    root = prefix.rsplit("/", 1)[0]
    url_for = {name: f"{root}/{name}?{query}" for name in ("postgres", "bench", "pgbench")}
    try:
        # uvloop, as `medswitch serve` runs the ledger
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main_async(args, url_for))
    finally:
        db.stop_embedded(data_dir)
        if args.data_dir is None:  # a throw-away cluster: gigabytes after a run
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
