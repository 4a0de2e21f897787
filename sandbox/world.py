"""A deterministic, seeded World of Warcraft world: realms, guilds, rosters and characters.

Everything derives from ``BattleNetWorldConfig.seed`` through ``random.Random(f"{seed}:...")``
streams (never the global generator, never ``hash()``), so two worlds built from the same
config are equal and serve the same bytes. Entities are generated up front (cheap); payloads
are rendered lazily, on request, by :mod:`sandbox.wow_payloads`.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from sandbox import wow_static as wd
from sandbox.wow_equipment import equipment_payload
from sandbox.wow_payloads import (
    BASE_DATE,
    MONTH_SECONDS,
    CharacterState,
    GuildState,
    Payload,
    Realm,
    bump_time,
    character_profile_payload,
    guild_payload,
    realms_for,
    roster_payload,
    status_payload,
)
from sandbox.wow_progress import mythic_payload, professions_payload
from sandbox.wow_pvp import PvpLadders

__all__ = [
    "BASE_DATE",
    "BattleNetWorld",
    "BattleNetWorldConfig",
    "CharacterInfo",
    "GuildInfo",
    "Realm",
    "realms_for",
]


@dataclass
class BattleNetWorldConfig:
    seed: int = 42
    regions: tuple[str, ...] = ("eu", "us")
    guilds_per_region: int = 3
    roster_min: int = 10
    roster_max: int = 40
    guildless_characters: int = 0
    hidden_ratio: float = 0.03
    pvp_entries: int = 5000  # entries per PvP leaderboard (per region, season and bracket)
    pvp_seasons: tuple[int, int] = (30, 37)  # first and last (current) PvP season id


@dataclass(frozen=True)
class GuildInfo:
    region: str
    realm_slug: str
    name_slug: str
    name: str
    id: int
    member_count: int
    faction: str
    version: int
    last_modified: datetime


@dataclass(frozen=True)
class CharacterInfo:
    region: str
    realm_slug: str
    name: str
    name_slug: str
    id: int
    hidden: bool
    guild_id: int | None
    rank: int | None
    level: int
    class_id: int
    race_id: int
    version: int
    last_modified: datetime


def _key(text: str) -> str:
    """Case- and normalisation-insensitive lookup key for a slug or a name."""
    return unicodedata.normalize("NFC", text).strip().lower()


class _RegionBuilder:
    """Generates one region: guild rosters first, then the guildless characters."""

    def __init__(self, world: BattleNetWorld, region: str) -> None:
        self.world, self.region, self.config = world, region, world.config
        rng = random.Random(f"{self.config.seed}:region:{region}")
        self.realms = realms_for(region)
        self.next_char_id = rng.randint(60_000_000, 90_000_000)
        self.next_guild_id = rng.randint(30_000_000, 40_000_000)
        self.names: dict[str, set[str]] = {realm.slug: set() for realm in self.realms}
        self.guild_slugs: dict[str, set[str]] = {realm.slug: set() for realm in self.realms}

    def build(self) -> None:
        for index in range(self.config.guilds_per_region):
            self._guild(random.Random(f"{self.config.seed}:guild:{self.region}:{index}"))
        rng = random.Random(f"{self.config.seed}:guildless:{self.region}")
        for _ in range(self.config.guildless_characters):
            faction = rng.choice(sorted(wd.FACTIONS))
            self._character(rng, rng.choice(self.realms), faction, None)

    def _guild_name(self, rng: random.Random, realm: Realm) -> str:
        taken = self.guild_slugs[realm.slug]
        free = [name for name in wd.GUILD_NAMES if _key(name.replace(" ", "-")) not in taken]
        name = rng.choice(free) if free else f"{rng.choice(wd.GUILD_NAMES)} {len(taken) + 1}"
        taken.add(_key(name.replace(" ", "-")))
        return name

    def _guild(self, rng: random.Random) -> None:
        realm = rng.choice(self.realms)
        self.next_guild_id += rng.randint(1, 500_000)
        guild = GuildState(
            region=self.region,
            realm=realm,
            name=self._guild_name(rng, realm),
            id=self.next_guild_id,
            faction=rng.choice(sorted(wd.FACTIONS)),
            achievement_points=rng.randint(300, 3500),
            created_ms=rng.randint(1_200_000_000, 1_580_000_000) * 1000,
            last_modified=BASE_DATE + timedelta(seconds=rng.randint(0, MONTH_SECONDS)),
        )
        size = rng.randint(
            self.config.roster_min, max(self.config.roster_min, self.config.roster_max)
        )
        for position in range(size):
            character = self._character(rng, realm, guild.faction, guild.id)
            guild.member_ids.append(character.id)
            guild.ranks[character.id] = (
                0 if position == 0 else min(9, 1 + int(rng.expovariate(0.35)))
            )
        rng.shuffle(guild.member_ids)  # the real roster is not sorted by rank or name
        self.world.add_guild(guild)

    def _name(self, rng: random.Random, realm: Realm) -> str:
        taken = self.names[realm.slug]
        for attempt in range(1000):
            parts = [
                rng.choice(wd.NAME_STARTS),
                rng.choice(wd.NAME_MIDDLES),
                rng.choice(wd.NAME_ENDS),
            ]
            if attempt > 20:
                parts.insert(2, rng.choice(wd.NAME_MIDDLES[3:]))
            name = "".join(parts).lower()
            if rng.random() < 0.1:
                vowels = [i for i, ch in enumerate(name) if ch in wd.ACCENTED]
                if vowels:
                    i = rng.choice(vowels)
                    name = name[:i] + wd.ACCENTED[name[i]] + name[i + 1 :]
            name = name[:12].capitalize()
            if _key(name) not in taken:
                taken.add(_key(name))
                return name
        raise RuntimeError(f"could not find a free character name on {realm.slug}")

    def _character(
        self, rng: random.Random, realm: Realm, faction: str, guild_id: int | None
    ) -> CharacterState:
        self.next_char_id += rng.randint(1, 5000)
        class_id = rng.choice(sorted(wd.CLASSES))
        level = wd.MAX_LEVEL if rng.random() < 0.75 else rng.randint(10, wd.MAX_LEVEL - 1)
        ilvl = (
            rng.randint(400, 475)
            if level == wd.MAX_LEVEL
            else max(5, level * 3 + rng.randint(-5, 5))
        )
        last_modified = BASE_DATE + timedelta(seconds=rng.randint(0, MONTH_SECONDS))
        character = CharacterState(
            region=self.region,
            realm=realm,
            name=self._name(rng, realm),
            id=self.next_char_id,
            faction=faction,
            gender=rng.choice(["MALE", "FEMALE"]),
            level=level,
            class_id=class_id,
            spec_index=rng.randrange(len(wd.CLASSES[class_id][1])),
            race_id=rng.choice(wd.RACES[faction])[0],
            achievement_points=rng.randint(200, 35_000),
            equipped_item_level=ilvl,
            last_login_ms=int(last_modified.timestamp() * 1000) - rng.randint(0, 3_600_000),
            last_modified=last_modified,
            hidden=rng.random() < self.config.hidden_ratio,
            guild_id=guild_id,
        )
        self.world.add_character(character)
        return character


class BattleNetWorld:
    """The ground truth the Battle.net sandbox serves, plus ``touch_*`` to change it."""

    def __init__(self, config: BattleNetWorldConfig | None = None) -> None:
        self.config = config or BattleNetWorldConfig()
        if self.config.roster_min < 1 or self.config.roster_max < self.config.roster_min:
            raise ValueError("need 1 <= roster_min <= roster_max")
        self._guilds: dict[str, list[GuildState]] = {}
        self._characters: dict[str, list[CharacterState]] = {}
        self._guild_index: dict[tuple[str, str, str], GuildState] = {}
        self._guild_by_id: dict[tuple[str, int], GuildState] = {}
        self._char_index: dict[tuple[str, str, str], CharacterState] = {}
        self._char_by_id: dict[tuple[str, int], CharacterState] = {}
        self.pvp = PvpLadders(self)  # PvP seasons and leaderboards, built lazily
        for region in self.config.regions:
            self._guilds[region], self._characters[region] = [], []
            _RegionBuilder(self, region).build()

    # -- building ---------------------------------------------------------------------------

    def add_guild(self, guild: GuildState) -> None:
        self._guilds[guild.region].append(guild)
        self._guild_index[(guild.region, guild.realm.slug, _key(guild.slug))] = guild
        self._guild_by_id[(guild.region, guild.id)] = guild

    def add_character(self, character: CharacterState, listed: bool = True) -> None:
        """Index a character; unlisted ones (PvP-only) are served but not in ``characters()``."""
        if listed:
            self._characters[character.region].append(character)
        self._char_index[(character.region, character.realm.slug, _key(character.name))] = character
        self._char_by_id[(character.region, character.id)] = character

    # -- lookups ----------------------------------------------------------------------------

    @property
    def regions(self) -> tuple[str, ...]:
        return self.config.regions

    def _guild(self, region: str, realm_slug: str, name_slug: str) -> GuildState | None:
        return self._guild_index.get((_key(region), _key(realm_slug), _key(name_slug)))

    def _character(self, region: str, realm_slug: str, name: str) -> CharacterState | None:
        key = (_key(region), _key(realm_slug), _key(name))
        found = self._char_index.get(key)
        if found is None and self.pvp.ensure_pool(key[0]):  # PvP-only characters, on demand
            found = self._char_index.get(key)
        return found

    def name_taken(self, region: str, realm_slug: str, name: str) -> bool:
        return (_key(region), _key(realm_slug), _key(name)) in self._char_index

    def id_taken(self, region: str, char_id: int) -> bool:
        return (_key(region), char_id) in self._char_by_id

    def listed_characters(self, region: str) -> list[CharacterState]:
        """The guild and guildless characters of a region, in creation order (state objects)."""
        return list(self._characters.get(_key(region), []))

    def _guild_of(self, character: CharacterState) -> GuildState | None:
        if character.guild_id is None:
            return None
        return self._guild_by_id[(character.region, character.guild_id)]

    def _guild_info(self, g: GuildState) -> GuildInfo:
        return GuildInfo(
            g.region,
            g.realm.slug,
            g.slug,
            g.name,
            g.id,
            len(g.member_ids),
            g.faction,
            g.version,
            g.last_modified,
        )

    def _character_info(self, c: CharacterState) -> CharacterInfo:
        guild = self._guild_of(c)
        rank = guild.ranks[c.id] if guild is not None else None
        return CharacterInfo(
            c.region,
            c.realm.slug,
            c.name,
            c.name_slug,
            c.id,
            c.hidden,
            c.guild_id,
            rank,
            c.level,
            c.class_id,
            c.race_id,
            c.version,
            c.last_modified,
        )

    def guilds(self, region: str) -> list[GuildInfo]:
        return [self._guild_info(g) for g in self._guilds.get(_key(region), [])]

    def characters(self, region: str) -> list[CharacterInfo]:
        return [self._character_info(c) for c in self._characters.get(_key(region), [])]

    def find_guild(self, region: str, realm_slug: str, name_slug: str) -> GuildInfo | None:
        guild = self._guild(region, realm_slug, name_slug)
        return self._guild_info(guild) if guild is not None else None

    def find_character(self, region: str, realm_slug: str, name: str) -> CharacterInfo | None:
        character = self._character(region, realm_slug, name)
        return self._character_info(character) if character is not None else None

    def guild_members(self, region: str, realm_slug: str, name_slug: str) -> list[CharacterInfo]:
        guild = self._guild(region, realm_slug, name_slug)
        if guild is None:
            return []
        return [
            self._character_info(self._char_by_id[(guild.region, cid)]) for cid in guild.member_ids
        ]

    # -- payloads (None for an unknown guild or an unknown or hidden character) ---------------

    def guild(self, region: str, realm_slug: str, name_slug: str) -> Payload | None:
        g = self._guild(region, realm_slug, name_slug)
        return guild_payload(g, self.config.seed) if g is not None else None

    def roster(self, region: str, realm_slug: str, name_slug: str) -> Payload | None:
        g = self._guild(region, realm_slug, name_slug)
        if g is None:
            return None
        return roster_payload(g, [self._char_by_id[(g.region, cid)] for cid in g.member_ids])

    def _visible(self, region: str, realm_slug: str, name: str) -> CharacterState | None:
        c = self._character(region, realm_slug, name)
        return c if c is not None and not c.hidden else None

    def character_profile(self, region: str, realm_slug: str, char_name: str) -> Payload | None:
        c = self._visible(region, realm_slug, char_name)
        return character_profile_payload(c, self._guild_of(c), self.config.seed) if c else None

    def character_equipment(self, region: str, realm_slug: str, char_name: str) -> Payload | None:
        c = self._visible(region, realm_slug, char_name)
        return equipment_payload(c, self.config.seed) if c else None

    def character_mythic_keystone_profile(
        self, region: str, realm_slug: str, char_name: str
    ) -> Payload | None:
        c = self._visible(region, realm_slug, char_name)
        if c is None:
            return None
        guild = self._guild_of(c)
        ids = guild.member_ids if guild is not None else []
        party_pool = [self._char_by_id[(c.region, cid)] for cid in ids] or self._characters[
            c.region
        ]
        return mythic_payload(c, party_pool, self.config.seed)

    def character_professions(self, region: str, realm_slug: str, char_name: str) -> Payload | None:
        c = self._visible(region, realm_slug, char_name)
        return professions_payload(c, self.config.seed) if c else None

    def character_status(self, region: str, realm_slug: str, char_name: str) -> Payload | None:
        c = self._visible(region, realm_slug, char_name)
        return status_payload(c) if c else None

    # -- changes ----------------------------------------------------------------------------

    def touch_character(self, region: str, realm_slug: str, name: str) -> CharacterInfo | None:
        """New version: later Last-Modified, more achievement points, better gear and rating."""
        c = self._character(region, realm_slug, name)
        if c is None:
            return None
        c.version += 1
        c.last_modified = bump_time(c.last_modified)
        rng = random.Random(f"{self.config.seed}:touch:{c.region}:{c.id}:{c.version}")
        c.achievement_points += rng.randint(5, 50)
        c.equipped_item_level += rng.randint(1, 3)
        c.rating_bonus += round(rng.uniform(5.0, 60.0), 1)
        c.last_login_ms = int(c.last_modified.timestamp() * 1000)
        return self._character_info(c)

    def touch_guild(self, region: str, realm_slug: str, name_slug: str) -> GuildInfo | None:
        """New version: later Last-Modified, more achievement points, one member's rank moved."""
        g = self._guild(region, realm_slug, name_slug)
        if g is None:
            return None
        g.version += 1
        g.last_modified = bump_time(g.last_modified)
        rng = random.Random(f"{self.config.seed}:touch-guild:{g.region}:{g.id}:{g.version}")
        g.achievement_points += rng.randint(5, 50)
        movable = [cid for cid in g.member_ids if g.ranks[cid] != 0]
        if movable:
            cid = rng.choice(movable)
            g.ranks[cid] = rng.choice([r for r in range(1, 10) if r != g.ranks[cid]])
        return self._guild_info(g)
