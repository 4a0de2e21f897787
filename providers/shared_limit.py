"""One rate budget shared by every worker process, held in Postgres (RATE_LIMIT_BACKEND=postgres).

The guarantee is the local limiter's (``providers.ratelimit``): a request holds its place in a
window from its start until one period after its answer, so no window of the upstream's strict
limit can overflow whatever the jitter. What changes is who owns the places. A bucket's places
live in Postgres (migration 0005); a process *leases* a standing number of them with one call of
``rate_limit_sync`` and reuses them locally under that rule, exactly as the local limiter reuses
its own. Leasing ahead of use would cost throughput (a place counts from its grant), recycling a
standing lease does not: a place is held only from one request's start to one period after its
answer, whichever process holds it.

The process calls ``rate_limit_sync`` (one round trip, ``SyncCall``) when:
- it renews its leases (every ``renew_every``, 0.8 s; a lease lasts ``lease_seconds``, 2.5 s;
  a SIGKILLed process's places cool down and come back ``lease_seconds`` + one period + 1 s
  after its last renewal);
- its waiters need more places than it holds and the database said more are there for it;
- it gives places back: free ones at once, used ones as cooling ones (free at answer + period,
  computed from the database's clock: ``age`` is measured on this process's monotonic clock,
  before the call was sent, so the database's free time is never early);
- a 429 or a pause is to be shared, or it stops (``aclose`` gives everything back).

Every time that matters is the database server's ``clock_timestamp()``; locally only durations
on the monotonic clock are used, so a worker with a skewed wall clock cannot overfill a window.
``pg_notify('ratesync_limit', …)`` tells the other processes at once of a pause (they pause
locally), of manual demand (they sync and give back their share of the reserve) and of freed
places (those waiting sync). Fair shares are computed in the database from every live process's
demand: manual demand first and whole, the rest by lane weight (backfill 1, bulk 2,
incremental 4, urgent 8), each process never more than it asks for.

If the database cannot be reached, the process keeps using the places it holds until its lease
would have expired, then waits (and a waiter beyond ``max_wait`` gets ``BudgetExhausted``, so a
workflow sleeps on a durable timer); nothing is ever sent outside a lease.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Protocol

from observability import metrics
from providers.errors import BudgetExhausted
from providers.ratelimit import (
    LimiterStats,
    Priority,
    RateLimiter,
    WaitLine,
    Window,
    WindowLog,
    _Slot,
    holding,
    observe_wait,
    wait_event,
)

__all__ = ["LANES", "SharedRateLimiter", "SyncCall", "SyncResult", "budget", "fingerprint"]

log = logging.getLogger("ratesync.limiter")

CHANNEL = "ratesync_limit"
LANES = (Priority.BACKFILL, Priority.BULK, Priority.INCREMENTAL, Priority.URGENT, Priority.MANUAL)
SLOW_PERIOD = 5.0  # windows at least this long report every used place at each call
IDLE_RELEASE = 2.0  # nothing waiting or in flight this long: give every place back
PEAK_HOLD = 2.0  # a window's demand is held at its peak this long
RECHECK = 0.01  # a waiter without a known time looks again this soon (below any sane max wait)


def fingerprint(provider: str, *parts: str) -> str:
    """A stable name for one credential's budget that does not reveal it (16 hex digits)."""
    digest = hashlib.sha256("\0".join(("ratesync-budget", provider, *parts)).encode())
    return digest.hexdigest()[:16]


def bucket_key(provider: str, name: str, credential: Sequence[str]) -> str:
    """The ``rate_limit_buckets`` row of one credential's budget ``name``."""
    return f"{provider}:{name}:{fingerprint(provider, *credential)}"


def _tightness(window: Window) -> float:
    return window.period / window.limit


