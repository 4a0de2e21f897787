"""The Battle.net sandbox's API routes: stats name, path, schema headers and who builds them.

Guild and character payloads come from :class:`~sandbox.world.BattleNetWorld` builders; PvP
endpoints (``entity`` starting with ``pvp``) are resolved by ``world.pvp``
(:class:`~sandbox.wow_pvp.PvpLadders`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sandbox.world import BattleNetWorld, Payload

__all__ = [
    "ALIASES",
    "CHAR",
    "ENDPOINTS",
    "UNKNOWN_DATA",
    "UNKNOWN_PROFILE",
    "Builder",
    "Endpoint",
    "character_target",
]

Builder = Callable[[BattleNetWorld, str, str, str], Payload | None]


@dataclass(frozen=True)
class Endpoint:
    """One API route: its stats name, path, schema headers and payload builder."""

    route: str
    path: str
    schema: str
    revision: int
    build: Builder
    entity: str  # "guild", "character" or a PvP kind ("pvp_..."): who resolves it
    cache_control: str | None = None
    namespaces: tuple[str, ...] = ("profile",)  # accepted namespace kinds


CHAR = "/profile/wow/character/{realm}/{name}"
_GUILD = "/data/wow/guild/{realm}/{name}"
_GUILD_CACHE = "public, max-age=10800"
_PVP = "/data/wow/pvp-season"
_SEASON_CACHE = "public, max-age=86400"
_BOARD_CACHE = "public, max-age=600"
_DYN = ("dynamic",)


def no_builder(world: BattleNetWorld, region: str, realm: str, name: str) -> Payload | None:
    """The builder of PvP endpoints, which ``world.pvp`` resolves instead."""
    return None  # pragma: no cover - never called


_W = BattleNetWorld
# fmt: off
ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("guild", _GUILD, "guild", 8, _W.guild, "guild", _GUILD_CACHE),
    Endpoint("roster", _GUILD + "/roster", "guild-roster", 7, _W.roster, "guild", _GUILD_CACHE),
    Endpoint("character", CHAR, "character", 18, _W.character_profile, "character"),
    Endpoint("equipment", CHAR + "/equipment", "character-equipment", 4,
             _W.character_equipment, "character"),
    Endpoint("mythic_keystone_profile", CHAR + "/mythic-keystone-profile",
             "mythic-keystone-profile", 6, _W.character_mythic_keystone_profile, "character"),
    Endpoint("professions", CHAR + "/professions", "character-professions", 1,
             _W.character_professions, "character"),
    Endpoint("status", CHAR + "/status", "character-status", 1, _W.character_status, "character"),
    Endpoint("pvp_bracket", CHAR + "/pvp-bracket/{bracket}", "pvp-bracket", 1, no_builder,
             "pvp_bracket"),
    # the index routes must come before the {season} and {bracket} ones
    Endpoint("pvp_season_index", _PVP + "/index", "pvp-season", 1, no_builder,
             "pvp_season_index", _SEASON_CACHE, _DYN),
    Endpoint("pvp_leaderboard_index", _PVP + "/{season}/pvp-leaderboard/index",
             "pvp-leaderboard", 8, no_builder, "pvp_leaderboard_index", _SEASON_CACHE, _DYN),
    Endpoint("pvp_leaderboard", _PVP + "/{season}/pvp-leaderboard/{bracket}", "pvp-leaderboard",
             8, no_builder, "pvp_leaderboard", _BOARD_CACHE, _DYN),
    Endpoint("pvp_season", _PVP + "/{season}", "pvp-season", 1, no_builder, "pvp_season",
             _SEASON_CACHE, _DYN),
)
# fmt: on
# The payloads' own self links end in "/": serve those paths too.
ALIASES = {
    "pvp_season_index": _PVP + "/",
    "pvp_leaderboard_index": _PVP + "/{season}/pvp-leaderboard/",
}
UNKNOWN_DATA = Endpoint(
    "other", "/data/{rest:path}", "", 0, no_builder, "none", None, ("profile", "dynamic")
)
UNKNOWN_PROFILE = Endpoint("other", "/profile/{rest:path}", "", 0, no_builder, "none")


def character_target(endpoint: Endpoint, params: Mapping[str, str]) -> tuple[str, str] | None:
    """(realm, name) when the request is for ``/profile/wow/character/{realm}/{name}/...``."""
    if endpoint.path.startswith(CHAR):
        return params["realm"], params["name"]
    if endpoint is UNKNOWN_PROFILE:
        parts = params.get("rest", "").split("/")
        if len(parts) >= 4 and parts[:2] == ["wow", "character"]:
            return parts[2], parts[3]
    return None
