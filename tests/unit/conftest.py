"""Unit tests start no server: no PostgreSQL, no gRPC server.

They are the fast, table-driven part of the suite; what needs a database or
a listening switch is an integration test (tests/integration). A unit test
that starts either fails at once, saying so: in this process the embedded
PostgreSQL (pgserver) and grpc's server constructors refuse, and every
process the test starts refuses to import pgserver
(tests/unit/no_servers/sitecustomize.py, first on its PYTHONPATH).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

GUARD_DIR = Path(__file__).resolve().parent / "no_servers"
_spec = importlib.util.spec_from_file_location("no_servers", GUARD_DIR / "sitecustomize.py")
assert _spec is not None and _spec.loader is not None
no_servers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(no_servers)


def _refuse(what: str) -> Any:
    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError(f"a unit test started {what}: move it to tests/integration")

    return refuse


@pytest.fixture(autouse=True)
def _no_servers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(grpc, "server", _refuse("a gRPC server"))
    monkeypatch.setattr(grpc.aio, "server", _refuse("a gRPC server"))
    monkeypatch.setattr(sys, "meta_path", [no_servers.NoPgserver(), *sys.meta_path])
    if "pgserver" in sys.modules:  # imported by an integration test of this session
        from pgserver import postgres_server

        for name in ("ensure_pgdata_inited", "ensure_postgres_running"):
            monkeypatch.setattr(
                postgres_server.PostgresServer, name, _refuse("the embedded PostgreSQL")
            )
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(GUARD_DIR), path])))
    yield