def lane_of(priority: int) -> int:
    """Index in LANES of the lane a priority belongs to (above manual counts as manual)."""
    return max(0, min(len(LANES) - 1, int(priority) // 10))


@dataclass
class SyncCall:
    """One call of ``rate_limit_sync``: per window what the process wants, gives and cools."""

    want: list[int]
    give: list[int]
    cool: list[int]
    cool_age: list[float]
    lane: int
    waiting: list[int]
    requests: int
    pause: float = 0.0
    release: bool = False


@dataclass
class SyncResult:
    db_now: float
    places: list[int]
    targets: list[int]
    next_free: list[float | None]
    paused_until: float
    manual_until: float


class Store(Protocol):
    """Where the places live: Postgres (``PostgresStore``) or, in unit tests, a fake."""

    timeout: float  # seconds one call may take

    async def sync(self, call: SyncCall) -> SyncResult: ...

    async def aclose(self) -> None: ...


@dataclass
class SharedStats(LimiterStats):
    statements: int = 0
    statement_seconds: float = 0.0
    failures: int = 0
    notifications: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


class PostgresStore:
    """One asyncpg connection per bucket and process, opened on first use, listening for
    ``ratesync_limit`` notifications."""

    SQL = (
        "SELECT * FROM rate_limit_sync($1, $2, $3, $4::integer[], $5::float8[], $6, $7, $8, "
        "$9, $10, $11::integer[], $12::integer[], $13::integer[], $14::integer[], "
        "$15::float8[], $16, $17, $18, $19, $20)"
    )

    def __init__(
        self,
        database_url: str,
        *,
        bucket: str,
        provider: str,
        fp: str,
        windows: Sequence[Window],
        lease_seconds: float,
        manual_hold: float,
        reserve: int,
        on_notify: Callable[[str, list[str]], None] | None = None,
        timeout: float = 5.0,
    ) -> None:
        from storage.db import sync_url

        self._dsn = sync_url(database_url)
        self.bucket = bucket
        self.provider = provider
        self.fp = fp
        self.limits = [w.limit for w in windows]
        self.periods = [float(w.period) for w in windows]
        self.lease_seconds = lease_seconds
        self.manual_hold = manual_hold
        self.reserve = reserve
        self.on_notify = on_notify
        self.timeout = timeout
        self.client = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._conn: Any = None

    async def _connection(self) -> Any:
        import asyncpg

        if self._conn is None or self._conn.is_closed():
            conn = await asyncpg.connect(self._dsn, timeout=self.timeout)
            if self.on_notify is not None:
                await conn.add_listener(CHANNEL, self._notified)
            self._conn = conn
        return self._conn

    def _notified(self, conn: Any, pid: int, _channel: str, payload: str) -> None:
        if pid == conn.get_server_pid():
            # our own call's news: acting on it would answer ourselves (a manual waiter's
            # "manual" made it sync again at once, and again: a hundred calls in half a second
            # holding the bucket's lock while the places it waited for were being given back)
            return
        bucket, _, rest = payload.partition(" ")
        if bucket == self.bucket and self.on_notify is not None:
            kind, *args = rest.split(" ")
            self.on_notify(kind, args)

    async def sync(self, call: SyncCall) -> SyncResult:
        try:
            conn = await self._connection()
            row = await conn.fetchrow(
                self.SQL,
                self.bucket, self.provider, self.fp, self.limits, self.periods,
                self.client, socket.gethostname()[:200], os.getpid(),
                self.lease_seconds, LANES[call.lane] if call.lane >= 0 else -1, call.waiting,
                call.want, call.give, call.cool, call.cool_age,
                call.requests, call.pause, self.manual_hold, self.reserve, call.release,
                timeout=self.timeout,
            )  # fmt: skip
        except BaseException:
            conn, self._conn = self._conn, None
            if conn is not None:
                with suppress(Exception):
                    conn.terminate()
            raise
        return SyncResult(
            db_now=row["db_now"],
            places=list(row["places"]),
            targets=list(row["targets"]),
            next_free=list(row["next_free"]),
            paused_until=row["paused_until"],
            manual_until=row["manual_until"],
        )

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(Exception):
                await asyncio.wait_for(conn.close(), 2.0)


class SharedRateLimiter:
    """The ``Limiter`` protocol over a budget shared through Postgres (see the module doc)."""

    def __init__(
        self,
        name: str,
        windows: Sequence[Window],
        *,
        store: Store | Callable[[SharedRateLimiter], Store],
        max_wait: float | None = 30.0,
        manual_reserve: int = 0,
        margin: float = 0.005,
        lease_seconds: float = 2.5,
        renew_every: float = 0.8,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        weights: Mapping[str, float] | None = None,
        spread: bool = False,
    ) -> None:
        """``spread``: pace starts below manual priority evenly over the places held (as the
        local limiter's ``spread`` does), so a place frees every period/places for whoever is
        first in line — a manual request then never waits behind a whole burst."""
        if not windows:
            raise ValueError("a bucket needs at least one window")
        self.name = name
        self.fingerprint = ""  # of the credential whose budget this is (postgres_limiter)
        self.windows = tuple(windows)
        self.max_wait = max_wait
        self.manual_reserve = manual_reserve
        self.lease_seconds = lease_seconds
        self.renew_every = renew_every
        self.stats = SharedStats()
        self._clock = clock
        self._sleep = sleep
        self._logs = [WindowLog(w, margin) for w in self.windows]
        n = len(self.windows)
        self._leased = [0] * n
        self._targets = [0] * n
        self._asked = [0] * n  # what the last call asked for
        self._peaks = [(0, float("-inf"))] * n  # recent peak demand per window, and since when
        self._next_free: list[float | None] = [None] * n
        self._deadline = float("-inf")  # the lease may be used until then (monotonic)
        self._paused_until = 0.0
        self._pending_pause = 0.0
        self._manual_active_until = float("-inf")
        self._waiting = [0] * len(LANES)
        self._started = 0  # requests started since the last call
        self._last_active = float("-inf")
        self._spread = spread
        self._tightest = min(
            range(len(windows)), key=lambda k: windows[k].period / windows[k].limit
        )
        self._paced_at = float("-inf")
        self._line = WaitLine(weights)  # fair between tenants within a priority
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._synced_once = False
        self._last_sync = float("-inf")
        self._failing = False
        self._calling = False  # a call to the store is in flight (the books are mid-update)
        self._rate = 0.0  # requests per second, smoothed
        self._rate_at = clock()
        self._store: Store = store(self) if callable(store) else store

    # -- Limiter protocol -----------------------------------------------------------------

    @asynccontextmanager
    async def slot(
        self, priority: int = Priority.BULK, max_wait: float | None = None
    ) -> AsyncIterator[None]:
        handle = await self.acquire(priority, max_wait)
        try:
            with holding(self.name):
                yield
        finally:
            handle.release()

    async def acquire(self, priority: int = Priority.BULK, max_wait: float | None = None) -> _Slot:
        self._ensure_task()
        limit_wait = self.max_wait if max_wait is None else max_wait
        level = int(priority)
        lane = lane_of(level)
        if level >= Priority.MANUAL:
            self._manual_active_until = self._clock() + 3.0
        self._waiting[lane] += 1
        began = self._clock()
        try:
            await self._line.wait_turn(
                level,
                lambda now: self._ready_at(now, level),
                lambda now: self._start(level, now - began),
                clock=self._clock,
                max_wait=limit_wait,
                budget=self.name,
            )
        except BudgetExhausted:
            self.stats.exhausted += 1
            raise
        finally:
            self._waiting[lane] -= 1
        return _Slot(self)

    def pause(self, seconds: float) -> None:
        """Stop every process using this bucket for ``seconds`` (shared at the next call)."""
        self._pause_locally(seconds)
        self._pending_pause = max(self._pending_pause, seconds)
        self._wake_sync("pause")

    def on_rate_limited(self, retry_after: float | None) -> float:
        delay = max(1.0, retry_after or 0.0)
        self.pause(delay)
        return delay

    def seconds_until_free(self, priority: int = Priority.BULK) -> float:
        now = self._clock()
        ready = self._ready_at(now, int(priority), kick=False)
        if ready is None:
            return min(w.period for w in self.windows)
        return max(0.0, ready - now)

    async def aclose(self) -> None:
        """Give every place back and stop (a worker's shutdown)."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            # a call in flight is let finish: cancelled, its effect in the database would be
            # unknown here (and its places and requests counted twice by the release below)
            self._kick.set()
            with suppress(asyncio.CancelledError, Exception):
                await asyncio.wait({task}, timeout=self._store.timeout + 1.0)
            task.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await task
        if self._synced_once and any(self._leased):
            with suppress(Exception):
                await asyncio.wait_for(self._call(self._plan(release=True)), 3.0)
        await self._store.aclose()

    # -- local admission ------------------------------------------------------------------

    def _ready_at(self, now: float, priority: int, *, kick: bool = True) -> float | None:
        ready = max(now, self._paused_until)
        if self._spread and priority < Priority.MANUAL:
            _spacing, slack = self._pacing()
            ready = max(ready, self._paced_at - slack)
        usable = now < self._deadline
        unknown = False  # a place comes with a wake-up (an answer, a call's result)
        for i, wlog in enumerate(self._logs):
            cap = self._leased[i] if usable else 0
            if priority < Priority.MANUAL:
                cap = min(cap, self._targets[i]) if self._synced_once else 0
            at = wlog.next_start(now, cap) if cap > 0 else None
            if at is not None and at <= now:
                continue
            nxt = self._next_free[i]
            if not self._synced_once or not usable:
                # nothing leased (yet, or any more): ask; the call's result wakes the line. A
                # database that does not answer is a wait of unknown length: at least a second
                if kick:
                    self._wake_sync("demand")
                if self._failing:
                    ready = max(ready, now + 1.0)
                else:
                    unknown = True
                continue
            short = self._leased[i] < min(self._asked[i], max(1, self._targets[i]))
            if short and self._calling:
                # a call is in flight: what it gives back or cools is already off the books,
                # so the lease reads short of what was asked, yet the database has not
                # answered. Its answer (the new lease) wakes the line; the last answer's "next
                # free" (an hour away in a slow window) is no wait: a short max_wait gave up
                # for the hour and the sync slept durably for it
                unknown = True
                continue
            if short and nxt is not None and nxt > now:
                # the database had not even our share: they cool down until `nxt` (an hourly
                # window spent: a long wait, reported as such so a workflow sleeps durably).
                # Short of what we asked but at our share, the rest is another process's to
                # give back: not a wait of an hour
                at = nxt if at is None else min(at, nxt)
            elif short and self.windows[i].period >= SLOW_PERIOD:
                # short of our share and no time from the database (another process holds
                # the places: they come back at its next calls): the local log's "one period
                # after our last answer" is no wait here (our used places went back at the
                # call), and a short max_wait would give up for an hour. No call now: what
                # the others give back is notified ("freed"), and we renew meanwhile
                unknown = True
                continue
            elif self._leased[i] >= self._asked[i] and self._asked[i] < self._desired(i, now):
                # we got all we asked for and need more: ask. The answer may be a place at once,
                # so the wait is not known until it comes (a lease still growing must not read
                # as a wait of a whole period: a short max_wait would give up for nothing)
                if kick:
                    self._wake_sync("demand")
                unknown = True
                continue
            # else our fair share is in use; the database's places come with a wake-up
            if at is None:
                unknown = True
            else:
                ready = max(ready, at)
        if unknown and ready <= now:
            # look again shortly: a wake-up can be missed (a place taken back by a call while
            # the head waited), and a waiter must never wait for ever
            return now + RECHECK
        return ready

    def _pacing(self) -> tuple[float, float]:
        """Spacing of paced starts (the bucket's rate, as the local limiter paces: the places
        held cap the rest), and the slack a start may run early by (timer overshoot and short
        stalls are made up, bursts stay small). Pacing by the places held would hold a process
        that has one place at one start per period while its lease grows."""
        window = self.windows[self._tightest]
        spacing = 0.98 * window.period / window.limit
        return spacing, spacing * max(2, window.limit // 10)

    def _start(self, priority: int, waited: float) -> None:
        if self._spread:
            self._paced_at = max(self._paced_at, self._clock()) + self._pacing()[0]
        for wlog in self._logs:
            wlog.start()
        self._started += 1
        self._last_active = self._clock()
        stats = self.stats
        stats.acquired += 1
        stats.waited_seconds += waited
        stats.max_wait_seconds = max(stats.max_wait_seconds, waited)
        stats.by_priority[priority] = stats.by_priority.get(priority, 0) + 1
        observe_wait(priority, waited)
        self._line.wake_head()

    def _finish(self) -> None:
        end = self._clock()
        self._last_active = end
        for wlog in self._logs:
            wlog.finish(end)
        self._line.wake_head()
        if any(self._leased[i] > self._targets[i] for i in range(len(self._logs))):
            self._wake_sync("shrink")

    def _pause_locally(self, seconds: float) -> None:
        until = self._clock() + max(0.0, seconds)
        if until > self._paused_until:
            self.stats.pauses += 1
            self.stats.paused_seconds += until - max(self._paused_until, self._clock())
            self._paused_until = until
            self._line.wake_all()

    # -- talking to the database ----------------------------------------------------------

    def _ensure_task(self) -> None:
        if self._closed:
            return
        if self._task is not None and self._task.done():
            # it ended by an error nobody expected (logged there): start it again, waiters
            # must never wait on a loop that is gone
            self._task = None
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"limiter {self.name}"
            )

    def _wake_sync(self, reason: str) -> None:
        if not self._kick.is_set():
            self.stats.reasons[reason] = self.stats.reasons.get(reason, 0) + 1
            self._kick.set()

    def notified(self, kind: str, args: list[str]) -> None:
        """Another process told the bucket something (called from the store's listener)."""
        self.stats.notifications += 1
        if kind == "pause" and args:
            with suppress(ValueError):
                seconds = float(args[0])
                if math.isfinite(seconds):
                    self._pause_locally(seconds)
        elif kind == "manual":
            if any(self._leased):
                self._wake_sync("manual elsewhere")
        elif kind == "freed" and any(self._waiting):
            self._wake_sync("freed")

    def _busy(self, now: float) -> bool:
        return (
            any(self._waiting)
            or any(w.in_flight for w in self._logs)
            or now - self._last_active < IDLE_RELEASE
        )

    def _held(self, i: int, now: float) -> int:
        wlog = self._logs[i]
        wlog._prune(now)
        return wlog.in_flight + len(wlog._ends)

    def _desired(self, i: int, now: float) -> int:
        """How many places of window ``i`` this process could use now."""
        window, wlog = self.windows[i], self._logs[i]
        waiting = sum(self._waiting)
        if window.period >= SLOW_PERIOD:
            # used places are handed back at every call; keep enough for the next calls
            horizon = 3 * self.renew_every
            desired = wlog.in_flight + waiting + math.ceil(self._rate * horizon) + 1
        else:
            desired = self._held(i, now) + waiting
        desired = min(desired, window.limit)
        # demand held at its peak for PEAK_HOLD: a lease that shrank at every lull would give
        # places back to cool down for a period and then wait for them
        peak, since = self._peaks[i]
        if desired >= peak or now - since > PEAK_HOLD:
            self._peaks[i] = (desired, now)
            return desired
        return peak

    def _plan(self, *, release: bool = False) -> SyncCall:
        """What to ask for, give back and cool in the next call (applied locally on success)."""
        now = self._clock()
        elapsed = max(1e-3, now - self._rate_at)
        self._rate = 0.5 * self._rate + 0.5 * (self._started / elapsed)
        busy = self._busy(now) and not release
        want, give, cool, ages = [], [], [], []
        for i, (window, wlog) in enumerate(zip(self.windows, self._logs, strict=True)):
            held = self._held(i, now)
            leased = self._leased[i]
            desired = self._desired(i, now) if busy else 0
            keep = (
                min(desired, self._targets[i])
                if self._synced_once and not (any(self._waiting[lane_of(Priority.MANUAL) :]))
                else desired
            )
            free = max(0, leased - held)
            if window.period >= SLOW_PERIOD and busy and leased <= 2 * keep:
                # a little spare in a slow window saves calls, within our share
                keep = min(leased, self._targets[i]) if self._synced_once else leased
            g = max(0, min(free, leased - keep))
            c = 0
            age = 0.0
            ends = wlog._ends
            if window.period >= SLOW_PERIOD or not busy:
                c = len(ends)
            elif leased - g > keep:
                c = min(len(ends), leased - g - keep)
            if c:
                age = max(0.0, now - ends[c - 1])
            want.append(desired)
            give.append(g)
            cool.append(c)
            ages.append(age)
        top = max((i for i, n in enumerate(self._waiting) if n), default=-1)
        if top < 0 and busy:
            top = lane_of(Priority.BULK)
        return SyncCall(
            want=want,
            give=give,
            cool=cool,
            cool_age=ages,
            lane=top,
            waiting=list(self._waiting),
            requests=self._started,
            pause=self._pending_pause,
            release=release or not (busy or any(self._leased)),
        )

    async def _call(self, call: SyncCall) -> SyncResult:
        """Send one call; what it gives back is taken off the local books first and restored
        if the call fails (the database then still counts it as ours)."""
        sent = self._clock()
        cooled: list[list[float]] = []
        for i, wlog in enumerate(self._logs):
            self._leased[i] -= call.give[i] + call.cool[i]
            cooled.append(wlog._ends[: call.cool[i]])
            del wlog._ends[: call.cool[i]]
        started, self._started = self._started, 0
        pause, self._pending_pause = self._pending_pause, 0.0
        self._rate_at = sent
        self._calling = True
        try:
            result = await self._store.sync(call)
        except BaseException:
            for i, wlog in enumerate(self._logs):
                self._leased[i] += call.give[i] + call.cool[i]
                wlog._ends[:0] = cooled[i]
            self._started += started
            self._pending_pause = max(self._pending_pause, pause)
            raise
        finally:
            self._calling = False
        received = self._clock()
        self.stats.statements += 1
        self.stats.statement_seconds += received - sent
        self._synced_once = True
        self._last_sync = received
        self._leased = list(result.places)
        self._asked = list(call.want)
        self._targets = list(result.targets)
        self._deadline = sent + self.lease_seconds
        self._next_free = [
            None if t is None else received + max(0.0, t - result.db_now) for t in result.next_free
        ]
        if result.paused_until > result.db_now:
            self._pause_locally(result.paused_until - result.db_now)
        if result.manual_until > result.db_now:
            self._manual_active_until = received + (result.manual_until - result.db_now)
        self._line.wake_all()
        if any(
            self._leased[i] > max(self._targets[i], self._held(i, received))
            for i in range(len(self._logs))
        ) and not any(self._waiting[lane_of(Priority.MANUAL) :]):
            self._wake_sync("shrink")  # our share shrank and places are free: give them back
        return result

    async def _run(self) -> None:
        backoff = 0.2
        while not self._closed:
            now = self._clock()
            holding = any(self._leased)
            if self._kick.is_set():
                timeout = 0.0
            elif holding or any(self._waiting):
                timeout = max(0.0, self._last_sync + self.renew_every - now)
                # a place over our target frees up: give it back then
                for i, wlog in enumerate(self._logs):
                    if self._leased[i] > self._targets[i] and wlog._ends:
                        timeout = min(timeout, max(0.0, wlog._ends[0] + wlog.period - now))
                    nxt = self._next_free[i]
                    if nxt is not None and self._leased[i] < self._asked[i] and any(self._waiting):
                        timeout = min(timeout, max(0.0, nxt - now))
            else:
                timeout = None
            if timeout is None or timeout > 0:
                await wait_event(self._kick, timeout)
            self._kick.clear()
            if self._closed:
                return
            try:
                call = self._plan()
                if call.release and not self._synced_once:
                    continue
                await self._call(call)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats.failures += 1
                if not self._failing:
                    log.warning(
                        "rate budget %s: the database is unreachable (%s); using the places "
                        "held until the lease ends, retrying",
                        self.name,
                        type(exc).__name__,
                    )
                self._failing = True
                self._line.wake_all()
                await self._sleep(backoff)
                backoff = min(2.0, backoff * 2)
                self._kick.set()
                continue
            if self._failing:
                log.warning("rate budget %s: the database answers again", self.name)
            self._failing = False
            backoff = 0.2
            if call.release:
                self._synced_once = False
                self._deadline = float("-inf")
            # waiters the database could not serve yet look again soon (their guess)
            await self._sleep(0.002)

    # -- reporting ------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        now = self._clock()
        return {
            "leased": list(self._leased),
            "targets": list(self._targets),
            "held": [self._held(i, now) for i in range(len(self._logs))],
            "waiting": list(self._waiting),
            "statements": self.stats.statements,
            "acquired": self.stats.acquired,
        }


def postgres_limiter(
    name: str,
    windows: Sequence[Window],
    *,
    database_url: str,
    provider: str,
    credential: Sequence[str],
    max_wait: float | None,
    manual_reserve: int = 0,
    lease_seconds: float = 2.5,
    renew_every: float = 0.8,
    weights: Mapping[str, float] | None = None,
    spread: bool = False,
) -> SharedRateLimiter:
    """A shared limiter whose places live in the database at ``database_url``."""
    fp = fingerprint(provider, *credential)

    def store(limiter: SharedRateLimiter) -> PostgresStore:
        return PostgresStore(
            database_url,
            bucket=bucket_key(provider, name, credential),
            provider=provider,
            fp=fp,
            windows=windows,
            lease_seconds=lease_seconds,
            manual_hold=3.0,
            reserve=manual_reserve,
            on_notify=limiter.notified,
        )

    limiter = SharedRateLimiter(
        name,
        windows,
        store=store,
        max_wait=max_wait,
        manual_reserve=manual_reserve,
        lease_seconds=lease_seconds,
        renew_every=renew_every,
        weights=weights,
        spread=spread,
    )
    limiter.fingerprint = fp
    return limiter


def budget(
    settings: Any,
    database_url: str,
    name: str,
    windows: Sequence[Window],
    *,
    provider: str,
    credential: Sequence[str],
    manual_reserve: int = 0,
    spread: bool = False,
    weights: Mapping[str, float] | None = None,
) -> RateLimiter | SharedRateLimiter:
    """The budget of one credential as RATE_LIMIT_BACKEND says: in this process only
    (``local``), or shared through Postgres by every process that uses the credential. A client
    built with no database (a unit test of the client alone) has a local budget."""
    limiter: RateLimiter | SharedRateLimiter
    if settings.RATE_LIMIT_BACKEND == "postgres" and database_url:
        limiter = postgres_limiter(
            name, windows, database_url=database_url, provider=provider,
            credential=credential, max_wait=settings.RATE_LIMIT_MAX_WAIT_SECONDS,
            manual_reserve=manual_reserve, weights=weights, spread=spread,
        )  # fmt: skip
    else:
        limiter = RateLimiter(
            name, windows, max_wait=settings.RATE_LIMIT_MAX_WAIT_SECONDS, spread=spread,
            manual_reserve=manual_reserve, weights=weights,
        )  # fmt: skip
    metrics.track_budget(limiter, provider)  # its utilisation is reported (METRICS_PORT)
    return limiter
