"""Discord payload helpers: snowflakes, the validated listing objects (guild, channels,
threads) and the validated message page (UPSTREAM §2.2-2.3).

A payload that parsed but has a field of the wrong type is a :class:`BadPayload` naming the
guild or channel (schema drift: the same on every attempt); JSON that does not parse is a
:class:`MalformedBody` (a body cut in transit: asked again)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from providers.errors import BadPayload, MalformedBody

DISCORD_EPOCH_MS = 1420070400000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DIGITS = re.compile(r"[0-9]{1,20}")


def snowflake_time(snowflake: int) -> datetime:
    """When a snowflake was created (UTC, millisecond precision)."""
    ms = (int(snowflake) >> 22) + DISCORD_EPOCH_MS
    return _EPOCH + timedelta(milliseconds=ms)


def snowflake_from_time(moment: datetime) -> int:
    """The smallest snowflake of ``moment``'s millisecond: an ``after``/``before`` cursor.

    ``moment`` must be timezone-aware; times before Discord's epoch give 0.
    """
    if moment.tzinfo is None:
        raise ValueError("snowflake_from_time needs a timezone-aware datetime")
    ms = (moment - _EPOCH) // timedelta(milliseconds=1)
    return max(0, ms - DISCORD_EPOCH_MS) << 22


def snowflake(value: Any) -> int | None:
    """A snowflake serialised as a string of digits, else None."""
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        return int(value)
    return None


@dataclass(frozen=True)
class MessagesPage:
    """One ``GET /channels/{id}/messages?after=&limit=`` answer, validated.

    ``ids`` are the message ids as returned (newest first); ``newest_id`` is the next
    ``after`` cursor; ``is_last`` when the page held fewer than ``limit`` messages. The parsed
    messages are not kept: the raw body is what gets stored, and ~10,000 live objects per page
    would keep the garbage collector busy on the hot path.
    """

    ids: list[int] = field(repr=False)
    raw: bytes = field(repr=False)
    newest_id: int | None
    oldest_id: int | None
    count: int
    is_last: bool


def parse_messages_page(raw: bytes, *, channel_id: int, after: int, limit: int) -> MessagesPage:
    """Validate a message page; BadPayload (naming the channel) when it is not what we page on.

    JSON that does not parse is MalformedBody (a Transient: usually a body cut in transit).
    """
    entity = f"channel {channel_id}"
    try:
        data = orjson.loads(raw)  # ~3x faster than json: a page is parsed on the hot path
    except (ValueError, RecursionError) as exc:
        raise MalformedBody(
            f"discord: malformed JSON for {entity} messages ({len(raw)} bytes)", entity=entity
        ) from exc
    if not isinstance(data, list):
        raise BadPayload(
            f"discord: {entity} messages: expected a JSON array, got {type(data).__name__}",
            entity=entity,
        )
    ids: list[int] = []
    for index, message in enumerate(data):
        if not isinstance(message, dict):
            raise BadPayload(
                f"discord: {entity} messages: item {index} is {type(message).__name__}, "
                "not an object",
                entity=entity,
            )
        message_id = snowflake(message.get("id"))
        if message_id is None:
            raise BadPayload(
                f"discord: {entity} messages: item {index} has no string snowflake id",
                entity=entity,
            )
        if ids and message_id >= ids[-1]:
            raise BadPayload(
                f"discord: {entity} messages: ids not strictly newest first "
                f"({ids[-1]} then {message_id})",
                entity=entity,
            )
        if message_id <= after:
            raise BadPayload(
                f"discord: {entity} messages: id {message_id} is not after the cursor {after}",
                entity=entity,
            )
        ids.append(message_id)
    if len(ids) > limit:
        raise BadPayload(
            f"discord: {entity} messages: {len(ids)} messages for limit {limit}", entity=entity
        )
    return MessagesPage(
        ids=ids,
        raw=raw,
        newest_id=ids[0] if ids else None,
        oldest_id=ids[-1] if ids else None,
        count=len(ids),
        is_last=len(ids) < limit,
    )


# -- listing objects ------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_snowflake(value: Any) -> bool:
    return snowflake(value) is not None


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _is_object(value: Any) -> bool:
    return isinstance(value, dict)


# field -> (what it must be, check, may it be null); absent fields are fine (optional).
Field = tuple[str, Callable[[Any], bool], bool]
GUILD_FIELDS: dict[str, Field] = {"name": ("a string", _is_str, False)}
CHANNEL_FIELDS: dict[str, Field] = {
    "type": ("an integer", _is_int, False),
    "name": ("a string", _is_str, True),
    "position": ("an integer", _is_int, True),
    "parent_id": ("a string snowflake", _is_snowflake, True),
    "guild_id": ("a string snowflake", _is_snowflake, True),
    "last_message_id": ("a string snowflake", _is_snowflake, True),
    "thread_metadata": ("an object", _is_object, False),
}
THREAD_METADATA_FIELDS: dict[str, Field] = {
    "archived": ("a boolean", _is_bool, False),
    "archive_timestamp": ("a string", _is_str, False),
}


def _type_name(value: Any) -> str:
    return type(value).__name__


def _check_fields(
    data: dict[str, Any], fields: dict[str, Field], where: str, entity: str, prefix: str = ""
) -> None:
    for name, (expected, check, nullable) in fields.items():
        if name not in data or (data[name] is None and nullable):
            continue
        value = data[name]
        if not check(value):
            raise BadPayload(
                f"discord: {where}: {prefix}{name} is {_type_name(value)}, not {expected}",
                entity=entity,
            )


def expect_object(data: Any, entity: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise BadPayload(
            f"discord: {entity}: expected a JSON object, got {type(data).__name__}", entity=entity
        )
    return data


def parse_guild(data: Any, entity: str) -> dict[str, Any]:
    """A guild object: an object with a string snowflake ``id`` and a string ``name``."""
    guild = expect_object(data, entity)
    if snowflake(guild.get("id")) is None:
        raise BadPayload(f"discord: {entity}: guild has no string snowflake id", entity=entity)
    _check_fields(guild, GUILD_FIELDS, entity, entity)
    return guild


def parse_channels(data: Any, entity: str) -> list[dict[str, Any]]:
    """An array of channel (or thread) objects, each with a string snowflake ``id`` and the
    fields the sync reads of the right type; returned as received."""
    if not isinstance(data, list):
        raise BadPayload(
            f"discord: {entity}: expected a JSON array of channel objects, got "
            f"{type(data).__name__}",
            entity=entity,
        )
    for index, channel in enumerate(data):
        if not isinstance(channel, dict):
            raise BadPayload(
                f"discord: {entity}: item {index} is {type(channel).__name__}, not an object",
                entity=entity,
            )
        channel_id = snowflake(channel.get("id"))
        if channel_id is None:
            raise BadPayload(
                f"discord: {entity}: item {index} has no string snowflake id", entity=entity
            )
        where = f"{entity}: item {index} (channel {channel_id})"
        _check_fields(channel, CHANNEL_FIELDS, where, entity)
        metadata = channel.get("thread_metadata")
        if isinstance(metadata, dict):
            _check_fields(metadata, THREAD_METADATA_FIELDS, where, entity, "thread_metadata.")
    return data


def parse_thread_list(data: Any, entity: str) -> tuple[list[dict[str, Any]], bool]:
    """``{"threads": [...], "members": [...], "has_more"?: bool}``: the threads and has_more."""
    body = expect_object(data, entity)
    threads = parse_channels(body.get("threads"), entity)
    has_more = body.get("has_more", False)
    if not isinstance(has_more, bool):
        raise BadPayload(
            f"discord: {entity}: has_more is {_type_name(has_more)}, not a boolean", entity=entity
        )
    return threads, has_more
