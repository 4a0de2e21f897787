"""Turn Battle.net payloads into the indexed columns we store next to the raw JSON.

Parsing is strict about what we index (ids, names) and lenient about the rest: a missing
optional block gives NULL, a missing id is schema drift (BadPayload).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from providers.battlenet.names import character_slug, slugify, valid_slug
from providers.errors import BadPayload

__all__ = [
    "CLASS_NAMES",
    "Roster",
    "RosterMember",
    "character_columns",
    "guild_columns",
    "mythic_rating",
    "roster_members",
    "slugify",
]

# Roster members carry only the class id; these are the playable classes (static data).
CLASS_NAMES = {
    1: "Warrior", 2: "Paladin", 3: "Hunter", 4: "Rogue", 5: "Priest", 6: "Death Knight",
    7: "Shaman", 8: "Mage", 9: "Warlock", 10: "Monk", 11: "Druid", 12: "Demon Hunter",
    13: "Evoker",
}  # fmt: skip


def _require(payload: Any, key: str, entity: str) -> Any:
    if not isinstance(payload, dict) or key not in payload or payload[key] is None:
        raise BadPayload(f"payload for {entity} lacks {key!r}", entity=entity)
    return payload[key]


def _drift(entity: str, key: str, expected: str, value: Any) -> BadPayload:
    return BadPayload(
        f"payload for {entity}: {key!r} should be {expected}, not {type(value).__name__}",
        entity=entity,
    )


def _int(value: Any, key: str, entity: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _drift(entity, key, "an integer", value)
    return value


def _str(value: Any, key: str, entity: str) -> str:
    if not isinstance(value, str):
        raise _drift(entity, key, "a string", value)
    return value


def _opt(payload: dict[str, Any], key: str, entity: str, kinds: tuple[type, ...]) -> Any:
    """An optional field: None when absent, else of one of ``kinds`` (never a bool)."""
    value = payload.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise _drift(entity, key, names, value)
    return value


def _block(payload: dict[str, Any], key: str, entity: str) -> dict[str, Any]:
    """An optional nested object: {} when absent."""
    value = payload.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _drift(entity, key, "an object", value)
    return value


def _name_of(block: Any) -> str | None:
    if isinstance(block, dict):
        name = block.get("name")
        if isinstance(name, str):
            return name
        kind = block.get("type")
        return kind if isinstance(kind, str) else None
    return None


def _ms_to_datetime(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1e14:
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    return None


def guild_columns(payload: Any, entity: str) -> dict[str, Any]:
    """Every field we index is type-checked: a wrong type is schema drift (BadPayload)."""
    bnet_id = _int(_require(payload, "id", entity), "id", entity)
    return {
        "bnet_guild_id": bnet_id,
        "name": _str(_require(payload, "name", entity), "name", entity),
        "realm_name": _name_of(_block(payload, "realm", entity)),
        "faction": _opt(_block(payload, "faction", entity), "type", entity, (str,)),
        "member_count": _opt(payload, "member_count", entity, (int,)),
        "achievement_points": _opt(payload, "achievement_points", entity, (int,)),
    }


@dataclass(frozen=True)
class RosterMember:
    bnet_character_id: int
    name: str
    realm: str
    level: int | None
    class_id: int | None
    rank: int
    raw: dict[str, Any]

    @property
    def character_class(self) -> str | None:
        return CLASS_NAMES.get(self.class_id or 0)


class Roster(list[RosterMember]):
    """A guild's members as parsed; ``rejected`` counts the members left out because their
    name or realm slug could not be a path segment (``../x``, ``a/b``): never stored."""

    rejected: int = 0


def roster_members(payload: Any, entity: str) -> Roster:
    members = _require(payload, "members", entity)
    if not isinstance(members, list):
        raise BadPayload(f"roster of {entity} has no member list", entity=entity)
    out = Roster()
    for member in members:
        char = _require(member, "character", entity)
        realm = _require(char, "realm", entity)
        if not isinstance(char, dict):
            raise _drift(entity, "character", "an object", char)
        parsed = RosterMember(
            bnet_character_id=_int(_require(char, "id", entity), "character.id", entity),
            name=_str(_require(char, "name", entity), "character.name", entity),
            realm=_str(_require(realm, "slug", entity), "realm.slug", entity),
            level=_opt(char, "level", entity, (int,)),
            class_id=_opt(_block(char, "playable_class", entity), "id", entity, (int,)),
            rank=_opt(member, "rank", entity, (int,)) or 0,
            raw=member,
        )
        # Upstream names are input too: one that could escape its path segment is skipped.
        if valid_slug(parsed.realm) and valid_slug(character_slug(parsed.name)):
            out.append(parsed)
        else:
            out.rejected += 1
    return out


INT32_MAX = 2**31 - 1  # the item-level columns are Postgres integer


def _item_level(profile: dict[str, Any], key: str, entity: str) -> int | None:
    """An optional item level, rounded. A non-finite one (``Infinity``, ``NaN``, ``1e400``),
    an integer beyond a double, or one outside the integer column is schema drift
    (BadPayload), never an OverflowError or a value Postgres would refuse."""
    value = _opt(profile, key, entity, (int, float))
    if value is None:
        return None
    try:
        level = float(value)
    except OverflowError:  # an integer beyond a double
        level = math.inf
    if not (math.isfinite(level) and abs(level) <= INT32_MAX):
        raise BadPayload(
            f"payload for {entity}: {key!r} should be a finite integer-sized number",
            entity=entity,
        )
    return round(level)


def character_columns(profile: Any, entity: str) -> dict[str, Any]:
    bnet_id = _int(_require(profile, "id", entity), "id", entity)
    average = _item_level(profile, "average_item_level", entity)
    equipped = _item_level(profile, "equipped_item_level", entity)
    return {
        "bnet_character_id": bnet_id,
        "name": _str(_require(profile, "name", entity), "name", entity),
        "level": _opt(profile, "level", entity, (int,)),
        "character_class": _name_of(_block(profile, "character_class", entity)),
        "race": _name_of(_block(profile, "race", entity)),
        "faction": _opt(_block(profile, "faction", entity), "type", entity, (str,)),
        "active_spec": _name_of(_block(profile, "active_spec", entity)),
        "average_item_level": average,
        "equipped_item_level": equipped,
        "achievement_points": _opt(profile, "achievement_points", entity, (int,)),
        "last_login_at": _ms_to_datetime(profile.get("last_login_timestamp")),
        "guild_bnet_id": _opt(_block(profile, "guild", entity), "id", entity, (int,)),
    }


def mythic_rating(mythic: Any) -> float | None:
    if not isinstance(mythic, dict):
        return None
    current = mythic.get("current_mythic_rating")
    rating = current.get("rating") if isinstance(current, dict) else None
    if isinstance(rating, bool) or not isinstance(rating, int | float):
        return None
    try:
        value = float(rating)
    except OverflowError:  # an integer beyond a double
        return None
    return value if math.isfinite(value) else None
