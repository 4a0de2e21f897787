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
- serves waiters highest priority first, and within a priority shares the budget fairly between
  *tenants* (weighted fair queuing: a tenant with 1 channel waiting is not served after every
  request of a tenant with 1,000; FIFO within one tenant, and among callers that name none),
  and spreads lower-priority starts evenly so that a slot frees up every period/limit for
  whoever comes first next;
- keeps a few places free for manual requests while a manual sync is in progress
  (``manual_reserve``), so its follow-up requests do not queue behind the bulk;
- pauses every caller of the bucket after a 429 or a "remaining 0" header (``pause``);
- refuses to wait longer than ``max_wait`` and raises :class:`BudgetExhausted` with the time the
  budget frees up, so a workflow can sleep on a durable timer instead of holding a worker slot.

Callers use only :class:`Limiter` (``slot``, ``pause``, ``on_rate_limited``), so a shared
Postgres-backed budget can implement the same protocol without touching them.

The waiting itself — a priority line, fair between tenants, that wakes only its head and gives
up beyond ``max_wait`` — is :class:`WaitLine`, shared with the Discord limiter (one line per
bucket there) and the Postgres-backed one. A caller names its tenant with ``tenant=`` or, where
a layer in between cannot pass it on (``ProviderHTTP.send``), with :func:`for_tenant` around
the call.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from bisect import insort
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol

from observability import metrics
from providers.errors import BudgetExhausted

__all__ = [
    "BudgetExhausted",
    "Limiter",
    "Priority",
    "RateLimiter",
    "WaitLine",
    "Window",
    "WindowLog",
    "budget_held",
    "current_tenant",
    "for_tenant",
    "wait_event",
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
    ) -> AbstractAsyncContextManager[None]: ...  # the tenant: for_tenant() around the call

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


# One sequence for every line: ties between equal tags go to the earlier arrival.
_arrivals = itertools.count()

# The tenant the current task's requests are for, where a layer between the caller and the
# limiter cannot pass it on (ProviderHTTP.send takes the slot for every provider).
_tenant: ContextVar[str | None] = ContextVar("ratelimit_tenant", default=None)
# What the request being made waited already for another budget before this one (Discord's
# route bucket, before the global limit): its one wait observation includes it.
_earlier_wait: ContextVar[float] = ContextVar("ratelimit_earlier_wait", default=0.0)


# The budget whose place the current task holds (the innermost ``slot``): the bucket a
# request is counted under (``ratesync_upstream_requests_total``), whichever layer took it.
_budget: ContextVar[str | None] = ContextVar("ratelimit_budget", default=None)


def budget_held() -> str | None:
    """The name of the budget whose place the current task holds, or None."""
    return _budget.get()


@contextmanager
def holding(name: str) -> Iterator[None]:
    """Inside: requests are counted as ``name``'s (``slot`` of a budget does this)."""
    token = _budget.set(name)
    try:
        yield
    finally:
        _budget.reset(token)


@contextmanager
def after_waiting(seconds: float) -> Iterator[None]:
    """The request made inside waited ``seconds`` already, for another budget's place (a
    Discord route bucket): the limiter-wait observation of its next place adds them, once."""
    token = _earlier_wait.set(max(0.0, seconds))
    try:
        yield
    finally:
        _earlier_wait.reset(token)


def observe_wait(priority: int, waited: float) -> None:
    """``ratesync_limiter_wait_seconds`` of a place just taken after ``waited`` seconds, plus
    what :func:`after_waiting` carried (then spent: a retry's place adds nothing)."""
    earlier = _earlier_wait.get()
    if earlier:
        _earlier_wait.set(0.0)
    metrics.limiter_waited(priority, waited + earlier)


def current_tenant() -> str | None:
    """The tenant named by the innermost :func:`for_tenant`, or None."""
    return _tenant.get()


