"""Discord's rate limits, driven by the headers Discord sends (UPSTREAM §2.4, DESIGN §5).

Three layers, checked in this order before every request:

1. **Circuit breaker.** Discord bans an IP (via Cloudflare) after 10,000 invalid requests — 401,
   403 and 429 except ``scope: shared`` — in 10 minutes. Every such answer is counted in a
   process-wide sliding window; at ``invalid_budget`` (default half the ban line) every further
   request raises :class:`~providers.errors.CircuitOpen` without being sent, until the oldest
   counted answer leaves the window. A Cloudflare block itself (a 429 without Discord's headers)
   opens the breaker for ``ban_pause`` seconds.
2. **Route buckets, learned from headers.** A request is keyed by its route template and its
   major parameter (channel, guild or webhook id). The first answer maps the route to its
   ``X-RateLimit-Bucket`` hash; state is kept per (bucket hash, major): limit, remaining
   (decremented locally for every request started) and the local monotonic reset time
   (received time + ``X-RateLimit-Reset-After``). With nothing remaining a request waits for the
   reset, then ``limit`` is assumed to be available again. Until a (route, major) has answered
   with headers only one request may be in flight for it, so a new bucket costs at most one 429.
   A route that answers without rate-limit headers is limited by the global limit only.
3. **Global limit.** A strict client-side :class:`~providers.ratelimit.RateLimiter` of
   ``global_per_second`` requests per second, taken by :class:`ProviderHTTP.send` for every
   request; a 429 with ``scope: global`` pauses it, i.e. pauses all Discord requests.

Waits that would exceed ``max_wait`` raise :class:`~providers.ratelimit.BudgetExhausted` so that
a workflow can sleep on a durable timer instead. Waiters are served highest priority first,
both in a bucket and in the global limiter.

The bookkeeping (:class:`BucketState`, :class:`InvalidRequestWindow`, the header parsers) is
pure and takes explicit times, so it is unit-testable without sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from providers.errors import CircuitOpen
from providers.http import MAX_RETRY_AFTER, parse_retry_after
from providers.ratelimit import BudgetExhausted, Priority, RateLimiter, Window

DISCORD_BAN_LINE = 10_000  # invalid requests per 10 minutes per IP before a Cloudflare ban
INVALID_WINDOW_SECONDS = 600.0
SCOPES = ("user", "global", "shared", "cloudflare")
MIN_PAUSE = 0.1  # a 429 pauses at least this long, whatever retry_after says


# -- header parsing -------------------------------------------------------------------------


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number == number and abs(number) != float("inf") else None


@dataclass(frozen=True)
class RateHeaders:
    """What a response's ``X-RateLimit-*`` headers say about its bucket."""

    limit: int
    remaining: int
    reset_after: float | None  # seconds from receipt; None when neither reset header is usable
    bucket: str | None


def parse_rate_headers(headers: Mapping[str, str], wall_now: float) -> RateHeaders | None:
    """Parse the bucket headers; None when the response carries no (usable) limit/remaining.

    ``X-RateLimit-Reset-After`` is preferred; the epoch ``X-RateLimit-Reset`` is used against
    ``wall_now`` only when Reset-After is missing (the local clock may be off).
    """
    h = _lower(headers)
    limit = _float(h.get("x-ratelimit-limit"))
    remaining = _float(h.get("x-ratelimit-remaining"))
    if limit is None or remaining is None or limit < 1:
        return None
    reset_after = _float(h.get("x-ratelimit-reset-after"))
    if reset_after is None:
        reset = _float(h.get("x-ratelimit-reset"))
        if reset is not None:
            reset_after = reset - wall_now
    if reset_after is not None:
        reset_after = min(MAX_RETRY_AFTER, max(0.0, reset_after))
    bucket = h.get("x-ratelimit-bucket") or None
    return RateHeaders(int(limit), max(0, int(remaining)), reset_after, bucket)


