"""Resolve one admitted Discord API request to ``(status, body)``: 404, 403, 400 or 200.

Checks run in that order. Bodies are JSON-ready values, except message pages, which are
ready-made bytes (cached per message). Error bodies follow UPSTREAM §2.3: ``Unknown Guild``
10004, ``Unknown Channel`` 10003, ``Missing Access`` 50001 and ``Invalid Form Body`` 50035
with an ``errors`` tree (its inner codes/messages imitate Discord's; they are not verified).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sandbox.discord_payloads import channel_json, guild_json, messages_page
from sandbox.discord_world import Channel, DiscordWorld, Tenant, parse_iso_ms

__all__ = ["CURSORS", "form_error", "resolve"]

CURSORS = ("around", "before", "after")
UNKNOWN_GUILD = {"message": "Unknown Guild", "code": 10004}
UNKNOWN_CHANNEL = {"message": "Unknown Channel", "code": 10003}
MISSING_ACCESS = {"message": "Missing Access", "code": 50001}

Result = tuple[int, Any]


def form_error(field: str, code: str, message: str) -> Result:
    errors = {field: {"_errors": [{"code": code, "message": message}]}}
    return 400, {"code": 50035, "errors": errors, "message": "Invalid Form Body"}


def _snowflake(value: str) -> int | None:
    return int(value) if value.isdigit() and len(value) <= 20 else None


def _not_snowflake(field: str, value: str) -> Result:
    return form_error(field, "NUMBER_TYPE_COERCE", f'Value "{value}" is not snowflake.')


def _limit(query: Mapping[str, str], default: int, low: int, high: int) -> int | Result:
    raw = query.get("limit")
    if raw is None:
        return default
    try:
        limit = int(raw)
    except ValueError:
        return form_error("limit", "NUMBER_TYPE_COERCE", f'Value "{raw}" is not int.')
    if limit < low:
        message = f"int value should be greater than or equal to {low}."
        return form_error("limit", "NUMBER_TYPE_MIN", message)
    if limit > high:
        message = f"int value should be less than or equal to {high}."
        return form_error("limit", "NUMBER_TYPE_MAX", message)
    return limit


def resolve(
    world: DiscordWorld, route: str, params: Mapping[str, Any], query: Mapping[str, str]
) -> Result:
    if "guild_id" in params:
        raw = str(params["guild_id"])
        guild_id = _snowflake(raw)
        if guild_id is None:
            return _not_snowflake("guild_id", raw)
        tenant = world.tenants.get(guild_id)
        if tenant is None:
            return 404, UNKNOWN_GUILD
        return _guild_route(world, tenant, route)
    raw = str(params["channel_id"])
    channel_id = _snowflake(raw)
    if channel_id is None:
        return _not_snowflake("channel_id", raw)
    channel = world.channels.get(channel_id)
    if channel is None:
        return 404, UNKNOWN_CHANNEL
    if route == "archived_threads":
        return _archived_threads(world, channel, query)
    return _messages(world, channel, query)


def _guild_route(world: DiscordWorld, tenant: Tenant, route: str) -> Result:
    if route == "guild":
        return 200, guild_json(tenant)
    if route == "guild_channels":
        return 200, [channel_json(ch) for ch in tenant.channels if not ch.is_thread]
    threads = [
        channel_json(ch)
        for ch in sorted(tenant.channels, key=lambda ch: ch.id, reverse=True)
        if ch.thread is not None and not ch.thread.archived and _parent_visible(world, ch)
    ]
    return 200, {"threads": threads, "members": []}


def _parent_visible(world: DiscordWorld, thread: Channel) -> bool:
    parent = world.channels.get(thread.parent_id or 0)
    return parent is None or parent.access != "forbidden"


def _archived_threads(world: DiscordWorld, channel: Channel, query: Mapping[str, str]) -> Result:
    if channel.access != "ok":
        return 403, MISSING_ACCESS
    limit = _limit(query, 50, 2, 100)
    if isinstance(limit, tuple):
        return limit
    before_ms: int | None = None
    if "before" in query:
        try:
            before_ms = parse_iso_ms(query["before"])
        except ValueError:
            message = f'Could not interpret "{query["before"]}" as a date or timestamp.'
            return form_error("before", "DATE_TIME_TYPE_PARSE", message)
    tenant = world.tenants[channel.guild_id]
    archived = sorted(
        (
            ch
            for ch in tenant.channels
            if ch.thread is not None
            and ch.thread.archived
            and ch.parent_id == channel.id
            and (before_ms is None or ch.thread.archive_ms < before_ms)
        ),
        key=lambda ch: (ch.thread.archive_ms if ch.thread else 0, ch.id),
        reverse=True,
    )
    threads = [channel_json(ch) for ch in archived[:limit]]
    return 200, {"threads": threads, "members": [], "has_more": len(archived) > limit}


def _messages(world: DiscordWorld, channel: Channel, query: Mapping[str, str]) -> Result:
    if channel.access == "forbidden":
        return 403, MISSING_ACCESS
    limit = _limit(query, 50, 1, 100)
    if isinstance(limit, tuple):
        return limit
    given = [name for name in CURSORS if name in query]
    if len(given) > 1:
        message = "Only one of around, before and after may be set."
        return form_error(given[1], "MESSAGE_QUERY_CONFLICT", message)
    cursor: int | None = None
    if given:
        cursor = _snowflake(query[given[0]])
        if cursor is None:
            return _not_snowflake(given[0], query[given[0]])
    if channel.access == "no_history" or not channel.has_messages:
        return 200, b"[]"
    after = cursor if given == ["after"] else None
    before = cursor if given == ["before"] else None
    around = cursor if given == ["around"] else None
    return 200, messages_page(world, channel, channel.page(limit, after, before, around))
