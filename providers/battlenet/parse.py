"""Turn Battle.net payloads into the indexed columns we store next to the raw JSON.

Parsing is strict about what we index (ids, names) and lenient about the rest: a missing
optional block gives NULL, a missing id is schema drift (BadPayload).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from providers.errors import BadPayload

# Roster members carry only the class id; these are the playable classes (static data).
CLASS_NAMES = {
    1: "Warrior", 2: "Paladin", 3: "Hunter", 4: "Rogue", 5: "Priest", 6: "Death Knight",
    7: "Shaman", 8: "Mage", 9: "Warlock", 10: "Monk", 11: "Druid", 12: "Demon Hunter",
    13: "Evoker",
}  # fmt: skip


def slugify(name: str) -> str:
    """Guild/realm slug or character path name: lower-case, spaces to hyphens."""
    return "-".join(name.strip().lower().replace("'", "").split())


def _require(payload: Any, key: str, entity: str) -> Any:
    if not isinstance(payload, dict) or key not in payload or payload[key] is None:
        raise BadPayload(f"payload for {entity} lacks {key!r}", entity=entity)
    return payload[key]


def _name_of(block: Any) -> str | None:
    if isinstance(block, dict):
        name = block.get("name")
        if isinstance(name, str):
            return name
        kind = block.get("type")
        return kind if isinstance(kind, str) else None
    return None


def _ms_to_datetime(value: Any) -> datetime | None:
    if isinstance(value, int | float) and value > 0:
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    return None


def guild_columns(payload: Any, entity: str) -> dict[str, Any]:
    realm = payload.get("realm") if isinstance(payload, dict) else None
    return {
        "bnet_guild_id": int(_require(payload, "id", entity)),
        "name": str(_require(payload, "name", entity)),
        "realm_name": _name_of(realm),
        "faction": (payload.get("faction") or {}).get("type"),
        "member_count": payload.get("member_count"),
        "achievement_points": payload.get("achievement_points"),
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


def roster_members(payload: Any, entity: str) -> list[RosterMember]:
    members = _require(payload, "members", entity)
    if not isinstance(members, list):
        raise BadPayload(f"roster of {entity} has no member list", entity=entity)
    out: list[RosterMember] = []
    for member in members:
        char = _require(member, "character", entity)
        realm = _require(char, "realm", entity)
        out.append(
            RosterMember(
                bnet_character_id=int(_require(char, "id", entity)),
                name=str(_require(char, "name", entity)),
                realm=str(_require(realm, "slug", entity)),
                level=char.get("level"),
                class_id=(char.get("playable_class") or {}).get("id"),
                rank=int(member.get("rank", 0)),
                raw=member,
            )
        )
    return out


def character_columns(profile: Any, entity: str) -> dict[str, Any]:
    return {
        "bnet_character_id": int(_require(profile, "id", entity)),
        "name": str(_require(profile, "name", entity)),
        "level": profile.get("level"),
        "character_class": _name_of(profile.get("character_class")),
        "race": _name_of(profile.get("race")),
        "faction": (profile.get("faction") or {}).get("type"),
        "active_spec": _name_of(profile.get("active_spec")),
        "average_item_level": profile.get("average_item_level"),
        "equipped_item_level": profile.get("equipped_item_level"),
        "achievement_points": profile.get("achievement_points"),
        "last_login_at": _ms_to_datetime(profile.get("last_login_timestamp")),
        "guild_bnet_id": (profile.get("guild") or {}).get("id"),
    }


def mythic_rating(mythic: Any) -> float | None:
    if not isinstance(mythic, dict):
        return None
    rating = (mythic.get("current_mythic_rating") or {}).get("rating")
    return float(rating) if isinstance(rating, int | float) else None
