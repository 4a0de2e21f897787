"""A real `python worker.py` process for crash tests (killed with SIGKILL, then replaced)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "ab")
    return subprocess.Popen(
        [sys.executable, "worker.py"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
    )


async def wait_until(count: Callable[[], int], at_least: int, timeout: float, what: str) -> int:
    """Poll ``count()`` until it reaches ``at_least``; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = count()
        if seen >= at_least:
            return seen
        await asyncio.sleep(0.05)
    raise AssertionError(f"the worker did not reach {at_least} {what} in {timeout}s")
