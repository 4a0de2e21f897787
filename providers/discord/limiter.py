"""The Discord limiter: one bot token's limits in one worker process (see ``ratelimit``).

Before a request: the breaker (:mod:`providers.discord.breaker`), then a place in the route's
bucket (:mod:`providers.discord.bucket`), waited for in that bucket's
:class:`~providers.ratelimit.WaitLine`; the global limit is taken when the request is sent.
After it: :meth:`DiscordLimiter.on_response` learns from the answer
(:mod:`providers.discord.headers`).

Tenants (Discord servers) on one bot token share its global limit: a request names its tenant
(``tenant=``, the guild id), and the global limit's line serves the tenants waiting in it in
proportion to their weights (``tenant_weights``, DISCORD_TENANT_WEIGHTS; default equal), so a
server with one channel is not queued behind every channel of a server with a thousand.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from providers.discord.breaker import (
    DISCORD_BAN_LINE,
    INVALID_WINDOW_SECONDS,
    InvalidRequestBreaker,
)
from providers.discord.bucket import BucketState
from providers.discord.headers import SCOPES, RateLimitHit, parse_429, parse_rate_headers
from providers.errors import CircuitOpen
from providers.ratelimit import BudgetExhausted, Priority, RateLimiter, WaitLine, Window

__all__ = ["MIN_PAUSE", "DiscordLimiter", "DiscordLimiterStats", "Ticket"]

MIN_PAUSE = 0.1  # a 429 pauses at least this long, whatever retry_after says

Key = tuple[str, str]  # ("bucket:<hash>" or "route:<template>", major parameter)


@dataclass
class Ticket:
    """One request's place in its bucket, from ``acquire`` until its answer is observed."""

    route: str
    major: str
    key: Key
    done: bool = False
    waited: float = 0.0  # seconds from asking to the place in the route's bucket


@dataclass
class DiscordLimiterStats:
    responses: int = 0
    rate_limited: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SCOPES, 0))
    reset_waits: int = 0
    reset_wait_seconds: float = 0.0
    exhausted: int = 0