@contextmanager
def for_tenant(tenant: str | None) -> Iterator[None]:
    """Requests made inside are ``tenant``'s in every :class:`WaitLine` (None: leave as is)."""
    if tenant is None:
        yield
        return
    token = _tenant.set(tenant)
    try:
        yield
    finally:
        _tenant.reset(token)


Entry = tuple[int, float, int]  # (-priority, fair-queuing tag, arrival): the heap's order


async def wait_event(event: asyncio.Event, timeout: float | None) -> None:
    """Wait until ``event`` is set or ``timeout`` seconds pass (the timer sets it).

    Not ``asyncio.wait_for(event.wait(), timeout)``: on Python 3.11 that returns normally when
    the waiting task is cancelled in the step its inner wait completes, so the cancellation is
    lost and a cancelled waiter waits on (for a place a stopped limiter never gives)."""
    if timeout is None:
        await event.wait()
        return
    timer = asyncio.get_running_loop().call_later(max(0.0, timeout), event.set)
    try:
        await event.wait()
    finally:
        timer.cancel()


class WaitLine:
    """The callers waiting for one budget: highest priority first; within a priority, fair
    between tenants; first come first served within one tenant.

    Fairness is start-time fair queuing (SFQ): a waiter's tag is the larger of the line's
    virtual time (the tag of the last waiter admitted at its priority) and the tag after its
    tenant's previous waiter, which is ``1 / weight`` further. The lowest tag goes first. So
    while several tenants wait, each is admitted in proportion to its weight however many
    waiters it has: a tenant with one channel is served about every other request beside a
    tenant with 1,000, not after all of theirs. Callers that name no tenant are one tenant
    (``None``) together, so a line nobody names tenants in stays first in, first out.
    ``weights`` maps a tenant to its weight (default 1.0).

    Only the head is woken when something changes (a place freed, a waiter gone): with hundreds
    of waiters a broadcast would cost hundreds of wake-ups per request. ``wake_all`` (after a
    pause) lets every waiter look again at once, so each gives up if its wait became too long.
    """

    def __init__(self, weights: Mapping[str, float] | None = None) -> None:
        self._heap: list[Entry] = []
        self._events: dict[Entry, asyncio.Event] = {}
        self.weights: dict[str, float] = dict(weights or {})
        self._virtual: dict[int, float] = {}  # per -priority: the tag last admitted
        self._after: dict[tuple[int, str | None], float] = {}  # the tag a tenant's next starts at

    def __len__(self) -> int:
        return len(self._heap)

    def weight(self, tenant: str | None) -> float:
        weight = self.weights.get(tenant, 1.0) if tenant is not None else 1.0
        return weight if weight > 0 else 1.0

    def wake_head(self) -> None:
        if self._heap:
            self._events[self._heap[0]].set()

    def wake_all(self) -> None:
        for event in self._events.values():
            event.set()

    def _join(self, level: int, tenant: str | None, arrival: int, event: asyncio.Event) -> Entry:
        key = (level, tenant)
        tag = max(self._virtual.get(level, 0.0), self._after.get(key, 0.0))
        self._after[key] = tag + 1.0 / self.weight(tenant)
        entry = (level, tag, arrival)
        heapq.heappush(self._heap, entry)
        self._events[entry] = event
        return entry

    def _leave(self, entry: Entry, tenant: str | None, admitted: bool = False) -> None:
        if self._events.pop(entry, None) is None:
            return
        if self._heap[0] == entry:
            heapq.heappop(self._heap)
        else:
            self._heap.remove(entry)
            heapq.heapify(self._heap)
        level, tag, _ = entry
        if admitted:
            self._virtual[level] = max(self._virtual.get(level, 0.0), tag)
            if len(self._after) > 2 * len(self._heap) + 64:
                self._forget_idle()
        else:  # it gave up or moved: a tenant's last waiter gives its turn back
            key = (level, tenant)
            if self._after.get(key) == tag + 1.0 / self.weight(tenant):
                self._after[key] = tag

    def _forget_idle(self) -> None:
        """Drop tenants whose next tag the virtual time has passed: they start from it anyway."""
        virtual = self._virtual
        self._after = {
            key: after for key, after in self._after.items() if after > virtual.get(key[0], 0.0)
        }

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
        tenant: str | None = None,
    ) -> float:
        """Wait until this caller heads the line and the budget is ready; return seconds waited.

        ``ready_at(now)`` is when the next request may start (``now`` or later; None while that
        is unknown, e.g. every place is held by a request in flight: then only a wake-up moves
        the waiter on). When its turn comes the waiter leaves the line, ``admit(now)`` takes the
        place (it may still refuse by raising) and the next head is woken. A turn further away
        than ``max_wait`` raises :class:`BudgetExhausted` naming ``budget`` at once. ``line()``
        names the line the caller belongs to now, when that can change while it waits (Discord
        learns a route's bucket from an answer): the waiter moves there, behind that line's
        waiters of its tenant (ties still by arrival). ``tenant`` (default: the one named by
        :func:`for_tenant`) is whose turn this is, for the fair share between tenants.
        """
        level = -int(priority)
        who = tenant if tenant is not None else _tenant.get()
        arrival = next(_arrivals)
        event = asyncio.Event()
        current = self
        entry = current._join(level, who, arrival, event)
        began = clock()
        try:
            while True:
                event.clear()
                if line is not None and (moved := line()) is not current:
                    current._leave(entry, who)
                    current.wake_head()
                    current = moved
                    entry = current._join(level, who, arrival, event)
                now = clock()
                ready = ready_at(now)
                if ready is not None and max_wait is not None and ready - now > max_wait:
                    raise BudgetExhausted(budget, ready - now)
                head = current._heap[0] == entry
                if head and ready is not None and ready <= now:
                    current._leave(entry, who, admitted=True)
                    admit(now)
                    current.wake_head()
                    return now - began
                timeout = ready - now if head and ready is not None else None
                await wait_event(event, timeout)
        except BaseException:
            current._leave(entry, who)
            current.wake_head()
            raise


