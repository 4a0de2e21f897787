"""What one process learns about a bot token, shared with every other (RATE_LIMIT_BACKEND=postgres).

Discord's route → bucket map and the invalid answers the circuit breaker counts are per token
and per IP, not per process: a second worker would learn every route again (one request at a
time until it has) and would count only its own 401/403/429s towards the ban line. Once a second
while the limiter is in use, one call of ``discord_share`` (migration 0006) pushes the routes this
process learned and the invalid answers it received since the last call (as ages measured on the
monotonic clock before the call, turned into seconds of the database clock there), and returns
every route known for the token and the other processes' answers of the last 10 minutes, which
the breaker adds to its own (``InvalidRequestWindow.set_external``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from contextlib import suppress
from typing import Any

from providers.discord.limiter import DiscordLimiter

__all__ = ["SharedDiscordState"]

log = logging.getLogger("ratesync.discord")

SQL = "SELECT * FROM discord_share($1, $2, $3::text[], $4::text[], $5::float8[], $6)"


class SharedDiscordState:
    def __init__(
        self,
        limiter: DiscordLimiter,
        database_url: str,
        fingerprint: str,
        *,
        every: float = 1.0,
        idle_after: float = 5.0,
    ) -> None:
        from storage.db import sync_url

        self.limiter = limiter
        self.fingerprint = fingerprint
        self.every = every
        self.idle_after = idle_after
        self.client = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.calls = 0
        self._dsn = sync_url(database_url)
        self._conn: Any = None
        self._task: asyncio.Task[None] | None = None
        self._pushed_routes: dict[str, str] = {}
        self._pushed_until = float("-inf")  # local invalid answers up to this time are pushed
        self._used_at = float("-inf")
        self._failing = False
        limiter.shared = self

    def touch(self) -> None:
        """The limiter is in use: share (start the loop if it is not running)."""
        self._used_at = time.monotonic()
        if self._task is None or self._task.done():
            with suppress(RuntimeError):  # no running loop: nothing to share yet
                self._task = asyncio.get_running_loop().create_task(
                    self._run(), name="discord shared state"
                )

    async def _run(self) -> None:
        while time.monotonic() - self._used_at < self.idle_after:
            try:
                await self.share()
                if self._failing:
                    log.warning("discord shared state: the database answers again")
                self._failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self._failing:
                    log.warning(
                        "discord shared state: the database is unreachable (%s); each process "
                        "counts only its own answers meanwhile",
                        type(exc).__name__,
                    )
                self._failing = True
                await self._drop()
            await asyncio.sleep(self.every)

    async def share(self) -> None:
        """One call: push what is new here, take what the others know."""
        import asyncpg

        limiter = self.limiter
        routes = {r: b for r, b in limiter._routes.items() if self._pushed_routes.get(r) != b}
        sent = time.monotonic()
        fresh = [t for t in limiter.breaker.window.local_times() if t > self._pushed_until]
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(self._dsn, timeout=5.0)
        row = await self._conn.fetchrow(
            SQL,
            self.fingerprint,
            self.client,
            list(routes),
            list(routes.values()),
            [max(0.0, sent - t) for t in fresh],
            limiter.breaker.period,
            timeout=5.0,
        )
        received = time.monotonic()
        self.calls += 1
        self._pushed_routes.update(routes)
        if fresh:
            self._pushed_until = fresh[-1]
        for route, bucket in zip(row["routes"], row["buckets"], strict=True):
            self._pushed_routes.setdefault(route, bucket)
            limiter.learn_route(route, bucket)
        # an age measured at the database is at most (received - sent) older here
        limiter.breaker.window.set_external(
            [(received - age, n) for age, n in zip(row["ages"], row["answers"], strict=True)]
        )

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(Exception):
                conn.terminate()

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await task
        if self._conn is not None:
            with suppress(Exception):
                await asyncio.wait_for(self.share(), 2.0)  # the last answers counted
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(Exception):
                await asyncio.wait_for(conn.close(), 2.0)
