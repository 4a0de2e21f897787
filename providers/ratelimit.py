"""Client-side rate limiting that provably never exceeds a strict sliding-window limit.

A limit "N per T" means: in every interval of length T, at most N requests reach the server.
The client cannot see when a request *arrives*, only when it was started and when its response
came back; the arrival lies between the two. So a request holds its place in a window from the
moment it starts until T after its response arrived (``end + T``), and a new request may start
only while fewer than N requests hold a place. Then any N+1 requests whose arrivals fall in one
interval of length T would include one that started after another's ``end + T`` — impossible. The
guarantee holds whatever the network jitter; the cost is that each slot is busy for
``T + latency``, i.e. a rate of ``N / (T + latency)``, close to N/T on a fast network.

A naive leaky bucket (aiolimiter's ``AsyncLimiter(N, T)``) admits up to ``capacity + rate * T``
in the first window, i.e. ~2N, which a strict server answers with 429s.

Beyond that the limiter:
- serves waiters highest priority first (FIFO within a priority), and spreads lower-priority
  starts evenly so that a slot frees up every period/limit for whoever comes first next;
- keeps a few places free for manual requests while a manual sync is in progress
  (``manual_reserve``), so its follow-up requests do not queue behind the bulk;
- pauses every caller of the bucket after a 429 or a "remaining 0" header (``pause``);
- refuses to wait longer than ``max_wait`` and raises :class:`BudgetExhausted` with the time the
  budget frees up, so a workflow can sleep on a durable timer instead of holding a worker slot.

Callers use only :class:`Limiter` (``slot``, ``pause``, ``on_rate_limited``), so a shared
Postgres-backed budget can implement the same protocol without touching them.

The waiting itself — a priority line that wakes only its head and gives up beyond ``max_wait``
— is :class:`WaitLine`, shared with the Discord limiter (one line per bucket there).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from bisect import insort
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol

from providers.errors import BudgetExhausted

__all__ = [
    "BudgetExhausted",
    "Limiter",
    "Priority",
    "RateLimiter",
    "WaitLine",
    "Window",
    "WindowLog",
]


class Priority(IntEnum):
    """Who goes first when several callers wait for the same bucket (higher first)."""

    BACKFILL = 0
    BULK = 10
    INCREMENTAL = 20
    URGENT = 30
    MANUAL = 40


@dataclass(frozen=True)
class Window:
    """At most ``limit`` requests in any interval of ``period`` seconds."""

    limit: int
    period: float

    def __post_init__(self) -> None:
        if self.limit < 1 or self.period <= 0:
            raise ValueError(f"bad window {self.limit}/{self.period}s")


@dataclass
class LimiterStats:
    acquired: int = 0
    waited_seconds: float = 0.0
    max_wait_seconds: float = 0.0
    pauses: int = 0
    paused_seconds: float = 0.0
    exhausted: int = 0
    by_priority: dict[int, int] = field(default_factory=dict)


class Limiter(Protocol):
    """What provider clients need from a rate limiter (local or shared)."""

    name: str

    def slot(
        self, priority: int = Priority.BULK, max_wait: float | None = None
    ) -> AbstractAsyncContextManager[None]: ...

    def pause(self, seconds: float) -> None: ...

    def on_rate_limited(self, retry_after: float | None) -> float: ...


class WindowLog:
    """Occupancy of one window: requests in flight plus completion times within the period.

    Pure bookkeeping with explicit times, so it is unit-testable without sleeping.
    """

    def __init__(self, window: Window, margin: float = 0.0) -> None:
        self.limit = window.limit
        self.period = window.period + margin
        self.in_flight = 0
        self._ends: list[float] = []  # sorted completion times still inside the period

    def _prune(self, now: float) -> None:
        cutoff = now - self.period
        ends = self._ends
        if ends and ends[0] <= cutoff:
            drop = 0
            while drop < len(ends) and ends[drop] <= cutoff:
                drop += 1
            del ends[:drop]

    def next_start(self, now: float, limit: int | None = None) -> float | None:
        """Earliest time a new request may start; None while blocked by in-flight requests."""
        cap = self.limit if limit is None else limit
        self._prune(now)
        held = self.in_flight + len(self._ends)
        if held < cap:
            return now
        if self.in_flight >= cap:
            return None
        # The oldest (held - cap + 1) completions must leave the window first.
        return self._ends[held - cap] + self.period

    def start(self) -> None:
        self.in_flight += 1

    def finish(self, end: float) -> None:
        self.in_flight -= 1
        insort(self._ends, end)


# One sequence for every line: a waiter that moves to another line keeps its place in time.
_arrivals = itertools.count()


class WaitLine:
    """The callers waiting for one budget: highest priority first, first come first within one.

    Only the head is woken when something changes (a place freed, a waiter gone): with hundreds
    of waiters a broadcast would cost hundreds of wake-ups per request. ``wake_all`` (after a
    pause) lets every waiter look again at once, so each gives up if its wait became too long.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[int, int]] = []
        self._events: dict[tuple[int, int], asyncio.Event] = {}

    def __len__(self) -> int:
        return len(self._heap)

    def wake_head(self) -> None:
        if self._heap:
            self._events[self._heap[0]].set()

    def wake_all(self) -> None:
        for event in self._events.values():
            event.set()

    def _join(self, entry: tuple[int, int], event: asyncio.Event) -> None:
        heapq.heappush(self._heap, entry)
        self._events[entry] = event

    def _leave(self, entry: tuple[int, int]) -> None:
        if self._events.pop(entry, None) is None:
            return
        if self._heap[0] == entry:
            heapq.heappop(self._heap)
        else:
            self._heap.remove(entry)
            heapq.heapify(self._heap)

    async def wait_turn(
        self,
        priority: int,
        ready_at: Callable[[float], float | None],
        admit: Callable[[float], None],
        *,
        clock: Callable[[], float],
        max_wait: float | None,
        budget: str,
        line: Callable[[], WaitLine] | None = None,
    ) -> float:
        """Wait until this caller heads the line and the budget is ready; return seconds waited.

        ``ready_at(now)`` is when the next request may start (``now`` or later; None while that
        is unknown, e.g. every place is held by a request in flight: then only a wake-up moves
        the waiter on). When its turn comes the waiter leaves the line, ``admit(now)`` takes the
        place (it may still refuse by raising) and the next head is woken. A turn further away
        than ``max_wait`` raises :class:`BudgetExhausted` naming ``budget`` at once. ``line()``
        names the line the caller belongs to now, when that can change while it waits (Discord
        learns a route's bucket from an answer): the waiter moves there, keeping its place.
        """
        entry = (-int(priority), next(_arrivals))
        event = asyncio.Event()
        current = self
        current._join(entry, event)
        began = clock()
        try:
            while True:
                event.clear()
                if line is not None and (moved := line()) is not current:
                    current._leave(entry)
                    current.wake_head()
                    current = moved
                    current._join(entry, event)
                now = clock()
                ready = ready_at(now)
                if ready is not None and max_wait is not None and ready - now > max_wait:
                    raise BudgetExhausted(budget, ready - now)
                head = current._heap[0] == entry
                if head and ready is not None and ready <= now:
                    current._leave(entry)
                    admit(now)
                    current.wake_head()
                    return now - began
                timeout = ready - now if head and ready is not None else None
                try:
                    await asyncio.wait_for(event.wait(), timeout)
                except TimeoutError:
                    pass
        except BaseException:
            current._leave(entry)
            current.wake_head()
            raise


