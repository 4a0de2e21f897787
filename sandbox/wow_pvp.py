"""PvP seasons and leaderboards of the fake world: deterministic, lazy, cached, snapshot-able.

A leaderboard (region, season, bracket) is generated on first use from
``random.Random(f"{seed}:pvp:{region}:{season}:{bracket}")``: up to 60 % of its characters are
max-level world characters, the rest come from the region's pool of PvP-only characters. The
pool (``pvp_entries`` guildless, max-level characters) is generated on first need, either by a
leaderboard or by a character lookup that misses, and is registered in the world's character
index, so every profile endpoint serves those characters too; ``hidden_ratio`` of them are
private (404), like world characters. Entries keep their state; ``new_snapshot`` changes ~10 %
of them and bumps Last-Modified. Encoded leaderboard bodies are cached (a small LRU).
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

from sandbox import wow_static as wd
from sandbox.common import json_bytes
from sandbox.wow_payloads import (
    BASE_DATE,
    MONTH_SECONDS,
    CharacterState,
    Payload,
    bump_time,
    realms_for,
)
from sandbox.wow_pvp_payloads import (
    BRACKETS,
    PvpEntry,
    bracket_payload,
    leaderboard_index_payload,
    leaderboard_payload,
    season_end,
    season_index_payload,
    season_payload,
    season_start,
)

if TYPE_CHECKING:
    from sandbox.world import BattleNetWorld

__all__ = ["PvpBoard", "PvpLadders", "Resolved"]

# (Last-Modified, render the body); None from a resolver means 404
Resolved = tuple[datetime, Callable[[], bytes]]

WORLD_SHARE = 0.6  # at most this share of a board's entries are world characters
SNAPSHOT_SHARE = 0.1  # share of entries a new snapshot changes
_BODY_CACHE_SIZE = 16
# bracket kind -> (rating floor, mean rating above the floor): an exponential upper tail
_RATINGS = {
    "2v2": (1900, 130.0),
    "3v3": (1850, 140.0),
    "rbg": (1700, 130.0),
    "shuffle": (1800, 135.0),
}
_SUFFIXES = ["", "", "", "", "", "", "", "", "x", "xd", "z", "lol", "tv", "ix"]
_CYRILLIC_STARTS = ["Ке", "Ди", "Ли", "Мо", "За", "Гро", "Те", "Ве", "Ша", "Ра"]  # noqa: RUF001
_CYRILLIC_ENDS = ["лкузд", "ммасия", "андра", "ртис", "рина", "ммаш", "нька", "стра", "ман"]
_CLASS_IDS = sorted(wd.CLASSES)
_FACTIONS = sorted(wd.FACTIONS)


def _rating_kind(bracket: str) -> str:
    return "shuffle" if bracket.startswith("shuffle-") else bracket


def _pvp_name(rng: random.Random, free: Callable[[str], bool]) -> str:
    for attempt in range(1000):
        if rng.random() < 0.03 and attempt < 5:
            name = rng.choice(_CYRILLIC_STARTS) + rng.choice(_CYRILLIC_ENDS)
        else:
            parts = [rng.choice(wd.NAME_STARTS), rng.choice(wd.NAME_MIDDLES)]
            if attempt > 10:
                parts.append(rng.choice(wd.NAME_MIDDLES[3:]))
            parts += [rng.choice(wd.NAME_ENDS), rng.choice(_SUFFIXES)]
            name = "".join(parts).lower()
            if rng.random() < 0.15:
                vowels = [i for i, ch in enumerate(name) if ch in wd.ACCENTED]
                if vowels:
                    i = rng.choice(vowels)
                    name = name[:i] + wd.ACCENTED[name[i]] + name[i + 1 :]
        name = name[:12].capitalize()
        if free(name):
            return name
    raise RuntimeError("could not find a free PvP character name")


def _name_free(world: BattleNetWorld, region: str, realm_slug: str, name: str) -> bool:
    return not world.name_taken(region, realm_slug, name)


def _generate_pool(world: BattleNetWorld, region: str) -> list[CharacterState]:
    """``pvp_entries`` PvP-only characters, registered (unlisted) in the world's index."""
    config = world.config
    rng = random.Random(f"{config.seed}:pvp-pool:{region}")
    realms = realms_for(region)
    next_id = rng.randint(100_000_000, 110_000_000)
    pool = []
    for _ in range(config.pvp_entries):
        next_id += rng.randint(1, 3000)
        while world.id_taken(region, next_id):
            next_id += 1
        realm = rng.choice(realms)
        faction = rng.choice(_FACTIONS)
        class_id = rng.choice(_CLASS_IDS)
        last_modified = BASE_DATE + timedelta(seconds=rng.randint(0, MONTH_SECONDS))
        character = CharacterState(
            region=region,
            realm=realm,
            name=_pvp_name(rng, partial(_name_free, world, region, realm.slug)),
            id=next_id,
            faction=faction,
            gender=rng.choice(["MALE", "FEMALE"]),
            level=wd.MAX_LEVEL,
            class_id=class_id,
            spec_index=rng.randrange(len(wd.CLASSES[class_id][1])),
            race_id=rng.choice(wd.RACES[faction])[0],
            achievement_points=rng.randint(2_000, 40_000),
            equipped_item_level=rng.randint(440, 480),
            last_login_ms=int(last_modified.timestamp() * 1000) - rng.randint(0, 3_600_000),
            last_modified=last_modified,
            hidden=rng.random() < config.hidden_ratio,
        )
        world.add_character(character, listed=False)
        pool.append(character)
    return pool


