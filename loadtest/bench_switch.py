"""One run, one command: the switch against its own edge, closed and open loop.

A figure of settlements per second means little alone. This script measures,
in one run on one machine, the ceilings the switch is judged against and the
switch itself:

1. the embedded PostgreSQL of a fresh data dir (or --data-dir), fsync and
   synchronous_commit checked on (durable commits);
2. pgbench tpcb-like on the same server, a reference only (--skip-pgbench);
3. the ledger alone (bench_ledger's writers, batches of 128, a database of
   its own): PostgreSQL CPU per settlement when nothing else runs
   (--skip-ledger);
4. the edge alone (--no-edge skips it): the real gRPC server (mTLS,
   protobuf, validation, engine, logs, metrics) over the in-memory region,
   no database, closed loop, each mix, then the pharmacy mix in open loop
   at each --open-loop-share of its own figure (0.6, the target's, then 0.3;
   or --open-loop-rate calls/s): the latency floor of gRPC, TLS, the engine
   and the load clients;
5. the full switch (`medswitch serve`, --serve-procs processes): each mix in
   closed loop (--inflight calls always in flight), then the pharmacy mix in
   open loop at the same offered rates as the edge's: calls start on a
   schedule whether or not earlier ones were answered, and latency counts
   from the scheduled start (or the real one, if earlier), so slow answers
   are not hidden. Closed loops drive from --client-procs processes (2), open
   loops from --open-loop-client-procs (1: on two cores a second client
   process costs the machine more CPU a call, which the switch then waits
   for, and one process's own lateness is charged to the latency anyway);
6. the ledger alone again (unless --skip-ledger), to show how far the
   machine drifted since step 3 (its figure also holds the server's upkeep
   of the switch's database, so the switch is compared with step 3's);
7. `medswitch ledger verify` over the result, and a SUMMARY: the switch as a
   share of the edge (throughput and switch-process CPU a call), PostgreSQL
   CPU a settlement against the ledger alone, open-loop percentiles, and
   capacity per core, to size a province.

Every answer is judged (loadtest/workload.py): errors and wrong answers are
counted, never dropped. CPU is read from /proc for the serve processes, the
PostgreSQL processes and the load clients.

    python loadtest/bench_switch.py                  # everything, defaults
    python loadtest/bench_switch.py --seconds 30 --members 1000000
    python loadtest/bench_switch.py --edge-only      # the edge alone
    python loadtest/bench_switch.py --data-dir D --reuse --no-edge --skip-ledger \
        --skip-pgbench --mixes "" --open-loop-rate 600   # one open loop, reused data

With --profile-s N, py-spy (`pip install py-spy`) samples the first serve
process for N seconds of the full mix and the top frames are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CALL_TIMEOUT_S = 10.0
HEALTH_WAIT_S = 120.0


# --------------------------------------------------------------------------
# PostgreSQL and pgbench


def pg_bin(name: str) -> Path:
    from ledger.pgserver_import import import_pgserver

    return Path(import_pgserver().__file__).parent / "pginstall" / "bin" / name


def embedded_url(data_dir: Path) -> str:
    """The switch's own embedded server (ledger.db), started if needed."""
    from ledger.db import embedded_url as ledger_url

    url = ledger_url(data_dir)
    assert url is not None
    return url


def with_database(url: str, database: str) -> str:
    """The same server URL naming another database."""
    scheme, _, rest = url.partition("://")
    authority, _, tail = rest.partition("/")
    _, q, query = tail.partition("?")
    return f"{scheme}://{authority}/{database}{q}{query}"


