"""The limiter's guarantee, proven in simulated time, and its queueing behaviour in real time.

The property tests drive ``WindowLog`` with an event loop in *simulated* time: requests want to
start at random moments, take random (often very skewed) latencies and reach the server at a
random point between their start and their end. Whatever happens, no half-open interval of one
period may contain more than ``limit`` server arrivals.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from aiolimiter import AsyncLimiter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from providers.ratelimit import (
    BudgetExhausted,
    Priority,
    RateLimiter,
    WaitLine,
    Window,
    WindowLog,
    for_tenant,
)

PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    database=None,  # no example database written into the work tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- simulated-time driver ----------------------------------------------------------------------


@dataclass(frozen=True)
class Served:
    wish: float
    start: float
    end: float
    arrival: float


def combined_next_start(logs: Sequence[WindowLog], now: float) -> float | None:
    """What ``RateLimiter`` does with several windows: the latest of them; None if any blocks."""
    ready = now
    for log in logs:
        at = log.next_start(now)
        if at is None:
            return None
        ready = max(ready, at)
    return ready


def simulate(
    logs: Sequence[WindowLog],
    wishes: Sequence[float],
    latencies: Sequence[float],
    arrival_fractions: Sequence[float],
) -> list[Served]:
    """Serve requests FIFO in wish order, each as early as the logs allow, in time order."""
    order = sorted(range(len(wishes)), key=lambda i: wishes[i])
    completions: list[tuple[float, int]] = []  # (end, request index)
    served: list[Served] = []
    now = 0.0
    position = 0
    for _ in range(100 * len(wishes) + 100):  # a stuck limiter fails instead of hanging
        # Completions happen first: a request finishing at `now` frees what it can free.
        while completions and completions[0][0] <= now:
            end, _index = heapq.heappop(completions)
            for log in logs:
                log.finish(end)
        waiting = position < len(order) and wishes[order[position]] <= now
        ready = combined_next_start(logs, now) if waiting else None
        if waiting and ready is not None and ready <= now:
            index = order[position]
            position += 1
            for log in logs:
                log.start()
            end = now + latencies[index]
            arrival = min(end, max(now, now + arrival_fractions[index] * latencies[index]))
            heapq.heappush(completions, (end, index))
            served.append(Served(wishes[index], now, end, arrival))
            continue  # re-check at the same instant (zero latencies complete immediately)
        candidates = []
        if completions:
            candidates.append(completions[0][0])
        if position < len(order) and wishes[order[position]] > now:
            candidates.append(wishes[order[position]])
        if ready is not None and ready > now:
            candidates.append(ready)
        if not candidates:
            assert position == len(order), "requests left waiting with nothing to wait for"
            return served
        now = min(candidates)
    raise AssertionError("the simulation made no progress")


def most_arrivals_in_any_interval(arrivals: Sequence[float], period: float) -> int:
    """Max number of arrivals in a half-open [t, t + period); the max is attained at an arrival."""
    times = sorted(arrivals)
    best = 0
    for i, t in enumerate(times):
        best = max(best, bisect_left(times, t + period) - i)
    return best


def test_checker_counts_half_open_intervals():
    assert most_arrivals_in_any_interval([], 1.0) == 0
    assert most_arrivals_in_any_interval([0.0, 0.5, 0.99], 1.0) == 3
    assert most_arrivals_in_any_interval([0.0, 0.5, 1.0], 1.0) == 2  # 1.0 is outside [0, 1)
    assert most_arrivals_in_any_interval([0.0, 1.0, 1.5, 1.9, 2.0], 1.0) == 3


def test_naive_admission_would_be_caught_by_the_checker():
    """Sanity check of the harness: without a log, a burst breaks the limit and is detected."""
    served = simulate([], [0.0] * 11, [0.0] * 11, [0.0] * 11)
    assert most_arrivals_in_any_interval([s.arrival for s in served], 1.0) == 11


# Latencies: 0-300 ms, with runs of extreme values so some examples are very skewed.
latency = st.one_of(
    st.just(0.0),
    st.just(0.3),
    st.floats(min_value=0.0, max_value=0.3, allow_nan=False),
    st.floats(min_value=0.0, max_value=0.002, allow_nan=False),
    st.floats(min_value=0.25, max_value=0.3, allow_nan=False),
)
# Where between start and end the request reaches the server (both ends included).
arrival_fraction = st.one_of(
    st.just(0.0), st.just(1.0), st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
)


@st.composite
def workloads(draw, max_requests: int, horizon: float):
    n = draw(st.integers(min_value=1, max_value=max_requests))
    # Bursts (many callers at the same instant) and scattered wishes.
    burst_times = draw(st.lists(st.floats(0.0, horizon, allow_nan=False), min_size=1, max_size=4))
    wishes = draw(
        st.lists(
            st.one_of(st.sampled_from(burst_times), st.floats(0.0, horizon, allow_nan=False)),
            min_size=n,
            max_size=n,
        )
    )
    latencies = draw(st.lists(latency, min_size=n, max_size=n))
    fractions = draw(st.lists(arrival_fraction, min_size=n, max_size=n))
    return wishes, latencies, fractions


@PROPERTY_SETTINGS
@given(
    window=st.builds(
        Window, st.integers(min_value=1, max_value=12), st.sampled_from([0.1, 0.35, 1.0, 2.5])
    ),
    workload=workloads(max_requests=60, horizon=3.0),
)
def test_no_window_ever_holds_more_than_limit_for_random_latencies(window, workload):
    wishes, latencies, fractions = workload
    log = WindowLog(window)  # no safety margin: the bookkeeping alone must be exact
    served = simulate([log], wishes, latencies, fractions)

    assert len(served) == len(wishes)
    assert all(s.start >= s.wish and s.start <= s.arrival <= s.end for s in served)
    arrivals = [s.arrival for s in served]
    assert most_arrivals_in_any_interval(arrivals, window.period) <= window.limit


@PROPERTY_SETTINGS
@given(workload=workloads(max_requests=80, horizon=12.0))
def test_two_windows_together_never_exceed_either_limit_for_random_latencies(workload):
    wishes, latencies, fractions = workload
    per_second, per_five = Window(5, 1.0), Window(12, 5.0)
    logs = [WindowLog(per_second), WindowLog(per_five)]
    served = simulate(logs, wishes, latencies, fractions)

    assert len(served) == len(wishes)
    arrivals = [s.arrival for s in served]
    assert most_arrivals_in_any_interval(arrivals, per_second.period) <= per_second.limit
    assert most_arrivals_in_any_interval(arrivals, per_five.period) <= per_five.limit


@PROPERTY_SETTINGS
@given(
    limit=st.integers(min_value=1, max_value=50),
    period=st.floats(min_value=0.01, max_value=100.0, allow_nan=False),
)
def test_zero_latency_callers_get_exactly_limit_per_period(limit, period):
    """Utilisation: callers always waiting, zero latency → exactly ``limit`` per period."""
    n = 3 * limit
    served = simulate([WindowLog(Window(limit, period))], [0.0] * n, [0.0] * n, [0.0] * n)
    starts = [s.start for s in served]

    assert sum(1 for t in starts if 0.0 <= t < period) == limit
    assert sum(1 for t in starts if period <= t < 2 * period) == limit
    assert starts[:limit] == [0.0] * limit  # no under-admission at the start either
    assert starts[limit] == period  # the next one waits exactly one period, not longer


def test_window_log_blocks_while_requests_are_in_flight():
    log = WindowLog(Window(2, 1.0))
    log.start()
    log.start()
    assert log.next_start(0.0) is None  # unknown: depends on when they finish
    log.finish(0.4)
    assert log.next_start(0.5) == pytest.approx(1.4)
    assert log.next_start(1.4) == 1.4
    assert log.next_start(0.5, limit=3) == 0.5  # a bigger cap (reserve) admits at once


def test_window_rejects_nonsense():
    with pytest.raises(ValueError):
        Window(0, 1.0)
    with pytest.raises(ValueError):
        Window(1, 0.0)
    with pytest.raises(ValueError):
        RateLimiter("x", [])


# -- RateLimiter in real (short) time -----------------------------------------------------------


async def fill(limiter: RateLimiter, count: int) -> None:
    for _ in range(count):
        async with limiter.slot():
            pass


async def hold(limiter: RateLimiter, count: int) -> list:
    """Take ``count`` slots and keep them in flight: waiters queue until they are released."""
    return [await limiter.acquire() for _ in range(count)]


def release(handles: list) -> None:
    for handle in handles:
        handle.release()


async def test_waiters_are_served_highest_priority_first():
    limiter = RateLimiter("prio", [Window(2, 0.3)], margin=0.0)
    held = await hold(limiter, 2)
    served: list[str] = []

    async def waiter(label: str, priority: Priority) -> None:
        async with limiter.slot(priority):
            served.append(label)

    tasks = []
    for label, priority in [
        ("bulk", Priority.BULK),
        ("manual", Priority.MANUAL),
        ("backfill", Priority.BACKFILL),
        ("urgent", Priority.URGENT),
    ]:
        tasks.append(asyncio.create_task(waiter(label, priority)))
        await asyncio.sleep(0)  # let it queue before the next one
    await asyncio.sleep(0.01)
    assert served == []  # both places are in flight: everybody queues
    release(held)
    await asyncio.wait_for(asyncio.gather(*tasks), 3)

    assert served == ["manual", "urgent", "bulk", "backfill"]


async def test_equal_priorities_are_served_first_in_first_out():
    limiter = RateLimiter("fifo", [Window(1, 0.08)], margin=0.0)
    held = await hold(limiter, 1)
    served: list[int] = []

    async def waiter(n: int) -> None:
        async with limiter.slot(Priority.INCREMENTAL):
            served.append(n)

    tasks = []
    for n in range(4):
        tasks.append(asyncio.create_task(waiter(n)))
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)
    assert served == []
    release(held)
    await asyncio.wait_for(asyncio.gather(*tasks), 3)

    assert served == [0, 1, 2, 3]


async def test_pause_delays_every_caller_of_the_bucket():
    limiter = RateLimiter("pause", [Window(100, 1.0)])
    before = time.monotonic()
    limiter.pause(0.2)
    starts: list[float] = []

    async def caller(priority: Priority) -> None:
        async with limiter.slot(priority):
            starts.append(time.monotonic())

    await asyncio.wait_for(
        asyncio.gather(*(caller(p) for p in (Priority.MANUAL, Priority.BULK, Priority.BACKFILL))),
        3,
    )
    assert len(starts) == 3
    assert min(starts) >= before + 0.2
    assert limiter.stats.pauses == 1


def test_pause_extends_but_never_shortens():
    now = [100.0]
    limiter = RateLimiter("p", [Window(5, 1.0)], clock=lambda: now[0])
    limiter.pause(3.0)
    limiter.pause(1.0)
    assert limiter.seconds_until_free() == pytest.approx(3.0)
    now[0] += 1.0
    limiter.pause(4.0)
    assert limiter.seconds_until_free() == pytest.approx(4.0)
    limiter.pause(-5.0)
    assert limiter.seconds_until_free() == pytest.approx(4.0)


def test_rate_limited_without_retry_after_pauses_at_least_one_second():
    now = [50.0]
    limiter = RateLimiter("429", [Window(5, 1.0)], clock=lambda: now[0])
    assert limiter.seconds_until_free() == 0.0
    paused = limiter.on_rate_limited(None)
    assert paused >= 1.0
    assert limiter.seconds_until_free() >= 1.0
    assert limiter.seconds_until_free(Priority.MANUAL) >= 1.0  # priority does not jump a pause
    now[0] += paused
    assert limiter.seconds_until_free() == 0.0


@pytest.mark.parametrize(("retry_after", "expected"), [(3, 3.0), (2.5, 2.5), (0.2, 1.0), (0, 1.0)])
def test_rate_limited_pauses_for_retry_after_with_one_second_floor(retry_after, expected):
    now = [10.0]
    limiter = RateLimiter("429", [Window(5, 1.0)], clock=lambda: now[0])
    assert limiter.on_rate_limited(retry_after) == expected
    assert limiter.seconds_until_free() == pytest.approx(expected)


async def test_pause_after_429_makes_a_short_waiter_give_up_with_budget_exhausted():
    limiter = RateLimiter("429", [Window(5, 1.0)])
    limiter.on_rate_limited(None)
    with pytest.raises(BudgetExhausted) as info:
        await limiter.acquire(max_wait=0.5)
    assert info.value.wait_seconds >= 0.99


async def test_budget_exhausted_is_raised_at_once_when_the_wait_exceeds_max_wait():
    limiter = RateLimiter("hourly", [Window(100, 1.0), Window(3, 3600.0)], max_wait=5.0)
    await fill(limiter, 3)
    began_wall, began = time.time(), time.monotonic()
    with pytest.raises(BudgetExhausted) as info:
        await limiter.acquire(Priority.MANUAL)

    # no waiting: fail fast (waiting first would take max_wait, 5 s; 2 s leaves a busy machine room)
    assert time.monotonic() - began < 2.0
    exc = info.value
    assert exc.bucket == "hourly"
    assert 3599.0 < exc.wait_seconds <= 3600.1
    assert exc.resume_at == pytest.approx(began_wall + exc.wait_seconds, abs=0.5)
    assert "hourly" in str(exc)
    assert limiter.stats.exhausted == 1


async def test_budget_exhausted_leaves_no_ghost_in_the_queue():
    limiter = RateLimiter("short", [Window(1, 0.3)], margin=0.0, max_wait=0.1)
    await fill(limiter, 1)
    with pytest.raises(BudgetExhausted):
        await limiter.acquire()
    # A later caller of the same priority is not stuck behind the failed one.
    handle = await asyncio.wait_for(limiter.acquire(max_wait=1.0), 2)
    handle.release()
    assert limiter.stats.acquired == 2


async def test_cancelled_waiter_leaves_the_queue_and_the_next_one_is_served():
    limiter = RateLimiter("cancel", [Window(1, 0.15)], margin=0.0)
    held = await hold(limiter, 1)
    served: list[str] = []

    async def waiter(label: str, priority: Priority) -> None:
        async with limiter.slot(priority):
            served.append(label)

    head = asyncio.create_task(waiter("head", Priority.MANUAL))
    await asyncio.sleep(0)
    follower = asyncio.create_task(waiter("follower", Priority.BULK))
    await asyncio.sleep(0.01)
    head.cancel()
    with pytest.raises(asyncio.CancelledError):
        await head
    release(held)
    await asyncio.wait_for(follower, 2)

    assert served == ["follower"]
    assert limiter.stats.acquired == 2  # the held one and the follower; the cancelled one none


async def test_a_waiter_cancelled_as_it_is_woken_is_cancelled_not_left_waiting():
    """Python 3.11's asyncio.wait_for returns the inner result when the waiting task is cancelled
    in the step its inner wait completes: the cancellation is lost and the waiter waits on for a
    place that may never come (a crashed limiter's requesters hung the whole test run)."""
    line = WaitLine()
    later = time.monotonic() + 60.0

    async def waiter() -> None:
        # the head, ready in 60 s: it waits on its event with a timeout
        await line.wait_turn(
            Priority.BULK, lambda now: later, lambda now: None,
            clock=time.monotonic, max_wait=None, budget="cancel-race",
        )  # fmt: skip

    task = asyncio.create_task(waiter())
    await asyncio.sleep(0.01)
    line.wake_head()  # its event is set and the task cancelled in one step
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=1.0)
    assert task in done, "the cancellation was swallowed: the waiter still waits"
    assert task.cancelled()
    assert len(line) == 0


