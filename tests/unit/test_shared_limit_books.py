"""The shared limiter's waiting arithmetic while a call to the database is in flight.

Pure bookkeeping (providers/shared_limit.py `_ready_at`), with the state a call leaves: no
database, no sleeping. The state is the one that put a Battle.net sync to sleep for an hour in
CI (the clock-ahead chaos run, a durable timer of 3,583 s with 16 characters missing).
"""

from __future__ import annotations

from providers.ratelimit import Priority, Window
from providers.shared_limit import RECHECK, SharedRateLimiter, SyncCall, SyncResult


class NoStore:
    timeout = 1.0

    async def sync(self, call: SyncCall) -> SyncResult:
        raise AssertionError("not called: kick=False")

    async def aclose(self) -> None:
        return None


def _renewing_a_used_up_hourly_lease(now: float) -> SharedRateLimiter:
    """A process that asked for 30 places of the hour and holds 10 in flight, whose 20 used
    ones are off its books while the call that cools them is in flight (``_call`` takes them
    off first); the database's last answer said the first cooled places free up in an hour."""
    limiter = SharedRateLimiter(
        "books", [Window(40, 1.0), Window(36000, 3600.0)], store=NoStore(), clock=lambda: now
    )
    limiter._synced_once = True
    limiter._deadline = now + 2.0
    limiter._targets = [40, 36000]
    limiter._asked = [40, 30]
    limiter._leased = [40, 10]
    limiter._next_free = [None, now + 3583.0]
    for wlog in limiter._logs:
        wlog.in_flight = 10
    limiter._calling = True
    return limiter


def test_a_waiter_while_the_call_is_in_flight_waits_for_its_answer_not_an_hour() -> None:
    now = 1000.0
    limiter = _renewing_a_used_up_hourly_lease(now)
    ready = limiter._ready_at(now, int(Priority.BULK), kick=False)
    assert ready is not None and ready - now <= RECHECK, ready


def test_the_same_books_with_no_call_in_flight_are_a_spent_window() -> None:
    """Short of what it asked with no call in flight, the database really had no more: the
    wait until its places cool is reported (a workflow then sleeps durably for it)."""
    now = 1000.0
    limiter = _renewing_a_used_up_hourly_lease(now)
    limiter._calling = False
    ready = limiter._ready_at(now, int(Priority.BULK), kick=False)
    assert ready == now + 3583.0
