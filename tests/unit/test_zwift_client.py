"""The ZwiftRacing client against the sandbox: the raw key, one limiter per family, 429s
honoured (retryAfter pauses the family), the inclusive cursor de-duplicated, the bulk POST's
bare array, typed errors."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from providers.errors import AuthFailed, BadInput, NotFound, RateLimited, Transient
from providers.http import count_requests
from providers.ratelimit import RateLimiter, Window
from providers.zwift import FAMILIES, ZwiftClient, chunks, family_limiters, parse_rate
from sandbox.zwift import ZwiftSandbox, ZwiftSandboxConfig, create_zwift_app
from sandbox.zwift_world import ZwiftWorldConfig

WORLD = ZwiftWorldConfig(seed=5, club_sizes=(30, 2001), clubless=10, signups_max=30)
BASE = "http://zwift.test/api"


@asynccontextmanager
async def open_client(
    *, limiters: dict[str, Any] | None = None, key: str = "sandbox-zwift-key", **config: Any
) -> AsyncIterator[tuple[ZwiftClient, ZwiftSandbox]]:
    app = create_zwift_app(ZwiftSandboxConfig(**{"world": WORLD, **config}))
    client = ZwiftClient(
        api_key=key,
        base_url=BASE,
        limiters=limiters or family_limiters(max_wait=30.0, time_scale=config.get("time_scale", 1)),
        transport=httpx.ASGITransport(app=app),
    )
    try:
        yield client, app.state.sandbox
    finally:
        await client.aclose()


def loose() -> dict[str, Any]:
    """Limiters that let everything through at once (the sandbox's windows decide)."""
    return {f: RateLimiter(f"loose {f}", [Window(1000, 1.0)], max_wait=1.0) for f in FAMILIES}


async def test_the_key_goes_raw_and_a_wrong_one_is_auth_failed() -> None:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(401, json={"message": "Unauthorized"})

    client = ZwiftClient(
        api_key="k3y", base_url=BASE, limiters=loose(), transport=httpx.MockTransport(record)
    )
    with pytest.raises(AuthFailed, match="ZWIFT_API_KEY") as caught:
        await client.rider(5574)
    await client.aclose()
    assert seen[0].headers["authorization"] == "k3y"
    assert str(seen[0].url) == f"{BASE}/public/riders/5574"
    assert "k3y" not in str(caught.value) and "k3y" not in repr(client)
    with pytest.raises(AuthFailed, match="not set"):
        ZwiftClient(api_key=" ", base_url=BASE, limiters=loose())
    with pytest.raises(ValueError, match="no limiter"):
        ZwiftClient(api_key="k", base_url=BASE, limiters={"clubs": loose()["clubs"]})


async def test_club_pages_follow_the_inclusive_cursor_without_repeats() -> None:
    async with open_client(time_scale=3600) as (client, sandbox):
        club = next(c for c in sandbox.world.clubs.values() if len(c.rider_ids) == 2001)
        started = time.monotonic()
        pages = [page async for page in client.club_pages(club.id)]
        elapsed = time.monotonic() - started
        assert [p.cursor for p in pages] == [0, club.rider_ids[999], club.rider_ids[1998]]
        assert [p.listed for p in pages] == [1000, 1000, 3]
        assert [p.count for p in pages] == [1000, 999, 2]  # the repeat of the cursor dropped
        assert [i for p in pages for i in p.rider_ids] == club.rider_ids
        stats = sandbox.stats()
        assert stats["throttled"] == 0 and stats["by_route"]["club_from"] == 2
        assert elapsed >= 2.0  # 1/h at S=3600 is 1/s: the client waited, the sandbox saw no 429


async def test_a_club_of_exactly_one_page_ends_on_the_repeat() -> None:
    world = ZwiftWorldConfig(seed=5, club_sizes=(1000,), clubless=0, signups_max=10)
    async with open_client(limiters=loose(), lifted=True, world=world) as (client, sandbox):
        club = next(iter(sandbox.world.clubs.values()))
        pages = [page async for page in client.club_pages(club.id)]
        assert [(p.listed, p.count) for p in pages] == [(1000, 1000), (1, 0)]


async def test_a_429_pauses_the_family_for_retry_after_and_is_rate_limited() -> None:
    limiters = loose()
    async with open_client(limiters=limiters, retry_after_header=False) as (client, sandbox):
        event = next(iter(sandbox.world.events))
        await client.event(event)
        with pytest.raises(RateLimited) as caught:
            await client.event(event)
        assert 59 < caught.value.retry_after <= 60  # from the body's retryAfter alone
        assert caught.value.entity == f"event {event}"
        limiter = limiters["events"]
        assert limiter.stats.pauses == 1
        assert limiter.seconds_until_free() > 58
        assert limiters["riders_get"].stats.pauses == 0  # other families go on
        await client.rider(next(iter(sandbox.world.riders)))
        assert client.rate_limited == 1 and sandbox.stats()["throttled"] == 1


async def test_bulk_riders_post_a_bare_array_and_come_back_in_order() -> None:
    async with open_client(limiters=loose(), lifted=True) as (client, sandbox):
        ids = list(sandbox.world.riders)[:5]
        asked = [ids[3], 1, ids[0], ids[3]]
        with count_requests() as sent:
            answer = await client.riders(asked)
        assert sent == [1] and client.requests_sent == 1
        assert answer.rider_ids == [ids[3], ids[0]] and answer.missing(asked) == [1]
        riders = json.loads(answer.raw)
        assert [r["riderId"] for r in riders] == [ids[3], ids[0]]
        with pytest.raises(BadInput, match="1001 rider ids"):
            await client.riders(range(1, 1002))
        with pytest.raises(BadInput, match="at least one"):
            await client.riders([])
        assert sandbox.stats()["by_family"]["riders_post"] == 1  # nothing else was sent
        assert [len(c) for c in chunks(list(range(2345)))] == [1000, 1000, 345]


async def test_events_signups_results_and_typed_errors() -> None:
    async with open_client(limiters=loose(), lifted=True) as (client, sandbox):
        world, now = sandbox.world, sandbox.wall()
        past = next(e for e in world.events.values() if world.event_class(e, now) == "past")
        near = next(e for e in world.events.values() if world.event_class(e, now) == "near")
        event = await client.event(near.id)
        assert event.starts_at == int(near.starts_at)
        signups = await client.event_signups(near.id)
        assert signups.rider_ids == [s.rider_id for s in world.visible_signups(near, now)]
        results = await client.results(past.id)
        assert results.rider_ids == [row["riderId"] for row in past.results]
        with pytest.raises(NotFound, match="Results not found"):
            await client.results(near.id)
        with pytest.raises(NotFound):
            await client.rider(1)
        with pytest.raises(BadInput):
            await client.rider("12/../3")  # type: ignore[arg-type]


async def test_transient_failures_are_asked_again_through_the_limiter() -> None:
    async with open_client(limiters=loose(), lifted=True) as (client, sandbox):
        sandbox.faults.update({"force_5xx": 2})
        rider = next(iter(sandbox.world.riders))
        assert (await client.rider(rider)).rider_id == rider
        assert client.retries == 2 and sandbox.stats()["by_status"]["503"] == 2
        sandbox.faults.update({"force_5xx": 3})
        with pytest.raises(Transient):
            await client.rider(rider)
        sandbox.faults.update({"clear": True, "truncate_rate": 1.0})
        with pytest.raises(Transient, match="malformed JSON"):
            await client.riders([rider])


async def test_a_url_off_the_base_is_refused() -> None:
    client = ZwiftClient(api_key="k", base_url=BASE, limiters=loose())
    with pytest.raises(BadInput, match="ZWIFT_API_BASE_URL"):
        url = "http://elsewhere.test/api/public/riders"
        await client.send("POST", url, entity="x", content=b"[1]")
    await client.aclose()


def test_rate_settings_parse() -> None:
    assert parse_rate("1/900") == Window(1, 900.0)
    for bad in ("900", "a/b", "0/60", "1/0"):
        with pytest.raises(ValueError, match="ZWIFT_RATE_X"):
            parse_rate(bad, "ZWIFT_RATE_X")
    scaled = family_limiters(time_scale=60)
    assert isinstance(scaled["riders_post"], RateLimiter)
    assert scaled["riders_post"].windows == (Window(1, 15.0),)
    with pytest.raises(ValueError, match="unknown"):
        family_limiters({"nope": Window(1, 1.0)})
