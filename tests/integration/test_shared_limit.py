"""The Postgres-held budget (providers/shared_limit.py, migration 0005) against a real Postgres.

Simulated worker processes are SharedRateLimiter instances with their own connection and client
id in one event loop, so every start and answer is on one clock and the strict-window property
can be checked exactly: in no interval of length T do more than N requests *possibly* arrive (a
request may arrive anywhere between its start and its answer). Processes crash (their tasks and
connection dropped without giving anything back), new ones join, arrivals are random.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import pytest

from providers.ratelimit import Priority, Window
from providers.shared_limit import SharedRateLimiter, postgres_limiter
from tests.db_support import fetch_rows

pytestmark = pytest.mark.asyncio(loop_scope="session")
SECRET = "client-secret-7f3a9"


@dataclass
class Sim:
    windows: list[Window]
    spans: list[tuple[float, float]] = field(default_factory=list)


def most_in_any_window(spans: list[tuple[float, float]], period: float) -> int:
    """The most requests whose [start, end] meets one interval [t, t + period)."""
    starts = sorted(s for s, _ in spans)
    best = 0
    # the worst t is an answer time: count requests with end >= t and start < t + period
    for t in sorted(e for _, e in spans):
        n = sum(1 for s, e in spans if e >= t and s < t + period)
        best = max(best, n)
    return best if starts else 0


async def _requester(
    limiter: SharedRateLimiter, sim: Sim, rng: random.Random, until: float, priority: int
) -> None:
    while time.monotonic() < until:
        async with limiter.slot(priority, max_wait=30.0):
            start = time.monotonic()
            await asyncio.sleep(rng.uniform(0.0, 0.02))
            sim.spans.append((start, time.monotonic()))
        if rng.random() < 0.2:
            await asyncio.sleep(rng.uniform(0.0, 0.05))


def _limiter(database_url: str, windows: list[Window], name: str = "sim") -> SharedRateLimiter:
    return postgres_limiter(
        name, windows, database_url=database_url, provider="test", credential=[SECRET],
        max_wait=30.0, manual_reserve=2, lease_seconds=1.0, renew_every=0.25,
    )  # fmt: skip


async def _crash(limiter: SharedRateLimiter, tasks: list[asyncio.Task[None]]) -> None:
    """A SIGKILL: everything stops where it is, nothing is given back."""
    for t in tasks:
        t.cancel()
    if limiter._task is not None:
        limiter._task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    limiter._closed = True
    conn = limiter._store._conn  # type: ignore[attr-defined]
    if conn is not None:
        conn.terminate()


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_no_window_ever_holds_more_than_its_limit(database_url: str, seed: int) -> None:
    rng = random.Random(seed)
    windows = [Window(20, 0.5), Window(70, 3.0)]
    sim = Sim(windows)
    end = time.monotonic() + 6.0
    procs: list[tuple[SharedRateLimiter, list[asyncio.Task[None]]]] = []

    def spawn() -> None:
        lim = _limiter(database_url, windows)
        lanes = [Priority.BULK, Priority.BACKFILL, Priority.URGENT, Priority.MANUAL]
        tasks = [
            asyncio.create_task(_requester(lim, sim, rng, end, rng.choice(lanes)))
            for _ in range(rng.randint(1, 6))
        ]
        procs.append((lim, tasks))

    for _ in range(3):
        spawn()
    while time.monotonic() < end - 0.5:
        await asyncio.sleep(rng.uniform(0.3, 1.0))
        alive = [p for p in procs if not p[0]._closed]
        if alive and rng.random() < 0.5:
            await _crash(*rng.choice(alive))
        if rng.random() < 0.6 or len(alive) < 2:
            spawn()
    for lim, tasks in procs:
        if not lim._closed:
            await asyncio.gather(*tasks, return_exceptions=True)
            await lim.aclose()
    assert len(sim.spans) > 60, "the simulation made too few requests to prove anything"
    for w in windows:
        assert most_in_any_window(sim.spans, w.period) <= w.limit, w


async def test_processes_share_one_budget_at_its_rate(database_url: str) -> None:
    """Three processes draining one budget get ≈ its rate together, and fair shares."""
    windows = [Window(40, 0.5)]
    sim = Sim(windows)
    lims = [_limiter(database_url, windows) for _ in range(3)]
    counts = [0, 0, 0]
    seconds = 4.0
    until = time.monotonic() + seconds

    async def drain(k: int) -> None:
        while time.monotonic() < until:
            async with lims[k].slot(Priority.BULK):
                start = time.monotonic()
                await asyncio.sleep(0.003)
                sim.spans.append((start, time.monotonic()))
                counts[k] += 1

    await asyncio.gather(*(drain(k) for k in range(3) for _ in range(15)))
    for lim in lims:
        await lim.aclose()
    assert most_in_any_window(sim.spans, 0.5) <= 40
    rate = len(sim.spans) / seconds
    assert rate >= 0.85 * 80, (rate, counts)
    assert min(counts) >= 0.6 * max(counts), counts
    statements = sum(lim.stats.statements for lim in lims)
    # renewals every 0.25 s in three processes (12/s) at 80 requests/s, plus growth calls
    assert statements / len(sim.spans) <= 0.25, (statements, len(sim.spans))
    rows = await fetch_rows(
        database_url, __import__("sqlalchemy").text("SELECT * FROM rate_limit_buckets")
    )
    assert rows[0]["requests"] == len(sim.spans)
    assert SECRET not in str(rows)  # the credential is only fingerprinted


async def test_a_growing_lease_is_not_reported_as_a_wait_of_a_period(database_url: str) -> None:
    """Requests one after another on a fresh budget with room are served at once, as locally:
    a lease of one place (the first request's) is not a wait of one period for the second, it
    asks for more (a short max_wait gave up: the first activity of a sync failed an attempt)."""
    limiter = postgres_limiter(
        "grow", [Window(10, 1.0)], database_url=database_url, provider="test",
        credential=[SECRET], max_wait=0.05,
    )  # fmt: skip
    try:
        for _ in range(8):
            async with limiter.slot(Priority.BULK):
                pass
    finally:
        await limiter.aclose()
    assert limiter.stats.acquired == 8 and limiter.stats.exhausted == 0


async def test_a_manual_waiter_does_not_answer_its_own_notification(database_url: str) -> None:
    """A manual request the bucket cannot serve yet notifies "manual" (the others give back the
    reserve); its own process must not take that as news and sync again: it did, at once and
    for ever, a hundred calls in half a second holding the bucket's lock. And the places the
    others hold in the slow window (all but the spent ones) come back to it: shares are of what
    is not spent."""
    windows = [Window(5, 1.0), Window(100, 3600.0)]
    bulk = _limiter(database_url, windows, "ping")
    manual = _limiter(database_url, windows, "ping")
    # all but the one place kept for a manual request (the bucket's reserve while none runs)
    held = [await bulk.acquire(Priority.BULK) for _ in range(4)]
    try:
        first = await asyncio.wait_for(manual.acquire(Priority.MANUAL), 1.0)  # served at once
        before = manual.stats.statements
        waiter = asyncio.create_task(manual.acquire(Priority.MANUAL))  # unmet: "manual"
        await asyncio.sleep(0.6)
        calls = manual.stats.statements - before
        for h in [*held, first]:
            h.release()
        (await asyncio.wait_for(waiter, 5.0)).release()
    finally:
        await bulk.aclose()
        await manual.aclose()
    assert calls <= 6, f"{calls} calls while waiting 0.6 s: {manual.stats.reasons}"


async def test_places_another_process_holds_spare_are_not_a_wait_of_an_hour(
    database_url: str,
) -> None:
    """A slow window shared by two processes: one bursts and goes quiet, keeping its spare
    places of the hourly window for a moment; the other, needing more than its share, must wait
    for those to come back, not report the hour the spent places cool (with a short max_wait it
    gave up, and its sync slept durably for the hour with the budget 90 % unspent: the flake
    of test_shared_budget's hourly test)."""
    windows = [Window(30, 1.0), Window(120, 3600.0)]
    quiet = _limiter(database_url, windows, "spare")
    busy = _limiter(database_url, windows, "spare")
    try:
        burst = [await quiet.acquire(Priority.BULK) for _ in range(20)]
        for h in burst:
            h.release()
        served, began = 0, time.monotonic()
        for _ in range(80):  # 20 + 80 = 100 < 120 - the manual reserve
            async with busy.slot(Priority.BULK, max_wait=2.0):
                served += 1
        took = time.monotonic() - began
    finally:
        await quiet.aclose()
        await busy.aclose()
    assert served == 80 and busy.stats.exhausted == 0, (served, busy.snapshot())
    # the quiet one gives its spare back when idle (IDLE_RELEASE); the wait is not spent
    # calling the database in a loop
    assert took < 8.0 and busy.stats.statements < 80, (took, busy.stats.statements)
