"""The Discord sandbox enforces Discord's limits strictly and answers them exactly like Discord."""

from __future__ import annotations

import asyncio
import math
import re
from typing import Any

import httpx

from tests.sandbox_helpers import DISCORD_HEADERS
from tests.unit.test_sandbox_discord import Discord, open_discord

RATE_HEADERS = (
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "x-ratelimit-reset-after",
    "x-ratelimit-bucket",
)


def assert_bucket_headers(response: httpx.Response, limit: int) -> None:
    headers = response.headers
    assert all(name in headers for name in RATE_HEADERS), dict(headers)
    assert headers["x-ratelimit-limit"] == str(limit)
    assert 0 <= int(headers["x-ratelimit-remaining"]) < limit
    assert float(headers["x-ratelimit-reset-after"]) >= 0
    assert float(headers["x-ratelimit-reset"]) > 1.7e9
    assert re.fullmatch(r"[0-9a-f]{40}", headers["x-ratelimit-bucket"])


async def stats(discord: Discord) -> dict[str, Any]:
    body: dict[str, Any] = (await discord.client.get("/_admin/stats")).json()
    return body


async def burst(discord: Discord, channel: str, count: int) -> list[httpx.Response]:
    return list(await asyncio.gather(*(discord.messages(channel, limit=1) for _ in range(count))))


async def test_a_burst_of_limit_plus_one_gets_exactly_one_bucket_429() -> None:
    async with open_discord(messages=(5, 5.0)) as discord:
        channel = discord.channel(250)
        responses = await burst(discord, channel, 6)
        limited = [r for r in responses if r.status_code == 429]
        assert len(limited) == 1 and sum(r.status_code == 200 for r in responses) == 5
        remaining = sorted(int(r.headers["x-ratelimit-remaining"]) for r in responses)
        assert remaining == [0, 0, 1, 2, 3, 4]
        too_many = limited[0]
        assert_bucket_headers(too_many, 5)
        body = too_many.json()
        assert set(body) == {"message", "retry_after", "global"}
        assert body["message"] == "You are being rate limited." and body["global"] is False
        assert 4.9 < body["retry_after"] <= 5.0
        assert too_many.headers["retry-after"] == str(math.ceil(body["retry_after"])) == "5"
        assert too_many.headers["x-ratelimit-scope"] == "user"
        assert "x-ratelimit-global" not in too_many.headers
        seen = await stats(discord)
        assert seen["rate_limited"] == {"user": 1, "global": 0, "shared": 0}
        assert seen["rate_limited_by_bucket"] == {f"messages:{channel}": 1}
        assert seen["route_max_in_window"]["messages"] == 5
        assert seen["invalid_requests"] == 1


async def test_channels_are_independent_buckets_sharing_one_hash() -> None:
    async with open_discord(messages=(3, 5.0)) as discord:
        first, second = discord.channel(250), discord.channel(101)
        a = await burst(discord, first, 3)
        b = await burst(discord, second, 3)
        assert all(r.status_code == 200 for r in a + b)
        assert {r.headers["x-ratelimit-bucket"] for r in a + b} == {
            a[0].headers["x-ratelimit-bucket"]
        }
        assert (await discord.messages(first)).status_code == 429
        assert (await discord.messages(second)).status_code == 429
        guild = await discord.get(f"/guilds/{discord.guild_id}/channels")
        assert guild.status_code == 200
        assert guild.headers["x-ratelimit-bucket"] != a[0].headers["x-ratelimit-bucket"]


async def test_every_non_429_answer_of_a_bucketed_route_carries_the_headers() -> None:
    async with open_discord(messages=(10, 5.0)) as discord:
        channel = discord.channel(250)
        answers = [
            await discord.messages(channel),
            await discord.messages(channel, limit=0),
            await discord.messages(discord.channel(access="forbidden")),
            await discord.messages(discord.channel(access="no_history")),
            await discord.messages("123456789012345678"),
            await discord.get(f"/guilds/{discord.guild_id}"),
            await discord.get("/guilds/1/threads/active"),
            await discord.get(f"/channels/{channel}/threads/archived/public"),
        ]
        assert [r.status_code for r in answers] == [200, 400, 403, 200, 404, 200, 404, 200]
        for response in answers[:5]:
            assert_bucket_headers(response, 10)
        for response in answers[5:]:
            assert_bucket_headers(response, 5)
        assert [int(r.headers["x-ratelimit-remaining"]) for r in answers[:2]] == [9, 8]