async def test_reserve_keeps_slots_for_manual_requests():
    limiter = RateLimiter("reserve", [Window(3, 60.0)], reserve=1, max_wait=1.0)
    await fill(limiter, 2)
    with pytest.raises(BudgetExhausted):
        await limiter.acquire(Priority.URGENT)
    handle = await asyncio.wait_for(limiter.acquire(Priority.MANUAL), 1)
    handle.release()


async def test_manual_reserve_holds_places_only_while_manual_work_is_active():
    clock = [0.0]
    limiter = RateLimiter(
        "m", [Window(10, 60.0)], manual_reserve=3, manual_reserve_hold=2.0, max_wait=0.5,
        clock=lambda: clock[0],
    )  # fmt: skip
    await fill(limiter, 7)  # no manual work yet: bulk may use every place
    handle = await asyncio.wait_for(limiter.acquire(Priority.BULK), 1)
    handle.release()
    manual = await asyncio.wait_for(limiter.acquire(Priority.MANUAL), 1)  # 9 of 10 held
    manual.release()
    with pytest.raises(BudgetExhausted):  # 9 held, 3 kept for manual: bulk must wait
        await limiter.acquire(Priority.BULK)
    clock[0] = 2.5  # the manual add is over: the headroom goes back to the bulk
    handle = await asyncio.wait_for(limiter.acquire(Priority.BULK), 1)
    handle.release()


