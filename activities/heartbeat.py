"""Heartbeat in the background while an activity works (also while it waits for rate slots)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from temporalio import activity


@contextmanager
def heartbeating(details: Callable[[], Any]) -> Iterator[None]:
    """Heartbeat ``details()`` every third of the heartbeat timeout until the block ends."""
    timeout = activity.info().heartbeat_timeout
    interval = max(0.5, timeout.total_seconds() / 3) if timeout else 10.0

    async def beat() -> None:
        while True:
            await asyncio.sleep(interval)
            activity.heartbeat(details())

    task = asyncio.get_running_loop().create_task(beat())
    try:
        yield
    finally:
        task.cancel()