@dataclass(frozen=True)
class RateLimitHit:
    """A 429 answer, understood."""

    scope: str  # "user", "global", "shared" or "cloudflare"
    retry_after: float  # seconds; body retry_after, else Retry-After, else 1 s
    message: str = ""

    @property
    def counts_as_invalid(self) -> bool:
        return self.scope != "shared"


def parse_429(headers: Mapping[str, str], body: bytes) -> RateLimitHit:
    """Classify a 429 by ``X-RateLimit-Scope``/``X-RateLimit-Global``/body ``global``.

    A 429 with neither a Discord JSON body nor any ``X-RateLimit-*`` header comes from Cloudflare
    (e.g. ``error code: 1015``): the IP is blocked.
    """
    h = _lower(headers)
    data: Any = None
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    payload = data if isinstance(data, dict) else {}
    discord_headers = any(k.startswith("x-ratelimit-") for k in h)
    body_retry = payload.get("retry_after")
    retry_after: float | None = None
    if isinstance(body_retry, int | float) and not isinstance(body_retry, bool):
        retry_after = _float(str(body_retry))
    if retry_after is None:
        retry_after = parse_retry_after(h.get("retry-after"))
    message = str(payload.get("message", ""))[:200]
    if not discord_headers and "retry_after" not in payload:
        return RateLimitHit("cloudflare", retry_after or 0.0, message)
    retry = min(MAX_RETRY_AFTER, max(0.0, retry_after if retry_after is not None else 1.0))
    scope = (h.get("x-ratelimit-scope") or "").strip().lower()
    if scope not in ("user", "global", "shared"):
        is_global = h.get("x-ratelimit-global", "").strip().lower() == "true"
        scope = "global" if is_global or payload.get("global") is True else "user"
    elif payload.get("global") is True:
        scope = "global"
    return RateLimitHit(scope, retry, message)


# -- pure bookkeeping -----------------------------------------------------------------------


