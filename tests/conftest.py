"""Every test: an asyncio failure nobody handled fails the test that caused it.

asyncio hands what no code can catch to the loop's exception handler: the
exception of a task nobody awaits ("Task exception was never retrieved"), a
task garbage-collected while still pending ("Task was destroyed but it is
pending!"), an exception raised in a callback. The default handler only logs
it, so a test could pass while a background worker lay dead. Here the
session's loop records every such report instead, and the test during which
it came fails: in its call for what the test itself left, or in its teardown
for what its fixtures left (a fixture shared by a module is torn down with
the module's last test). Tasks are often kept alive by reference cycles, so
the garbage collector is run before looking.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Generator
from typing import Any

import pytest
from pytest_asyncio import is_async_test

_reports: list[str] = []


def _record(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    message = str(context.get("message", "unhandled error in the event loop"))
    exc = context.get("exception")
    detail = "".join(
        f"\n  {name}: {context[name]!r}" for name in ("task", "future", "handle") if name in context
    )
    _reports.append(message + (f"\n  exception: {exc!r}" if exc is not None else "") + detail)


@pytest.fixture(scope="session", autouse=True)
async def _asyncio_reports_fail_tests() -> AsyncIterator[None]:
    """Installs the recording handler on the session's loop (every test's loop).

    Set up before, so torn down after, every other session fixture: a task
    still pending then was left behind (closing the loop would cancel it
    quietly). The handler stays to the very end.
    """
    asyncio.get_running_loop().set_exception_handler(_record)
    yield
    gc.collect()
    for task in asyncio.all_tasks() - {asyncio.current_task()}:
        _reports.append(f"Task still pending at the end of the session\n  task: {task!r}")


def _fail_on_reports(item: pytest.Item, phase: str, *, collect: bool) -> None:
    if collect:
        gc.collect()
    if _reports:
        found = list(_reports)
        _reports.clear()
        pytest.fail(
            f"{len(found)} unhandled asyncio error(s) during {phase} of {item.nodeid}:\n"
            + "\n".join(found),
            pytrace=False,
        )


def _uses_the_loop(item: pytest.Item) -> bool:
    return is_async_test(item) or "integration" in item.path.parts


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    yield
    _fail_on_reports(item, "setup", collect=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    yield
    _fail_on_reports(item, "the test", collect=is_async_test(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, None, None]:
    yield
    _fail_on_reports(item, "teardown", collect=_uses_the_loop(item))
