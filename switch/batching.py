"""Group commit for Settle: concurrent settlements share one transaction.

Every Settle must be durable before it is answered, and a durable commit
costs a disk flush. Under load, the Settle calls waiting at the same moment
are handed to the ledger together (`Ledger.settle_batch`): one transaction,
one flush, each call still getting exactly the answer `settle` would give
it. There is no waiting to fill a batch: a worker takes whatever is queued
when it becomes free, so a lone call goes straight through and batches grow
only when calls arrive faster than commits finish. Several workers run at
once, each with its own connection; the ledger locks members in a fixed
order, so concurrent batches cannot deadlock.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from ledger.store import Ledger, LedgerError, SettleItem, StoredSettlement
from switch import metrics

log = structlog.get_logger("medswitch.batching")

_Pending = tuple[SettleItem, "asyncio.Future[StoredSettlement]"]


class SettleBatcher:
    def __init__(self, ledger: Ledger, *, batch_max: int, workers: int) -> None:
        assert batch_max >= 1 and workers >= 1
        self.ledger = ledger
        self.batch_max = batch_max
        self.workers = workers
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._work()) for _ in range(self.workers)]

    async def settle(self, item: SettleItem) -> StoredSettlement:
        """What `Ledger.settle` would answer for the item, committed with others."""
        self.start()
        future: asyncio.Future[StoredSettlement] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, future))
        # If the caller goes away (deadline), the item may still commit; a retry
        # with the same request id then gets the stored answer.
        return await future

    async def _work(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.batch_max and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            metrics.SETTLE_BATCH_SIZE.observe(len(batch))
            try:
                results = await self.ledger.settle_batch([item for item, _ in batch])
            except asyncio.CancelledError:
                _fail(batch, ConnectionError("the switch is shutting down"))
                raise
            except Exception as exc:  # the database went away, or a bug: each call learns
                _fail(batch, exc)
                continue
            assert len(results) == len(batch), "settle_batch answers every item"
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():  # the caller was cancelled meanwhile
                    continue
                if isinstance(result, LedgerError):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def close(self) -> None:
        """Stops the workers (after the server has drained its calls)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        while not self._queue.empty():
            _fail([self._queue.get_nowait()], ConnectionError("the switch is shutting down"))


def _fail(batch: list[_Pending], exc: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)