class BucketState:
    """One (bucket hash, major parameter): what the server said, minus what we started since.

    States:
    - unknown (``known`` False): no headers seen yet; one request at a time (discovery);
    - unlimited (``known`` and ``limit`` None): the route answers without bucket headers;
    - limited: ``remaining`` requests may start before ``reset_at`` (None: reset not known yet,
      i.e. the window rolled over locally and no answer from the new one arrived).
    """

    SAME_WINDOW = 0.25  # reset estimates closer than this describe the same server window

    def __init__(self, reset_margin: float = 0.0) -> None:
        self.known = False
        self.limit: int | None = None
        self.remaining = 0
        self.reset_at: float | None = None
        self.in_flight = 0
        self.paused_until = 0.0
        self.reset_margin = reset_margin
        # Answer times of the latest requests and the longest Reset-After seen (the window's
        # length): a request answered at ``e`` arrived before ``e``, so it has left any window
        # that starts after ``e + period``. Lets a slot free up one period after its own answer
        # instead of waiting for the whole bucket to reset.
        self.period = 0.0
        self.answers: deque[float] = deque()

    def __repr__(self) -> str:
        return (
            f"BucketState(known={self.known}, limit={self.limit}, remaining={self.remaining}, "
            f"reset_at={self.reset_at}, in_flight={self.in_flight}, paused={self.paused_until})"
        )

    @property
    def limited(self) -> bool:
        return self.known and self.limit is not None

    def _roll(self, now: float) -> None:
        if not self.limited:
            return
        assert self.limit is not None
        if self.reset_at is not None and now >= self.reset_at:
            # A new server window: requests still in flight may land in it.
            self.remaining = max(0, self.limit - self.in_flight)
            self.reset_at = None
        elif self.reset_at is None and self.remaining <= 0 and self.in_flight == 0:
            # Nothing left, no reset known and no answer coming: headers went missing.
            self.remaining = self.limit

    def ready_at(self, now: float) -> float | None:
        """When one more request may start: ``now``, a later time, or None until an answer."""
        if self.paused_until > now:
            return self.paused_until
        if not self.known:
            return now if self.in_flight == 0 else None
        if self.limit is None:
            return now
        self._roll(now)
        if self.remaining > 0:
            return now
        own = self._own_slot_free_at()
        if self.reset_at is not None:
            return self.reset_at if own is None else max(now, min(self.reset_at, own))
        return own  # None: all of the new window is in flight, wait for an answer

    def _own_slot_free_at(self) -> float | None:
        """When fewer than ``limit`` requests can still be inside the server's window.

        Whatever arrives at ``t`` shares the window with requests in flight and requests
        answered after ``t - period``; so ``t`` must be a period after the answer that is
        ``limit - in_flight`` back.
        """
        if self.limit is None or self.period <= 0:
            return None
        back = self.limit - self.in_flight
        if back <= 0 or len(self.answers) < back:
            return None
        return self.answers[-back] + self.period + self.reset_margin

    def waiting_on_reset(self, now: float) -> bool:
        """True when a request would wait because nothing remains until the reset."""
        return (
            self.limited
            and self.paused_until <= now
            and self.remaining <= 0
            and self.reset_at is not None
            and self.reset_at > now
        )

    def start(self) -> None:
        self.in_flight += 1
        if self.limited:
            self.remaining = max(0, self.remaining - 1)

    def cancel(self) -> None:
        """A started request was never sent: give its place back.

        Whichever window it was counted in (the current one, or a new one that subtracted it
        as in flight), it was subtracted once and never arrives.
        """
        self.in_flight = max(0, self.in_flight - 1)
        if self.limited:
            assert self.limit is not None
            self.remaining = min(self.limit, self.remaining + 1)

    def finish(self) -> None:
        """A started request got an answer (or may have reached the server)."""
        self.in_flight = max(0, self.in_flight - 1)

    def lost(self, now: float) -> None:
        """A started request got no answer (reset, timeout) but may have reached the server:
        it counts as answered now, so its place frees one period from now, and a whole-bucket
        reset cannot come before that either."""
        self.finish()
        if not self.limited:
            return
        self.answers.append(now)
        assert self.limit is not None
        while len(self.answers) > self.limit:
            self.answers.popleft()
        if self.period > 0:
            held = now + self.period + self.reset_margin
            self.reset_at = held if self.reset_at is None else max(self.reset_at, held)

    def mark_unlimited(self) -> None:
        if not self.known:
            self.known = True
            self.limit = None

    def pause(self, until: float) -> None:
        self.paused_until = max(self.paused_until, until)

    def update(self, now: float, info: RateHeaders) -> None:
        """Merge an answer's headers, received at ``now`` (call after ``finish``).

        The server's ``remaining`` does not count requests still in flight, so they are
        subtracted. Answers can arrive out of order: within one window the lower remaining and
        the later reset win; an answer describing an older window is ignored, a newer window is
        adopted.
        """
        new_remaining = max(0, info.remaining - self.in_flight)
        new_reset: float | None = None
        if info.reset_after is not None:
            new_reset = now + info.reset_after + self.reset_margin
        elif info.remaining == 0:
            new_reset = now + 1.0  # no reset given: back off a second
        if not self.limited:
            self.remaining = new_remaining
            self.reset_at = new_reset
        elif new_reset is None:
            self.remaining = min(self.remaining, new_remaining)
        elif self.reset_at is None:
            self.remaining = min(self.remaining, new_remaining)
            self.reset_at = new_reset
        elif new_reset > self.reset_at + self.SAME_WINDOW:
            self.remaining = new_remaining
            self.reset_at = new_reset
        elif new_reset >= self.reset_at - self.SAME_WINDOW:
            self.remaining = min(self.remaining, new_remaining)
            self.reset_at = max(self.reset_at, new_reset)
        # else: an answer from an older window, overtaken by a newer one: ignore it
        self.known = True
        if self.limit != info.limit:
            self.answers.clear()
        self.limit = info.limit
        self.remaining = min(self.remaining, info.limit)
        if info.reset_after is not None:
            self.period = max(self.period, info.reset_after)
        self.answers.append(now)
        while len(self.answers) > info.limit:
            self.answers.popleft()


