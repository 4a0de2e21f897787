"""PvP reference data and payloads: seasons, leaderboard indexes, leaderboards, pvp-bracket.

Shapes follow ``../shared/UPSTREAM.md`` §1.6 and §4 and the recorded fixture
``tests/fixtures/blizzard/pvp_leaderboard_2v2_season27_first50.json``: a leaderboard entry's
``character.realm`` has no ``name`` and its ``faction`` has only ``type``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sandbox import wow_static as wd
from sandbox.wow_payloads import (
    CharacterState,
    Payload,
    char_path,
    character_ref,
    link,
    realm_ref,
    static_link,
)

__all__ = [
    "BRACKETS",
    "PvpEntry",
    "bracket_payload",
    "entry_payload",
    "leaderboard_index_payload",
    "leaderboard_payload",
    "season_end",
    "season_index_payload",
    "season_payload",
    "season_start",
    "tier_of",
]

# bracket path segment -> (bracket id, bracket type); shuffle brackets are one per spec
BRACKETS: dict[str, tuple[int, str]] = {
    "2v2": (0, "ARENA_2v2"),
    "3v3": (1, "ARENA_3v3"),
    "rbg": (3, "BATTLEGROUNDS"),
    "shuffle-warrior-arms": (7, "SHUFFLE"),
    "shuffle-priest-shadow": (7, "SHUFFLE"),
    "shuffle-mage-frost": (7, "SHUFFLE"),
    "shuffle-deathknight-frost": (7, "SHUFFLE"),
}

# Season 27 really started at 1548226800000 ms; the fake spaces seasons 20 weeks apart and
# ends each one a week before the next starts.
_SEASON_27_START = datetime.fromtimestamp(1548226800, UTC)
_SEASON_LENGTH = timedelta(weeks=20)
_SEASON_GAP = timedelta(weeks=1)

# rating floor -> tier id (Elite, Duelist, Rival, Challenger, Combatant, Unranked)
_TIERS = ((2400, 6), (2100, 5), (1800, 4), (1600, 3), (1400, 2))


@dataclass(slots=True)
class PvpEntry:
    """One leaderboard line; ``lost`` is ``played - won``. Snapshots mutate it in place."""

    character: CharacterState
    rating: int
    played: int
    won: int
    weekly_played: int
    weekly_won: int
    rank: int = 0


def season_start(season: int) -> datetime:
    return _SEASON_27_START + (season - 27) * _SEASON_LENGTH


def season_end(season: int) -> datetime:
    return season_start(season + 1) - _SEASON_GAP


def tier_of(rating: int) -> int:
    return next((tier for floor, tier in _TIERS if rating >= floor), 1)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _dynamic(region: str, path: str) -> Payload:
    return link(region, path, "dynamic")


def _season_path(season: int) -> str:
    return f"/data/wow/pvp-season/{season}"


def _season_ref(region: str, season: int) -> Payload:
    return {"key": _dynamic(region, _season_path(season)), "id": season}


def _tier_ref(region: str, rating: int) -> Payload:
    tier = tier_of(rating)
    return {"key": static_link(region, f"/data/wow/pvp-tier/{tier}"), "id": tier}


def _match_statistics(played: int, won: int) -> Payload:
    return {"played": played, "won": won, "lost": played - won}


def season_index_payload(region: str, seasons: tuple[int, ...]) -> Payload:
    return {
        "_links": {"self": _dynamic(region, "/data/wow/pvp-season/")},
        "seasons": [_season_ref(region, season) for season in seasons],
        "current_season": _season_ref(region, seasons[-1]),
    }


def season_payload(region: str, season: int, current: bool) -> Payload:
    payload: Payload = {
        "_links": {"self": _dynamic(region, _season_path(season))},
        "id": season,
        "leaderboards": _dynamic(region, _season_path(season) + "/pvp-leaderboard/"),
        "rewards": _dynamic(region, _season_path(season) + "/pvp-reward/"),
        "season_start_timestamp": _ms(season_start(season)),
    }
    if not current:
        payload["season_end_timestamp"] = _ms(season_end(season))
    return payload


def leaderboard_index_payload(region: str, season: int) -> Payload:
    base = _season_path(season) + "/pvp-leaderboard/"
    return {
        "_links": {"self": _dynamic(region, base)},
        "season": _season_ref(region, season),
        "leaderboards": [
            {"key": _dynamic(region, base + bracket), "name": bracket, "id": bracket_id}
            for bracket, (bracket_id, _) in BRACKETS.items()
        ],
    }


def entry_payload(entry: PvpEntry) -> Payload:
    c = entry.character
    return {
        "character": {
            "name": c.name,
            "id": c.id,
            "realm": realm_ref(c.region, c.realm, with_name=False),
        },
        "faction": {"type": c.faction},
        "rank": entry.rank,
        "rating": entry.rating,
        "season_match_statistics": _match_statistics(entry.played, entry.won),
        "tier": _tier_ref(c.region, entry.rating),
    }


def leaderboard_payload(region: str, season: int, bracket: str, entries: list[PvpEntry]) -> Payload:
    bracket_id, bracket_type = BRACKETS[bracket]
    return {
        "_links": {"self": _dynamic(region, f"{_season_path(season)}/pvp-leaderboard/{bracket}")},
        "season": _season_ref(region, season),
        "name": bracket,
        "bracket": {"id": bracket_id, "type": bracket_type},
        "entries": [entry_payload(entry) for entry in entries],
    }


def bracket_payload(entry: PvpEntry, season: int, bracket: str) -> Payload:
    """``/profile/wow/character/{realm}/{name}/pvp-bracket/{bracket}`` (UPSTREAM §1.6)."""
    c = entry.character
    bracket_id, bracket_type = BRACKETS[bracket]
    return {
        "_links": {"self": link(c.region, char_path(c) + f"/pvp-bracket/{bracket}")},
        "character": character_ref(c),
        "faction": {"type": c.faction, "name": wd.FACTIONS[c.faction]},
        "bracket": {"id": bracket_id, "type": bracket_type},
        "rating": entry.rating,
        "season": _season_ref(c.region, season),
        "tier": _tier_ref(c.region, entry.rating),
        "season_match_statistics": _match_statistics(entry.played, entry.won),
        "weekly_match_statistics": _match_statistics(entry.weekly_played, entry.weekly_won),
    }
