"""Discord's learned routes and the breaker's invalid-answer count, shared through Postgres by
the processes of one bot token (providers/discord/shared.py, migration 0006)."""

from __future__ import annotations

import time

import pytest

from providers.discord import DiscordLimiter
from providers.discord.shared import SharedDiscordState
from providers.errors import CircuitOpen

pytestmark = pytest.mark.asyncio(loop_scope="session")
ROUTE = "GET /channels/{channel_id}/messages"


def _process(database_url: str, budget: int = 40) -> tuple[DiscordLimiter, SharedDiscordState]:
    limiter = DiscordLimiter(invalid_budget=budget)
    return limiter, SharedDiscordState(limiter, database_url, "fp-test")


async def test_a_route_learned_in_one_process_is_known_in_another(database_url: str) -> None:
    a, a_shared = _process(database_url)
    b, b_shared = _process(database_url)
    a._routes[ROUTE] = "bucket-hash-1"
    await a_shared.share()
    assert b.bucket_of(ROUTE) is None
    await b_shared.share()
    assert b.bucket_of(ROUTE) == "bucket-hash-1"
    assert b.key_of(ROUTE, "42") == ("bucket:bucket-hash-1", "42")
    await a_shared.aclose()
    await b_shared.aclose()


async def test_the_breaker_counts_every_process_answers(database_url: str) -> None:
    a, a_shared = _process(database_url)
    b, b_shared = _process(database_url)
    now = time.monotonic()
    for _ in range(30):
        a.breaker.record(now)
    for _ in range(15):
        b.breaker.record(now)
    b.check_breaker()  # 15 of 40: closed, as long as b knows only its own
    await a_shared.share()
    await b_shared.share()
    assert b.breaker.count(time.monotonic()) == 45
    with pytest.raises(CircuitOpen, match="45 invalid requests"):
        b.check_breaker()
    until = b.breaker_open_until()
    assert until is not None and until > time.monotonic() + 590  # the oldest leave in 10 min
    # what was pushed is not pushed twice
    await a_shared.share()
    await b_shared.share()
    assert b.breaker.count(time.monotonic()) == 45
    await a_shared.aclose()
    await b_shared.aclose()
