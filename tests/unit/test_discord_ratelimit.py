"""Discord's header-driven limiter: pure bookkeeping with explicit times, then short real waits."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from providers.discord.ratelimit import (
    BucketState,
    DiscordLimiter,
    InvalidRequestWindow,
    RateHeaders,
    parse_429,
    parse_rate_headers,
)
from providers.errors import CircuitOpen
from providers.ratelimit import BudgetExhausted, Priority

MESSAGES = "GET /channels/{channel_id}/messages"
PINS = "GET /channels/{channel_id}/pins"


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def bucket_headers(
    remaining: int, reset_after: float, *, limit: int = 5, bucket: str = "abcd1234"
) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
        "X-RateLimit-Reset-After": f"{reset_after:.3f}",
        "X-RateLimit-Bucket": bucket,
    }


def limit_429(scope: str, retry_after: float, **extra: str) -> tuple[dict[str, str], bytes]:
    headers = {"Retry-After": str(int(retry_after) + 1), "X-RateLimit-Scope": scope, **extra}
    if scope != "global":
        headers.update(bucket_headers(0 if scope == "user" else 3, retry_after))
    else:
        headers["X-RateLimit-Global"] = "true"
    body = {"message": "You are being rate limited.", "retry_after": retry_after,
            "global": scope == "global"}  # fmt: skip
    return headers, json.dumps(body).encode()


# -- header parsing -------------------------------------------------------------------------


def test_rate_headers_prefer_reset_after_over_epoch_reset() -> None:
    headers = {"x-ratelimit-limit": "10", "x-ratelimit-remaining": "3",
               "x-ratelimit-reset": "1470173023.123", "x-ratelimit-reset-after": "64.57",
               "x-ratelimit-bucket": "abcd1234"}  # fmt: skip
    info = parse_rate_headers(headers, wall_now=2_000_000_000.0)  # the local clock is way off
    assert info == RateHeaders(limit=10, remaining=3, reset_after=64.57, bucket="abcd1234")


def test_rate_headers_fall_back_to_epoch_reset_and_need_limit_and_remaining() -> None:
    headers = {"X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0",
               "X-RateLimit-Reset": "1000.5"}  # fmt: skip
    info = parse_rate_headers(headers, wall_now=998.0)
    assert info is not None and info.reset_after == pytest.approx(2.5) and info.bucket is None
    assert parse_rate_headers({"X-RateLimit-Bucket": "x"}, 0.0) is None
    assert parse_rate_headers({}, 0.0) is None


def test_429_scopes_and_retry_after_sources() -> None:
    headers, body = limit_429("user", 64.57)
    hit = parse_429(headers, body)
    assert (hit.scope, hit.retry_after, hit.counts_as_invalid) == ("user", 64.57, True)

    headers, body = limit_429("shared", 1336.57)
    hit = parse_429(headers, body)
    assert (hit.scope, hit.retry_after, hit.counts_as_invalid) == ("shared", 1336.57, False)

    headers, body = limit_429("global", 2.5)
    assert parse_429(headers, body).scope == "global"

    # No scope header: X-RateLimit-Global, or the body's "global", still means global.
    assert parse_429({"X-RateLimit-Global": "true", "Retry-After": "3"}, b"").scope == "global"
    body = json.dumps({"message": "x", "retry_after": 0.5, "global": True}).encode()
    assert parse_429({}, body).scope == "global"

    # The body's float wins over the integer header; without a body the header is used.
    assert parse_429({"Retry-After": "2", "X-RateLimit-Scope": "user"}, b"{}").retry_after == 2.0
    hit = parse_429({"Retry-After": "65"}, json.dumps({"retry_after": 64.57}).encode())
    assert hit.retry_after == 64.57 and hit.scope == "user"


def test_429_without_discord_headers_or_body_is_a_cloudflare_block() -> None:
    hit = parse_429({"Content-Type": "text/plain"}, b"error code: 1015")
    assert hit.scope == "cloudflare" and hit.counts_as_invalid


# -- bucket bookkeeping ---------------------------------------------------------------------


def test_unknown_bucket_allows_one_request_in_flight() -> None:
    state = BucketState()
    assert state.ready_at(0.0) == 0.0
    state.start()
    assert state.ready_at(0.0) is None  # discovery: wait for the first answer
    state.finish()
    state.update(0.1, RateHeaders(5, 4, 1.0, "h"))
    assert state.known and state.remaining == 4 and state.reset_at == pytest.approx(1.1)
    assert state.ready_at(0.1) == 0.1


def test_bucket_waits_for_reset_after_when_nothing_remains_then_refills() -> None:
    state = BucketState()
    state.update(10.0, RateHeaders(limit=3, remaining=1, reset_after=2.0, bucket="h"))
    state.start()
    assert state.remaining == 0
    assert state.ready_at(10.5) == pytest.approx(12.0)  # local time + Reset-After
    assert state.waiting_on_reset(10.5)
    assert state.ready_at(12.0) == 12.0  # the window rolled over: limit minus in flight
    assert state.remaining == 2
    state.finish()
    state.update(12.1, RateHeaders(limit=3, remaining=2, reset_after=1.0, bucket="h"))
    assert state.remaining == 2 and state.reset_at == pytest.approx(13.1)


def test_a_slot_frees_one_period_after_its_own_answer_not_at_the_whole_reset() -> None:
    # A sliding-window server (the sandbox) says Reset-After = when *every* request has left;
    # five requests answered at 0.0, 0.3, 0.6, 0.9, 1.2 in a 5-per-5 s bucket: the sixth may
    # arrive once the first has left (5.0 after its answer), not at 6.2.
    state = BucketState()
    for n, at in enumerate((0.0, 0.3, 0.6, 0.9, 1.2)):
        state.start()
        state.finish()
        state.update(at, RateHeaders(limit=5, remaining=4 - n, reset_after=5.0, bucket="h"))
    assert state.remaining == 0 and state.reset_at == pytest.approx(6.2)
    assert state.ready_at(2.0) == pytest.approx(5.0)
    state.start()  # the sixth, in flight: the next must wait for the second's answer + 5
    assert state.ready_at(5.0) == pytest.approx(5.3)
    state.start()
    state.start()
    state.start()
    state.start()  # five in flight: nothing can be sure to fit until an answer or the reset
    assert state.ready_at(5.1) == pytest.approx(6.2)


def test_a_lost_request_holds_its_place_for_a_period_from_when_it_was_lost() -> None:
    # 5 per 5 s; four answered at 0.0-0.9, the fifth reached the server but its answer was lost
    # at 1.2 (connection reset): the sixth may not go before 5.0 (the first's place) and the
    # seventh not before 6.2 (the lost one's place) — as if it had been answered when lost.
    state = BucketState()
    for n, at in enumerate((0.0, 0.3, 0.6, 0.9)):
        state.start()
        state.finish()
        state.update(at, RateHeaders(limit=5, remaining=4 - n, reset_after=5.0, bucket="h"))
    state.start()
    state.lost(1.2)
    assert state.remaining == 0
    assert state.ready_at(2.0) == pytest.approx(5.0)
    state.start()  # the sixth
    assert state.ready_at(5.0) == pytest.approx(5.3)
    state.start()
    state.start()
    state.start()  # 4 in flight: the next needs the lost one's place
    assert state.ready_at(5.9) == pytest.approx(6.2)


def test_bucket_subtracts_in_flight_and_survives_out_of_order_answers() -> None:
    state = BucketState()
    state.update(0.0, RateHeaders(5, 5, 1.0, "h"))
    for _ in range(4):
        state.start()
    assert state.remaining == 1
    # The server answered the second request first (remaining 3), then the first (remaining 4):
    state.finish()
    state.update(0.1, RateHeaders(5, 3, 0.9, "h"))
    assert state.remaining == 0  # min(local 1, server 3 - 3 still in flight)
    state.finish()
    state.update(0.12, RateHeaders(5, 4, 0.88, "h"))  # stale: must not raise remaining
    assert state.remaining == 0
    # An answer from a newer window is adopted.
    state.finish()
    state.finish()
    state.update(1.5, RateHeaders(5, 4, 1.0, "h"))
    assert state.remaining == 4 and state.reset_at == pytest.approx(2.5)


def test_bucket_never_trusts_a_high_remaining_while_requests_are_in_flight() -> None:
    state = BucketState()
    state.update(0.0, RateHeaders(5, 5, 1.0, "h"))
    for _ in range(3):
        state.start()
    state.finish()
    state.update(0.05, RateHeaders(5, 4, 0.95, "h"))  # 2 others still in flight
    assert state.remaining == 2


def test_cancelled_request_gives_its_place_back() -> None:
    state = BucketState()
    state.update(0.0, RateHeaders(2, 2, 1.0, "h"))
    state.start()
    state.cancel()
    assert state.remaining == 2 and state.in_flight == 0
    state.start()
    assert state.ready_at(5.0) == 5.0 and state.remaining == 1  # new window minus in flight
    state.cancel()
    assert state.remaining == 2


def test_invalid_request_window_opens_at_budget_and_closes_when_oldest_leaves() -> None:
    window = InvalidRequestWindow(budget=3, period=600.0)
    for t in (0.0, 10.0):
        window.record(t)
    assert window.open_until(20.0) is None
    window.record(20.0)
    assert window.count(20.0) == 3
    assert window.open_until(20.0) == 600.0  # the answer at t=0 leaves at 600
    assert window.open_until(599.9) == 600.0
    assert window.open_until(600.0) is None
    assert window.count(600.0) == 2


# -- the limiter ----------------------------------------------------------------------------


async def test_learns_bucket_and_waits_until_reset_after() -> None:
    limiter = DiscordLimiter()
    ticket = await limiter.acquire(MESSAGES, "1")
    limiter.on_response(ticket, 200, bucket_headers(0, 0.15))
    assert limiter.bucket_of(MESSAGES) == "abcd1234"
    began = time.monotonic()
    ticket = await limiter.acquire(MESSAGES, "1")
    waited = time.monotonic() - began
    assert 0.14 <= waited < 0.5
    limiter.on_response(ticket, 200, bucket_headers(4, 1.0))
    stats = limiter.stats()
    assert stats["reset_waits"] == 1 and stats["reset_wait_seconds"] >= 0.14
    assert stats["buckets_known"] == 1 and stats["rate_limited"] == 0


async def test_discovery_allows_one_request_in_flight_per_unknown_bucket() -> None:
    limiter = DiscordLimiter()
    first = await limiter.acquire(MESSAGES, "1")
    others = [asyncio.create_task(limiter.acquire(MESSAGES, "1")) for _ in range(3)]
    other_channel = await asyncio.wait_for(limiter.acquire(MESSAGES, "2"), 1)  # independent
    await asyncio.sleep(0.02)
    assert not any(task.done() for task in others)
    limiter.on_response(first, 200, bucket_headers(4, 1.0))
    tickets = await asyncio.wait_for(asyncio.gather(*others), 1)  # all three fit in remaining 4
    assert limiter.state(MESSAGES, "1").in_flight == 3
    assert limiter.state(MESSAGES, "1").remaining == 1
    for ticket in [*tickets, other_channel]:
        limiter.release(ticket, sent=True)


async def test_different_major_parameters_are_independent() -> None:
    limiter = DiscordLimiter()
    ticket = await limiter.acquire(MESSAGES, "1")
    limiter.on_response(ticket, 200, bucket_headers(0, 30.0))
    with pytest.raises(BudgetExhausted) as caught:
        await limiter.acquire(MESSAGES, "1", max_wait=1.0)
    assert caught.value.wait_seconds > 29 and "channel_id" in caught.value.bucket
    ticket = await asyncio.wait_for(limiter.acquire(MESSAGES, "2", max_wait=1.0), 1)
    limiter.on_response(ticket, 200, bucket_headers(4, 1.0))


async def test_routes_sharing_a_bucket_hash_share_its_state() -> None:
    limiter = DiscordLimiter()
    ticket = await limiter.acquire(MESSAGES, "1")
    limiter.on_response(ticket, 200, bucket_headers(0, 30.0, bucket="shared-hash"))
    ticket = await limiter.acquire(PINS, "1")  # unknown route: one discovery request
    limiter.on_response(ticket, 200, bucket_headers(0, 30.0, bucket="shared-hash"))
    assert limiter.key_of(PINS, "1") == limiter.key_of(MESSAGES, "1")
    with pytest.raises(BudgetExhausted):
        await limiter.acquire(PINS, "1", max_wait=1.0)
    assert limiter.stats()["buckets_known"] == 1


async def test_route_without_bucket_headers_is_limited_globally_only() -> None:
    limiter = DiscordLimiter()
    ticket = await limiter.acquire("GET /gateway", "")
    limiter.on_response(ticket, 200, {})
    tickets = [await asyncio.wait_for(limiter.acquire("GET /gateway", ""), 1) for _ in range(5)]
    for t in tickets:
        limiter.on_response(t, 200, {})


async def test_429_user_pauses_the_bucket_and_counts_as_invalid() -> None:
    limiter = DiscordLimiter()
    ticket = await limiter.acquire(MESSAGES, "1")
    headers, body = limit_429("user", 12.5)
    hit = limiter.on_response(ticket, 429, headers, body)
    assert hit is not None and hit.scope == "user" and hit.retry_after == 12.5
    with pytest.raises(BudgetExhausted):
        await limiter.acquire(MESSAGES, "1", max_wait=5.0)
    assert limiter.global_limiter.seconds_until_free() == 0.0  # others are not paused
    stats = limiter.stats()
    assert stats["rate_limited_by_scope"]["user"] == 1 and stats["invalid_in_window"] == 1


async def test_429_shared_pauses_the_bucket_but_is_not_invalid() -> None:
    limiter = DiscordLimiter()
    ticket = await limiter.acquire(MESSAGES, "1")
    headers, body = limit_429("shared", 40.0)
    hit = limiter.on_response(ticket, 429, headers, body)
    assert hit is not None and hit.scope == "shared" and hit.retry_after == 40.0
    with pytest.raises(BudgetExhausted):
        await limiter.acquire(MESSAGES, "1", max_wait=5.0)
    assert limiter.stats()["invalid_in_window"] == 0


async def test_429_global_pauses_every_discord_request() -> None:
    limiter = DiscordLimiter()
    ticket = await limiter.acquire(MESSAGES, "1")
    headers, body = limit_429("global", 20.0)
    hit = limiter.on_response(ticket, 429, headers, body)
    assert hit is not None and hit.scope == "global"
    assert limiter.global_limiter.seconds_until_free() == pytest.approx(20.0, abs=0.1)
    with pytest.raises(BudgetExhausted):  # any route, any channel: the global slot is paused
        async with limiter.global_limiter.slot(Priority.MANUAL, max_wait=5.0):
            pass
    assert limiter.stats()["invalid_in_window"] == 1


async def test_breaker_opens_at_budget_refuses_and_closes_after_window() -> None:
    clock = FakeClock()
    wall = FakeClock(1_800_000_000.0)
    limiter = DiscordLimiter(invalid_budget=3, clock=clock, wall_clock=wall, spread=False)
    for status in (401, 403, 403):
        ticket = await limiter.acquire(MESSAGES, "1")
        limiter.on_response(ticket, status, {"X-RateLimit-Limit": "50",
                                             "X-RateLimit-Remaining": "49"})  # fmt: skip
        clock.now += 1.0
    with pytest.raises(CircuitOpen) as caught:
        await limiter.acquire(MESSAGES, "2")
    message = str(caught.value)
    assert "\n" not in message and "3 invalid requests" in message and "10,000" in message
    assert "retry after 2027-01-15T08:09:57Z" in message  # closes 597 s from now
    assert caught.value.retryable is False
    assert limiter.stats()["breaker_open"] is True
    clock.now += 597.0  # the first invalid answer (t=1000) leaves the window at 1600
    assert limiter.stats()["breaker_open"] is False
    ticket = await limiter.acquire(MESSAGES, "2")
    limiter.release(ticket, sent=False)


async def test_cloudflare_block_opens_the_breaker_for_the_ban() -> None:
    clock = FakeClock()
    limiter = DiscordLimiter(clock=clock, ban_pause=3600.0, spread=False)
    ticket = await limiter.acquire(MESSAGES, "1")
    hit = limiter.on_response(ticket, 429, {"Content-Type": "text/plain"}, b"error code: 1015")
    assert hit is not None and hit.scope == "cloudflare" and hit.retry_after == 3600.0
    with pytest.raises(CircuitOpen, match="Cloudflare"):
        await limiter.acquire(MESSAGES, "3")
    clock.now += 3600.0
    ticket = await limiter.acquire(MESSAGES, "3")
    limiter.release(ticket, sent=False)


async def test_higher_priority_waiter_goes_first_in_a_bucket() -> None:
    limiter = DiscordLimiter()
    ticket = await limiter.acquire(MESSAGES, "1")
    limiter.on_response(ticket, 200, bucket_headers(0, 0.1, limit=1))
    order: list[str] = []

    async def one(name: str, priority: int) -> None:
        ticket = await limiter.acquire(MESSAGES, "1", priority=priority)
        order.append(name)
        await asyncio.sleep(0.01)
        limiter.on_response(ticket, 200, bucket_headers(0, 0.05, limit=1))

    low = asyncio.create_task(one("low", Priority.BACKFILL))
    await asyncio.sleep(0.01)
    high = asyncio.create_task(one("high", Priority.MANUAL))
    await asyncio.wait_for(asyncio.gather(low, high), 2)
    assert order == ["high", "low"]


async def test_cancelled_waiter_leaves_the_queue_and_the_next_one_proceeds() -> None:
    limiter = DiscordLimiter()
    first = await limiter.acquire(MESSAGES, "1")
    waiting = asyncio.create_task(limiter.acquire(MESSAGES, "1"))
    queued = asyncio.create_task(limiter.acquire(MESSAGES, "1"))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    limiter.release(first, sent=True)  # discovery request failed in transport: next one goes
    ticket = await asyncio.wait_for(queued, 1)
    limiter.on_response(ticket, 200, bucket_headers(4, 1.0))
    assert limiter.state(MESSAGES, "1").in_flight == 0


def test_stats_keys() -> None:
    stats = DiscordLimiter().stats()
    assert {
        "api_calls", "rate_limited", "rate_limited_by_scope", "reset_waits",
        "reset_wait_seconds", "invalid_in_window", "breaker_open", "buckets_known",
    } <= set(stats)  # fmt: skip
    assert stats["rate_limited_by_scope"] == {"user": 0, "global": 0, "shared": 0,
                                              "cloudflare": 0}  # fmt: skip


def test_a_learned_bucket_spreads_its_starts_instead_of_bursting():
    """After the first answer (5 per 5 s, 4 remaining) the next four do not go at once: a burst
    would leave the server's window full for a whole period, and a worker that replaces one
    killed right after it (knowing nothing of it) would meet a 429."""
    from providers.discord.bucket import BucketState
    from providers.discord.headers import RateHeaders

    bucket = BucketState()
    bucket.start(0.0)
    bucket.finish()
    bucket.update(0.05, RateHeaders(limit=5, remaining=4, reset_after=5.0, bucket="b"))
    now, starts = 0.05, []
    for _ in range(4):
        ready = bucket.ready_at(now)
        assert ready is not None
        now = max(now, ready)
        bucket.start(now)
        bucket.finish()
        starts.append(now)
    gaps = [b - a for a, b in zip([0.0, *starts], starts, strict=False)]
    assert all(gap >= 0.98 * 5.0 / 5 - 1e-9 for gap in gaps), gaps
    assert starts[-1] < 5.0  # still within the window's budget: pacing, not a lower rate