class _Slot:
    __slots__ = ("_limiter", "_released")

    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._limiter._finish()


class RateLimiter:
    """An in-process bucket with one or more windows, shared by every coroutine that calls it."""

    def __init__(
        self,
        name: str,
        windows: Sequence[Window],
        *,
        margin: float = 0.005,
        max_wait: float | None = 30.0,
        reserve: int = 0,
        manual_reserve: int = 0,
        manual_reserve_hold: float = 3.0,
        spread: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not windows:
            raise ValueError("a bucket needs at least one window")
        self.name = name
        self.windows = tuple(windows)
        self.max_wait = max_wait
        self.reserve = reserve
        # Headroom kept for manual requests *while manual work is active*: a manual request
        # turns it on for `manual_reserve_hold` seconds, so the rest of that manual sync (its
        # follow-up requests) finds free places instead of queueing for the bulk's next expiry.
        # The bulk loses that headroom only while someone is waiting on a manual add.
        self.manual_reserve = manual_reserve
        self.manual_reserve_hold = manual_reserve_hold
        self._manual_until = float("-inf")
        self.stats = LimiterStats()
        self._logs = [WindowLog(w, margin) for w in self.windows]
        self._clock = clock
        self._paused_until = 0.0
        # Below manual priority, starts are spread at least this far apart. The window alone
        # would let slots free up in clusters (a burst of completions expires together) and a
        # manual request arriving after a cluster would wait most of a period; spread out, a
        # slot frees every period/limit and the head of the queue gets the next one.
        # (Worth it for fast buckets, e.g. 100/s; a slow one, 5/min, keeps its burst.)
        # Paced like GCRA: a theoretical start time advances by `spacing` per start, and a start
        # may run early by a tenth of the limit (at least two spacings), so timer overshoot and
        # short stalls are made up rather than lost, while bursts stay small.
        tightest = min(self.windows, key=lambda w: w.period / w.limit)
        self._spacing = 0.98 * tightest.period / tightest.limit if spread else 0.0
        self._slack = self._spacing * max(2, tightest.limit // 10)
        self._paced_at = float("-inf")
        self._line = WaitLine()

    # -- public API -----------------------------------------------------------------------

    @asynccontextmanager
    async def slot(
        self, priority: int = Priority.BULK, max_wait: float | None = None
    ) -> AsyncIterator[None]:
        """Hold one request's place: wait for it, yield, and record the completion on exit."""
        handle = await self.acquire(priority, max_wait)
        try:
            yield
        finally:
            handle.release()

    async def acquire(self, priority: int = Priority.BULK, max_wait: float | None = None) -> _Slot:
        """Wait for a slot (highest priority first). Raises BudgetExhausted if too far away.

        The line (:class:`WaitLine`) wakes only its head when something changes; a pause wakes
        everyone, so every waiter can give up at once when it is long.
        """
        limit_wait = self.max_wait if max_wait is None else max_wait
        if priority >= Priority.MANUAL and self.manual_reserve:
            self._manual_until = max(self._manual_until, self._clock() + self.manual_reserve_hold)
        level = int(priority)
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
        return _Slot(self)

    def pause(self, seconds: float) -> None:
        """Stop everyone for ``seconds`` (extends a running pause, never shortens it)."""
        until = self._clock() + max(0.0, seconds)
        if until > self._paused_until:
            self.stats.pauses += 1
            self.stats.paused_seconds += until - max(self._paused_until, self._clock())
            self._paused_until = until
            self._line.wake_all()

    def on_rate_limited(self, retry_after: float | None) -> float:
        """A 429 arrived: pause the bucket for ``retry_after`` (at least 1 s); return the pause."""
        delay = max(1.0, retry_after or 0.0)
        self.pause(delay)
        return delay

    def seconds_until_free(self, priority: int = Priority.BULK) -> float:
        """How long a caller of this priority would wait now (0 when a slot is free).

        While every place is held by a request in flight the wait is unknown but short (it ends
        one period after a response); that case reports the period of the blocking window.
        """
        now = self._clock()
        ready = self._ready_at(now, int(priority))
        if ready is None:
            return min(log.period for log in self._logs)
        return max(0.0, ready - now)

    # -- internals ------------------------------------------------------------------------

    def _ready_at(self, now: float, priority: int) -> float | None:
        ready = max(now, self._paused_until)
        if priority < Priority.MANUAL and self._spacing:
            ready = max(ready, self._paced_at - self._slack)
        for log in self._logs:
            cap = log.limit
            reserve = self.reserve
            if self.manual_reserve and now < self._manual_until:
                reserve = max(reserve, self.manual_reserve)
            if priority < Priority.MANUAL and reserve:
                cap = max(1, cap - reserve)
            at = log.next_start(now, cap)
            if at is None:
                return None if ready <= now else ready
            ready = max(ready, at)
        return ready

    def _start(self, priority: int, waited: float) -> None:
        if self._spacing:
            self._paced_at = max(self._paced_at, self._clock()) + self._spacing
        for log in self._logs:
            log.start()
        stats = self.stats
        stats.acquired += 1
        stats.waited_seconds += waited
        stats.max_wait_seconds = max(stats.max_wait_seconds, waited)
        stats.by_priority[priority] = stats.by_priority.get(priority, 0) + 1
        self._notify()

    def _finish(self) -> None:
        end = self._clock()
        for log in self._logs:
            log.finish(end)
        self._notify()

    def _notify(self) -> None:
        """Wake the head waiter: it is the only one that may start next."""
        self._line.wake_head()