class DiscordLimiter:
    """All of Discord's limits for one bot token in one worker process."""

    name = "discord"

    def __init__(
        self,
        *,
        global_per_second: int = 50,
        invalid_budget: int = DISCORD_BAN_LINE // 2,
        invalid_window: float = INVALID_WINDOW_SECONDS,
        max_wait: float | None = 30.0,
        ban_pause: float = 3600.0,
        reset_margin: float = 0.01,
        spread: bool = True,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        tenant_weights: Mapping[str, float] | None = None,
        global_limiter: Any = None,
    ) -> None:
        """``global_limiter``: the bot's global budget when it is built elsewhere (shared by
        every process through Postgres); by default one in this process."""
        self.global_limiter = global_limiter or RateLimiter(
            "discord global", [Window(global_per_second, 1.0)],
            max_wait=max_wait, spread=spread, clock=clock, weights=tenant_weights,
        )  # fmt: skip
        self.max_wait = max_wait
        self.ban_pause = ban_pause
        self.reset_margin = reset_margin
        self.breaker = InvalidRequestBreaker(
            invalid_budget, invalid_window, clock=clock, wall_clock=wall_clock
        )
        self.stats_ = DiscordLimiterStats()
        self._clock = clock
        self._wall = wall_clock
        self._routes: dict[str, str] = {}  # route template → bucket hash
        self._states: dict[Key, BucketState] = {}
        self._lines: dict[Key, WaitLine] = {}  # the waiters of each bucket state
        self.shared: Any = None  # providers.discord.shared.SharedDiscordState, when shared

    # -- keys and state -------------------------------------------------------------------

    def key_of(self, route: str, major: str) -> Key:
        bucket = self._routes.get(route)
        return (f"bucket:{bucket}", major) if bucket else (f"route:{route}", major)

    def state(self, route: str, major: str) -> BucketState:
        key = self.key_of(route, major)
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = BucketState(self.reset_margin)
        return state

    def clock(self) -> float:
        return self._clock()

    def bucket_of(self, route: str) -> str | None:
        return self._routes.get(route)

    def learn_route(self, route: str, bucket: str) -> None:
        """Another process learned ``route``'s bucket: waiters of the route move to its line."""
        if self._routes.get(route) != bucket and route not in self._routes:
            self._routes[route] = bucket
            for key, line in list(self._lines.items()):
                if key[0] == f"route:{route}":
                    line.wake_all()

    def _line(self, key: Key) -> WaitLine:
        line = self._lines.get(key)
        if line is None:
            line = self._lines[key] = WaitLine()
        return line

    def _notify(self, key: Key, *, everyone: bool = False) -> None:
        """Wake the head of the bucket's line (everyone after a pause: long waits give up)."""
        line = self._lines.get(key)
        if line is not None:
            if everyone:
                line.wake_all()
            else:
                line.wake_head()

    # -- breaker --------------------------------------------------------------------------

    def breaker_open_until(self) -> float | None:
        """Monotonic time the breaker closes, or None while it is closed."""
        return self.breaker.open_until()

    def circuit_error(self, entity: str | None = None) -> CircuitOpen:
        """The error for an open breaker (also used right after a Cloudflare block)."""
        return self.breaker.error(entity)

    def check_breaker(self, entity: str | None = None) -> None:
        """Raise CircuitOpen while the breaker is open."""
        self.breaker.check(entity)

    # -- acquiring ------------------------------------------------------------------------

    async def acquire(
        self,
        route: str,
        major: str = "",
        *,
        priority: int = Priority.BULK,
        max_wait: float | None = None,
        entity: str | None = None,
        tenant: str | None = None,
    ) -> Ticket:
        """Wait for a place in the route's bucket (highest priority first).

        Raises CircuitOpen while the breaker is open and BudgetExhausted when the bucket frees
        up later than ``max_wait`` (default: the limiter's). The global limit is taken
        separately, when the request is sent (by ``tenant``: ``for_tenant`` around the send).
        """
        self.breaker.check(entity)
        if self.shared is not None:
            self.shared.touch()
        limit_wait = self.max_wait if max_wait is None else max_wait
        began = self._clock()
        reset_wait = False

        def ready_at(now: float) -> float | None:
            nonlocal reset_wait
            state = self.state(route, major)
            ready = state.ready_at(now)
            if ready is not None and ready > now:
                reset_wait = reset_wait or state.waiting_on_reset(now)
            return ready

        waited = 0.0

        def admit(now: float) -> None:
            nonlocal waited
            waited = now - began
            self.breaker.check(entity)
            self.state(route, major).start(now)
            if reset_wait:
                self.stats_.reset_waits += 1
                self.stats_.reset_wait_seconds += now - began

        try:
            await self._line(self.key_of(route, major)).wait_turn(
                priority, ready_at, admit,
                clock=self._clock, max_wait=limit_wait, budget=f"discord {route} [{major}]",
                line=lambda: self._line(self.key_of(route, major)),  # its bucket was learned
                tenant=tenant,
            )  # fmt: skip
        except BudgetExhausted:
            self.stats_.exhausted += 1
            raise
        return Ticket(route, major, self.key_of(route, major), waited=waited)

    def release(self, ticket: Ticket, *, sent: bool) -> None:
        """The request ended without an answer: never sent (place given back) or maybe sent."""
        if ticket.done:
            return
        ticket.done = True
        state = self._states.get(ticket.key)
        if state is not None:
            if sent:
                state.lost(self._clock())
            else:
                state.cancel()
        self._notify(ticket.key)

    @asynccontextmanager
    async def slot(
        self,
        route: str,
        major: str = "",
        *,
        priority: int = Priority.BULK,
        max_wait: float | None = None,
        entity: str | None = None,
        tenant: str | None = None,
    ) -> AsyncIterator[Ticket]:
        """``acquire`` … ``release``: the body sends the request and calls ``on_response``.

        A BudgetExhausted from the body (the global limit) means the request was not sent and
        its place is given back; any other exception counts it as possibly sent.
        """
        ticket = await self.acquire(
            route, major, priority=priority, max_wait=max_wait, entity=entity, tenant=tenant
        )
        try:
            yield ticket
        except BudgetExhausted:
            self.release(ticket, sent=False)
            raise
        finally:
            self.release(ticket, sent=True)

    # -- answers --------------------------------------------------------------------------

    def on_response(
        self, ticket: Ticket, status: int, headers: Mapping[str, str], body: bytes = b""
    ) -> RateLimitHit | None:
        """Learn from an answer: bucket headers, 429 pauses, the invalid-request count.

        Returns the understood 429 (the caller raises RateLimited, or CircuitOpen for a
        Cloudflare block), else None.
        """
        now = self._clock()
        stats = self.stats_
        stats.responses += 1
        state = self._states.setdefault(ticket.key, BucketState(self.reset_margin))
        if not ticket.done:
            ticket.done = True
            state.finish()
        info = parse_rate_headers(headers, self._wall())
        target_key = ticket.key
        target = state
        if info is not None:
            if info.bucket:
                self._routes[ticket.route] = info.bucket
                target_key = self.key_of(ticket.route, ticket.major)
                target = self.state(ticket.route, ticket.major)
            target.update(now, info)
        elif 200 <= status < 300:
            target.mark_unlimited()  # a route without bucket headers: global limit only
        hit: RateLimitHit | None = None
        if status == 429:
            hit = parse_429(headers, body)
            stats.rate_limited[hit.scope] += 1
            pause = max(MIN_PAUSE, hit.retry_after)
            if hit.scope == "cloudflare":
                pause = max(self.ban_pause, hit.retry_after)
                self.breaker.ban(now + pause)
                self.global_limiter.pause(pause)
            elif hit.scope == "global":
                self.global_limiter.pause(pause)
            else:
                target.pause(now + pause)
                if target is not state:
                    state.pause(now + pause)
            hit = RateLimitHit(hit.scope, pause, hit.message)
        if status in (401, 403) or (hit is not None and hit.counts_as_invalid):
            self.breaker.record(now)
        paused = hit is not None
        self._notify(ticket.key, everyone=paused)
        if target_key != ticket.key:
            self._notify(target_key, everyone=paused)
            if state.in_flight == 0 and not self._lines.get(ticket.key):
                del self._states[ticket.key]  # the discovery state is done with
                self._lines.pop(ticket.key, None)
        return hit

    # -- reporting ------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        now = self._clock()
        s = self.stats_
        limited = {k: v for k, v in self._states.items() if v.limited}
        breaker_open = self.breaker.open_until() is not None
        return {
            "api_calls": self.global_limiter.stats.acquired,
            "responses": s.responses,
            "rate_limited": sum(s.rate_limited.values()),
            "rate_limited_by_scope": dict(s.rate_limited),
            "reset_waits": s.reset_waits,
            "reset_wait_seconds": round(s.reset_wait_seconds, 3),
            "global_wait_seconds": round(self.global_limiter.stats.waited_seconds, 3),
            "exhausted": s.exhausted + self.global_limiter.stats.exhausted,
            "invalid_in_window": self.breaker.count(now),
            "invalid_budget": self.breaker.budget,
            "breaker_open": breaker_open,
            "breaker_trips": self.breaker.trips,
            "breaker_refusals": self.breaker.refusals,
            "routes_known": len(self._routes),
            "buckets_known": len({key[0] for key in limited}),
            "bucket_states": len(limited),
        }