async def test_global_limit_answers_a_global_429() -> None:
    async with open_discord(global_per_second=3, messages=(50, 5.0)) as discord:
        channels = [discord.channel(n) for n in (1, 99, 100, 101)]
        responses = [await discord.messages(channel) for channel in channels]
        assert [r.status_code for r in responses] == [200, 200, 200, 429]
        limited = responses[-1]
        assert limited.headers["x-ratelimit-global"] == "true"
        assert limited.headers["x-ratelimit-scope"] == "global"
        assert "x-ratelimit-bucket" not in limited.headers
        body = limited.json()
        assert body["global"] is True and body["message"] == "You are being rate limited."
        assert 0 < body["retry_after"] <= 1.0 and limited.headers["retry-after"] == "1"
        seen = await stats(discord)
        assert seen["rate_limited"]["global"] == 1 and seen["global_max_in_window"] == 3
        await asyncio.sleep(body["retry_after"])
        assert (await discord.messages(channels[-1])).status_code == 200


async def test_waiting_reset_after_at_remaining_zero_allows_a_full_bucket() -> None:
    async with open_discord(messages=(3, 0.3)) as discord:
        channel = discord.channel(250)
        first = await discord.messages(channel)
        await asyncio.sleep(0.1)  # a staggered window: the reset follows the newest request
        statuses = [first.status_code]
        last = first
        for _ in range(4):
            for _ in range(3 if last is not first else 2):
                last = await discord.messages(channel)
                statuses.append(last.status_code)
            assert last.headers["x-ratelimit-remaining"] == "0"
            reset_after = float(last.headers["x-ratelimit-reset-after"])
            assert 0.25 < reset_after <= 0.3
            await asyncio.sleep(reset_after)
        assert set(statuses) == {200}


async def test_retry_after_is_the_time_until_one_slot_frees() -> None:
    async with open_discord(messages=(2, 0.4)) as discord:
        channel = discord.channel(250)
        assert (await discord.messages(channel)).status_code == 200
        await asyncio.sleep(0.2)
        assert (await discord.messages(channel)).status_code == 200
        limited = await discord.messages(channel)
        assert limited.status_code == 429
        retry_after = limited.json()["retry_after"]
        assert 0.1 < retry_after <= 0.2 < float(limited.headers["x-ratelimit-reset-after"])
        await asyncio.sleep(retry_after)
        assert (await discord.messages(channel)).status_code == 200
        assert (await discord.messages(channel)).status_code == 429


async def test_checks_run_in_order_ua_auth_global_bucket() -> None:
    async with open_discord(global_per_second=2, messages=(1, 5.0)) as discord:
        channel = discord.channel(250)
        nothing = await discord.get(f"/channels/{channel}/messages", headers={"User-Agent": "x"})
        assert nothing.json()["code"] == 40333
        anonymous = {"User-Agent": DISCORD_HEADERS["User-Agent"]}
        for _ in range(3):  # unauthenticated requests do not use the global limit
            assert (await discord.get("/guilds/1", headers=anonymous)).status_code == 401
        assert (await discord.messages(channel)).status_code == 200
        assert (await discord.messages(channel)).headers["x-ratelimit-scope"] == "user"
        assert (await discord.messages(channel)).headers["x-ratelimit-scope"] == "global"
        seen = await stats(discord)
        assert seen["by_status"] == {"200": 1, "401": 3, "403": 1, "429": 2}
        assert seen["invalid_requests"] == 6


async def test_too_many_invalid_requests_get_the_cloudflare_ban() -> None:
    async with open_discord(invalid_limit=3, invalid_period=0.4) as discord:
        channel = discord.channel(250)
        bad = {**DISCORD_HEADERS, "Authorization": "Bot wrong"}
        for _ in range(4):
            response = await discord.get(f"/channels/{channel}/messages", headers=bad)
            assert response.status_code == 401
        banned = await discord.messages(channel)
        assert banned.status_code == 429
        assert banned.headers["content-type"].startswith("text/html")
        assert banned.text == "error code: 1015"
        assert not any(name.startswith("x-ratelimit") for name in banned.headers)
        seen = await stats(discord)
        assert seen["banned"] is True and seen["banned_responses"] == 1
        await asyncio.sleep(0.4)
        assert (await discord.messages(channel)).status_code == 200
        assert (await stats(discord))["banned"] is False


