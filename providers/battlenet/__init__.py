"""Battle.net (World of Warcraft profile API): client and payload parsing.

The client (and with it the HTTP layer) is imported on first use of ``BattleNetClient`` or
``CHARACTER_ENDPOINTS``, so that ``providers.battlenet.names`` (slugs, regions) can be imported by
the read API, which must never load an upstream client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from providers.battlenet.client import CHARACTER_ENDPOINTS, BattleNetClient


def __getattr__(name: str) -> Any:
    if name in ("CHARACTER_ENDPOINTS", "BattleNetClient"):
        from providers.battlenet import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
