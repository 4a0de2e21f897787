"""Battle.net (World of Warcraft profile API): client and payload parsing."""

from providers.battlenet.client import CHARACTER_ENDPOINTS, BattleNetClient
from providers.battlenet.names import (
    REGIONS,
    character_slug,
    check_region,
    check_slug,
    slugify,
    valid_slug,
)
from providers.battlenet.parse import (
    Roster,
    RosterMember,
    character_columns,
    guild_columns,
    mythic_rating,
    roster_members,
)

__all__ = [
    "CHARACTER_ENDPOINTS",
    "REGIONS",
    "BattleNetClient",
    "Roster",
    "RosterMember",
    "character_columns",
    "character_slug",
    "check_region",
    "check_slug",
    "guild_columns",
    "mythic_rating",
    "roster_members",
    "slugify",
    "valid_slug",
]