class _Finishing(Protocol):
    def _finish(self) -> None: ...


class _Slot:
    """One request's place, released once (shared with providers.shared_limit)."""

    __slots__ = ("_limiter", "_released")

    def __init__(self, limiter: _Finishing) -> None:
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
        weights: Mapping[str, float] | None = None,
    ) -> None:
        """``weights``: the tenants' shares of the budget while several wait (default 1.0)."""
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
        self._line = WaitLine(weights)

    # -- public API -----------------------------------------------------------------------

    @asynccontextmanager
    async def slot(
        self,
        priority: int = Priority.BULK,
        max_wait: float | None = None,
        *,
        tenant: str | None = None,
    ) -> AsyncIterator[None]:
        """Hold one request's place: wait for it, yield, and record the completion on exit."""
        handle = await self.acquire(priority, max_wait, tenant=tenant)
        try:
            with holding(self.name):
                yield
        finally:
            handle.release()

    async def acquire(
        self,
        priority: int = Priority.BULK,
        max_wait: float | None = None,
        *,
        tenant: str | None = None,
    ) -> _Slot:
        """Wait for a slot (highest priority first, fair between tenants: ``tenant``, default
        the one named by :func:`for_tenant`). Raises BudgetExhausted if too far away.

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
                tenant=tenant,
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

    def window_use(self) -> list[tuple[Window, int]]:
        """Per window: the places held now (in flight, or within a period of their answer)."""
        now = self._clock()
        used = []
        for window, log in zip(self.windows, self._logs, strict=True):
            log._prune(now)
            used.append((window, log.in_flight + len(log._ends)))
        return used

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
        observe_wait(priority, waited)
        self._notify()

    def _finish(self) -> None:
        end = self._clock()
        for log in self._logs:
            log.finish(end)
        self._notify()

    def _notify(self) -> None:
        """Wake the head waiter: it is the only one that may start next."""
        self._line.wake_head()
