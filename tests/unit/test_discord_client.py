"""DiscordClient against small fake handlers that answer like Discord (headers, bodies, paging)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from providers.discord import (
    DiscordClient,
    DiscordLimiter,
    snowflake,
    snowflake_from_time,
    snowflake_time,
)
from providers.discord.client import (
    ACTIVE_THREADS,
    ARCHIVED_THREADS,
    ENDPOINTS,
    GUILD,
    GUILD_CHANNELS,
    MESSAGES,
)
from providers.discord.headers import parse_429
from providers.errors import (
    AuthFailed,
    BadPayload,
    CircuitOpen,
    Forbidden,
    MalformedBody,
    NotFound,
    ProviderError,
    RateLimited,
    Transient,
    UnexpectedStatus,
)
from providers.http import MAX_RETRY_AFTER, count_requests
from providers.ratelimit import BudgetExhausted

TOKEN = "MTE2OTk5.SECRET-token.value_xyz"
BASE = "https://discord.test/api/v10"

Handler = Callable[[httpx.Request], Any]


def make_client(handler: Handler, limiter: DiscordLimiter | None = None) -> DiscordClient:
    return DiscordClient(
        token=TOKEN,
        base_url=BASE,
        limiter=limiter or DiscordLimiter(),
        transport=httpx.MockTransport(handler),
    )


def reply(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.Response(status, content=content, headers=headers or {})


def message(message_id: int, channel_id: int = 123) -> dict[str, Any]:
    return {"id": str(message_id), "channel_id": str(channel_id), "content": f"m{message_id}",
            "author": {"id": "1", "username": "u"}, "type": 0}  # fmt: skip


# -- snowflakes -----------------------------------------------------------------------------


def test_snowflake_time_matches_the_real_message_timestamp() -> None:
    assert snowflake_time(1168784010269433998) == datetime(2023, 10, 31, 5, 30, 23, 5000,
                                                           tzinfo=UTC)  # fmt: skip
    moment = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
    cursor = snowflake_from_time(moment)
    assert snowflake_time(cursor) == moment and cursor & ((1 << 22) - 1) == 0
    assert snowflake_from_time(datetime(2000, 1, 1, tzinfo=UTC)) == 0
    with pytest.raises(ValueError):
        snowflake_from_time(datetime(2024, 1, 1))
    assert snowflake("123") == 123 and snowflake(123) is None and snowflake("١٢") is None


# -- requests and paging --------------------------------------------------------------------


async def test_messages_page_sends_auth_and_parses_newest_first() -> None:
    seen: list[httpx.Request] = []
    body = json.dumps([message(i) for i in (105, 104, 103)]).encode()

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return reply(200, body)

    client = make_client(handler)
    with count_requests() as sent:
        page = await client.messages_page(123, after=100, limit=3)
    await client.aclose()
    request = seen[0]
    assert request.url.path == "/api/v10/channels/123/messages"
    assert dict(request.url.params) == {"after": "100", "limit": "3"}
    assert request.headers["authorization"] == f"Bot {TOKEN}"
    assert request.headers["user-agent"] == "DiscordBot (https://github.com/ratesync/ratesync, 0.1)"
    assert page.ids == [105, 104, 103]
    assert page.raw == body
    assert (page.newest_id, page.oldest_id, page.count, page.is_last) == (105, 103, 3, False)
    assert sent == [1] and client.requests_sent == 1


async def test_short_and_empty_pages_are_last() -> None:
    pages = {"100": [message(102), message(101)], "102": []}
    client = make_client(lambda r: reply(200, pages[r.url.params["after"]]))
    page = await client.messages_page(123, after=100, limit=100)
    assert page.is_last and page.newest_id == 102 and page.count == 2
    page = await client.messages_page(123, after=102)
    assert page.is_last and page.newest_id is None and page.oldest_id is None
    await client.aclose()


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"messages": []}, "expected a JSON array"),
        ([message(101), message(102)], "not strictly newest first"),
        ([message(102), message(102)], "not strictly newest first"),
        ([{"id": 101}], "no string snowflake id"),
        ([{"content": "x"}], "no string snowflake id"),
        (["101"], "not an object"),
        ([message(100)], "not after the cursor"),
    ],
)
async def test_bad_message_pages_are_non_retryable_and_name_the_channel(
    body: Any, fragment: str
) -> None:
    client = make_client(lambda r: reply(200, body))
    with pytest.raises(BadPayload) as caught:
        await client.messages_page(123, after=100, limit=10)
    await client.aclose()
    assert fragment in str(caught.value) and "channel 123" in str(caught.value)
    assert caught.value.retryable is False and caught.value.entity == "channel 123"


async def test_truncated_page_is_a_transient_malformed_body_asked_again() -> None:
    sent: list[int] = []

    def truncated(request: httpx.Request) -> httpx.Response:
        sent.append(1)
        return reply(200, b'[{"id": "105", "content": "he')

    client = make_client(truncated)
    with pytest.raises(MalformedBody) as caught:
        await client.messages_page(123, after=100)
    await client.aclose()
    assert caught.value.retryable is True and "channel 123" in str(caught.value)
    assert len(sent) == 3  # sent again twice inside the client before Temporal sees it


async def test_guild_channels_and_threads() -> None:
    def thread(thread_id: str, archived_at: str) -> dict[str, Any]:
        return {"id": thread_id, "thread_metadata": {"archive_timestamp": archived_at}}

    archived: dict[str | None, dict[str, Any]] = {
        None: {"threads": [thread("9", "2024-03-01T00:00:00+00:00"),
                           thread("8", "2024-02-01T00:00:00+00:00")],
               "members": [], "has_more": True},
        "2024-02-01T00:00:00+00:00": {
            "threads": [thread("7", "2024-01-01T00:00:00+00:00")], "members": [],
            "has_more": False},
    }  # fmt: skip
    befores: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api/v10")
        if path == "/guilds/456":
            return reply(200, {"id": "456", "name": "g"})
        if path == "/guilds/456/channels":
            return reply(200, [{"id": "1", "type": 0}, {"id": "2", "type": 4}])
        if path == "/guilds/456/threads/active":
            return reply(200, {"threads": [{"id": "5"}], "members": []})
        if path == "/channels/1/threads/archived/public":
            before = request.url.params.get("before")
            befores.append(before)
            return reply(200, archived[before])
        return reply(404, {"message": "404: Not Found", "code": 0})

    client = make_client(handler)
    assert (await client.fetch(GUILD, 456))["name"] == "g"
    assert [c["id"] for c in await client.fetch(GUILD_CHANNELS, 456)] == ["1", "2"]
    assert [t["id"] for t in await client.fetch(ACTIVE_THREADS, 456)] == ["5"]
    assert [t["id"] for t in await client.archived_threads(1)] == ["9", "8", "7"]
    assert befores == [None, "2024-02-01T00:00:00+00:00"]
    await client.aclose()


LISTING_CALLS: dict[str, Callable[[DiscordClient], Any]] = {
    "/guilds/456": lambda c: c.fetch(GUILD, 456),
    "/guilds/456/channels": lambda c: c.fetch(GUILD_CHANNELS, 456),
    "/guilds/456/threads/active": lambda c: c.fetch(ACTIVE_THREADS, 456),
    "/channels/1/threads/archived/public": lambda c: c.archived_threads(1),
}
OK_THREAD = {
    "id": "9",
    "type": 11,
    "thread_metadata": {"archive_timestamp": "2024-01-01T00:00:00+00:00"},
}


@pytest.mark.parametrize(
    ("path", "body", "fragments"),
    [
        ("/guilds/456", "abc", ["guild 456", "expected a JSON object"]),
        ("/guilds/456", {"id": "456", "name": 5}, ["guild 456", "name is int, not a string"]),
        ("/guilds/456", {"id": 456, "name": "g"}, ["guild 456", "no string snowflake id"]),
        ("/guilds/456/channels", [{"type": 0}], ["guild 456 channels", "item 0",
                                                  "no string snowflake id"]),
        ("/guilds/456/channels", [{"id": "abc", "type": 0}], ["guild 456 channels",
                                                               "no string snowflake id"]),
        ("/guilds/456/channels", [{"id": 7, "type": 0}], ["item 0", "no string snowflake id"]),
        ("/guilds/456/channels", ["abc"], ["guild 456 channels", "item 0 is str, not an object"]),
        ("/guilds/456/channels", {"id": "1"}, ["guild 456 channels", "expected a JSON array"]),
        ("/guilds/456/channels", [{"id": "1", "type": "0"}], ["channel 1",
                                                               "type is str, not an integer"]),
        ("/guilds/456/channels", [{"id": "1", "type": True}], ["channel 1", "type is bool"]),
        ("/guilds/456/channels", [{"id": "1", "type": 0, "parent_id": 5}], ["channel 1",
                                                                             "parent_id"]),
        ("/guilds/456/channels", [{"id": "1", "type": 0, "position": "3"}], ["channel 1",
                                                                              "position"]),
        ("/guilds/456/channels", [{"id": "1", "type": 0, "name": {"x": 1}}], ["channel 1",
                                                                               "name is dict"]),
        ("/guilds/456/channels", [{"id": "1", "type": 0, "last_message_id": "x"}],
         ["channel 1", "last_message_id"]),
        ("/guilds/456/threads/active", {"threads": "x"}, ["guild 456 active threads",
                                                          "expected a JSON array"]),
        ("/guilds/456/threads/active", ["x"], ["guild 456 active threads",
                                               "expected a JSON object"]),
        ("/guilds/456/threads/active", {"threads": [{"id": "5", "type": 11,
                                                     "thread_metadata": "archived"}]},
         ["guild 456 active threads", "channel 5", "thread_metadata is str, not an object"]),
        ("/channels/1/threads/archived/public",
         {"threads": [{"id": "9", "type": 11, "thread_metadata": []}], "has_more": False},
         ["channel 1 archived threads", "channel 9", "thread_metadata is list"]),
        ("/channels/1/threads/archived/public", {"threads": [OK_THREAD], "has_more": "yes"},
         ["channel 1 archived threads", "has_more is str, not a boolean"]),
        ("/channels/1/threads/archived/public",
         {"threads": [{**OK_THREAD, "thread_metadata": {"archive_timestamp": 5}}],
          "has_more": True},
         ["channel 1 archived threads", "channel 9", "archive_timestamp"]),
    ],
)  # fmt: skip
async def test_wrong_typed_listing_fields_are_a_bad_payload_naming_the_guild_or_channel(
    path: str, body: Any, fragments: list[str]
) -> None:
    client = make_client(lambda r: reply(200, body))
    with pytest.raises(BadPayload) as caught:
        await LISTING_CALLS[path](client)
    await client.aclose()
    for fragment in fragments:
        assert fragment in str(caught.value)
    assert caught.value.retryable is False and str(caught.value).startswith("discord: ")


def test_the_endpoint_table_matches_discord_paths_and_major_parameters() -> None:
    from sandbox.discord import _PATHS as SANDBOX_PATHS
    from sandbox.discord_limits import ROUTES as SANDBOX_MAJORS

    assert set(ENDPOINTS) == set(SANDBOX_PATHS)
    for name, endpoint in ENDPOINTS.items():
        assert endpoint.path == SANDBOX_PATHS[name] and endpoint.major == SANDBOX_MAJORS[name]
        assert endpoint.route == f"GET {endpoint.path}"
        assert "{" + endpoint.major + "}" in endpoint.path and endpoint.path.count("{") == 1


async def test_each_request_takes_its_place_in_the_bucket_the_table_names() -> None:
    bucket = {"X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "4",
              "X-RateLimit-Reset-After": "1.0"}  # fmt: skip
    body = {
        "/guilds/456": {"id": "456", "name": "g"},
        "/guilds/456/channels": [],
        "/guilds/456/threads/active": {"threads": []},
        "/channels/7/threads/archived/public": {"threads": [], "has_more": False},
        "/channels/7/messages": [],
    }
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api/v10")
        seen.append(path)
        headers = {**bucket, "X-RateLimit-Bucket": f"hash-{path.split('/')[-1]}"}
        return reply(200, body[path], headers)

    limiter = DiscordLimiter()
    client = make_client(handler, limiter)
    await client.fetch(GUILD, 456)
    await client.fetch(GUILD_CHANNELS, 456)
    await client.fetch(ACTIVE_THREADS, 456)
    await client.archived_threads(7)
    await client.messages_page(7, after=0)
    await client.aclose()
    assert seen == list(body)
    for endpoint, major in ((GUILD, "456"), (GUILD_CHANNELS, "456"), (ACTIVE_THREADS, "456"),
                            (ARCHIVED_THREADS, "7"), (MESSAGES, "7")):  # fmt: skip
        assert limiter.bucket_of(endpoint.route) is not None
        state = limiter.state(endpoint.route, major)
        assert state.limited and state.remaining == 4, endpoint.route


# -- errors ---------------------------------------------------------------------------------


async def assert_error(
    response: httpx.Response | Exception, kind: type[ProviderError], *fragments: str
) -> ProviderError:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(response, Exception):
            raise response
        return response

    client = make_client(handler)
    with pytest.raises(kind) as caught:
        await client.messages_page(123, after=0)
    await client.aclose()
    for fragment in fragments:
        assert fragment in str(caught.value)
    assert TOKEN not in str(caught.value) and TOKEN not in repr(caught.value)
    assert "SECRET" not in repr(client) and TOKEN not in repr(caught.value.__cause__)
    return caught.value


async def test_errors_are_typed_and_never_contain_the_token() -> None:
    error = await assert_error(reply(401, {"message": "401: Unauthorized", "code": 0}),
                               AuthFailed, "401 Unauthorized", "DISCORD_BOT_TOKEN")  # fmt: skip
    assert error.retryable is False
    error = await assert_error(reply(403, {"message": "Missing Access", "code": 50001}),
                               Forbidden, "50001 Missing Access", "channel 123")  # fmt: skip
    assert error.retryable is False
    error = await assert_error(reply(404, {"message": "Unknown Channel", "code": 10003}),
                               NotFound, "10003 Unknown Channel", "channel 123")  # fmt: skip
    assert error.retryable is False
    body = {"code": 50035, "errors": {}, "message": "Invalid Form Body"}
    error = await assert_error(reply(400, body), UnexpectedStatus, "400", "50035")
    assert error.retryable is False
    error = await assert_error(reply(502, b"<html>bad gateway</html>"), Transient, "502")
    assert error.retryable is True
    await assert_error(httpx.ReadTimeout("timed out"), Transient, "timeout on channel 123")
    await assert_error(httpx.ConnectError("refused"), Transient, "connection error")
    headers = {"Retry-After": "1", "X-RateLimit-Scope": "user", "X-RateLimit-Limit": "5",
               "X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "0.42",
               "X-RateLimit-Bucket": "b"}  # fmt: skip
    body = {"message": "You are being rate limited.", "retry_after": 0.42, "global": False}
    error = await assert_error(reply(429, body, headers), RateLimited, "429 (user)")
    assert isinstance(error, RateLimited) and error.retry_after == 0.42 and error.retryable


async def test_token_with_bot_prefix_is_not_doubled_and_missing_token_fails_loudly() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return reply(200, {"id": "1"})

    client = DiscordClient(token=f"Bot {TOKEN}", base_url=BASE + "/", limiter=DiscordLimiter(),
                           transport=httpx.MockTransport(handler))  # fmt: skip
    await client.fetch(GUILD, 1)
    await client.aclose()
    assert seen == [f"Bot {TOKEN}"]
    with pytest.raises(AuthFailed, match="DISCORD_BOT_TOKEN is not set"):
        DiscordClient(token="", base_url=BASE, limiter=DiscordLimiter())


async def test_global_429_pauses_all_requests() -> None:
    headers = {"Retry-After": "65", "X-RateLimit-Global": "true", "X-RateLimit-Scope": "global"}
    body = {"message": "You are being rate limited.", "retry_after": 64.57, "global": True}
    calls = [0]

    def handler(request: httpx.Request) -> httpx.Response:
        calls[0] += 1
        return reply(429, body, headers)

    limiter = DiscordLimiter(max_wait=5.0)
    client = make_client(handler, limiter)
    with pytest.raises(RateLimited) as caught:
        await client.messages_page(1, after=0)
    assert caught.value.retry_after == 64.57
    with pytest.raises(BudgetExhausted) as exhausted:
        await client.fetch(GUILD_CHANNELS, 2)  # another route, another major: paused too
    assert exhausted.value.bucket == "discord global" and calls == [1]
    # The refused request gave its place back: its bucket holds nothing in flight.
    assert limiter.state("GET /guilds/{guild_id}/channels", "2").in_flight == 0
    await client.aclose()


async def test_breaker_never_sends_while_open_and_cloudflare_block_opens_it() -> None:
    calls = [0]

    def handler(request: httpx.Request) -> httpx.Response:
        calls[0] += 1
        if calls[0] <= 2:
            return reply(403, {"message": "Missing Access", "code": 50001})
        return httpx.Response(429, content=b"error code: 1015",
                              headers={"Content-Type": "text/plain"})  # fmt: skip

    limiter = DiscordLimiter(invalid_budget=2)
    client = make_client(handler, limiter)
    for channel in (1, 2):
        with pytest.raises(Forbidden):
            await client.messages_page(channel, after=0)
    for channel in (3, 4, 5):
        with pytest.raises(CircuitOpen) as caught:
            await client.messages_page(channel, after=0)
        assert caught.value.retryable is False and TOKEN not in str(caught.value)
    assert calls == [2] and limiter.stats()["breaker_open"]

    cloudflare = DiscordLimiter()
    client2 = make_client(handler, cloudflare)
    with pytest.raises(CircuitOpen, match="Cloudflare"):
        await client2.messages_page(9, after=0)
    with pytest.raises(CircuitOpen):
        await client2.fetch(GUILD, 10)
    assert calls == [3]
    assert cloudflare.stats()["rate_limited_by_scope"]["cloudflare"] == 1
    await client.aclose()
    await client2.aclose()


# -- end to end -----------------------------------------------------------------------------


class FakeDiscord:
    """Messages of a few channels behind Discord-style buckets: ``limit`` per ``period`` per
    (bucket, channel), the window starting with its first request, plus a 50/s global check."""

    def __init__(self, channels: dict[int, int], limit: int = 5, period: float = 1.0) -> None:
        self.limit = limit
        self.period = period
        self.messages = {
            channel: [(channel << 32) + i for i in range(1, count + 1)]
            for channel, count in channels.items()
        }
        self.windows: dict[int, tuple[float, int]] = {}  # channel → (reset_at, used)
        self.arrivals: list[float] = []
        self.too_many = 0
        self.rng = random.Random(7)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(self.rng.uniform(0.0, 0.01))  # on the way in
        now = time.monotonic()
        self.arrivals.append(now)
        channel = int(request.url.path.split("/")[-2])
        reset_at, used = self.windows.get(channel, (0.0, 0))
        if now >= reset_at:
            reset_at, used = now + self.period, 0
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Reset": f"{time.time() + reset_at - now:.3f}",
            "X-RateLimit-Reset-After": f"{reset_at - now:.3f}",
            "X-RateLimit-Bucket": "msgs-bucket",
        }
        if used >= self.limit:
            self.too_many += 1
            headers |= {"X-RateLimit-Remaining": "0", "X-RateLimit-Scope": "user",
                        "Retry-After": str(int(reset_at - now) + 1)}  # fmt: skip
            body: Any = {"message": "You are being rate limited.",
                         "retry_after": round(reset_at - now, 3), "global": False}  # fmt: skip
            status = 429
        else:
            used += 1
            self.windows[channel] = (reset_at, used)
            headers["X-RateLimit-Remaining"] = str(self.limit - used)
            after, limit = int(request.url.params["after"]), int(request.url.params["limit"])
            newer = [i for i in self.messages[channel] if i > after][:limit]
            body, status = [message(i, channel) for i in reversed(newer)], 200
        await asyncio.sleep(self.rng.uniform(0.0, 0.01))  # on the way back
        return reply(status, body, headers)


async def test_paging_three_channels_concurrently_never_hits_a_429() -> None:
    fake = FakeDiscord({111: 125, 222: 135, 333: 130}, limit=5, period=1.0)
    limiter = DiscordLimiter()
    client = make_client(fake, limiter)

    async def sync_channel(channel: int) -> list[int]:
        ids: list[int] = []
        after = 0
        while True:
            page = await client.messages_page(channel, after=after, limit=10)
            ids.extend(reversed(page.ids))
            if page.newest_id is not None:
                after = page.newest_id
            if page.is_last:
                return ids

    began = time.monotonic()
    results = await asyncio.wait_for(asyncio.gather(*(sync_channel(c) for c in fake.messages)), 10)
    elapsed = time.monotonic() - began
    await client.aclose()
    for channel, ids in zip(fake.messages, results, strict=True):
        assert ids == fake.messages[channel]
    stats = limiter.stats()
    pages = 13 + 14 + 14
    assert fake.too_many == 0 and stats["rate_limited"] == 0
    assert stats["api_calls"] == pages == len(fake.arrivals)
    assert stats["reset_waits"] > 0 and stats["invalid_in_window"] == 0
    # 14 pages of one channel at 5 per window need two resets: about 2 s, not much more.
    assert 1.9 < elapsed < 4.0


async def test_a_reset_connection_is_never_sent_again_behind_the_limiter() -> None:
    # aiohttp re-sends a GET by itself when a reused connection breaks; that request would
    # reach Discord outside the limiter. Every request the server sees must be one we counted.
    from providers.aiohttp_transport import AiohttpTransport
    from tests.sandbox_helpers import admin, create_discord_tenant, discord_api_base
    from tests.sandbox_helpers import discord_sandbox as sandbox_server

    with sandbox_server(lifted=True) as sandbox:
        tenant = create_discord_tenant(sandbox.url, text_channels=[500])
        channel = int(next(c["id"] for c in tenant["channels"] if c["type"] == 0))
        admin(sandbox.url, "faults", {"reset_rate": 0.3})
        client = DiscordClient(
            token="sandbox-bot-token",
            base_url=discord_api_base(sandbox.url),
            limiter=DiscordLimiter(global_per_second=1000),
            transport=AiohttpTransport(timeout=5.0, max_connections=2),
        )
        client.transient_retries = 0
        resets = 0
        try:
            for _ in range(40):
                try:
                    await client.messages_page(channel, after=0, limit=10)
                except Transient:
                    resets += 1
        finally:
            await client.aclose()
        stats = admin(sandbox.url, "stats")
    assert resets > 0 and stats["faults_injected"]["reset"] == resets
    assert stats["requests"] == client.requests_sent == 40


# -- hostile error bodies: deeply nested, containers where text belongs, beyond a double -----------

DEEP_BODY = b'{"message": "x", "code": ' + b"[" * 100_000


@pytest.mark.parametrize(
    ("status", "kind"),
    [(404, NotFound), (403, Forbidden), (400, UnexpectedStatus)],
    ids=["404", "403", "400"],
)
async def test_a_deeply_nested_error_body_is_classified_without_detail(status, kind) -> None:
    error = await assert_error(reply(status, DEEP_BODY), kind, "channel 123", str(status))
    assert "\n" not in str(error) and "[" not in str(error)


async def test_an_error_body_with_containers_for_code_and_message_has_no_detail() -> None:
    body = {"code": {"nested": 1}, "message": [["Missing", "Access"]]}
    error = await assert_error(reply(404, body), NotFound, "channel 123")
    assert "nested" not in str(error) and "Missing" not in str(error)
    error = await assert_error(reply(403, {"code": 50001, "message": "Missing\nAccess"}),
                               Forbidden, "50001 Missing Access")  # fmt: skip
    assert "\n" not in str(error)


@pytest.mark.parametrize(
    ("body", "scope", "message"),
    [
        (b'{"retry_after": ' + b"[" * 100_000, "user", ""),
        (json.dumps({"retry_after": 1, "message": [["x"] * 3]}).encode(), "user", ""),
        (json.dumps({"retry_after": 1, "message": "rate\nlimited\r"}).encode(), "user",
         "rate limited"),
    ],
    ids=["deep", "container-message", "multi-line-message"],
)  # fmt: skip
def test_parse_429_of_a_hostile_body_is_classified_with_a_one_line_message(
    body, scope, message
) -> None:
    hit = parse_429({"X-RateLimit-Scope": "user"}, body)
    assert (hit.scope, hit.message) == (scope, message)


@pytest.mark.parametrize(
    ("body", "delay"),
    [
        (b'{"retry_after": ' + b"[" * 100_000, None),
        (b'{"retry_after": 1' + b"0" * 400 + b"}", MAX_RETRY_AFTER),
        (b'{"retryAfter": 1' + b"0" * 400 + b"}", MAX_RETRY_AFTER),
        (b'{"retry_after": true}', None),
        (b'{"retry_after": 2.5}', 2.5),
    ],
    ids=["deep", "int-beyond-a-double", "camel-int-beyond-a-double", "bool", "plain"],
)
async def test_retry_after_of_a_hostile_429_body_is_none_or_a_bounded_delay(body, delay) -> None:
    client = make_client(lambda request: reply(200, {}))
    try:
        assert client.retry_after_of(httpx.Response(429, content=body)) == delay
    finally:
        await client.aclose()
