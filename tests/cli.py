"""Test helpers: run the `medswitch` command as an operator would."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.waiting import LineReader, wait_for

ROOT = Path(__file__).resolve().parent.parent


def medswitch(
    *args: str, env: dict[str, str] | None = None, input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    # the project first, after any guard the test session put on the path (tests/unit)
    full_env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [os.environ.get("PYTHONPATH"), str(ROOT)])
    )
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


class ServeProcess:
    """`medswitch serve` in a process of its own, its stdout (JSON lines) read as it comes."""

    def __init__(self, proc: asyncio.subprocess.Process, output: LineReader) -> None:
        self.proc = proc
        self.output = output

    @classmethod
    async def start(cls, env: dict[str, str], stderr: Path | None = None) -> ServeProcess:
        """Starts it with `env`; its stderr goes to the file `stderr` (None: with stdout)."""
        err: Any = stderr.open("wb") if stderr is not None else asyncio.subprocess.STDOUT
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "switch.cli",
                "serve",
                env=env,
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
            )
        finally:
            if stderr is not None:
                err.close()
        assert proc.stdout is not None
        return cls(proc, LineReader(proc.stdout))

    async def serving(self) -> None:
        """Returns once it says it serves (its port then accepts calls)."""
        await self.output.wait_for('"event": "serving"')

    async def exit_code(self, timeout_s: float = 60) -> int:
        code: int = await wait_for(self.proc.wait(), "medswitch serve to exit", timeout_s)
        return code

    async def terminate(self, timeout_s: float = 60) -> int:
        """SIGTERM, and its exit code once it has drained and exited."""
        self.proc.send_signal(signal.SIGTERM)
        return await self.exit_code(timeout_s)

    async def close(self) -> str:
        """Killed if still running; all of its output."""
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
        return await self.output.finish()
