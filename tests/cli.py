"""Test helper: run the `medswitch` command as an operator would."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent


def medswitch(
    *args: str, env: dict[str, str] | None = None, input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "switch.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        input=input,
        timeout=timeout,
        cwd=ROOT,
    )


def serve_process(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """`medswitch serve` in the background with `env`; stdout and stderr to `log_path`."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "switch.cli", "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


async def wait_serving(
    proc: subprocess.Popen[bytes],
    port: int,
    creds: grpc.ChannelCredentials,
    timeout_s: float = 60,
) -> None:
    """Until `medswitch serve` (`proc`) accepts a mutual-TLS connection on `port`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "medswitch serve exited"
        try:
            async with grpc.aio.secure_channel(f"127.0.0.1:{port}", creds) as ch:
                await asyncio.wait_for(ch.channel_ready(), 2)
                return
        except (TimeoutError, grpc.aio.AioRpcError):
            await asyncio.sleep(0.2)
    raise TimeoutError("medswitch serve did not come up")
