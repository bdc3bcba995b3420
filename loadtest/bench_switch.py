"""One-run benchmark of the switch against pgbench on the same PostgreSQL.

A figure of settlements per second means little alone; next to what the
same PostgreSQL does for pgbench's tpcb-like transaction on the same machine
it says how much of the database's commit capacity the switch turns into
settlements. One run does everything (issue 6):

1. starts the embedded PostgreSQL of a fresh data dir (or uses --data-dir),
   prints fsync and synchronous_commit (they must be on: durable commits);
2. pgbench: initialises a small scale in its own database `pgbench` and
   runs `pgbench -b tpcb-like` for --pgbench-seconds;
3. writes a population (loadtest/population.py), issues the institutions'
   certificates, `medswitch import-reference`;
4. starts `medswitch serve` (--serve-procs processes on one port, with
   `--reuse-port`), waits until health answers SERVING;
5. for each mix (pharmacy, full) drives it from --client-procs grpc.aio
   client processes with --inflight requests in flight in total, warm-up
   first, then prints settlements/s, p50 and p99 latency, errors, wrong
   answers (loadtest/workload.py judges every answer), the ratio to
   pgbench, and CPU seconds used by the switch, PostgreSQL and the clients;
6. stops the switch (SIGTERM) and runs `medswitch ledger verify`.

    python loadtest/bench_switch.py                        # everything, defaults
    python loadtest/bench_switch.py --members 1000000 --seconds 30 --serve-procs 2
    python loadtest/bench_switch.py --edge-only            # no database: the gRPC
        # edge and engine over the in-memory region (tests/memory_backend.py),
        # the ceiling the Python server reaches without any storage

With --profile-s N, py-spy (`pip install py-spy`) samples the first serve
process for N seconds of the full mix and the top frames are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
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
    import pgserver

    return Path(pgserver.__file__).parent / "pginstall" / "bin" / name


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
    run on CPU.
    """

    def __init__(self, url: str) -> None:
        import threading

        self.url = url
        self.counts: collections.Counter[str] = collections.Counter()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join(timeout=5)
        n = max(1, self.samples)
        return {k: round(v / n, 2) for k, v in self.counts.most_common(8)}

    async def _run(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.url)
        try:
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
        finally:
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
        env = medswitch_env(
            data_dir,
            MEDSWITCH_LISTEN=listen,
            MEDSWITCH_METRICS_LISTEN=f"127.0.0.1:{free_port()}",
            MEDSWITCH_GROUP_COMMIT="1" if group_commit else "0",
            MEDSWITCH_REUSE_PORT="1" if procs > 1 else "0",
        )
        log = (log_dir / f"serve-{i}.log").open("wb")
        servers.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
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
    settled: int = 0  # first Settle of a request answered SETTLED
    latencies_ms: list[float] = field(default_factory=list)  # every call in the window
    settle_latencies_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)  # gRPC status -> count
    wrong: dict[str, int] = field(default_factory=dict)  # problem -> count
    by_kind: dict[str, int] = field(default_factory=dict)
    cpu_s: float = 0.0


