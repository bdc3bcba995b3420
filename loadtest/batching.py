"""Prototype: Settle calls batched into one transaction each (group commit).

BENCHMARKS.md recommends batching as the largest gain; this measures it
before anyone rewrites the switch for it. It is the switch's own backend
(switch.service.LedgerBackend) over a Ledger whose `settle` is changed:
calls queue up, and a few writer tasks each take whatever has queued (up to
`batch_max`) and hand it to `Ledger.settle_batch`, which settles them in one transaction
with one durable commit, members locked in a fixed order, and falls back to
one by one if the database refuses the batch. Everything else (edge, engine,
postings, idempotency, answers) is unchanged, so the load test's checks
judge it like the real switch.

Run only by loadtest/bench_switch.py (`--batch-max N`), never by `medswitch
serve`: it is an experiment, not a feature.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
from collections.abc import Callable
from datetime import date
from typing import Any

from ledger import store as ls
from ledger.store import Ledger

Waiting = tuple[ls.SettleItem, "asyncio.Future[ls.StoredSettlement]"]
# Set in the writer tasks: settle_batch's one-by-one fallback calls
# self.settle, which must then settle directly instead of queueing again.
_in_writer: contextvars.ContextVar[bool] = contextvars.ContextVar("_in_writer", default=False)


class BatchingLedger(Ledger):
    """Ledger whose `settle` calls share transactions through `settle_batch`."""

    batch_max = 32
    writers = 4
    batches = 0
    batched = 0
    _queue: asyncio.Queue[Waiting] | None = None
    _tasks: list[asyncio.Task[None]]

    def _start(self) -> asyncio.Queue[Waiting]:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._tasks = [asyncio.create_task(self._writer()) for _ in range(self.writers)]
        return self._queue

    async def settle(
        self,
        key: tuple[str, str],
        fingerprint: bytes,
        card_no: str,
        benefit_year: int,
        service_date: date,
        decide: Callable[[ls.ClaimInputs], ls.Decision],
    ) -> ls.StoredSettlement:
        if _in_writer.get():
            return await super().settle(
                key, fingerprint, card_no, benefit_year, service_date, decide
            )
        item = ls.SettleItem(key, fingerprint, card_no, benefit_year, service_date, decide)
        future: asyncio.Future[ls.StoredSettlement] = asyncio.get_running_loop().create_future()
        await self._start().put((item, future))
        return await future

    async def _writer(self) -> None:
        _in_writer.set(True)
        assert self._queue is not None
        queue = self._queue
        while True:
            batch = [await queue.get()]
            while len(batch) < self.batch_max and not queue.empty():
                batch.append(queue.get_nowait())
            self.batches += 1
            self.batched += len(batch)
            try:
                results = await self.settle_batch([item for item, _ in batch])
            except Exception as exc:  # the database itself failed: every caller hears it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)


async def serve(args: argparse.Namespace) -> int:
    """`medswitch serve`, with the batching ledger (same settings, same server)."""
    from switch.commands.db import open_ledger
    from switch.config import Settings
    from switch.server import ServerConfig, configure_logging, serve_until_signal
    from switch.service import LedgerBackend

    configure_logging()
    settings = Settings.from_env()
    pool, keys = await open_ledger(settings, min_size=1, max_size=args.db_pool_max)
    try:
        ledger: Any = BatchingLedger(pool, keys)
        ledger.batch_max = args.batch_max
        ledger.writers = args.writers
        backend = await LedgerBackend.open(pool, ledger)
        code = await serve_until_signal(backend, ServerConfig.from_settings(settings))
        if ledger.batches:
            print(
                f'{{"event": "batching", "batches": {ledger.batches}, '
                f'"mean_batch": {ledger.batched / ledger.batches:.1f}}}',
                flush=True,
            )
        return code
    finally:
        await pool.close()