async def test_strict_window_admits_at_most_limit_where_a_leaky_bucket_bursts_to_double():
    """aiolimiter's AsyncLimiter(10, 1) lets ~20 through in the first second; we let 10."""
    run_for = 1.1

    async def drive(acquire_one) -> list[float]:
        arrivals: list[float] = []  # server arrival := the moment the slot was granted

        async def caller() -> None:
            while True:
                await acquire_one(arrivals)

        tasks = [asyncio.create_task(caller()) for _ in range(30)]
        await asyncio.sleep(run_for)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return arrivals

    leaky = AsyncLimiter(10, 1)
    strict = RateLimiter("strict", [Window(10, 1.0)], max_wait=None)

    async def through_leaky(arrivals: list[float]) -> None:
        async with leaky:
            arrivals.append(time.monotonic())

    async def through_strict(arrivals: list[float]) -> None:
        async with strict.slot():
            arrivals.append(time.monotonic())

    leaky_arrivals, strict_arrivals = await asyncio.gather(
        drive(through_leaky), drive(through_strict)
    )

    assert most_arrivals_in_any_interval(leaky_arrivals, 1.0) > 10
    assert most_arrivals_in_any_interval(strict_arrivals, 1.0) <= 10
    assert len(strict_arrivals) >= 10  # and it is not idle either: the first 10 go at once


