"""Entity state of the fake WoW world and the JSON payloads rendered from it.

Each builder returns a dict shaped like the recorded Battle.net payload of that endpoint (same
keys and nesting, see ``tests/fixtures/blizzard``). Values that vary per character but never
change come from a ``random.Random`` seeded with the world seed and the character id, so the
same world always renders the same bytes; values that ``touch`` changes live on the state.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox import wow_static as wd

Payload = dict[str, Any]

BASE_DATE = datetime(2024, 6, 1, tzinfo=UTC)
MONTH_SECONDS = 30 * 86_400


@dataclass(frozen=True)
class Realm:
    name: str
    slug: str
    id: int


@dataclass
class CharacterState:
    region: str
    realm: Realm
    name: str
    id: int
    faction: str
    gender: str
    level: int
    class_id: int
    spec_index: int
    race_id: int
    achievement_points: int
    equipped_item_level: int
    last_login_ms: int
    last_modified: datetime
    hidden: bool = False
    guild_id: int | None = None
    rating_bonus: float = 0.0
    version: int = 1

    @property
    def name_slug(self) -> str:
        return self.name.lower()


@dataclass
class GuildState:
    region: str
    realm: Realm
    name: str
    id: int
    faction: str
    achievement_points: int
    created_ms: int
    last_modified: datetime
    member_ids: list[int] = field(default_factory=list)
    ranks: dict[int, int] = field(default_factory=dict)
    version: int = 1

    @property
    def slug(self) -> str:
        return self.name.lower().replace(" ", "-")


def realms_for(region: str) -> list[Realm]:
    if region in wd.REALMS:
        return [Realm(name, slug, rid) for name, slug, rid in wd.REALMS[region]]
    offset = wd.OTHER_REGION_REALM_ID_OFFSET
    return [Realm(name, slug, rid + offset) for name, slug, rid in wd.REALMS["eu"]]


def bump_time(previous: datetime) -> datetime:
    """Now (whole seconds), but always strictly later than the previous Last-Modified."""
    return max(datetime.now(UTC).replace(microsecond=0), previous + timedelta(seconds=1))


# ---------------------------------------------------------------------------------------------
# Links


def _api(region: str, path: str, kind: str) -> str:
    return f"https://{region}.api.blizzard.com{path}?namespace={kind}-{region}"


def link(region: str, path: str, kind: str = "profile") -> dict[str, str]:
    return {"href": _api(region, path, kind)}


def static_link(region: str, path: str) -> dict[str, str]:
    return {"href": f"https://{region}.api.blizzard.com{path}?namespace={wd.STATIC_NS}-{region}"}


def char_path(c: CharacterState) -> str:
    return f"/profile/wow/character/{c.realm.slug}/{c.name_slug}"


def guild_path(g: GuildState) -> str:
    return f"/data/wow/guild/{g.realm.slug}/{g.slug}"


def realm_ref(region: str, realm: Realm, with_name: bool = True) -> Payload:
    ref: Payload = {"key": link(region, f"/data/wow/realm/{realm.id}", "dynamic")}
    if with_name:
        ref["name"] = realm.name
    ref["id"] = realm.id
    ref["slug"] = realm.slug
    return ref


def character_ref(c: CharacterState) -> Payload:
    return {
        "key": link(c.region, char_path(c)),
        "name": c.name,
        "id": c.id,
        "realm": realm_ref(c.region, c.realm),
    }


def guild_ref(g: GuildState) -> Payload:
    return {
        "key": link(g.region, guild_path(g)),
        "name": g.name,
        "id": g.id,
        "realm": realm_ref(g.region, g.realm),
    }


def seeded_rng(seed: int, kind: str, region: str, entity_id: int) -> random.Random:
    return random.Random(f"{seed}:{kind}:{region}:{entity_id}")


# ---------------------------------------------------------------------------------------------
# Guild and roster


def _rgba(rng: random.Random) -> Payload:
    return {
        "id": rng.randint(0, 40),
        "rgba": {
            "r": rng.randint(0, 255),
            "g": rng.randint(0, 255),
            "b": rng.randint(0, 255),
            "a": 1.0,
        },
    }


def guild_payload(g: GuildState, seed: int) -> Payload:
    rng = seeded_rng(seed, "crest", g.region, g.id)
    emblem, border = rng.randint(0, 190), rng.randint(0, 5)
    crest_media = "/data/wow/media/guild-crest"
    return {
        "_links": {"self": link(g.region, guild_path(g))},
        "id": g.id,
        "name": g.name,
        "faction": {"type": g.faction, "name": wd.FACTIONS[g.faction]},
        "achievement_points": g.achievement_points,
        "member_count": len(g.member_ids),
        "realm": realm_ref(g.region, g.realm),
        "crest": {
            "emblem": {
                "id": emblem,
                "media": {"key": static_link(g.region, f"{crest_media}/emblem/{emblem}")},
                "color": _rgba(rng),
            },
            "border": {
                "id": border,
                "media": {"key": static_link(g.region, f"{crest_media}/border/{border}")},
                "color": _rgba(rng),
            },
            "background": {"color": _rgba(rng)},
        },
        "roster": link(g.region, guild_path(g) + "/roster"),
        "achievements": link(g.region, guild_path(g) + "/achievements"),
        "created_timestamp": g.created_ms,
    }


def roster_payload(g: GuildState, members: list[CharacterState]) -> Payload:
    region = g.region
    return {
        "_links": {"self": link(region, guild_path(g) + "/roster")},
        "guild": guild_ref(g),
        "members": [
            {
                "character": {
                    "name": c.name,
                    "id": c.id,
                    "realm": realm_ref(region, c.realm, with_name=False),
                    "level": c.level,
                    "playable_class": {
                        "key": static_link(region, f"/data/wow/playable-class/{c.class_id}"),
                        "id": c.class_id,
                    },
                    "playable_race": {
                        "key": static_link(region, f"/data/wow/playable-race/{c.race_id}"),
                        "id": c.race_id,
                    },
                },
                "rank": g.ranks[c.id],
            }
            for c in members
        ],
    }


# ---------------------------------------------------------------------------------------------
# Character profile and status


def race_name(faction: str, race_id: int) -> str:
    return dict(wd.RACES[faction])[race_id]


def spec_of(c: CharacterState) -> tuple[int, str]:
    return wd.CLASSES[c.class_id][1][c.spec_index]


def average_item_level(c: CharacterState) -> int:
    return c.equipped_item_level + (c.id % 3)


def character_profile_payload(c: CharacterState, guild: GuildState | None, seed: int) -> Payload:
    region, base = c.region, char_path(c)
    spec_id, spec_name = spec_of(c)
    title_id, title, display = seeded_rng(seed, "title", region, c.id).choice(wd.TITLES)
    payload: Payload = {
        "_links": {"self": link(region, base)},
        "id": c.id,
        "name": c.name,
        "gender": {"type": c.gender, "name": c.gender.title()},
        "faction": {"type": c.faction, "name": wd.FACTIONS[c.faction]},
        "race": {
            "key": static_link(region, f"/data/wow/playable-race/{c.race_id}"),
            "name": race_name(c.faction, c.race_id),
            "id": c.race_id,
        },
        "character_class": {
            "key": static_link(region, f"/data/wow/playable-class/{c.class_id}"),
            "name": wd.CLASSES[c.class_id][0],
            "id": c.class_id,
        },
        "active_spec": {
            "key": static_link(region, f"/data/wow/playable-specialization/{spec_id}"),
            "name": spec_name,
            "id": spec_id,
        },
        "realm": realm_ref(region, c.realm),
    }
    if guild is not None:
        payload["guild"] = guild_ref(guild)
    payload.update(
        {
            "level": c.level,
            "experience": 0 if c.level == wd.MAX_LEVEL else c.level * 1000,
            "achievement_points": c.achievement_points,
            "achievements": link(region, base + "/achievements"),
            "titles": link(region, base + "/titles"),
            "pvp_summary": link(region, base + "/pvp-summary"),
            "raid_progression": link(region, base + "/raid-progression"),
            "media": link(region, base + "/character-media"),
            "last_login_timestamp": c.last_login_ms,
            "average_item_level": average_item_level(c),
            "equipped_item_level": c.equipped_item_level,
            "specializations": link(region, base + "/specializations"),
            "statistics": link(region, base + "/statistics"),
            "mythic_keystone_profile": link(region, base + "/mythic-keystone-profile"),
            "equipment": link(region, base + "/equipment"),
            "appearance": link(region, base + "/appearance"),
            "collections": link(region, base + "/collections"),
            "active_title": {
                "key": static_link(region, f"/data/wow/title/{title_id}"),
                "name": title,
                "id": title_id,
                "display_string": display,
            },
            "reputations": link(region, base + "/reputations"),
            "quests": link(region, base + "/quests"),
        }
    )
    return payload


def status_payload(c: CharacterState) -> Payload:
    return {
        "_links": {"self": link(c.region, char_path(c) + "/status")},
        "id": c.id,
        "is_valid": True,
    }
