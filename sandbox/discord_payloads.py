"""Discord JSON payloads: guild, channel, thread and message objects, shaped like the fixtures.

Messages are deterministic from (tenant seed, channel id, message id) — the id itself derives
from the channel and the message's index. Optional fields are omitted when empty (``reactions``,
``message_reference``, ``referenced_message``, ``webhook_id``, ``author.bot``), as Discord does.
:func:`message_bytes` caches each message's serialized JSON on its channel.
"""

from __future__ import annotations

import random
from typing import Any

from sandbox.common import json_bytes
from sandbox.discord_world import (
    Channel,
    DiscordWorld,
    Tenant,
    User,
    iso_timestamp,
    snowflake,
    snowflake_ms,
)

__all__ = [
    "channel_json",
    "guild_json",
    "message_bytes",
    "message_json",
    "messages_page",
]

_WORDS = (
    "hello", "anyone", "raid", "tonight", "patch", "notes", "looks", "great", "bug", "fixed",
    "deploy", "done", "thanks", "lol", "meeting", "at", "nine", "the", "build", "is", "green",
    "again", "see", "docs", "why", "not", "ship", "it", "coffee", "first", "weekend", "plans",
)  # fmt: skip
_EMOJI = ("🔥", "👍", "😂", "❤️", "🎉", "👀")
_FILES = (
    ("screenshot.png", "image/png"),
    ("photo.jpg", "image/jpeg"),
    ("log.txt", "text/plain; charset=utf-8"),
    ("report.pdf", "application/pdf"),
    ("clip.mp4", "video/mp4"),
)


def _sid(value: int | None) -> str | None:
    return None if value is None else str(value)


def user_json(user: User) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": str(user.id),
        "username": user.username,
        "avatar": user.avatar,
        "discriminator": "0",
        "public_flags": user.public_flags,
        "flags": user.public_flags,
    }
    if user.bot:
        body["bot"] = True
    body.update(
        banner=None,
        accent_color=None,
        global_name=user.global_name,
        avatar_decoration_data=None,
        collectibles=None,
        banner_color=None,
        clan=None,
        primary_guild=None,
    )
    return body


def _webhook_author(user: User) -> dict[str, Any]:
    return {
        "id": str(user.id),
        "username": user.username,
        "avatar": None,
        "discriminator": "0000",
        "public_flags": 0,
        "flags": 0,
        "bot": True,
        "global_name": None,
        "clan": None,
        "primary_guild": None,
    }


def guild_json(tenant: Tenant) -> dict[str, Any]:
    return {
        "id": str(tenant.guild_id),
        "name": tenant.name,
        "icon": None,
        "description": None,
        "splash": None,
        "discovery_splash": None,
        "features": [],
        "banner": None,
        "owner_id": str(tenant.owner_id),
        "application_id": None,
        "region": "deprecated",
        "afk_channel_id": None,
        "afk_timeout": 300,
        "system_channel_id": None,
        "widget_enabled": False,
        "verification_level": 1,
        "roles": [],
        "default_message_notifications": 1,
        "mfa_level": 0,
        "explicit_content_filter": 2,
        "max_presences": None,
        "max_members": 25000000,
        "vanity_url_code": None,
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "preferred_locale": "en-US",
        "rules_channel_id": None,
        "public_updates_channel_id": None,
        "nsfw_level": 0,
        "emojis": [],
        "stickers": [],
        "premium_progress_bar_enabled": False,
    }