async def test_spread_spaces_lower_priority_starts_and_lets_manual_through_at_once():
    limiter = RateLimiter("spread", [Window(10, 1.0)], spread=True, max_wait=None)
    loop = asyncio.get_running_loop()
    starts = []
    for _ in range(8):
        handle = await limiter.acquire(Priority.BULK)
        starts.append(loop.time())
        handle.release()
    # paced at ~period/limit, with up to two spacings of slack to make up for timer overshoot
    assert starts[-1] - starts[0] >= (8 - 3) * 0.098 - 0.01, starts
    gaps = [b - a for a, b in itertools.pairwise(starts[3:])]
    assert all(gap >= 0.09 for gap in gaps), gaps
    began = loop.time()
    handle = await limiter.acquire(Priority.MANUAL)
    handle.release()
    assert loop.time() - began < 0.05, "a manual request does not wait for the spacing"


# -- the wait line both limiters share ----------------------------------------------------------


async def test_wait_line_wakes_only_its_head_serves_by_priority_and_moves_keep_their_place():
    line, other = WaitLine(), WaitLine()
    free = {"line": False}
    looks: dict[str, int] = {}
    served: list[str] = []
    moved = {"now": False}

    def waiter(name: str, priority: int, follow: bool = False) -> asyncio.Task[float]:
        def ready_at(now: float) -> float | None:
            looks[name] = looks.get(name, 0) + 1
            return now if free["line"] else None

        return asyncio.create_task(
            line.wait_turn(
                priority, ready_at, lambda now: served.append(name), clock=time.monotonic,
                max_wait=None, budget="test",
                line=(lambda: other if moved["now"] else line) if follow else None,
            )
        )  # fmt: skip

    tasks = [waiter("a", Priority.BULK), waiter("b", Priority.BULK, follow=True),
             waiter("c", Priority.MANUAL), waiter("d", Priority.BULK)]  # fmt: skip
    await asyncio.sleep(0.01)
    assert len(line) == 4 and looks == dict.fromkeys("abcd", 1)
    line.wake_head()  # nothing is free yet: only the head looks again
    await asyncio.sleep(0.01)
    assert looks == {"a": 1, "b": 1, "c": 2, "d": 1}
    moved["now"] = True
    free["line"] = True
    line.wake_all()  # a pause or a change everyone must see: each looks once more
    await asyncio.wait_for(asyncio.gather(*tasks), 2)
    # "b" moved to a line of its own (its bucket was learned): it no longer waits behind "c".
    assert sorted(served) == list("abcd")
    assert [name for name in served if name != "b"] == ["c", "a", "d"]  # priority, then FIFO
    assert len(line) == 0 and len(other) == 0