class InvalidRequestWindow:
    """Process-wide count of invalid answers (401/403/429 except shared) in a sliding window."""

    def __init__(self, budget: int, period: float = INVALID_WINDOW_SECONDS) -> None:
        if budget < 1:
            raise ValueError("the invalid-request budget must be at least 1")
        self.budget = budget
        self.period = period
        self._times: deque[float] = deque()

    def _prune(self, now: float) -> None:
        cutoff = now - self.period
        while self._times and self._times[0] <= cutoff:
            self._times.popleft()

    def record(self, now: float) -> None:
        self._times.append(now)
        self._prune(now)

    def count(self, now: float) -> int:
        self._prune(now)
        return len(self._times)

    def open_until(self, now: float) -> float | None:
        """None while closed; else when enough counted answers will have left the window."""
        self._prune(now)
        excess = len(self._times) - self.budget
        if excess < 0:
            return None
        return self._times[excess] + self.period


# -- the limiter ----------------------------------------------------------------------------


@dataclass
class Ticket:
    """One request's place in its bucket, from ``acquire`` until its answer is observed."""

    route: str
    major: str
    key: tuple[str, str]
    done: bool = False


@dataclass
class DiscordLimiterStats:
    responses: int = 0
    rate_limited: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SCOPES, 0))
    reset_waits: int = 0
    reset_wait_seconds: float = 0.0
    exhausted: int = 0
    breaker_trips: int = 0
    breaker_refusals: int = 0


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(math.ceil(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class DiscordLimiter:
    """All of Discord's limits for one bot token in one worker process (module docstring)."""

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
    ) -> None:
        self.global_limiter = RateLimiter(
            "discord global", [Window(global_per_second, 1.0)],
            max_wait=max_wait, spread=spread, clock=clock,
        )  # fmt: skip
        self.max_wait = max_wait
        self.ban_pause = ban_pause
        self.reset_margin = reset_margin
        self.breaker = InvalidRequestWindow(invalid_budget, invalid_window)
        self.stats_ = DiscordLimiterStats()
        self._clock = clock
        self._wall = wall_clock
        self._routes: dict[str, str] = {}  # route template → bucket hash
        self._states: dict[tuple[str, str], BucketState] = {}
        self._banned_until = 0.0
        self._was_open = False
        # Waiters per state key: a heap of (-priority, seq) and one event per waiter.
        self._queues: dict[tuple[str, str], list[tuple[int, int]]] = {}
        self._events: dict[tuple[int, int], asyncio.Event] = {}
        self._seq = itertools.count()

    # -- keys and state -------------------------------------------------------------------

    def key_of(self, route: str, major: str) -> tuple[str, str]:
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

    # -- breaker --------------------------------------------------------------------------

    def breaker_open_until(self) -> float | None:
        """Monotonic time the breaker closes, or None while it is closed."""
        now = self._clock()
        until = self.breaker.open_until(now)
        if self._banned_until > now:
            until = max(until or 0.0, self._banned_until)
        if until is not None and not self._was_open:
            self.stats_.breaker_trips += 1
        self._was_open = until is not None
        return until

    def circuit_error(self, entity: str | None = None) -> CircuitOpen:
        """The error for an open breaker (also used right after a Cloudflare block)."""
        now = self._clock()
        until = self.breaker_open_until() or now
        resume_at = self._wall() + (until - now)
        if self._banned_until > now:
            why = (
                "Cloudflare blocked this IP (429 without Discord rate-limit headers), "
                "usually after too many invalid requests"
            )
        else:
            count = self.breaker.count(now)
            minutes = self.breaker.period / 60
            why = (
                f"{count} invalid requests (401/403/429) in the last {minutes:g} min; "
                f"Discord bans at {DISCORD_BAN_LINE:,}"
            )
        return CircuitOpen(
            f"discord: circuit breaker open: {why} — check the bot token and channel "
            f"permissions, then retry after {_iso(resume_at)}",
            resume_at=resume_at,
            entity=entity,
        )

    def check_breaker(self, entity: str | None = None) -> None:
        """Raise CircuitOpen while the breaker is open."""
        if self.breaker_open_until() is not None:
            self.stats_.breaker_refusals += 1
            raise self.circuit_error(entity)

    # -- acquiring ------------------------------------------------------------------------

    def _enqueue(self, key: tuple[str, str], entry: tuple[int, int]) -> None:
        heapq.heappush(self._queues.setdefault(key, []), entry)

    def _dequeue(self, key: tuple[str, str], entry: tuple[int, int]) -> None:
        queue = self._queues.get(key)
        if queue is None or entry not in queue:
            return
        queue.remove(entry)
        if queue:
            heapq.heapify(queue)
        else:
            del self._queues[key]

    def _notify(self, key: tuple[str, str]) -> None:
        for entry in self._queues.get(key, ()):
            self._events[entry].set()

    async def acquire(
        self,
        route: str,
        major: str = "",
        *,
        priority: int = Priority.BULK,
        max_wait: float | None = None,
        entity: str | None = None,
    ) -> Ticket:
        """Wait for a place in the route's bucket (highest priority first).

        Raises CircuitOpen while the breaker is open and BudgetExhausted when the bucket frees
        up later than ``max_wait`` (default: the limiter's). The global limit is taken
        separately, when the request is sent.
        """
        self.check_breaker(entity)
        limit_wait = self.max_wait if max_wait is None else max_wait
        entry = (-int(priority), next(self._seq))
        event = self._events[entry] = asyncio.Event()
        key = self.key_of(route, major)
        self._enqueue(key, entry)
        began = self._clock()
        reset_wait = False
        try:
            while True:
                event.clear()
                current = self.key_of(route, major)
                if current != key:  # the route's bucket was learned meanwhile
                    self._dequeue(key, entry)
                    self._notify(key)
                    key = current
                    self._enqueue(key, entry)
                state = self.state(route, major)
                now = self._clock()
                ready = state.ready_at(now)
                if ready is not None and ready > now:
                    if limit_wait is not None and ready - now > limit_wait:
                        self.stats_.exhausted += 1
                        raise BudgetExhausted(f"discord {route} [{major}]", ready - now)
                    reset_wait = reset_wait or state.waiting_on_reset(now)
                head = self._queues[key][0] == entry
                if head and ready is not None and ready <= now:
                    self.check_breaker(entity)
                    self._dequeue(key, entry)
                    del self._events[entry]
                    state.start()
                    if reset_wait:
                        self.stats_.reset_waits += 1
                        self.stats_.reset_wait_seconds += now - began
                    self._notify(key)
                    return Ticket(route, major, key)
                timeout = ready - now if head and ready is not None else None
                try:
                    await asyncio.wait_for(event.wait(), timeout)
                except TimeoutError:
                    pass
        except BaseException:
            if self._events.pop(entry, None) is not None:
                self._dequeue(key, entry)
                self._notify(key)
            raise

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
    ) -> AsyncIterator[Ticket]:
        """``acquire`` … ``release``: the body sends the request and calls ``on_response``.

        A BudgetExhausted from the body (the global limit) means the request was not sent and
        its place is given back; any other exception counts it as possibly sent.
        """
        ticket = await self.acquire(
            route, major, priority=priority, max_wait=max_wait, entity=entity
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
                self._banned_until = max(self._banned_until, now + pause)
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
        self._notify(ticket.key)
        if target_key != ticket.key:
            self._notify(target_key)
            if state.in_flight == 0 and ticket.key not in self._queues:
                del self._states[ticket.key]  # the discovery state is done with
        return hit

    # -- reporting ------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        now = self._clock()
        s = self.stats_
        limited = {k: v for k, v in self._states.items() if v.limited}
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
            "breaker_open": self.breaker_open_until() is not None,
            "breaker_trips": s.breaker_trips,
            "breaker_refusals": s.breaker_refusals,
            "routes_known": len(self._routes),
            "buckets_known": len({key[0] for key in limited}),
            "bucket_states": len(limited),
        }
