"""The Discord sandbox serves Discord-shaped data with Discord's paging, errors and admin truth."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.__main__ import build_parser, config_from_args
from sandbox.battlenet import BattleNetSandboxConfig
from sandbox.discord import API_PREFIX, DiscordSandbox, DiscordSandboxConfig, create_discord_app
from sandbox.discord_world import (
    DiscordWorld,
    DiscordWorldConfig,
    TenantSpec,
    iso_timestamp,
    snowflake_ms,
)
from sandbox.server import SandboxProcess, cli_args
from tests.sandbox_helpers import (
    DISCORD_HEADERS,
    admin,
    create_discord_tenant,
    discord_api_base,
    discord_sandbox,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "discord"
SPEC: dict[str, Any] = {
    "name": "Guild A",
    "text_channels": [0, 1, 99, 100, 101, 250],
    "announcement_channels": [5],
    "voice_channels": [3],
    "forum_threads": [4, 2],
    "archived_threads": [7, 3, 5],
    "active_threads": [2],
    "no_history_channels": 1,
    "forbidden_channels": 1,
    "seed": 3,
}
FORM_ERROR = {"code": 50035, "message": "Invalid Form Body"}


class Discord:
    """An in-process client of one sandbox app, with a tenant created from ``SPEC``."""

    def __init__(self, app: Any, client: httpx.AsyncClient, layout: dict[str, Any]) -> None:
        self.app, self.client, self.layout = app, client, layout

    @property
    def sandbox(self) -> DiscordSandbox:
        state: DiscordSandbox = self.app.state.sandbox
        return state

    @property
    def guild_id(self) -> str:
        guild_id: str = self.layout["guild_id"]
        return guild_id

    def channel(self, messages: int | None = None, **match: Any) -> str:
        for ch in self.layout["channels"]:
            if messages is not None and ch["messages"] != messages:
                continue
            if all(ch[key] == value for key, value in match.items()):
                channel_id: str = ch["id"]
                return channel_id
        raise LookupError(f"no channel with {messages} messages and {match}")

    async def get(
        self, path: str, headers: dict[str, str] | None = None, **params: Any
    ) -> httpx.Response:
        return await self.client.get(
            API_PREFIX + path, params=params, headers=headers or DISCORD_HEADERS
        )

    async def messages(self, channel_id: str, **params: Any) -> httpx.Response:
        return await self.get(f"/channels/{channel_id}/messages", **params)

    async def truth(self, channel_id: str) -> list[int]:
        response = await self.client.get(f"/_admin/channels/{channel_id}/ids")
        return [int(i) for i in response.json()["ids"]]


@asynccontextmanager
async def open_discord(**overrides: Any) -> AsyncIterator[Discord]:
    """A sandbox with no generated tenants plus one tenant from ``SPEC``."""
    config = DiscordSandboxConfig(world=DiscordWorldConfig(tenants=0), **overrides)
    app = create_discord_app(config)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
        layout = (await client.post("/_admin/tenants", json=SPEC)).json()
        yield Discord(app, client, layout)


@pytest.fixture
async def discord() -> AsyncIterator[Discord]:
    async with open_discord(lifted=True) as opened:
        yield opened


def ids_of(response: httpx.Response) -> list[int]:
    assert response.status_code == 200, response.text
    return [int(message["id"]) for message in response.json()]


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


# --- paging ----------------------------------------------------------------------------------


async def test_no_cursor_gives_the_newest_messages_newest_first(discord: Discord) -> None:
    channel = discord.channel(250)
    truth = await discord.truth(channel)
    assert len(truth) == 250 and truth == sorted(truth)
    assert ids_of(await discord.messages(channel)) == truth[::-1][:50]
    assert ids_of(await discord.messages(channel, limit=100)) == truth[::-1][:100]
    assert ids_of(await discord.messages(discord.channel(0, type=0))) == []


async def test_after_gives_the_oldest_ids_above_the_cursor_newest_first(discord: Discord) -> None:
    channel = discord.channel(250)
    truth = await discord.truth(channel)
    assert ids_of(await discord.messages(channel, after=0, limit=1)) == truth[:1]
    assert ids_of(await discord.messages(channel, after=truth[9], limit=5)) == truth[10:15][::-1]
    assert ids_of(await discord.messages(channel, after=truth[-3], limit=100)) == truth[-2:][::-1]
    assert ids_of(await discord.messages(channel, after=truth[-1])) == []
    between = truth[19] + 1  # not a message id: still a valid cursor
    assert ids_of(await discord.messages(channel, after=between, limit=3)) == truth[20:23][::-1]


async def test_before_and_around(discord: Discord) -> None:
    channel = discord.channel(250)
    truth = await discord.truth(channel)
    assert ids_of(await discord.messages(channel, before=truth[30], limit=10)) == truth[20:30][::-1]
    assert ids_of(await discord.messages(channel, before=truth[2])) == truth[:2][::-1]
    around = ids_of(await discord.messages(channel, around=truth[100], limit=10))
    assert around == truth[95:105][::-1] and truth[100] in around
    assert ids_of(await discord.messages(channel, around=truth[1], limit=10)) == truth[:10][::-1]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"after": 1, "before": 2}, "after"),
        ({"around": 1, "after": 2}, "after"),
        ({"after": "abc"}, "after"),
    ],
)
async def test_bad_query_is_invalid_form_body(
    discord: Discord, params: dict[str, Any], field: str
) -> None:
    response = await discord.messages(discord.channel(250), **params)
    assert response.status_code == 400
    body = response.json()
    assert {k: body[k] for k in FORM_ERROR} == FORM_ERROR
    assert list(body["errors"]) == [field]
    assert body["errors"][field]["_errors"][0]["code"]


async def test_limit_bounds_are_inclusive(discord: Discord) -> None:
    channel = discord.channel(250)
    assert len(ids_of(await discord.messages(channel, limit=1))) == 1
    assert len(ids_of(await discord.messages(channel, limit=100))) == 100


async def test_full_after_sync_of_a_25000_message_channel_equals_the_truth(
    discord: Discord,
) -> None:
    layout = (await discord.client.post("/_admin/tenants", json={"text_channels": [25000]})).json()
    channel = next(ch["id"] for ch in layout["channels"] if ch["messages"] == 25000)
    seen: list[int] = []
    cursor = 0
    while True:
        page = ids_of(await discord.messages(channel, after=cursor, limit=100))
        assert page == sorted(page, reverse=True)
        seen.extend(reversed(page))
        if len(page) < 100:
            break
        cursor = page[0]
    assert seen == await discord.truth(channel)
    assert len(seen) == 25000 == len(set(seen))


# --- payloads --------------------------------------------------------------------------------


async def all_messages(discord: Discord, channel: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for cursor in (0, *(await discord.truth(channel))[99::100]):
        response = await discord.messages(channel, after=cursor, limit=100)
        messages.extend(reversed(response.json()))
    return messages


async def test_timestamps_match_snowflakes_and_ties_exist(discord: Discord) -> None:
    messages = await all_messages(discord, discord.channel(250))
    assert len(messages) == 250
    stamps = []
    for message in messages:
        ms = (int(message["id"]) >> 22) + 1420070400000
        assert message["timestamp"] == iso_timestamp(ms)
        assert message["timestamp"].endswith("+00:00") and len(message["timestamp"]) == 32
        if message["edited_timestamp"] is not None:
            assert message["edited_timestamp"] > message["timestamp"]
        stamps.append(message["timestamp"])
    assert len(set(stamps)) < len(stamps)  # some messages share a millisecond
    assert iso_timestamp(snowflake_ms(1168784010269433998)) == "2023-10-31T05:30:23.005000+00:00"


async def test_messages_are_shaped_like_the_fixtures_and_omit_empty_optionals(
    discord: Discord,
) -> None:
    layout = (await discord.client.post("/_admin/tenants", json={"text_channels": [1500]})).json()
    channel = next(ch["id"] for ch in layout["channels"] if ch["messages"] == 1500)
    messages = await all_messages(discord, channel)
    required = set(fixture("channel_messages_n8n.json")[0]) | set(fixture("message_example.json"))
    required -= {"reactions"}
    kinds: set[int] = set()
    for message in messages:
        assert required <= set(message), required - set(message)
        assert message["channel_id"] == channel
        kinds.add(message["type"])
        assert message.get("reactions", [1]), "reactions is omitted, never []"
        assert ("webhook_id" in message) == (message["author"]["discriminator"] == "0000")
        assert message["author"].get("bot", True) is True
        for reaction in message.get("reactions", []):
            assert set(reaction) >= {"emoji", "count", "count_details", "me", "burst_colors"}
            details = reaction["count_details"]
            assert reaction["count"] == details["burst"] + details["normal"]
        for attachment in message["attachments"]:
            assert {"id", "filename", "size", "url", "proxy_url", "content_type"} <= set(attachment)
        if message["type"] == 19:
            reference = message["message_reference"]
            assert reference["channel_id"] == channel and reference["type"] == 0
            assert message["referenced_message"]["id"] == reference["message_id"]
            assert "referenced_message" not in message["referenced_message"]
        else:
            assert "referenced_message" not in message
    assert {0, 19} <= kinds and kinds & {6, 7, 18}
    assert any(m["attachments"] for m in messages) and any("reactions" in m for m in messages)
    assert any("webhook_id" in m for m in messages)


async def test_channels_threads_and_guild(discord: Discord) -> None:
    guild = (await discord.get(f"/guilds/{discord.guild_id}")).json()
    assert {"id", "name", "icon", "owner_id"} <= set(guild) and guild["name"] == "Guild A"
    channels = (await discord.get(f"/guilds/{discord.guild_id}/channels")).json()
    by_id = {ch["id"]: ch for ch in channels}
    assert {ch["type"] for ch in channels} == {4, 0, 5, 2, 15}
    assert all(ch["type"] not in (10, 11, 12) for ch in channels)
    text_keys = set(fixture("guild_channels_n8n.json")[2]) - {"icon_emoji", "theme_color"}
    general = by_id[discord.channel(0, type=0)]
    assert text_keys <= set(general) and general["last_message_id"] is None
    busy = discord.channel(250)
    assert by_id[busy]["last_message_id"] == str((await discord.truth(busy))[-1])
    assert all(by_id[ch["parent_id"]]["type"] == 4 for ch in channels if ch["parent_id"])
    active = (await discord.get(f"/guilds/{discord.guild_id}/threads/active")).json()
    threads = active["threads"]
    assert active["members"] == [] and len(threads) == 3
    assert [t["id"] for t in threads] == sorted((t["id"] for t in threads), key=int, reverse=True)
    forum = discord.channel(type=15)
    assert sorted(t["message_count"] for t in threads if t["parent_id"] == forum) == [2, 4]
    for thread in threads:
        assert thread["type"] == 11 and thread["thread_metadata"]["archived"] is False
        thread_truth = await discord.truth(thread["id"])
        assert ids_of(await discord.messages(thread["id"])) == thread_truth[::-1]
    assert ids_of(await discord.messages(forum)) == []


async def test_archived_threads_page_by_archive_timestamp(discord: Discord) -> None:
    parent = discord.channel(0, type=0)
    path = f"/channels/{parent}/threads/archived/public"
    everything = (await discord.get(path)).json()
    assert everything["has_more"] is False and everything["members"] == []
    stamps = [t["thread_metadata"]["archive_timestamp"] for t in everything["threads"]]
    assert len(stamps) == 3 and stamps == sorted(stamps, reverse=True)
    assert all(t["thread_metadata"]["archived"] for t in everything["threads"])
    first = (await discord.get(path, limit=2)).json()
    assert first["has_more"] is True and first["threads"] == everything["threads"][:2]
    rest = (await discord.get(path, limit=2, before=stamps[1])).json()
    assert rest == {"threads": everything["threads"][2:], "members": [], "has_more": False}
    assert (await discord.get(path, limit=1)).status_code == 400
    assert (await discord.get(path, before="yesterday")).status_code == 400


async def test_errors_and_access(discord: Discord) -> None:
    channel = discord.channel(250)
    no_ua = {"Authorization": DISCORD_HEADERS["Authorization"]}
    response = await discord.get(f"/channels/{channel}/messages", headers=no_ua)
    assert response.status_code == 403
    assert response.json() == {"message": "internal network error", "code": 40333}
    bad_token = {**DISCORD_HEADERS, "Authorization": "Bot nope"}
    response = await discord.get(f"/channels/{channel}/messages", headers=bad_token)
    assert (response.status_code, response.json()) == (
        401,
        {"message": "401: Unauthorized", "code": 0},
    )
    bearer = {**DISCORD_HEADERS, "Authorization": "Bearer sandbox-bot-token"}
    assert (await discord.get(f"/guilds/{discord.guild_id}", headers=bearer)).status_code == 401
    response = await discord.messages("123456789012345678")
    assert (response.status_code, response.json()) == (
        404,
        {"message": "Unknown Channel", "code": 10003},
    )
    response = await discord.get("/guilds/123456789012345678/channels")
    assert (response.status_code, response.json()) == (
        404,
        {"message": "Unknown Guild", "code": 10004},
    )
    hidden = discord.channel(access="no_history")
    assert ids_of(await discord.messages(hidden)) == []
    assert len(await discord.truth(hidden)) == 10
    response = await discord.messages(discord.channel(access="forbidden"))
    assert (response.status_code, response.json()) == (
        403,
        {"message": "Missing Access", "code": 50001},
    )
    response = await discord.get("/users/@me")
    assert (response.status_code, response.json()) == (
        404,
        {"message": "404: Not Found", "code": 0},
    )


# --- admin -----------------------------------------------------------------------------------


async def test_admin_tenant_layout_append_and_delete(discord: Discord) -> None:
    layout = discord.layout
    assert set(layout) == {"guild_id", "name", "channels"}
    accesses = {ch["access"] for ch in layout["channels"]}
    assert accesses == {"ok", "no_history", "forbidden"}
    assert sum(ch["thread"] for ch in layout["channels"]) == 6
    assert (await discord.client.get(f"/_admin/tenants/{discord.guild_id}")).json() == layout
    channel = discord.channel(99)
    before = await discord.truth(channel)
    response = await discord.client.post(f"/_admin/channels/{channel}/messages", json={"count": 7})
    body = response.json()
    after = await discord.truth(channel)
    assert body["messages"] == 106 and body["added"] == 7 and body["newest_id"] == str(after[-1])
    assert after[:99] == before and after[99] > before[-1]
    assert ids_of(await discord.messages(channel, after=before[-1])) == after[99:][::-1]
    doomed = [str(after[0]), str(after[50])]
    response = await discord.client.post(
        f"/_admin/channels/{channel}/messages", json={"delete": [*doomed, "1"]}
    )
    assert response.json()["deleted"] == 2 and response.json()["messages"] == 104
    assert int(doomed[1]) not in ids_of(await discord.messages(channel, limit=100))
    current = (await discord.client.get(f"/_admin/tenants/{discord.guild_id}")).json()
    assert next(ch for ch in current["channels"] if ch["id"] == channel)["messages"] == 104
    bad = await discord.client.post("/_admin/tenants", json={"txt_channels": [1]})
    assert bad.status_code == 400
    listed = (await discord.client.get("/_admin/tenants")).json()["tenants"]
    assert [t["guild_id"] for t in listed] == [discord.guild_id]


def test_worlds_are_deterministic_and_built_quickly() -> None:
    spec = TenantSpec.from_json(SPEC)
    one = DiscordWorld(DiscordWorldConfig(seed=5, specs=(spec,)))
    two = DiscordWorld(DiscordWorldConfig(seed=5, specs=(spec,)))
    assert list(one.channels) == list(two.channels)
    assert all(
        a.ids == b.ids for a, b in zip(one.channels.values(), two.channels.values(), strict=True)
    )
    big = DiscordWorld(
        DiscordWorldConfig(tenants=1, channels_per_tenant=50, messages_per_channel=4000)
    )
    assert sum(len(ch.ids) for ch in big.channels.values()) == 200_000


# --- running it ------------------------------------------------------------------------------


def test_cli_args_reproduce_the_config() -> None:
    config = DiscordSandboxConfig(
        world=DiscordWorldConfig(seed=9, tenants=2, specs=(TenantSpec.from_json(SPEC),)),
        global_per_second=40,
        messages=(3, 0.5),
        invalid_limit=20,
        lifted=True,
    )
    assert config_from_args(build_parser().parse_args(cli_args(config))) == config
    assert isinstance(config_from_args(build_parser().parse_args([])), BattleNetSandboxConfig)


def test_thread_server_helper_and_tenant_helper() -> None:
    with discord_sandbox(tenants=1, channels_per_tenant=2, messages_per_channel=30) as server:
        layout = create_discord_tenant(server.url, text_channels=[12])
        channel = next(ch["id"] for ch in layout["channels"] if ch["messages"] == 12)
        response = httpx.get(
            f"{discord_api_base(server.url)}/channels/{channel}/messages", headers=DISCORD_HEADERS
        )
        assert len(response.json()) == 12
        assert admin(server.url, "stats")["by_status"] == {"200": 1}


def test_sandbox_process_serves_discord() -> None:
    config = DiscordSandboxConfig(world=DiscordWorldConfig(channels_per_tenant=1))
    with SandboxProcess(config) as process:
        tenants = admin(process.url, "tenants")["tenants"]
        guild = tenants[0]["guild_id"]
        response = httpx.get(
            f"{process.url}{API_PREFIX}/guilds/{guild}/channels", headers=DISCORD_HEADERS
        )
        assert response.status_code == 200
        assert response.headers["x-ratelimit-limit"] == "5"