async def test_wait_line_gives_up_beyond_max_wait_and_leaves_no_ghost():
    line = WaitLine()
    with pytest.raises(BudgetExhausted) as info:
        await line.wait_turn(
            Priority.BULK, lambda now: now + 10.0, lambda now: None,
            clock=time.monotonic, max_wait=1.0, budget="slow",
        )  # fmt: skip
    assert info.value.bucket == "slow" and info.value.wait_seconds == pytest.approx(10.0)
    assert len(line) == 0


# -- fairness between tenants -------------------------------------------------------------------


class Gate:
    """A budget opened one place at a time by the test: who gets each place is the line's
    choice alone."""

    def __init__(self, line: WaitLine) -> None:
        self.line = line
        self.places = 0
        self.served: list[str] = []

    def ready_at(self, now: float) -> float | None:
        return now if self.places else None

    def waiter(self, name: str, tenant: str | None, priority: int = Priority.BULK) -> asyncio.Task:
        def admit(now: float) -> None:
            self.places -= 1
            self.served.append(name)

        return asyncio.create_task(
            self.line.wait_turn(
                priority, self.ready_at, admit, clock=time.monotonic, max_wait=None,
                budget="fair", tenant=tenant,
            )
        )  # fmt: skip

    async def open(self, places: int) -> None:
        for _ in range(places):
            self.places += 1
            self.line.wake_head()
            await asyncio.sleep(0.001)


