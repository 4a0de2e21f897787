"""Battle.net (World of Warcraft profile API): client and payload parsing."""

from providers.battlenet.client import CHARACTER_ENDPOINTS, BattleNetClient
from providers.battlenet.parse import (
    RosterMember,
    character_columns,
    guild_columns,
    mythic_rating,
    roster_members,
    slugify,
)

__all__ = [
    "CHARACTER_ENDPOINTS",
    "BattleNetClient",
    "RosterMember",
    "character_columns",
    "guild_columns",
    "mythic_rating",
    "roster_members",
    "slugify",
]