def _new_entry(c: CharacterState, rating: int, floor: int, rng: random.Random) -> PvpEntry:
    strength = min(1.0, (rating - floor) / 800)
    winrate = min(0.9, 0.5 + 0.3 * strength + rng.uniform(-0.06, 0.06))
    played = 20 + int(rng.expovariate(1 / 300))
    weekly = rng.randint(0, min(played, 40))
    return PvpEntry(c, rating, played, round(played * winrate), weekly, round(weekly * winrate))


class PvpBoard:
    """One leaderboard's state: entries sorted by rating, competition ranks (1, 2, 2, 4)."""

    def __init__(
        self,
        seed: int,
        key: tuple[str, int, str],
        entries: list[PvpEntry],
        last_modified: datetime,
    ) -> None:
        self.seed, self.key = seed, key
        self.region, self.season, self.bracket = key
        self.entries = entries
        self.by_id = {entry.character.id: entry for entry in entries}
        self.last_modified = last_modified
        self.snapshot = 0
        self.rerank()

    def rerank(self) -> None:
        self.entries.sort(key=lambda entry: -entry.rating)  # stable: ties keep their order
        rank, previous = 0, None
        for position, entry in enumerate(self.entries, start=1):
            if entry.rating != previous:
                rank, previous = position, entry.rating
            entry.rank = rank

    def payload(self) -> Payload:
        return leaderboard_payload(self.region, self.season, self.bracket, self.entries)

    def private_character_ids(self) -> list[int]:
        return sorted(entry.character.id for entry in self.entries if entry.character.hidden)

    def new_snapshot(self) -> int:
        """Play games for ~10 % of the entries (deterministic per snapshot number)."""
        self.snapshot += 1
        region, season, bracket = self.key
        rng = random.Random(f"{self.seed}:pvp-snapshot:{region}:{season}:{bracket}:{self.snapshot}")
        changed = rng.sample(self.entries, round(len(self.entries) * SNAPSHOT_SHARE))
        for entry in changed:
            games = rng.randint(2, 15)
            won = sum(rng.random() < 0.5 for _ in range(games))
            delta = (2 * won - games) * rng.randint(6, 14) or rng.choice((-3, 3))
            entry.rating = max(0, entry.rating + delta)
            entry.played, entry.won = entry.played + games, entry.won + won
            entry.weekly_played, entry.weekly_won = (
                entry.weekly_played + games,
                entry.weekly_won + won,
            )
        self.rerank()
        self.last_modified = bump_time(self.last_modified)
        return len(changed)


