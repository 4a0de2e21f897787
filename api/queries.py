"""The read API's queries: one asyncpg pool, one or two indexed statements per request.

Read-only (every connection is ``default_transaction_read_only``), never an upstream call.
JSONB comes back decoded (orjson). Each method returns the response body or ``None`` for an
unknown entity (the route answers 404 naming it).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from api import shape
from providers.battlenet import names
from storage.db import sync_url


@dataclass(frozen=True)
class Staleness:
    """Seconds after which an entity of each kind reads ``stale``: the provider's own setting."""

    wow: float | None
    pvp: float | None
    discord: float | None
    zwift_riders: float | None
    zwift_events: float | None


def slugify(name: str) -> str:
    """A guild or realm slug as Battle.net matches it: any case, composed or not."""
    return names.slugify(unicodedata.normalize("NFC", name))


def character_slug(name: str) -> str:
    return names.character_slug(unicodedata.normalize("NFC", name))


async def _init(conn: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(
            kind, encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads,
            schema="pg_catalog",
        )  # fmt: skip


class Mirror:
    def __init__(self, pool: asyncpg.Pool, staleness: Staleness) -> None:
        self.pool = pool
        self.staleness = staleness

    @classmethod
    async def open(cls, database_url: str, staleness: Staleness, size: int = 8) -> Mirror:
        pool = await asyncpg.create_pool(
            sync_url(database_url), min_size=1, max_size=size, init=_init,
            server_settings={"default_transaction_read_only": "on",
                             "application_name": "ratesync-api"},
        )  # fmt: skip
        assert pool is not None
        return cls(pool, staleness)

    async def aclose(self) -> None:
        await self.pool.close()

    async def ping(self) -> bool:
        return await self.pool.fetchval("SELECT 1") == 1

    def _fresh(self, at: datetime | None, staleness: float | None) -> dict[str, Any]:
        return shape.freshness(at, staleness, datetime.now(UTC))

    # --- Battle.net --------------------------------------------------------------------

    async def guild(self, region: str, realm: str, name: str) -> dict[str, Any] | None:
        row = await self.pool.fetchrow(
            "SELECT id, bnet_guild_id, name, realm, realm_name, faction, member_count, "
            "achievement_points, last_synced_at, not_found_at FROM guilds "
            "WHERE region = $1 AND realm = $2 AND name_slug = $3",
            region, slugify(realm), slugify(name),
        )  # fmt: skip
        if row is None:
            return None
        ranks = await self.pool.fetch(
            "SELECT rank_id, rank_name, member_count FROM ranks WHERE guild_id = $1 "
            "ORDER BY rank_id",
            row["id"],
        )
        members = await self.pool.fetch(
            "SELECT m.character_name, m.character_class, m.rank, m.level, "
            "m.member_data_json -> 'character' -> 'realm' ->> 'slug' AS realm "
            "FROM guild_members m WHERE m.guild_id = $1 ORDER BY m.rank, m.character_name",
            row["id"],
        )
        return {
            "id": row["bnet_guild_id"],
            "region": region,
            "name": row["name"],
            "realm": row["realm"],
            "realm_name": row["realm_name"],
            "faction": row["faction"],
            "member_count": row["member_count"],
            "achievement_points": row["achievement_points"],
            "not_found": row["not_found_at"] is not None,
            "ranks": [dict(r) for r in ranks],
            "members": [
                {
                    "name": m["character_name"],
                    "realm": m["realm"],
                    "class": m["character_class"],
                    "rank": m["rank"],
                    "level": m["level"],
                }
                for m in members
            ],
            **self._fresh(row["last_synced_at"], self.staleness.wow),
        }

    _SUMMARY = (
        "c.id, c.bnet_character_id, c.name, c.realm, c.level, c.character_class, c.race, "
        "c.faction, c.active_spec, c.average_item_level, c.equipped_item_level, "
        "c.achievement_points, c.mythic_rating, c.is_private, c.not_found_at, c.last_synced_at, "
        "c.equipment_json, c.professions_json"
    )

    async def _character_row(
        self,
        region: str,
        realm: str,
        name: str,
        columns: str = "c.id, c.bnet_character_id, c.name, c.realm, c.last_synced_at",
    ) -> Any:
        return await self.pool.fetchrow(
            f"SELECT {columns}, g.name AS guild_name, g.realm AS guild_realm FROM characters c "
            "LEFT JOIN guilds g ON g.id = c.guild_id "
            "WHERE c.region = $1 AND c.realm = $2 AND c.name_slug = $3 "
            "ORDER BY c.bnet_character_id IS NULL, c.last_synced_at DESC NULLS LAST LIMIT 1",
            region, slugify(realm), character_slug(name),
        )  # fmt: skip

    async def character(
        self, region: str, realm: str, name: str, raw: bool = False
    ) -> dict[str, Any] | None:
        columns = self._SUMMARY + (", c.profile_json, c.mythic_profile_json" if raw else "")
        row = await self._character_row(region, realm, name, columns)
        if row is None:
            return None
        body: dict[str, Any] = {
            "id": row["bnet_character_id"],
            "region": region,
            "name": row["name"],
            "realm": row["realm"],
            "level": row["level"],
            "class": row["character_class"],
            "race": row["race"],
            "faction": row["faction"],
            "active_spec": row["active_spec"],
            "average_item_level": row["average_item_level"],
            "equipped_item_level": row["equipped_item_level"],
            "achievement_points": row["achievement_points"],
            "mythic_rating": row["mythic_rating"],
            "guild": None
            if row["guild_name"] is None
            else {"name": row["guild_name"], "realm": row["guild_realm"]},
            "is_private": row["is_private"],
            "not_found": row["not_found_at"] is not None,
            "professions": shape.professions(row["professions_json"]),
            "equipped_items": shape.equipped_items(row["equipment_json"]),
            **self._fresh(row["last_synced_at"], self.staleness.wow),
        }
        if raw:
            body["raw"] = {
                key: row[f"{key}_json"]
                for key in ("profile", "equipment", "mythic_profile", "professions")
            }
        return body

    async def character_pvp(self, region: str, realm: str, name: str) -> dict[str, Any] | None:
        row = await self._character_row(region, realm, name)
        if row is None:
            return None
        entries = await self.pool.fetch(
            "SELECT l.season_id, l.bracket, e.snapshot_at, e.rank, e.rating, e.played, e.won, "
            "e.lost, e.tier_id FROM pvp_leaderboard_entries e "
            "JOIN pvp_leaderboards l ON l.id = e.leaderboard_id "
            "WHERE e.character_id = $1 ORDER BY e.snapshot_at DESC, l.bracket LIMIT 1000",
            row["id"],
        )
        return {
            "character": {"id": row["bnet_character_id"], "name": row["name"],
                          "realm": row["realm"], "region": region},
            "history": [{**dict(e), "snapshot_at": shape.iso(e["snapshot_at"])} for e in entries],
            **self._fresh(row["last_synced_at"], self.staleness.wow),
        }  # fmt: skip

    async def leaderboard(
        self, region: str, season: int, bracket: str, limit: int, after: tuple[int, int]
    ) -> dict[str, Any] | None:
        """A page of the latest snapshot in rank order; ``after``: the cursor (rank, row id)
        of the last entry of the page before (ranks tie: the row id orders a tie)."""
        board = await self.pool.fetchrow(
            "SELECT id, bracket_type, entry_count, last_snapshot_at, last_synced_at "
            "FROM pvp_leaderboards WHERE region = $1 AND season_id = $2 AND bracket = $3",
            region, season, bracket,
        )  # fmt: skip
        if board is None:
            return None
        rows = await self.pool.fetch(
            "SELECT e.id, e.rank, e.rating, e.played, e.won, e.lost, e.faction, e.tier_id, "
            "c.name, c.realm, c.bnet_character_id, c.character_class "
            "FROM pvp_leaderboard_entries e JOIN characters c ON c.id = e.character_id "
            "WHERE e.leaderboard_id = $1 AND e.snapshot_at = $2 AND (e.rank, e.id) > ($3, $4) "
            "ORDER BY e.rank, e.id LIMIT $5",
            board["id"], board["last_snapshot_at"], after[0], after[1], limit + 1,
        )  # fmt: skip
        more = len(rows) > limit
        rows = rows[:limit]
        return {
            "region": region,
            "season": season,
            "bracket": bracket,
            "bracket_type": board["bracket_type"],
            "entry_count": board["entry_count"],
            "snapshot_at": shape.iso(board["last_snapshot_at"]),
            "entries": [
                {
                    "rank": r["rank"],
                    "rating": r["rating"],
                    "played": r["played"],
                    "won": r["won"],
                    "lost": r["lost"],
                    "faction": r["faction"],
                    "tier_id": r["tier_id"],
                    "character": {
                        "id": r["bnet_character_id"],
                        "name": r["name"],
                        "realm": r["realm"],
                        "class": r["character_class"],
                    },
                }
                for r in rows
            ],
            "next_cursor": f"{rows[-1]['rank']}-{rows[-1]['id']}" if more and rows else None,
            **self._fresh(board["last_synced_at"], self.staleness.pvp),
        }

    # --- Discord -----------------------------------------------------------------------

    async def channels(self, guild_id: int) -> dict[str, Any] | None:
        tenant = await self.pool.fetchrow(
            "SELECT id, name, last_synced_at FROM tenants WHERE discord_guild_id = $1", guild_id
        )
        if tenant is None:
            return None
        rows = await self.pool.fetch(
            "SELECT discord_channel_id, name, type, parent_id, position, access, message_count, "
            "last_message_id, last_synced_at FROM channels WHERE tenant_id = $1 "
            "ORDER BY position NULLS LAST, discord_channel_id",
            tenant["id"],
        )
        return {
            "tenant": {"id": shape.snowflake(guild_id), "name": tenant["name"]},
            "channels": [
                {
                    "id": shape.snowflake(r["discord_channel_id"]),
                    "name": r["name"],
                    "type": r["type"],
                    "parent_id": shape.snowflake(r["parent_id"]),
                    "position": r["position"],
                    "access": r["access"],
                    "message_count": r["message_count"],
                    "last_message_id": shape.snowflake(r["last_message_id"]),
                    **self._fresh(r["last_synced_at"], self.staleness.discord),
                }
                for r in rows
            ],
            **self._fresh(tenant["last_synced_at"], self.staleness.discord),
        }

    async def messages(
        self,
        channel_id: int,
        limit: int,
        before: int | None,
        after: int | None,
        author_id: int | None,
    ) -> dict[str, Any] | None:
        channel = await self.pool.fetchrow(
            "SELECT id, name, last_synced_at FROM channels WHERE discord_channel_id = $1",
            channel_id,
        )
        if channel is None:
            return None
        rows = await self.pool.fetch(
            "SELECT discord_message_id, author_id, created_at, edited_at, type, "
            "reply_to_message_id, reaction_count, attachment_count, "
            "message_json ->> 'content' AS content, "
            "message_json -> 'author' ->> 'username' AS author "
            "FROM messages WHERE channel_id = $1 "
            "AND ($2::bigint IS NULL OR discord_message_id < $2) "
            "AND ($3::bigint IS NULL OR discord_message_id > $3) "
            "AND ($4::bigint IS NULL OR author_id = $4) "
            "ORDER BY discord_message_id DESC LIMIT $5",
            channel["id"], before, after, author_id, limit + 1,
        )  # fmt: skip
        more = len(rows) > limit
        rows = rows[:limit]
        return {
            "channel": {"id": shape.snowflake(channel_id), "name": channel["name"]},
            "messages": [
                {
                    "id": shape.snowflake(r["discord_message_id"]),
                    "author_id": shape.snowflake(r["author_id"]),
                    "author": r["author"],
                    "created_at": shape.iso(r["created_at"]),
                    "edited_at": shape.iso(r["edited_at"]),
                    "type": r["type"],
                    "reply_to": shape.snowflake(r["reply_to_message_id"]),
                    "reaction_count": r["reaction_count"],
                    "attachment_count": r["attachment_count"],
                    "content": r["content"],
                }
                for r in rows
            ],
            # newest first: the next (older) page is `before` the last one here
            "next_before": shape.snowflake(rows[-1]["discord_message_id"]) if more else None,
            **self._fresh(channel["last_synced_at"], self.staleness.discord),
        }

    # --- ZwiftRacing -------------------------------------------------------------------

    async def club(self, club_id: int, limit: int) -> dict[str, Any] | None:
        club = await self.pool.fetchrow(
            "SELECT club_id, name, member_count, tracked, last_synced_at FROM zwift_clubs "
            "WHERE club_id = $1",
            club_id,
        )
        if club is None:
            return None
        riders = await self.pool.fetch(
            "SELECT rider_id, name, category, rating FROM zwift_riders WHERE club_id = $1 "
            "ORDER BY rating DESC NULLS LAST, rider_id LIMIT $2",
            club_id, limit,
        )  # fmt: skip
        return {
            "id": club["club_id"],
            "name": club["name"],
            "member_count": club["member_count"],
            "tracked": club["tracked"],
            "riders": [dict(r) | {"id": r["rider_id"]} for r in riders],
            **self._fresh(club["last_synced_at"], self.staleness.zwift_riders),
        }

    async def rider(self, rider_id: int) -> dict[str, Any] | None:
        row = await self.pool.fetchrow(
            "SELECT rider_id, club_id, name, category, rating, rated_at, tracked, "
            "last_synced_at FROM zwift_riders WHERE rider_id = $1",
            rider_id,
        )
        if row is None:
            return None
        history = await self.pool.fetch(
            "SELECT rated_at, rating, category FROM zwift_rider_ratings WHERE rider_id = $1 "
            "ORDER BY rated_at DESC LIMIT 500",
            rider_id,
        )
        return {
            "id": row["rider_id"],
            "club_id": row["club_id"],
            "name": row["name"],
            "category": row["category"],
            "rating": row["rating"],
            "rated_at": shape.iso(row["rated_at"]),
            "tracked": row["tracked"],
            "ratings": [{**dict(h), "rated_at": shape.iso(h["rated_at"])} for h in history],
            **self._fresh(row["last_synced_at"], self.staleness.zwift_riders),
        }

    async def event(self, event_id: int) -> dict[str, Any] | None:
        row = await self.pool.fetchrow(
            "SELECT event_id, club_id, starts_at, title, last_synced_at, signups_synced_at, "
            "results_synced_at FROM zwift_events WHERE event_id = $1",
            event_id,
        )
        if row is None:
            return None
        signups = await self.pool.fetch(
            "SELECT s.rider_id, s.category, r.name FROM zwift_event_signups s "
            "LEFT JOIN zwift_riders r ON r.rider_id = s.rider_id WHERE s.event_id = $1 "
            "ORDER BY s.category NULLS LAST, s.rider_id",
            event_id,
        )
        results = await self.pool.fetch(
            "SELECT rider_id, position, position_in_category, category, time_seconds, "
            "rating_before, rating_after, rating_delta FROM zwift_event_results "
            "WHERE event_id = $1 ORDER BY position NULLS LAST, rider_id",
            event_id,
        )
        return {
            "id": row["event_id"],
            "club_id": row["club_id"],
            "title": row["title"],
            "starts_at": shape.iso(row["starts_at"]),
            "signups_synced_at": shape.iso(row["signups_synced_at"]),
            "results_synced_at": shape.iso(row["results_synced_at"]),
            "signups": [dict(s) for s in signups],
            "results": [dict(r) for r in results],
            **self._fresh(row["last_synced_at"], self.staleness.zwift_events),
        }

    # --- for the refresh hook --------------------------------------------------------------

    async def channel_tenant(self, channel_id: int) -> int | None:
        return await self.pool.fetchval(
            "SELECT t.discord_guild_id FROM channels c JOIN tenants t ON t.id = c.tenant_id "
            "WHERE c.discord_channel_id = $1",
            channel_id,
        )

    async def rider_club(self, rider_id: int) -> int | None:
        """The club whose scheduler serves a rider: its own, else the one club tracked."""
        club = await self.pool.fetchval(
            "SELECT coalesce(r.added_for_club, r.club_id) FROM zwift_riders r "
            "WHERE r.rider_id = $1",
            rider_id,
        )
        if club is not None:
            return int(club)
        clubs = await self.pool.fetch("SELECT club_id FROM zwift_clubs WHERE tracked LIMIT 2")
        return int(clubs[0]["club_id"]) if len(clubs) == 1 else None


def staleness_of(settings: Any) -> Staleness:
    from workflows.scheduler_types import parse_cadence

    def cadence(name: str) -> float | None:
        seconds = parse_cadence(getattr(settings, name))
        return None if seconds is None else float(seconds)

    pvp = cadence("SCHEDULER_PVP_EVERY")
    return Staleness(
        wow=float(settings.BNET_STALENESS_SECONDS),
        pvp=pvp if pvp is not None else float(settings.BNET_STALENESS_SECONDS),
        discord=cadence("SCHEDULER_DISCORD_SYNC_EVERY"),
        zwift_riders=cadence("SCHEDULER_ZWIFT_RIDERS_EVERY"),
        zwift_events=cadence("SCHEDULER_ZWIFT_NEAR_EVERY"),
    )