def psql(url: str, sql: str) -> str:
    out = subprocess.run(
        [str(pg_bin("psql")), "-X", "-A", "-t", "-c", sql, url],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def durability(url: str) -> dict[str, str]:
    return {name: psql(url, f"SHOW {name}") for name in ("fsync", "synchronous_commit")}


@dataclass
class PgbenchResult:
    tps: float
    scale: int
    clients: int
    threads: int
    seconds: int
    latency_ms: float


def run_pgbench(url: str, scale: int, clients: int, threads: int, seconds: int) -> PgbenchResult:
    """tpcb-like in a database of its own, initialised fresh each run."""
    psql(url, "DROP DATABASE IF EXISTS pgbench")
    psql(url, "CREATE DATABASE pgbench")
    bench_url = with_database(url, "pgbench")
    subprocess.run(
        [str(pg_bin("pgbench")), "-i", "-q", "-s", str(scale), bench_url],
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        [str(pg_bin("pgbench")), "-b", "tpcb-like", "-M", "prepared", "-c", str(clients),
         "-j", str(threads), "-T", str(seconds), bench_url],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = float(re.search(r"latency average = ([\d.]+) ms", out).group(1))  # type: ignore[union-attr]
    psql(url, "DROP DATABASE pgbench")
    return PgbenchResult(tps, scale, clients, threads, seconds, lat)


def postgres_pids(data_dir: Path) -> list[int]:
    import psutil

    pid_file = data_dir / "pg" / "postmaster.pid"
    if not pid_file.exists():
        return []
    master = psutil.Process(int(pid_file.read_text().split()[0]))
    return [master.pid, *(c.pid for c in master.children(recursive=True))]


def stop_postgres(data_dir: Path) -> None:
    """Fast shutdown (SIGINT to the postmaster) of the embedded server this run used.

    pgserver stops a server only when its last registered handle goes, and
    the serve processes' handles are not released on SIGTERM, so the
    postmaster is asked directly.
    """
    import psutil

    pids = postgres_pids(data_dir)
    if not pids:
        return
    master = psutil.Process(pids[0])
    master.send_signal(signal.SIGINT)
    try:
        master.wait(timeout=30)
    except psutil.TimeoutExpired:
        print(f"PostgreSQL {master.pid} did not stop within 30 s")


def postgres_cpu_seconds(data_dir: Path) -> float:
    """CPU seconds of the embedded server: its processes now, and every backend that has ended."""
    import psutil

    pids = postgres_pids(data_dir)
    if not pids:
        return 0.0
    try:
        ended = psutil.Process(pids[0]).cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return cpu_seconds(pids) + ended.children_user + ended.children_system


def cpu_seconds(pids: list[int]) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            continue
    return total


def rss_mb(pid: int) -> float:
    import psutil

    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except psutil.NoSuchProcess:
        return 0.0


class WaitSampler:
    """What the database's client backends are doing, sampled every 20 ms.

    The share of samples per (state, wait event) says whether sessions wait
    for WAL flushes (commits), for locks, for the client (idle in
    transaction: the switch computing while holding the transaction), or
    run on CPU. Its own session's CPU (`cpu_s`, fifty queries of
    pg_stat_activity a second) is the benchmark's, not the switch's: the
    PostgreSQL figures leave it out. `stop` ends the sampling and reads that
    CPU with the session still open, so that the figures read next count it
    among the live processes, once; `close` then ends the session and waits
    until its backend has gone (its CPU moves to the server's ended children).
    """

    def __init__(self, url: str) -> None:
        import threading

        self.url = url
        self.counts: collections.Counter[str] = collections.Counter()
        self.samples = 0
        self.cpu_s = 0.0  # its backend's CPU when sampling stopped
        self.backend = 0
        self._stop = threading.Event()
        self._stopped = threading.Event()  # cpu_s read, the session still open
        self._close = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> dict[str, float]:
        self._stop.set()
        if not self._stopped.wait(timeout=30):
            raise RuntimeError("the database sampler did not stop")
        n = max(1, self.samples)
        return {k: round(v / n, 2) for k, v in self.counts.most_common(8)}

    def close(self) -> None:
        import psutil

        self._close.set()
        self._thread.join(timeout=30)
        deadline = time.monotonic() + 10
        while self.backend and psutil.pid_exists(self.backend) and time.monotonic() < deadline:
            time.sleep(0.02)

    async def _run(self) -> None:
        import asyncpg

        conn = None
        try:
            conn = await asyncpg.connect(self.url)
            self.backend = backend = conn.get_server_pid()
            while not self._stop.is_set():
                rows = await conn.fetch(
                    "SELECT state, coalesce(wait_event_type || ':' || wait_event, 'CPU') AS w"
                    " FROM pg_stat_activity WHERE backend_type = 'client backend'"
                    " AND pid <> pg_backend_pid() AND datname = current_database()"
                )
                self.samples += 1
                for r in rows:
                    state = r["state"] or "?"
                    self.counts[state if state.startswith("idle") else f"{state} {r['w']}"] += 1
                await asyncio.sleep(0.02)
            self.cpu_s = cpu_seconds([backend])
            self._stopped.set()
            while not self._close.is_set():
                await asyncio.sleep(0.02)
        finally:
            self._stopped.set()  # (a failed query: nothing to leave out)
            if conn is not None:
                await conn.close()


# --------------------------------------------------------------------------
# The switch under test


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def medswitch_env(data_dir: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MEDSWITCH_DATA_DIR": str(data_dir),
        **extra,
    }


def medswitch(data_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "switch.cli", *args],
        env=medswitch_env(data_dir),
        capture_output=True,
        text=True,
        check=check,
    )


def start_servers(
    data_dir: Path, pop: Path, listen: str, procs: int, edge_only: bool, log_dir: Path,
    group_commit: bool = False,
) -> list[subprocess.Popen[bytes]]:  # fmt: skip
    servers = []
    for i in range(procs):
        if edge_only:
            cmd = [sys.executable, str(Path(__file__)), "_memserve", "--pop", str(pop),
                   "--tls-dir", str(data_dir / "tls"), "--listen", listen]  # fmt: skip
        else:
            cmd = [sys.executable, "-m", "switch.cli", "serve"]
        metrics_port = free_port()
        env = medswitch_env(
            data_dir,
            MEDSWITCH_LISTEN=listen,
            MEDSWITCH_METRICS_LISTEN=f"127.0.0.1:{metrics_port}",
            MEDSWITCH_GROUP_COMMIT="1" if group_commit else "0",
            MEDSWITCH_REUSE_PORT="1" if procs > 1 else "0",
        )
        log = (log_dir / f"serve-{i}.log").open("wb")
        servers.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
        METRICS_PORTS[servers[-1].pid] = metrics_port
    return servers


def wait_serving(target: str, tls_dir: Path, code: str, servers: list[Any]) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + HEALTH_WAIT_S
    creds = channel_credentials(tls_dir, code)
    while time.monotonic() < deadline:
        for s in servers:
            if s.poll() is not None:
                raise RuntimeError(f"serve process {s.pid} exited with {s.returncode}")
        try:
            with grpc.secure_channel(target, creds) as ch:
                stub = health_pb2_grpc.HealthStub(ch)
                resp = stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
        except grpc.RpcError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the switch did not answer SERVING on {target}")


def channel_credentials(tls_dir: Path, code: str) -> Any:
    import grpc

    return grpc.ssl_channel_credentials(
        root_certificates=(tls_dir / "ca.crt").read_bytes(),
        private_key=(tls_dir / "clients" / f"{code}.key").read_bytes(),
        certificate_chain=(tls_dir / "clients" / f"{code}.crt").read_bytes(),
    )


def stop_servers(servers: list[subprocess.Popen[bytes]]) -> None:
    for s in servers:
        if s.poll() is None:
            s.send_signal(signal.SIGTERM)
    for s in servers:
        try:
            s.wait(timeout=30)
        except subprocess.TimeoutExpired:
            s.kill()


# --------------------------------------------------------------------------
# Load clients (run as separate processes: `bench_switch.py _client ...`)


@dataclass
class ClientReport:
    calls: int = 0
    settled: int = 0  # first Settle (or SettleEncounter) of a request answered SETTLED
    latencies_ms: list[float] = field(default_factory=list)  # every call in the window
    settle_latencies_ms: list[float] = field(default_factory=list)
    settle_started: list[float] = field(default_factory=list)  # each one's start (epoch s)
    errors: dict[str, int] = field(default_factory=dict)  # gRPC status -> count
    wrong: dict[str, int] = field(default_factory=dict)  # problem -> count
    by_kind: dict[str, int] = field(default_factory=dict)
    cpu_s: float = 0.0


async def client_main(args: argparse.Namespace) -> None:
    import grpc

    from loadtest.workload import MIXES, Manifest, Session, pick_kind
    from switch.proto import medswitch_pb2 as pb
    from switch.proto import medswitch_pb2_grpc as pb_grpc

    manifest = Manifest.load(args.pop)
    tls = Path(args.tls_dir)
    codes = [*manifest.pharmacies, *manifest.providers]
    channels = {c: grpc.aio.secure_channel(args.target, channel_credentials(tls, c)) for c in codes}
    stubs = {
        (c, service): getattr(pb_grpc, f"{service}Stub")(ch)
        for c, ch in channels.items()
        for service in ("SettlementService", "EncounterService", "MemberService")
    }
    report = ClientReport()
    mix = MIXES[args.mix]
    start_at, stop_at = args.start_at, args.start_at + args.seconds
    cpu_start = 0.0

    async def call(session: Session, scheduled: float | None) -> None:
        """One call; its latency counts from `scheduled` (open loop) or from its start."""
        now = time.time()
        action = session.action(pick_kind(session.rng, mix))
        t0 = latency_start(scheduled, time.perf_counter())
        try:
            method = getattr(stubs[action.institution, action.service], action.method)
            resp = await method(action.request, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            if now >= start_at:
                name = exc.code().name
                report.errors[name] = report.errors.get(name, 0) + 1
                report.calls += 1
            return
        elapsed_ms = (time.perf_counter() - t0) * 1000
        problem = action.check(resp)
        if now < start_at or time.time() > stop_at:
            return  # warm-up, or answered after the window
        report.calls += 1
        report.latencies_ms.append(elapsed_ms)
        report.by_kind[action.kind] = report.by_kind.get(action.kind, 0) + 1
        if problem is not None:
            report.wrong[problem] = report.wrong.get(problem, 0) + 1
        elif action.method in ("Settle", "SettleEncounter") and action.kind != "retry":
            report.settle_latencies_ms.append(elapsed_ms)
            report.settle_started.append(now)
            report.settled += resp.status == pb.SETTLEMENT_STATUS_SETTLED

    def session(slot: int) -> Session:
        return Session(manifest, slot=slot, slots=args.slots, fresh_day=not args.prior_load)

    async def worker(slot: int) -> None:
        """Closed loop: the next call when the last is answered."""
        mine = session(slot)
        while time.time() < stop_at:
            await call(mine, None)

    async def open_loop() -> None:
        """Open loop: calls start on a fixed schedule, whether or not earlier ones answered.

        Latency counts from the scheduled start, so a call that waits for a
        free session (all `inflight` busy) is charged for the wait too.
        """
        free: asyncio.Queue[Session] = asyncio.Queue()
        for i in range(args.inflight):
            free.put_nowait(session(args.slot_base + i))
        interval = 1.0 / args.rate
        due = time.perf_counter()
        running: set[asyncio.Task[None]] = set()

        async def one(mine: Session, scheduled: float) -> None:
            try:
                await call(mine, scheduled)
            finally:
                free.put_nowait(mine)

        while time.time() < stop_at:
            mine = await free.get()
            task = asyncio.create_task(one(mine, due))
            running.add(task)
            task.add_done_callback(running.discard)
            due += interval
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
        if running:
            await asyncio.wait(running)

    async def cpu_mark() -> None:
        nonlocal cpu_start
        await asyncio.sleep(max(0.0, start_at - time.time()))
        ru = resource.getrusage(resource.RUSAGE_SELF)
        cpu_start = ru.ru_utime + ru.ru_stime

    if args.rate:
        await asyncio.gather(cpu_mark(), open_loop())
    else:
        await asyncio.gather(
            cpu_mark(), *(worker(args.slot_base + i) for i in range(args.inflight))
        )
    ru = resource.getrusage(resource.RUSAGE_SELF)
    report.cpu_s = ru.ru_utime + ru.ru_stime - cpu_start
    for ch in channels.values():
        await ch.close()
    json.dump(report.__dict__, sys.stdout)


def run_clients(
    target: str, pop: Path, tls_dir: Path, mix: str, inflight: int, procs: int,
    warmup_s: float, seconds: float, on_window: Any = None, prior_load: bool = True,
    rate: float = 0.0,
) -> tuple[ClientReport, float, float]:  # fmt: skip
    """Drives the switch from `procs` processes; (merged report, window start, end).

    rate > 0: open loop, `rate` calls started per second in all (each process
    its share), `inflight` sessions at most; else closed loop, `inflight` calls
    always in flight.
    """
    start_at = time.time() + warmup_s + 1.0  # + process start-up
    per = [inflight // procs + (i < inflight % procs) for i in range(procs)]
    cmds = []
    base = 0
    for n in per:
        cmds.append(
            [sys.executable, str(Path(__file__)), "_client", "--target", target,
             "--pop", str(pop), "--tls-dir", str(tls_dir), "--mix", mix,
             "--inflight", str(n), "--slot-base", str(base), "--slots", str(inflight),
             "--start-at", repr(start_at), "--seconds", repr(seconds)]
            + (["--prior-load"] if prior_load else [])
            + (["--rate", repr(rate * n / inflight)] if rate else [])
        )  # fmt: skip
        base += n
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    running = [subprocess.Popen(c, env=env, stdout=subprocess.PIPE) for c in cmds]
    if on_window is not None:
        on_window(start_at, seconds)
    merged = ClientReport()
    for p in running:
        out, _ = p.communicate(timeout=warmup_s + seconds + 120)
        if p.returncode != 0:
            raise RuntimeError(f"load client exited with {p.returncode}")
        part = json.loads(out)
        merged.calls += part["calls"]
        merged.settled += part["settled"]
        merged.latencies_ms += part["latencies_ms"]
        merged.settle_latencies_ms += part["settle_latencies_ms"]
        merged.settle_started += part["settle_started"]
        merged.cpu_s += part["cpu_s"]
        for key in ("errors", "wrong", "by_kind"):
            target_dict = getattr(merged, key)
            for k, v in part[key].items():
                target_dict[k] = target_dict.get(k, 0) + v
    return merged, start_at, start_at + seconds


def shares(text: str) -> list[float]:
    """--open-loop-share: comma-separated shares in (0, 1]; "0" or "" for none."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        share = float(part)
        if not 0 <= share <= 1:
            raise argparse.ArgumentTypeError(f"a share is between 0 and 1, not {part}")
        if share > 0:
            out.append(share)
    return out


def worst_second(started: list[float], latencies_ms: list[float]) -> tuple[float, float]:
    """The one-second window (by start time) whose p99 is highest: (its p99 ms, its
    start in seconds into the run); (nan, nan) with no calls. A stall shows here
    when the run's own p99 spreads it thin. Seconds with fewer than half the
    median second's calls (a run's ragged first and last) are left out: their
    p99 would be their one slowest call."""
    if not started:
        return float("nan"), float("nan")
    first = min(started)
    seconds: dict[int, list[float]] = collections.defaultdict(list)
    for at, ms in zip(started, latencies_ms, strict=True):
        seconds[int(at - first)].append(ms)
    counts = sorted(len(v) for v in seconds.values())
    full = [s for s, v in seconds.items() if len(v) >= counts[len(counts) // 2] / 2]
    worst = max(full, key=lambda s: percentile(seconds[s], 0.99))
    return percentile(seconds[worst], 0.99), float(worst)


def latency_start(scheduled: float | None, started: float) -> float:
    """Where a call's latency counts from: its start in a closed loop; in an open
    loop its scheduled start, or its real one if the client's timer (whole
    milliseconds under uvloop) woke it early, so lateness is charged and
    earliness never hides any."""
    return started if scheduled is None else min(scheduled, started)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --------------------------------------------------------------------------
# The edge-only server: the real gRPC server, the engine's in-memory region


def on_uvloop(main: Coroutine[Any, Any, None]) -> None:
    """Runs a load client or the in-memory edge on uvloop, as `medswitch serve` runs."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


async def memserve_main(args: argparse.Namespace) -> None:

    from adjudication.memory import load_region
    from switch import server
    from tests.memory_backend import MemoryBackend

    backend = MemoryBackend(load_region(args.pop))
    config = server.ServerConfig(listen=args.listen, tls_dir=Path(args.tls_dir), reuse_port=True)

    async def freeze_the_store() -> None:
        # The in-memory store keeps every settlement, so the collector's full
        # passes over it grow into pauses of half a second: a cost of this test
        # backend, not of the edge it stands behind (the real switch keeps
        # nothing). What the store holds is moved out of the collector's sight.
        while True:
            await asyncio.sleep(2.0)
            gc.freeze()

    freezer = asyncio.create_task(freeze_the_store())
    try:
        await server.serve_until_signal(backend, config)
    finally:
        freezer.cancel()


# --------------------------------------------------------------------------
# py-spy


def profile(pid: int, seconds: int, out: Path, native: bool = False) -> str:
    """Samples `pid` with py-spy; the top frames by own and by total time.

    native: C frames too (gRPC core, uvloop, libc syscalls); py-spy then
    pauses the process for each sample, which slows it somewhat.
    """
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return "py-spy not installed (pip install py-spy): no profile"
    raw = out.with_suffix(".txt")
    subprocess.run(
        [spy, "record", "-p", str(pid), "-d", str(seconds), "-r", "100" if native else "200",
         "--format", "raw", "-o", str(raw), "--native" if native else "--nonblocking"],
        capture_output=True, check=False,
    )  # fmt: skip
    if not raw.exists():
        return "py-spy produced no samples"
    return summarize_collapsed(raw.read_text())


def summarize_collapsed(text: str, top: int = 25) -> str:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        samples += n
        frames = stack.split(";")
        own[_short(frames[-1])] += n
        for f in set(map(_short, frames)):
            total[f] += n
    lines = [f"{samples} samples", "own time:"]
    lines += [f"  {100 * n / samples:5.1f} %  {f}" for f, n in own.most_common(top)]
    lines.append("total time (frame on the stack):")
    lines += [f"  {100 * n / samples:5.1f} %  {f}" for f, n in total.most_common(top)]
    return "\n".join(lines)


def _short(frame: str) -> str:
    # "func (path/to/module.py:123)" -> "func (module.py)"
    m = re.match(r"(.*) \((.*?):\d+\)$", frame)
    if not m:
        return frame
    return f"{m.group(1)} ({'/'.join(Path(m.group(2)).parts[-2:])})"


# --------------------------------------------------------------------------
# The run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode")
    client = sub.add_parser("_client")
    for name in ("--target", "--pop", "--tls-dir", "--mix"):
        client.add_argument(name, required=True)
    for name in ("--inflight", "--slot-base", "--slots"):
        client.add_argument(name, type=int, required=True)
    client.add_argument("--start-at", type=float, required=True)
    client.add_argument("--seconds", type=float, required=True)
    client.add_argument("--prior-load", action="store_true", help="cards used before today")
    client.add_argument("--rate", type=float, default=0.0, help="open loop: calls/s started")
    memserve = sub.add_parser("_memserve")
    for name in ("--pop", "--tls-dir", "--listen"):
        memserve.add_argument(name, required=True)

    parser.add_argument("--data-dir", type=Path, help="default: a fresh temporary directory")
    parser.add_argument("--members", type=int, default=200_000)
    parser.add_argument("--institutions", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured, per mix")
    parser.add_argument("--warmup-s", type=float, default=3.0)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--client-procs", type=int, default=2, help="closed loops' clients")
    parser.add_argument(
        "--open-loop-client-procs", type=int, default=1,
        help="open loops' clients: one offers the schedule for less CPU than two (its own"
             " lateness counts in the latency)",
    )  # fmt: skip
    parser.add_argument("--serve-procs", type=int, default=1)
    parser.add_argument("--mixes", default="pharmacy,full")
    parser.add_argument("--pgbench-scale", type=int, default=16)
    parser.add_argument("--pgbench-clients", type=int, default=16)
    parser.add_argument("--pgbench-seconds", type=int, default=15)
    parser.add_argument("--skip-pgbench", action="store_true")
    parser.add_argument(
        "--pg-set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="ALTER SYSTEM SET before pgbench and the switch (e.g. commit_delay=200)",
    )
    parser.add_argument(
        "--reuse", action="store_true", help="--data-dir already holds an imported population"
    )
    parser.add_argument(
        "--keep-db", action="store_true", help="leave the embedded PostgreSQL running"
    )
    parser.add_argument("--edge-only", action="store_true", help="only the edge: no database")
    parser.add_argument("--no-edge", action="store_true", help="skip the edge-only phase")
    parser.add_argument(
        "--open-loop-share", type=shares, default=[0.6, 0.3],
        help="open loops at these shares of the edge's pharmacy calls/s, comma-separated"
             " (0: none)",
    )  # fmt: skip
    parser.add_argument(
        "--open-loop-rate", type=float, default=0.0,
        help="open loop at this many pharmacy calls/s (instead of a share of the edge's)",
    )  # fmt: skip
    parser.add_argument("--skip-ledger", action="store_true", help="no ledger-alone reference")
    parser.add_argument(
        "--settle-in-s", type=float, default=60.0,
        help="unmeasured load on the full switch first (a fresh import's autovacuum)",
    )  # fmt: skip
    parser.add_argument("--ledger-seconds", type=float, default=8.0)
    parser.add_argument("--profile-s", type=int, default=0, help="py-spy the first serve proc")
    parser.add_argument("--profile-native", action="store_true", help="py-spy --native")
    parser.add_argument("--profile-mix", default="pharmacy", help="the mix --profile-s samples")
    parser.add_argument(
        "--group-commit",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="serve with group commit (the default of medswitch serve) or without",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.mode == "_client":
        on_uvloop(client_main(args))
        return 0
    if args.mode == "_memserve":
        on_uvloop(memserve_main(args))
        return 0

    return bench(args)


def bench(args: argparse.Namespace) -> int:
    from loadtest import population

    data_dir: Path = args.data_dir or Path(tempfile.mkdtemp(prefix="medswitch-bench-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    log_dir = data_dir / "bench-logs"
    log_dir.mkdir(exist_ok=True)
    figures: dict[str, Any] = {"data_dir": str(data_dir), "cores": os.cpu_count()}
    print(f"data dir {data_dir}; {os.cpu_count()} cores; python {sys.version.split()[0]}")
    mixes = [m for m in args.mixes.split(",") if m]  # "" with --open-loop-rate: open loop only

    pgbench: PgbenchResult | None = None
    if not args.edge_only:
        url = embedded_url(data_dir)
        figures["durability"] = check_durable(url, args.pg_set)
        if not args.skip_pgbench:
            pgbench = run_pgbench(
                url, args.pgbench_scale, args.pgbench_clients, 2, args.pgbench_seconds
            )
            figures["pgbench"] = pgbench.__dict__
            print(
                f"pgbench tpcb-like (a reference, not a target): {pgbench.tps:,.0f} tps "
                f"(scale {pgbench.scale}, {pgbench.clients} clients, {pgbench.seconds} s)"
            )
        if not args.skip_ledger:
            figures["ledger_us"] = ledger_reference(data_dir, url, args.ledger_seconds)

    manifest = prepare_population(args, data_dir, population)
    if manifest is None:
        return 1
    pop, tls = data_dir / "pop", data_dir / "tls"
    first_code = manifest["load_institutions"]["PHARMACY"][0]  # type: ignore[index]

    def open_rates(edge: dict[str, Any]) -> list[float]:
        """The open loops' offered rates: as given, or shares of the edge's pharmacy figure."""
        if args.open_loop_rate > 0:
            return [float(args.open_loop_rate)]
        if "pharmacy" not in edge:
            return []
        return [share * edge["pharmacy"]["calls_per_s"] for share in args.open_loop_share]

    def phase(edge_only: bool, mixes: list[str], rates: list[float] | None) -> dict[str, Any]:
        """Starts the server(s), measures each mix closed loop and the open loops, stops them.

        `rates` None: the open loops' rates come from this phase's own pharmacy figure.
        """
        target = f"127.0.0.1:{free_port()}"
        servers = start_servers(
            data_dir, pop, target, args.serve_procs, edge_only, log_dir, args.group_commit
        )
        out: dict[str, Any] = {}
        try:
            wait_serving(target, tls, first_code, servers)
            time.sleep(1.0)  # every process up, not only the first to answer
            for s in servers:
                if s.poll() is not None:
                    raise RuntimeError(f"serve process {s.pid} exited ({s.returncode})")
            kind = "edge only (in-memory backend, no database)" if edge_only else "full switch"
            print(f"\n== {kind}: {args.serve_procs} process(es) on {target}")
            if not edge_only and args.settle_in_s > 0:
                # A freshly imported server spends its first minutes on autovacuum,
                # checkpoints and full-page images: load it, unmeasured, first.
                run_clients(target, pop, tls, "pharmacy", args.inflight, args.client_procs,
                            0.0, args.settle_in_s)  # fmt: skip
                print(f"  settled in: {args.settle_in_s:.0f} s of pharmacy load, not measured")
            for mix in mixes:
                out[mix] = measure(args, data_dir, tls, pop, target, mix, servers, log_dir,
                                   edge_only=edge_only, rate=0.0)  # fmt: skip
            for offered in open_rates(out) if rates is None else rates:
                out[f"pharmacy@{offered:.0f}/s"] = measure(
                    args, data_dir, tls, pop, target, "pharmacy", servers, log_dir,
                    edge_only=edge_only, rate=offered,
                )  # fmt: skip
            out["rss_mb"] = [round(rss_mb(s.pid), 1) for s in servers]
            held = (
                " (the in-memory region holds every member and every settlement, kept"
                " out of the collector's sight)"
                if edge_only
                else ""
            )
            print(f"  RSS per serve process{held} (MB): " + ", ".join(map(str, out["rss_mb"])))
        finally:
            stop_servers(servers)
        return out

    edge: dict[str, Any] = {}
    if not args.no_edge:
        # the edge's open loop at the same offered rate: the latency floor of gRPC,
        # TLS, the engine and the load clients on this machine
        edge = phase(True, mixes, None)
        figures["edge"] = edge
    if not args.edge_only:
        figures["full"] = phase(False, mixes, open_rates(edge))
        if not args.skip_ledger:
            # Again after the switch, to show how far the machine drifted in the
            # minutes between. Not the yardstick: its PostgreSQL figure also holds
            # the server's background work on the switch's database (autovacuum,
            # checkpoints), which the first run, before the import, does not.
            try:
                figures["ledger_us_after"] = ledger_reference(
                    data_dir, embedded_url(data_dir), args.ledger_seconds
                )
            except Exception as exc:  # the figures measured so far still print
                print(f"ledger alone, after the switch: not measured ({exc!r})")
        verify = medswitch(data_dir, "ledger", "verify", check=False)
        figures["ledger_verify"] = verify.returncode
        print(f"\nmedswitch ledger verify: exit {verify.returncode}")
        print((verify.stdout + verify.stderr).strip()[-600:])
    print("\n" + summary(figures, pgbench))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    if not args.edge_only and not args.keep_db:
        stop_postgres(data_dir)
    return 0


def check_durable(url: str, pg_set: list[str]) -> dict[str, str]:
    """Applies --pg-set, then prints (and returns) fsync and synchronous_commit."""
    for setting in pg_set:
        name, _, value = setting.partition("=")
        psql(url, f"ALTER SYSTEM SET {name} = '{value}'")
    if pg_set:
        psql(url, "SELECT pg_reload_conf()")
        print("PostgreSQL settings: " + ", ".join(pg_set))
    dur = durability(url)
    print("durability: " + ", ".join(f"{k}={v}" for k, v in dur.items()))
    if any(v != "on" for v in dur.values()):
        print("WARNING: commits are not durable; the figures would not count")
    return dur


def prepare_population(
    args: argparse.Namespace, data_dir: Path, population: Any
) -> dict[str, Any] | None:
    pop, tls = data_dir / "pop", data_dir / "tls"
    if args.reuse and (pop / "manifest.json").exists():
        manifest: dict[str, Any] = json.loads((pop / "manifest.json").read_text())
        print(f"population: reusing {pop} ({manifest['members_total']:,} members, imported)")
        sampled = len(manifest["cards"]) + len(manifest["special_cards"])
        if sampled < manifest["members_total"] // 2:
            print(f"WARNING: its manifest samples {sampled:,} cards (made before every usable"
                  " card was sampled): members reach the daily purchase limit sooner, and the"
                  " figures are not comparable; make a new data directory")  # fmt: skip
        return manifest
    t0 = time.perf_counter()
    manifest = population.write_population(
        population.PopulationSpec(
            members=args.members, institutions=args.institutions, out=pop,
            sample_max=args.members,  # every usable card: few members reach the daily limit
        )
    )  # fmt: skip
    population.issue_certificates(manifest, tls)
    print(f"population: {args.members:,} members in {time.perf_counter() - t0:.1f} s")
    if not args.edge_only:
        t0 = time.perf_counter()
        imported = medswitch(data_dir, "import-reference", str(pop), check=False)
        if imported.returncode != 0:
            print(imported.stdout + imported.stderr)
            return None
        print(f"import-reference: {time.perf_counter() - t0:.1f} s")
    return manifest


def ledger_reference(data_dir: Path, url: str, seconds: float) -> float:
    """PostgreSQL CPU per settlement of the ledger alone (bench_ledger's writers).

    Batches of 128 from 4 writers into a database of its own on the same
    server: the cost of recording a settlement when nothing else runs.
    """
    from ledger.crypto import DataKeys
    from loadtest import bench_ledger

    psql(url, "DROP DATABASE IF EXISTS ledgerbench")
    psql(url, "CREATE DATABASE ledgerbench")
    bench_url = with_database(url, "ledgerbench")
    keys_raw = bytes(range(32))
    members = 50_000

    async def run() -> tuple[float, float, float]:
        await bench_ledger.prepare(bench_url, keys_raw, members)
        before = postgres_cpu_seconds(data_dir)
        t0 = time.monotonic()
        rate = await bench_ledger.run_ledger(
            bench_url, DataKeys(keys_raw), seconds, 4, 128, members, "ref"
        )
        return rate, postgres_cpu_seconds(data_dir) - before, time.monotonic() - t0

    rate, pg_cpu, elapsed = asyncio.run(run())
    psql(url, "DROP DATABASE ledgerbench")
    us = 1e6 * pg_cpu / max(1.0, rate * elapsed)
    print(f"ledger alone (bench_ledger, 4 writers of 128): {rate:,.0f} settlements/s, "
          f"PostgreSQL {us:.0f} us a settlement")  # fmt: skip
    return us


def summary(figures: dict[str, Any], pgbench: PgbenchResult | None) -> str:
    """The run in a few lines: the ratios issue 13 sets, and capacity per core."""
    edge, full = figures.get("edge", {}), figures.get("full", {})
    lines = ["SUMMARY"]
    for mix in ("pharmacy", "full"):
        if mix in edge and mix in full:
            e, f = edge[mix], full[mix]
            rate, edge_rate = f["settlements_per_s"], e["settlements_per_s"]
            cpu, edge_cpu = f["us_per_settlement"]["switch"], e["us_per_settlement"]["switch"]
            lines.append(
                f"  {mix} mix: switch {rate:,.0f}/s = {rate / max(1e-9, edge_rate):.2f}x the edge"
                f" alone ({edge_rate:,.0f}/s); switch process {cpu:.0f} us a call ="
                f" {cpu / max(1e-9, edge_cpu):.2f}x the edge's {edge_cpu:.0f} us;"
                f" mean batch {f['batch_mean']}"
            )
    for name, f in full.items():
        if "@" in name:
            line = (
                f"  open loop, {name}: p50 {f['p50_ms']} ms, p99 {f['p99_ms']} ms, "
                f"p99.9 {f['p999_ms']} ms; errors {sum(f['errors'].values())}, "
                f"wrong answers {sum(f['wrong_answers'].values())}"
            )
            if name in edge:
                e = edge[name]
                line += f" (the edge alone: p50 {e['p50_ms']}, p99 {e['p99_ms']} ms)"
            lines.append(line)
    if "pharmacy" in full:
        us = full["pharmacy"]["us_per_settlement"]
        ref = figures.get("ledger_us")
        line = f"  PostgreSQL {us['postgres']:.0f} us a settlement (pharmacy mix)"
        if ref:
            line += f" = {us['postgres'] / ref:.2f}x the ledger alone ({ref:.0f} us"
            after = figures.get("ledger_us_after")
            if after:
                line += f"; {after:.0f} us after the switch, its database's upkeep in it"
            line += ")"
        lines.append(line)
        lines.append(
            f"  capacity per core (pharmacy mix): a switch core "
            f"{1e6 / max(1e-9, us['switch']):,.0f} settlements/s, a PostgreSQL core "
            f"{1e6 / max(1e-9, us['postgres']):,.0f}/s"
        )
    if "ledger_verify" in figures:
        lines.append(
            f"  ledger verify: {'sound' if figures['ledger_verify'] == 0 else 'NOT SOUND'}"
        )
    if pgbench is not None:
        lines.append(f"  pgbench tpcb-like on the same server (reference): {pgbench.tps:,.0f} tps")
    return "\n".join(lines)


def measure(
    args: argparse.Namespace, data_dir: Path, tls: Path, pop: Path, target: str, mix: str,
    servers: list[subprocess.Popen[bytes]], log_dir: Path, *, edge_only: bool, rate: float,
) -> dict[str, Any]:  # fmt: skip
    """One mix against running servers: closed loop, or open loop at `rate` calls/s."""
    server_pids = [s.pid for s in servers]
    marks: dict[str, float] = {}
    profile_text: list[str] = []
    sampler = None if edge_only else WaitSampler(embedded_url(data_dir))

    def on_window(start_at: float, seconds: float) -> None:
        time.sleep(max(0.0, start_at - time.time()))
        marks["switch"] = cpu_seconds(server_pids)
        marks["pg"] = 0.0 if edge_only else postgres_cpu_seconds(data_dir)
        marks["batches"], marks["batched"] = batch_counts(servers)
        marks.update({f"metric {k}": v for k, v in scrape(servers).items()})
        if sampler is not None:
            sampler.start()
        if args.profile_s and mix == args.profile_mix and not rate and not edge_only:
            spied = profile(server_pids[0], min(args.profile_s, int(seconds)),
                            log_dir / "profile", native=args.profile_native)  # fmt: skip
            profile_text.append(spied)

    procs = args.open_loop_client_procs if rate else args.client_procs
    report, start, end = run_clients(
        target, pop, tls, mix, args.inflight, procs, args.warmup_s, args.seconds,
        on_window, prior_load=True, rate=rate,
    )  # fmt: skip
    window = end - start
    waits = sampler.stop() if sampler is not None else {}
    sampling = sampler.cpu_s if sampler is not None else 0.0
    cpu = {
        "switch": cpu_seconds(server_pids) - marks["switch"],
        "postgres": 0.0 if edge_only else postgres_cpu_seconds(data_dir) - marks["pg"] - sampling,
        "clients": report.cpu_s,
    }
    if sampler is not None:
        sampler.close()
    batches, batched = batch_counts(servers)
    calls = max(1, report.calls)
    stages = stage_means(scrape(servers), marks)
    worst = worst_second(report.settle_started, report.settle_latencies_ms)
    result: dict[str, Any] = {
        "settlements_per_s": round(report.settled / window, 1),
        "calls_per_s": round(report.calls / window, 1),
        "p50_ms": round(percentile(report.settle_latencies_ms, 0.50), 2),
        "p99_ms": round(percentile(report.settle_latencies_ms, 0.99), 2),
        "p999_ms": round(percentile(report.settle_latencies_ms, 0.999), 2),
        "worst_second_p99_ms": round(worst[0], 2),
        "errors": report.errors,
        "wrong_answers": report.wrong,
        "by_kind": report.by_kind,
        "cpu_cores": {k: round(v / window, 2) for k, v in cpu.items()},
        "us_per_settlement": {k: round(1e6 * v / calls, 1) for k, v in cpu.items()},
        "batch_mean": round((batched - marks["batched"]) / max(1.0, batches - marks["batches"]), 1),
        "stage_ms": stages,
    }
    loop = f"open loop, {rate:,.0f} calls/s offered" if rate else f"{args.inflight} in flight"
    print(f"\nmix {mix}: {loop}, {procs} client process(es), {window:.0f} s")
    print(f"  settlements/s {result['settlements_per_s']:,.0f}   all calls/s "
          f"{result['calls_per_s']:,.0f}   mean batch {result['batch_mean']}")  # fmt: skip
    print(f"  Settle latency p50 {result['p50_ms']} ms  p99 {result['p99_ms']} ms  "
          f"p99.9 {result['p999_ms']} ms; worst second's p99 {result['worst_second_p99_ms']} "
          f"ms ({worst[1]:.0f} s in)")  # fmt: skip
    if stages:
        print("  a batch's stages, mean ms: "
              + ", ".join(f"{k} {v}" for k, v in stages.items()))  # fmt: skip
    print(f"  errors {sum(report.errors.values())} {report.errors or ''}   "
          f"wrong answers {sum(report.wrong.values())} {report.wrong or ''}")  # fmt: skip
    c, u = result["cpu_cores"], result["us_per_settlement"]
    print(f"  CPU, cores busy: switch {c['switch']}, postgres {c['postgres']}, "
          f"load clients {c['clients']}; us a call: switch {u['switch']:.0f}, "
          f"postgres {u['postgres']:.0f}, clients {u['clients']:.0f}")  # fmt: skip
    if sampler is not None:
        result["sampler_postgres_cpu_s"] = round(sampling, 3)
    if waits:
        result["db_sessions"] = waits
        print("  database sessions (average number in each state): "
              + ", ".join(f"{k} {v}" for k, v in waits.items())
              + f"; sampled by a session of {sampling:.2f} s CPU, left out of the"
              " PostgreSQL figures")  # fmt: skip
    if profile_text:
        result["profile"] = profile_text[0]
        print(f"  py-spy profile of serve process 1 ({mix} mix):")
        print("    " + profile_text[0].replace("\n", "\n    "))
    return result


def stage_means(now: dict[str, float], marks: dict[str, float]) -> dict[str, float]:
    """Mean ms of each settlement stage (queue, load, decide, record) in the window."""
    out = {}
    for stage in ("queue", "load", "decide", "record"):
        key = f'medswitch_settle_stage_ms_{{}}{{{{stage="{stage}"}}}}'
        total = now.get(key.format("sum"), 0.0) - marks.get("metric " + key.format("sum"), 0.0)
        count = now.get(key.format("count"), 0.0) - marks.get("metric " + key.format("count"), 0.0)
        if count:
            out[stage] = round(total / count, 2)
    # and a Settle call's mean in the server, from its handler's start to its answer
    key = 'medswitch_request_duration_ms_{}{{method="Settle"}}'
    total = now.get(key.format("sum"), 0.0) - marks.get("metric " + key.format("sum"), 0.0)
    count = now.get(key.format("count"), 0.0) - marks.get("metric " + key.format("count"), 0.0)
    if count:
        out["handler"] = round(total / count, 2)
    return out


METRICS_PORTS: dict[int, int] = {}  # serve process pid -> its metrics port


def batch_counts(servers: list[subprocess.Popen[bytes]]) -> tuple[float, float]:
    """(batches, settlements in them) recorded so far by the servers' writers."""
    sums = scrape(servers)
    return sums.get("medswitch_settle_batch_size_count", 0.0), sums.get(
        "medswitch_settle_batch_size_sum", 0.0
    )


def scrape(servers: list[subprocess.Popen[bytes]]) -> dict[str, float]:
    """Every sample of the servers' /metrics, summed over the servers."""
    import urllib.request

    sums: dict[str, float] = {}
    for s in servers:
        port = METRICS_PORTS.get(s.pid)
        if port is None:
            continue
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("medswitch_"):
                name, _, value = line.rpartition(" ")
                sums[name] = sums.get(name, 0.0) + float(value)
    return sums


if __name__ == "__main__":
    sys.exit(main())