def channel_json(channel: Channel) -> dict[str, Any]:
    """A guild channel or thread object, field order as in ``guild_channels_n8n.json``."""
    body: dict[str, Any] = {"id": str(channel.id), "type": channel.type}
    if channel.has_messages:
        body["last_message_id"] = _sid(channel.last_message_id())
    body.update(flags=0, guild_id=str(channel.guild_id), name=channel.name)
    body["parent_id"] = _sid(channel.parent_id)
    if channel.type == 4:
        body.update(position=channel.position, permission_overwrites=[])
        return body
    body["rate_limit_per_user"] = channel.rate_limit_per_user
    if channel.thread is not None:
        info = channel.thread
        body.update(
            bitrate=64000,
            user_limit=0,
            rtc_region=None,
            owner_id=str(info.owner_id),
            thread_metadata={
                "archived": info.archived,
                "archive_timestamp": iso_timestamp(info.archive_ms),
                "auto_archive_duration": info.auto_archive_duration,
                "locked": False,
                "create_timestamp": iso_timestamp(channel.created_ms),
            },
            message_count=len(channel.ids),
            member_count=min(50, 1 + len(channel.ids) // 3),
            total_message_sent=len(channel.ids),
        )
        return body
    if channel.type in (2, 13):
        body.update(bitrate=64000, user_limit=0, rtc_region=None)
    else:
        body["topic"] = channel.topic
    body.update(position=channel.position, permission_overwrites=[], nsfw=channel.nsfw)
    if channel.type == 15:
        body.update(
            available_tags=[],
            default_reaction_emoji=None,
            default_sort_order=None,
            default_forum_layout=0,
            default_thread_rate_limit_per_user=0,
        )
    body.update(icon_emoji={"id": None, "name": "💬"}, theme_color=None)
    return body


# ---------------------------------------------------------------------------------------------
# Messages


def _content(rng: random.Random, tenant: Tenant) -> tuple[str, list[User]]:
    words = rng.choices(_WORDS, k=1 + int(rng.random() * 14))
    mentioned: list[User] = []
    if rng.random() < 0.08:
        mentioned.append(tenant.users[rng.randrange(len(tenant.users))])
        words.insert(0, f"<@{mentioned[0].id}>")
    if rng.random() < 0.05:
        words.append(_EMOJI[rng.randrange(len(_EMOJI))])
    return " ".join(words), mentioned


def _attachment(rng: random.Random, channel: Channel, ms: int, index: int) -> dict[str, Any]:
    filename, content_type = _FILES[rng.randrange(len(_FILES))]
    att_id = snowflake(ms, rng.randrange(32), rng.randrange(32), index)
    seconds = ms // 1000
    query = f"?ex={seconds + 86400:x}&is={seconds:x}&hm={rng.getrandbits(256):064x}&"
    path = f"/attachments/{channel.id}/{att_id}/{filename}"
    body: dict[str, Any] = {
        "id": str(att_id),
        "filename": filename,
        "size": rng.randrange(1_000, 8_000_000),
        "url": f"https://cdn.discordapp.com{path}{query}",
        "proxy_url": f"https://media.discordapp.net{path}{query}",
    }
    if content_type.startswith("image/"):
        body.update(width=rng.choice((640, 1280, 1920)), height=rng.choice((480, 720, 1080)))
        body["placeholder"] = "kAgGDQJ3iHiHd4h3h4eHiHiHeHiHd4h3"
        body["placeholder_version"] = 1
    body["content_type"] = content_type
    return body


def _reactions(rng: random.Random, ms: int) -> list[dict[str, Any]]:
    reactions = []
    for index in range(rng.randint(1, 3)):
        if rng.random() < 0.2:
            emoji: dict[str, Any] = {"id": str(snowflake(ms - 10**9, 1, 1, index)), "name": "pog"}
        else:
            emoji = {"id": None, "name": _EMOJI[(index + rng.randrange(len(_EMOJI))) % 6]}
        burst = 1 if rng.random() < 0.1 else 0
        normal = rng.randint(1, 12)
        reactions.append(
            {
                "emoji": emoji,
                "count": normal + burst,
                "count_details": {"burst": burst, "normal": normal},
                "burst_colors": ["#ff6a00"] if burst else [],
                "me_burst": False,
                "burst_me": False,
                "me": False,
                "burst_count": burst,
            }
        )
    return reactions


def _reference(channel: Channel, message_id: int) -> dict[str, Any]:
    return {
        "type": 0,
        "channel_id": str(channel.id),
        "message_id": str(message_id),
        "guild_id": str(channel.guild_id),
    }


def message_json(
    tenant: Tenant, channel: Channel, message_id: int, nested: bool = False
) -> dict[str, Any]:
    """One message object; ``nested`` leaves out ``referenced_message`` (as Discord does)."""
    rng = random.Random(f"discord:{tenant.seed}:{channel.id}:{message_id}")
    ms = snowflake_ms(message_id)
    roll = rng.random()
    webhook = roll < 0.02
    kind = 0 if webhook else 7 if roll < 0.025 else 6 if roll < 0.03 else 18 if roll < 0.035 else 0
    position = channel.position_of(message_id)
    if 0.035 <= roll < 0.115 and position > 0:
        kind = 19
    earlier = channel.ids[rng.randrange(max(0, position - 20), position)] if position else None
    author = tenant.webhook if webhook else tenant.users[rng.randrange(len(tenant.users))]
    content, mentioned = _content(rng, tenant)
    if kind in (6, 7):
        content = ""
    elif kind == 18:
        content = f"{_WORDS[rng.randrange(len(_WORDS))]} thread"
    everyone = kind == 0 and rng.random() < 0.005
    if everyone:
        content = f"@everyone {content}"
    has_files = kind in (0, 19) and rng.random() < 0.07
    files = rng.randint(1, 3) if has_files else 0
    attachments = [_attachment(rng, channel, ms, i) for i in range(files)]
    body: dict[str, Any] = {
        "id": str(message_id),
        "type": kind,
        "content": content,
        "channel_id": str(channel.id),
        "author": _webhook_author(author) if webhook else user_json(author),
        "attachments": attachments,
        "embeds": [],
        "mentions": [user_json(user) for user in mentioned],
        "mention_roles": [],
        "pinned": kind == 0 and rng.random() < 0.01,
        "mention_everyone": everyone,
        "tts": False,
        "timestamp": iso_timestamp(ms),
        "edited_timestamp": None,
        "flags": 0,
        "components": [],
    }
    if kind in (0, 19) and rng.random() < 0.05:
        body["edited_timestamp"] = iso_timestamp(ms + rng.randrange(5_000, 7_200_000))
    if kind == 0 and rng.random() < 0.04:
        body["embeds"] = [
            {
                "type": "rich",
                "title": content[:40] or "Update",
                "description": "description",
                "color": rng.randrange(0x1000000),
            }
        ]
    if rng.random() < 0.1:
        body["reactions"] = _reactions(rng, ms)
    if webhook:
        body["webhook_id"] = str(author.id)
    if kind in (6, 19) and earlier is not None:
        body["message_reference"] = _reference(channel, earlier)
    if kind == 19 and earlier is not None and not nested:
        exists = channel.contains(earlier)
        body["referenced_message"] = (
            message_json(tenant, channel, earlier, nested=True) if exists else None
        )
    return body


def message_bytes(world: DiscordWorld, channel: Channel, message_id: int) -> bytes:
    """The message's compact JSON, rendered once and cached on the channel.

    When the world holds ``world.cache_limit`` cached messages, every cache is dropped (a crude
    bound on memory; a 200,000-message world fits in the default).
    """
    cached = channel.cache.get(message_id)
    if cached is None:
        tenant = world.tenants[channel.guild_id]
        cached = json_bytes(message_json(tenant, channel, message_id))
        if world.cached_messages >= world.cache_limit:
            world.drop_caches()
        channel.cache[message_id] = cached
        world.cached_messages += 1
    return cached


def messages_page(world: DiscordWorld, channel: Channel, message_ids: list[int]) -> bytes:
    """A JSON array of the given messages, in the given order."""
    cache = channel.cache
    parts = [cache.get(mid) or message_bytes(world, channel, mid) for mid in message_ids]
    return b"[" + b",".join(parts) + b"]"