async def test_forced_429s_by_scope() -> None:
    async with open_discord(invalid_limit=2, messages=(100, 5.0)) as discord:
        channel = discord.channel(250)
        faults = {"force_shared_429": 3, "force_bucket_429": 1, "retry_after": 0.25}
        response = await discord.client.post("/_admin/discord/faults", json=faults)
        assert response.json()["route"] == "messages"
        assert (await discord.get(f"/guilds/{discord.guild_id}")).status_code == 200
        bucket = await discord.messages(channel)
        assert bucket.status_code == 429 and bucket.headers["x-ratelimit-scope"] == "user"
        assert bucket.headers["x-ratelimit-remaining"] == "0"
        assert bucket.headers["x-ratelimit-reset-after"] == "0.250"
        assert bucket.headers["retry-after"] == "1" and bucket.json()["retry_after"] == 0.25
        for _ in range(3):  # shared 429s do not count as invalid: no ban after 2 invalid
            shared = await discord.messages(channel)
            assert shared.headers["x-ratelimit-scope"] == "shared"
            assert shared.json() == {
                "message": "The resource is being rate limited.",
                "retry_after": 0.25,
                "global": False,
            }
        await discord.client.post("/_admin/discord/faults", json={"force_global_429": 1})
        forced_global = await discord.messages(channel)
        assert forced_global.headers["x-ratelimit-global"] == "true"
        assert forced_global.json()["global"] is True
        assert (await discord.messages(channel, limit=1)).status_code == 200
        seen = await stats(discord)
        assert seen["rate_limited"] == {"user": 1, "global": 1, "shared": 3}
        assert seen["invalid_requests"] == 2 and seen["banned"] is False


async def test_forced_status_keeps_answering_until_cleared() -> None:
    async with open_discord(messages=(100, 5.0)) as discord:
        channel = discord.channel(250)
        body = {"force_status": {"status": 403, "count": -1}}
        await discord.client.post("/_admin/discord/faults", json=body)
        for _ in range(5):
            response = await discord.messages(channel)
            assert response.status_code == 403
            assert response.json() == {"message": "Missing Access", "code": 50001}
            assert_bucket_headers(response, 100)
        await discord.client.post("/_admin/discord/faults", json={"clear": True})
        assert (await discord.messages(channel)).status_code == 200
        body_any: dict[str, Any] = {"force_status": {"status": 500, "count": 2}, "route": "any"}
        await discord.client.post("/_admin/discord/faults", json=body_any)
        assert (await discord.get(f"/guilds/{discord.guild_id}")).status_code == 500
        assert (await discord.messages(channel)).json()["message"] == "500: Internal Server Error"
        assert (await discord.messages(channel)).status_code == 200
        bad = await discord.client.post("/_admin/discord/faults", json={"force_status": 200})
        assert bad.status_code == 400


async def test_generic_faults_still_apply() -> None:
    async with open_discord(messages=(100, 5.0)) as discord:
        channel = discord.channel(250)
        await discord.client.post("/_admin/faults", json={"force_429": 1, "force_5xx": 1})
        throttled = await discord.messages(channel)
        assert throttled.status_code == 429 and throttled.headers["x-ratelimit-scope"] == "user"
        failed = await discord.messages(channel)
        assert failed.status_code == 503
        assert failed.json() == {"message": "503: Service Unavailable", "code": 0}
        await discord.client.post("/_admin/faults", json={"truncate_rate": 1})
        cut = await discord.messages(channel)
        assert cut.status_code == 200 and not cut.text.endswith("]")
        faults = (await stats(discord))["faults_injected"]
        assert faults == {"forced_429": 1, "error": 1, "truncate": 1}


async def test_lifted_limits_reject_nothing_but_still_send_headers() -> None:
    async with open_discord(messages=(5, 5.0), global_per_second=5) as discord:
        channel = discord.channel(250)
        lifted = await discord.client.post("/_admin/limits", json={"lifted": True})
        assert lifted.json()["lifted"] is True
        responses = await burst(discord, channel, 30)
        assert {r.status_code for r in responses} == {200}
        assert {r.headers["x-ratelimit-limit"] for r in responses} == {"1000000"}
        seen = await stats(discord)
        assert seen["route_max_in_window"]["messages"] == 30
        assert seen["global_max_in_window"] == 30
        await discord.client.post("/_admin/limits", json={"lifted": False})
        assert (await discord.messages(channel)).status_code == 429


async def test_limits_can_change_and_reset_clears_windows_not_data() -> None:
    async with open_discord() as discord:
        channel = discord.channel(250)
        limits = (await discord.client.post("/_admin/limits", json={"messages": [2, 5]})).json()
        assert limits["messages"] == [2, 5.0] and limits["global_per_second"] == 50
        statuses = [(await discord.messages(channel)).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        reset = (await discord.client.post("/_admin/reset")).json()
        assert reset["requests"] == 0 and reset["rate_limited"]["user"] == 0
        assert (await discord.messages(channel)).status_code == 200
        assert len(await discord.truth(channel)) == 250
        for bad in ({"messages": [0, 5]}, {"messages": 5}, {"per_second": 3}):
            response = await discord.client.post("/_admin/limits", json=bad)
            assert response.status_code == 400