async def client_main(args: argparse.Namespace) -> None:
    import grpc

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    from loadtest.workload import MIXES, Manifest, Session, pick_kind
    from switch.proto import medswitch_pb2 as pb
    from switch.proto import medswitch_pb2_grpc as pb_grpc

    manifest = Manifest.load(args.pop)
    tls = Path(args.tls_dir)
    codes = [*manifest.pharmacies, *manifest.providers]
    channels = {c: grpc.aio.secure_channel(args.target, channel_credentials(tls, c)) for c in codes}
    stubs = {c: pb_grpc.SettlementServiceStub(ch) for c, ch in channels.items()}
    report = ClientReport()
    mix = MIXES[args.mix]
    start_at, stop_at = args.start_at, args.start_at + args.seconds
    cpu_start = 0.0

    async def worker(slot: int) -> None:
        session = Session(manifest, slot=slot, slots=args.slots, fresh_day=not args.prior_load)
        while (now := time.time()) < stop_at:
            action = session.action(pick_kind(session.rng, mix))
            t0 = time.perf_counter()
            try:
                method = getattr(stubs[action.institution], action.method)
                resp = await method(action.request, timeout=CALL_TIMEOUT_S)
            except grpc.aio.AioRpcError as exc:
                if now >= start_at:
                    name = exc.code().name
                    report.errors[name] = report.errors.get(name, 0) + 1
                    report.calls += 1
                continue
            elapsed_ms = (time.perf_counter() - t0) * 1000
            problem = action.check(resp)
            if now < start_at or time.time() > stop_at:
                continue  # warm-up, or answered after the window
            report.calls += 1
            report.latencies_ms.append(elapsed_ms)
            report.by_kind[action.kind] = report.by_kind.get(action.kind, 0) + 1
            if problem is not None:
                report.wrong[problem] = report.wrong.get(problem, 0) + 1
            elif action.method == "Settle" and action.kind != "retry":
                report.settle_latencies_ms.append(elapsed_ms)
                report.settled += resp.status == pb.SETTLEMENT_STATUS_SETTLED

    async def cpu_mark() -> None:
        nonlocal cpu_start
        await asyncio.sleep(max(0.0, start_at - time.time()))
        ru = resource.getrusage(resource.RUSAGE_SELF)
        cpu_start = ru.ru_utime + ru.ru_stime

    await asyncio.gather(cpu_mark(), *(worker(args.slot_base + i) for i in range(args.inflight)))
    ru = resource.getrusage(resource.RUSAGE_SELF)
    report.cpu_s = ru.ru_utime + ru.ru_stime - cpu_start
    for ch in channels.values():
        await ch.close()
    json.dump(report.__dict__, sys.stdout)


def run_clients(
    target: str, pop: Path, tls_dir: Path, mix: str, inflight: int, procs: int,
    warmup_s: float, seconds: float, on_window: Any = None, prior_load: bool = True,
) -> tuple[ClientReport, float, float]:  # fmt: skip
    """Drives the switch from `procs` processes; (merged report, window start, end)."""
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
        merged.cpu_s += part["cpu_s"]
        for key in ("errors", "wrong", "by_kind"):
            target_dict = getattr(merged, key)
            for k, v in part[key].items():
                target_dict[k] = target_dict.get(k, 0) + v
    return merged, start_at, start_at + seconds


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --------------------------------------------------------------------------
# The edge-only server: the real gRPC server, the engine's in-memory region