class PvpLadders:
    """All PvP seasons and leaderboards of one world."""

    def __init__(self, world: BattleNetWorld) -> None:
        self.world = world
        self.config = world.config
        first, last = self.config.pvp_seasons
        if first > last or self.config.pvp_entries < 0:
            raise ValueError("need pvp_seasons first <= last and pvp_entries >= 0")
        self.seasons = tuple(range(first, last + 1))
        self._pools: dict[str, list[CharacterState]] = {}
        self._boards: dict[tuple[str, int, str], PvpBoard] = {}
        self._bodies: OrderedDict[tuple[tuple[str, int, str], int], bytes] = OrderedDict()

    @property
    def current_season(self) -> int:
        return self.seasons[-1]

    # -- characters -------------------------------------------------------------------------

    def ensure_pool(self, region: str) -> bool:
        """Generate the region's PvP-only characters if not done yet; True if it did now."""
        if region in self._pools or region not in self.world.regions:
            return False
        self._pool(region)
        return True

    def _pool(self, region: str) -> list[CharacterState]:
        pool = self._pools.get(region)
        if pool is None:
            self._pools[region] = pool = []  # set first: lookups while generating must not recurse
            pool.extend(_generate_pool(self.world, region))
        return pool

    # -- leaderboards -----------------------------------------------------------------------

    def season_known(self, season: int) -> bool:
        return self.seasons[0] <= season <= self.seasons[-1]

    def board(self, region: str, season: int, bracket: str) -> PvpBoard | None:
        """The leaderboard, built on first use; None for an unknown region/season/bracket."""
        region, bracket = region.lower(), bracket.lower()
        if region not in self.world.regions or bracket not in BRACKETS:
            return None
        if not self.season_known(season):
            return None
        key = (region, season, bracket)
        board = self._boards.get(key)
        if board is None:
            board = self._boards[key] = self._build(key)
        return board

    def _build(self, key: tuple[str, int, str]) -> PvpBoard:
        region, season, bracket = key
        seed, size = self.config.seed, self.config.pvp_entries
        rng = random.Random(f"{seed}:pvp:{region}:{season}:{bracket}")
        eligible = [c for c in self.world.listed_characters(region) if c.level == wd.MAX_LEVEL]
        chosen = rng.sample(eligible, min(len(eligible), round(size * WORLD_SHARE)))
        pool = self._pool(region)
        chosen += rng.sample(pool, min(len(pool), size - len(chosen)))
        rng.shuffle(chosen)
        floor, mean = _RATINGS[_rating_kind(bracket)]
        ratings = sorted((floor + int(rng.expovariate(1 / mean)) for _ in chosen), reverse=True)
        entries = [_new_entry(c, r, floor, rng) for c, r in zip(chosen, ratings, strict=True)]
        if season == self.current_season:
            start = max(season_start(season), BASE_DATE)
            last_modified = start + timedelta(seconds=rng.randint(0, MONTH_SECONDS))
        else:
            last_modified = season_end(season) + timedelta(seconds=rng.randint(0, 86_400))
        return PvpBoard(seed, key, entries, last_modified)

    def body(self, board: PvpBoard) -> bytes:
        """The encoded leaderboard, cached until the next snapshot (LRU of a few boards)."""
        cache_key = (board.key, board.snapshot)
        body = self._bodies.get(cache_key)
        if body is None:
            body = self._bodies[cache_key] = json_bytes(board.payload())
            while len(self._bodies) > _BODY_CACHE_SIZE:
                self._bodies.popitem(last=False)
        else:
            self._bodies.move_to_end(cache_key)
        return body

    def new_snapshot(self, region: str, season: int, bracket: str) -> PvpBoard | None:
        board = self.board(region, season, bracket)
        if board is not None:
            self._bodies.pop((board.key, board.snapshot), None)
            board.new_snapshot()
        return board

    # -- HTTP resolution --------------------------------------------------------------------

    def _season_modified(self, season: int) -> datetime:
        return season_start(season) if season == self.current_season else season_end(season)

    def resolve(self, kind: str, region: str, params: Mapping[str, str]) -> Resolved | None:
        """Last-Modified and body renderer of a PvP endpoint, or None (→ 404)."""
        if kind == "pvp_season_index":
            modified = season_start(self.current_season)
            return modified, lambda: json_bytes(season_index_payload(region, self.seasons))
        if kind == "pvp_bracket":
            return self._resolve_bracket(region, params)
        season = _int(params.get("season", ""))
        if season is None or not self.season_known(season):
            return None
        if kind == "pvp_season":
            current = season == self.current_season
            payload = season_payload(region, season, current)
            return self._season_modified(season), lambda: json_bytes(payload)
        if kind == "pvp_leaderboard_index":
            payload = leaderboard_index_payload(region, season)
            return self._season_modified(season), lambda: json_bytes(payload)
        board = self.board(region, season, params.get("bracket", ""))
        if board is None:
            return None
        return board.last_modified, lambda: self.body(board)

    def _resolve_bracket(self, region: str, params: Mapping[str, str]) -> Resolved | None:
        info = self.world.find_character(region, params.get("realm", ""), params.get("name", ""))
        if info is None or info.hidden:
            return None
        board = self.board(region, self.current_season, params.get("bracket", ""))
        entry = board.by_id.get(info.id) if board is not None else None
        if board is None or entry is None:
            return None
        season, bracket, found = board.season, board.bracket, entry
        modified = max(info.last_modified, board.last_modified)
        return modified, lambda: json_bytes(bracket_payload(found, season, bracket))


def _int(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None
