"""A real `python worker.py` process for tests: killed with SIGKILL and replaced, or stopped."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "ab")
    return subprocess.Popen(
        [sys.executable, "worker.py"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
    )


def stop_worker(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM (a clean stop), SIGKILL if it has not ended within 20 s; its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


async def wait_until(count: Callable[[], int], at_least: int, timeout: float, what: str) -> int:
    """Poll ``count()`` until it reaches ``at_least``; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = count()
        if seen >= at_least:
            return seen
        await asyncio.sleep(0.05)
    raise AssertionError(f"the worker did not reach {at_least} {what} in {timeout}s")


async def kill_and_replace(
    env: dict[str, str],
    log: Path,
    ready: Callable[[], Awaitable[Any]],
    result: Awaitable[T],
    timeout: float,
    at_kill: Callable[[], Any] = lambda: None,
) -> tuple[T, Any]:
    """Start a worker; once ``ready()`` (the moment to kill it) SIGKILL it, note ``at_kill()``,
    start a replacement and await ``result`` (at most ``timeout`` s); then stop the replacement.
    Neither outlives this. Returns the result and what ``at_kill`` noted."""
    first = start_worker(env, log)
    try:
        await ready()
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        noted = at_kill()
        second = start_worker(env, log)
        try:
            return await asyncio.wait_for(result, timeout=timeout), noted
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(20)
    finally:
        if first.poll() is None:
            first.kill()
