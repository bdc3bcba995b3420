"""A fault under load, and the checks after it, for every fault test.

`Switch` is `medswitch serve` as a process on a fixed port, which a test may
kill and start again. `load_through` runs Settle load (settle_load.py:
clients that resend unknown outcomes with the same request id), lets
`ACKS_BEFORE` answers come, injects the fault, and goes on until `ACKS_AFTER`
answers came after it; the longest time without any answer from the
fault on is the outage the clients saw. `check` then asks the switch and
the database whether anything acknowledged was lost or doubled, and runs
`medswitch ledger verify`.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

from ledger import db
from tests.cli import ServeProcess, medswitch
from tests.faults.settle_load import LoadRecord, check_nothing_lost, credentials, run_load

ACKS_BEFORE = 200  # settlements acknowledged before the fault
ACKS_AFTER = 200  # and after it
WAIT_MAX_S = 120.0  # for either


@dataclass
class Switch:
    """`medswitch serve` with `env` (which names its listeners and database)."""

    env: dict[str, str]
    port: int
    tls_dir: Path
    db_url: str  # the database's URL, for the checks
    serve: ServeProcess | None = None
    outputs: list[str] = field(default_factory=list)  # of every process stopped

    async def start(self) -> None:
        """A new `medswitch serve`; returns once it says it serves."""
        self.serve = await ServeProcess.start(self.env)
        await self.serve.serving()

    async def stop(self, how: signal.Signals = signal.SIGTERM) -> int:
        """Sends `how`; the exit code (SIGKILL: -9) once the process has exited."""
        assert self.serve is not None
        self.serve.proc.send_signal(how)
        code = await self.serve.exit_code()
        self.outputs.append(await self.serve.close())
        self.serve = None
        return code

    def running(self) -> ServeProcess:
        assert self.serve is not None and self.serve.proc.returncode is None, "not running"
        return self.serve


async def load_through(
    switch: Switch, fault: Callable[[], Awaitable[None]], *, workers: int = 6
) -> tuple[LoadRecord, float]:
    """Settle load through `fault`; the record and when the fault began."""
    stop = asyncio.Event()
    record = LoadRecord()
    loading = asyncio.ensure_future(
        run_load(switch.port, credentials(switch.tls_dir), stop, record, workers=workers)
    )
    try:
        await _until(lambda: len(record.acknowledged) >= ACKS_BEFORE, loading)
        faulted_at = time.monotonic()
        await fault()
        await _until(lambda: sum(t > faulted_at for t in record.answered_at) >= ACKS_AFTER, loading)
    finally:
        stop.set()
        await loading
    return record, faulted_at


async def _until(done: Callable[[], bool], loading: asyncio.Future[None]) -> None:
    deadline = time.monotonic() + WAIT_MAX_S
    while not done():
        assert not loading.done(), "the load stopped early"
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


def report(fault: str, record: LoadRecord, faulted_at: float) -> float:
    """Prints what the clients saw (`pytest -s` shows it); returns the outage in s."""
    outage_s = record.longest_gap_s(faulted_at)
    print(
        f"\n{fault}: outage {outage_s:.1f} s, {len(record.acknowledged)} acknowledged,"
        f" {record.retries} resends, {record.refused}"
    )
    return outage_s


async def check(switch: Switch, record: LoadRecord, refusals: Collection[str]) -> None:
    """Nothing acknowledged lost, nothing doubled, the ledger sound; the calls
    resent were refused only with the statuses named in `refusals`."""
    conn = await db.connect(switch.db_url)
    try:
        problems = await check_nothing_lost(switch.port, credentials(switch.tls_dir), record, conn)
    finally:
        await conn.close()
    assert not problems, problems[:10]
    verify = await asyncio.to_thread(medswitch, "ledger", "verify", env=switch.env, timeout=300)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert set(record.refused) <= set(refusals), record.refused