async def memserve_main(args: argparse.Namespace) -> None:

    from adjudication.memory import load_region
    from switch import server
    from tests.memory_backend import MemoryBackend

    backend = MemoryBackend(load_region(args.pop))
    config = server.ServerConfig(listen=args.listen, tls_dir=Path(args.tls_dir), reuse_port=True)
    await server.serve_until_signal(backend, config)


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
    memserve = sub.add_parser("_memserve")
    for name in ("--pop", "--tls-dir", "--listen"):
        memserve.add_argument(name, required=True)

    parser.add_argument("--data-dir", type=Path, help="default: a fresh temporary directory")
    parser.add_argument("--members", type=int, default=200_000)
    parser.add_argument("--institutions", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured, per mix")
    parser.add_argument("--warmup-s", type=float, default=3.0)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--client-procs", type=int, default=2)
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
    parser.add_argument("--edge-only", action="store_true", help="in-memory backend, no DB")
    parser.add_argument("--profile-s", type=int, default=0, help="py-spy the first serve proc")
    parser.add_argument("--profile-native", action="store_true", help="py-spy --native")
    parser.add_argument(
        "--group-commit",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="serve with group commit (the default of medswitch serve) or without",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.mode == "_client":
        asyncio.run(client_main(args))
        return 0
    if args.mode == "_memserve":
        asyncio.run(memserve_main(args))
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

    pgbench: PgbenchResult | None = None
    if not args.edge_only:
        url = embedded_url(data_dir)
        if args.pg_set:
            for setting in args.pg_set:
                name, _, value = setting.partition("=")
                psql(url, f"ALTER SYSTEM SET {name} = '{value}'")
            psql(url, "SELECT pg_reload_conf()")
            print("PostgreSQL settings: " + ", ".join(args.pg_set))
        figures["pg_set"] = args.pg_set
        dur = durability(url)
        figures["durability"] = dur
        print("durability: " + ", ".join(f"{k}={v}" for k, v in dur.items()))
        if any(v != "on" for v in dur.values()):
            print("WARNING: commits are not durable; the figures would not count")
        if not args.skip_pgbench:
            pgbench = run_pgbench(
                url, args.pgbench_scale, args.pgbench_clients, 2, args.pgbench_seconds
            )
            figures["pgbench"] = pgbench.__dict__
            print(
                f"pgbench tpcb-like: {pgbench.tps:,.0f} tps (scale {pgbench.scale}, "
                f"{pgbench.clients} clients, {pgbench.threads} threads, {pgbench.seconds} s, "
                f"latency avg {pgbench.latency_ms:.1f} ms)"
            )

    pop = data_dir / "pop"
    tls = data_dir / "tls"
    if args.reuse and (pop / "manifest.json").exists():
        manifest = json.loads((pop / "manifest.json").read_text())
        print(f"population: reusing {pop} ({manifest['members_total']:,} members, imported)")
    else:
        t0 = time.perf_counter()
        manifest = population.write_population(
            population.PopulationSpec(
                members=args.members, institutions=args.institutions, out=pop,
                sample_max=max(20_000, args.members // 5),
            )
        )  # fmt: skip
        population.issue_certificates(manifest, tls)
        print(f"population: {args.members:,} members in {time.perf_counter() - t0:.1f} s")
        if not args.edge_only:
            t0 = time.perf_counter()
            imported = medswitch(data_dir, "import-reference", str(pop), check=False)
            if imported.returncode != 0:
                print(imported.stdout + imported.stderr)
                return 1
            print(f"import-reference: {time.perf_counter() - t0:.1f} s")

    port = free_port()
    target = f"127.0.0.1:{port}"
    servers = start_servers(
        data_dir, pop, target, args.serve_procs, args.edge_only, log_dir, args.group_commit,
    )  # fmt: skip
    first_code = manifest["load_institutions"]["PHARMACY"][0]  # type: ignore[index]
    try:
        wait_serving(target, tls, first_code, servers)
        time.sleep(1.0)  # every process up, not only the first to answer
        for s in servers:
            if s.poll() is not None:
                raise RuntimeError(
                    f"serve process {s.pid} exited ({s.returncode}): with several "
                    "processes the server must set SO_REUSEPORT"
                )
        print(
            f"switch: {args.serve_procs} process(es) on {target}"
            + (" (edge only: in-memory backend)" if args.edge_only else "")
            + (" (group commit)" if args.group_commit else " (no group commit)")
        )
        figures["mixes"] = {}
        for mix in args.mixes.split(","):
            figures["mixes"][mix] = measure(args, data_dir, tls, pop, target, mix, servers,
                                            pgbench, log_dir)  # fmt: skip
        figures["switch_rss_mb"] = [round(rss_mb(s.pid), 1) for s in servers]
        print("switch RSS per process (MB): " + ", ".join(map(str, figures["switch_rss_mb"])))
    finally:
        stop_servers(servers)
    if not args.edge_only:
        verify = medswitch(data_dir, "ledger", "verify", check=False)
        figures["ledger_verify"] = verify.returncode
        print(f"medswitch ledger verify: exit {verify.returncode}")
        print((verify.stdout + verify.stderr).strip()[-2000:])
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    if not args.edge_only and not args.keep_db:
        stop_postgres(data_dir)
    return 0


def measure(
    args: argparse.Namespace, data_dir: Path, tls: Path, pop: Path, target: str, mix: str,
    servers: list[subprocess.Popen[bytes]], pgbench: PgbenchResult | None, log_dir: Path,
) -> dict[str, Any]:  # fmt: skip
    server_pids = [s.pid for s in servers]
    marks: dict[str, float] = {}
    profile_text: list[str] = []

    sampler = None if args.edge_only else WaitSampler(embedded_url(data_dir))

    def on_window(start_at: float, seconds: float) -> None:
        time.sleep(max(0.0, start_at - time.time()))
        marks["switch"] = cpu_seconds(server_pids)
        marks["pg"] = cpu_seconds(postgres_pids(data_dir))
        if sampler is not None:
            sampler.start()
        if args.profile_s and mix == "full":
            profile_text.append(
                profile(
                    server_pids[0],
                    min(args.profile_s, int(seconds)),
                    log_dir / "profile",
                    native=args.profile_native,
                )
            )

    report, start, end = run_clients(
        target, pop, tls, mix, args.inflight, args.client_procs, args.warmup_s, args.seconds,
        on_window, prior_load=args.reuse or mix != args.mixes.split(",")[0],
    )  # fmt: skip
    window = end - start
    waits = sampler.stop() if sampler is not None else {}
    switch_cpu = cpu_seconds(server_pids) - marks["switch"]
    pg_cpu = cpu_seconds(postgres_pids(data_dir)) - marks["pg"]
    settled_per_s = report.settled / window
    result = {
        "settlements_per_s": round(settled_per_s, 1),
        "calls_per_s": round(report.calls / window, 1),
        "p50_ms": round(percentile(report.settle_latencies_ms, 0.50), 2),
        "p99_ms": round(percentile(report.settle_latencies_ms, 0.99), 2),
        "p99_all_calls_ms": round(percentile(report.latencies_ms, 0.99), 2),
        "errors": report.errors,
        "wrong_answers": report.wrong,
        "by_kind": report.by_kind,
        "cpu_cores": {
            "switch": round(switch_cpu / window, 2),
            "postgres": round(pg_cpu / window, 2),
            "clients": round(report.cpu_s / window, 2),
        },
    }
    if pgbench is not None:
        result["ratio_to_pgbench"] = round(settled_per_s / pgbench.tps, 3)
    print(f"\nmix {mix}: {args.inflight} in flight from {args.client_procs} client processes, "
          f"{window:.0f} s")  # fmt: skip
    print(f"  settlements/s {settled_per_s:,.0f}   all calls/s {report.calls / window:,.0f}")
    print(f"  Settle latency p50 {result['p50_ms']} ms  p99 {result['p99_ms']} ms "
          f"(all calls p99 {result['p99_all_calls_ms']} ms)")  # fmt: skip
    print(f"  errors {sum(report.errors.values())} {report.errors or ''}   "
          f"wrong answers {sum(report.wrong.values())} {report.wrong or ''}")  # fmt: skip
    if pgbench is not None:
        print(f"  ratio to pgbench tpcb-like: {result['ratio_to_pgbench']:.2f}x")
    c = result["cpu_cores"]
    print(f"  CPU (cores busy): switch {c['switch']}, postgres {c['postgres']}, "
          f"load clients {c['clients']}")  # fmt: skip
    if waits:
        result["db_sessions"] = waits
        print("  database sessions (average number in each state): "
              + ", ".join(f"{k} {v}" for k, v in waits.items()))  # fmt: skip
    if profile_text:
        result["profile"] = profile_text[0]
        print("  py-spy profile of serve process 1 (full mix):")
        print("    " + profile_text[0].replace("\n", "\n    "))
    return result


if __name__ == "__main__":
    sys.exit(main())