async def queue_up(gate: Gate, waiters: Sequence[tuple[str, str | None]]) -> list[asyncio.Task]:
    tasks = []
    for name, tenant in waiters:
        tasks.append(gate.waiter(name, tenant))
        await asyncio.sleep(0)  # joins in this order
    await asyncio.sleep(0.01)
    return tasks


async def test_wait_line_takes_turns_between_tenants_however_many_each_has_waiting():
    gate = Gate(WaitLine())
    big = [(f"big{n}", "big") for n in range(6)]
    tasks = await queue_up(gate, [*big, ("small0", "small"), ("small1", "small")])
    await gate.open(8)
    await asyncio.wait_for(asyncio.gather(*tasks), 2)
    # first come first served would have put both small ones after all six big ones
    assert gate.served == ["big0", "small0", "big1", "small1", "big2", "big3", "big4", "big5"]


async def test_wait_line_shares_by_weight_and_callers_naming_no_tenant_are_one_tenant():
    gate = Gate(WaitLine({"heavy": 2.0}))
    waiters = [(f"a{n}", None) for n in range(4)] + [(f"h{n}", "heavy") for n in range(4)]
    tasks = await queue_up(gate, waiters)
    await gate.open(8)
    await asyncio.wait_for(asyncio.gather(*tasks), 2)
    # two turns of "heavy" (weight 2) for each of the unnamed ones, who keep their order
    assert gate.served == ["a0", "h0", "h1", "a1", "h2", "h3", "a2", "a3"]


async def test_wait_line_serves_priority_before_fairness_and_a_waiter_that_gives_up_keeps_no_turn():
    gate = Gate(WaitLine())
    tasks = await queue_up(gate, [("b0", "b"), ("b1", "b"), ("s0", "s")])
    quitter = gate.waiter("s-gone", "s")
    await asyncio.sleep(0.01)
    quitter.cancel()  # its tenant's turn is given back, not spent
    tasks.append(gate.waiter("manual", "b", Priority.MANUAL))
    await asyncio.sleep(0.01)
    tasks.append(gate.waiter("s1", "s"))
    await asyncio.sleep(0.01)
    await gate.open(5)
    await asyncio.wait_for(asyncio.gather(*tasks), 2)
    assert gate.served == ["manual", "b0", "s0", "b1", "s1"]
    assert len(gate.line) == 0


async def test_limiter_gives_a_one_caller_tenant_about_half_the_budget_beside_twenty_callers():
    """The Discord case in small: each caller asks again as soon as it is answered, the big
    tenant with 20 callers, the small one with 1, one place at a time."""
    limiter = RateLimiter("shared", [Window(1, 0.001)], margin=0.0)
    served: list[str] = []
    stop = asyncio.Event()

    async def caller(tenant: str) -> None:
        while not stop.is_set():
            with for_tenant(tenant):  # as DiscordClient names it around ProviderHTTP.send
                async with limiter.slot(Priority.BULK):
                    served.append(tenant)
                    if len(served) >= 60:
                        stop.set()

    tasks = [asyncio.create_task(caller("big")) for _ in range(20)]
    await asyncio.sleep(0.01)
    tasks.append(asyncio.create_task(caller("small")))
    await asyncio.wait_for(stop.wait(), 5)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    small = served[20:60].count("small")  # once the small one is waiting too
    assert 15 <= small <= 21, served  # first come first served: 2 (one turn per 21)


def test_tenant_weights_setting_parses_and_refuses_nonsense():
    from settings import parse_tenant_weights

    assert parse_tenant_weights("") == {}
    assert parse_tenant_weights(" 123:2, 0456:0.5,") == {"123": 2.0, "456": 0.5}
    for bad in ("abc:1", "123", "123:0", "123:-1", "123:nan", "123:inf", "123:1001", "1:x"):
        with pytest.raises(ValueError):
            parse_tenant_weights(bad)
