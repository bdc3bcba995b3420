"""Waiting in tests: for a condition or an event, never for a guessed duration.

A test that sleeps "long enough" for another task is slow on a quiet machine
and wrong on a busy one. These helpers wait for what the test needs, with a
bound that fails the test naming what never came:

- `until(condition, what)`: for state the code under test does not announce
  (the edge's counters), checked every few milliseconds;
- `LogEvents`: structlog events as they are logged, awaitable;
- `LineReader`: a subprocess's stdout, line by line, awaitable;
- `ended_with(records, ended)`: a client stream's records, stopped when the
  call is over (grpc's asyncio client otherwise leaves the task feeding a
  stream waiting forever on an iterator nobody will resume).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any, TypeVar

import structlog

T = TypeVar("T")

TIMEOUT_S = 30.0  # a bound, not an expectation: a healthy run takes a fraction of it
_POLL_S = 0.005


async def until(condition: Callable[[], bool], what: str, timeout_s: float = TIMEOUT_S) -> None:
    """Returns once `condition()` holds; fails naming `what` after `timeout_s`."""
    try:
        async with asyncio.timeout(timeout_s):
            while not condition():
                await asyncio.sleep(_POLL_S)
    except TimeoutError:
        raise AssertionError(f"waited {timeout_s} s for {what}") from None


async def wait_for(awaitable: Any, what: str, timeout_s: float = TIMEOUT_S) -> Any:
    """`await awaitable`, failing naming `what` after `timeout_s`."""
    try:
        async with asyncio.timeout(timeout_s):
            return await awaitable
    except TimeoutError:
        raise AssertionError(f"waited {timeout_s} s for {what}") from None


class LogEvents:
    """The structlog events logged in the block (like structlog.testing.capture_logs),
    with a way to wait for the ones a test expects."""

    def __init__(self) -> None:
        self.events: list[MutableMapping[str, Any]] = []
        self._logged = asyncio.Event()

    def _capture(self, _logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
        event["log_level"] = method
        self.events.append(event)
        self._logged.set()
        raise structlog.DropEvent

    def named(self, name: str) -> list[MutableMapping[str, Any]]:
        return [e for e in self.events if e.get("event") == name]

    async def wait(self, name: str, count: int = 1) -> list[MutableMapping[str, Any]]:
        """The events called `name` once there are `count` of them."""
        while len(self.named(name)) < count:
            self._logged.clear()
            await wait_for(self._logged.wait(), f"{count} {name!r} log event(s)")
        return self.named(name)


@contextmanager
def log_events() -> Iterator[LogEvents]:
    """Captures the structlog events logged in the block (the server logs each
    call as it finishes, which can come just after the client has its answer)."""
    captured = LogEvents()
    previous = structlog.get_config()
    structlog.configure(processors=[captured._capture], cache_logger_on_first_use=False)
    try:
        yield captured
    finally:
        structlog.configure(**previous)


class LineReader:
    """Reads a subprocess's stdout (JSON lines or text) as it comes, keeping it all."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.lines: list[str] = []
        self._stream = stream
        self._grew = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while line := await self._stream.readline():
            self.lines.append(line.decode("utf-8", errors="replace"))
            self._grew.set()
        self._grew.set()

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines if line.startswith("{")]

    async def wait_for(self, needle: str, timeout_s: float = TIMEOUT_S) -> None:
        """Returns once a line containing `needle` has been read."""
        while not any(needle in line for line in self.lines):
            if self._task.done():
                raise AssertionError(f"output ended without {needle!r}:\n{self.text[-3000:]}")
            self._grew.clear()
            await wait_for(self._grew.wait(), f"{needle!r} in the output", timeout_s)

    async def finish(self) -> str:
        """All of the output, once the stream has ended."""
        await wait_for(self._task, "the end of the output")
        return self.text


async def ended_with(records: AsyncIterator[T], ended: asyncio.Event) -> AsyncIterator[T]:
    """`records` until `ended` is set: an unfinished iterator is then cancelled."""
    ending = asyncio.ensure_future(ended.wait())
    try:
        while True:
            following = asyncio.ensure_future(anext(records))
            await asyncio.wait([following, ending], return_when=asyncio.FIRST_COMPLETED)
            if not following.done():
                following.cancel()
                return
            try:
                record = following.result()
            except StopAsyncIteration:
                return
            yield record
    finally:
        ending.cancel()
