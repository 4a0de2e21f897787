"""Battle.net storage: registering, selecting outdated rows, and bulk upserts of synced data.

Everything here takes an open connection so the caller decides the transaction: rows and the
checkpoint that covers them are committed together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, literal, or_, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from providers.battlenet import (
    RosterMember,
    character_slug,
    check_region,
    check_slug,
    slugify,
)
from storage.db import count_rows, json_text
from storage.models import characters, guild_members, guilds, ranks

NEG_INF = datetime.min.replace(year=1)


async def track_guild(conn: AsyncConnection, region: str, realm: str, name: str) -> int:
    """Register a guild; a region or name no request could be made of is BadInput (a workflow
    input is input too: nothing is stored that would later build another host or path)."""
    region = check_region(region)
    realm_slug = check_slug(slugify(realm), "realm")
    name_slug = check_slug(slugify(name), "guild name")
    stmt = (
        insert(guilds)
        .values(region=region, realm=realm_slug, name_slug=name_slug, name=name)
        .on_conflict_do_update(
            index_elements=[guilds.c.region, guilds.c.realm, guilds.c.name_slug],
            set_={"tracked": True, "recheck_at": None},
        )
        .returning(guilds.c.id)
    )
    return int((await conn.execute(stmt)).scalar_one())


async def track_character(conn: AsyncConnection, region: str, realm: str, name: str) -> int:
    """Register a character; BadInput as for :func:`track_guild`."""
    region = check_region(region)
    realm_slug = check_slug(slugify(realm), "realm")
    name_slug = check_slug(character_slug(name), "character name")
    existing = await conn.execute(
        update(characters)
        .where(
            characters.c.region == region,
            characters.c.realm == realm_slug,
            characters.c.name_slug == name_slug,
        )
        .values(tracked=True, recheck_at=None)
        .returning(characters.c.id)
    )
    found = existing.scalars().first()
    if found is not None:
        return int(found)
    stmt = (
        insert(characters)
        .values(region=region, realm=realm_slug, name_slug=name_slug, name=name, tracked=True)
        .on_conflict_do_update(
            index_elements=[characters.c.region, characters.c.realm, characters.c.name_slug],
            index_where=characters.c.bnet_character_id.is_(None),
            set_={"tracked": True},
        )
        .returning(characters.c.id)
    )
    return int((await conn.execute(stmt)).scalar_one())


def due(table: Any, cutoff: datetime, now: datetime) -> Any:
    return and_(
        or_(table.c.last_synced_at.is_(None), table.c.last_synced_at < cutoff),
        or_(table.c.recheck_at.is_(None), table.c.recheck_at <= now),
    )


async def outdated_guilds(
    conn: AsyncConnection, region: str, cutoff: datetime, now: datetime
) -> list[int]:
    """Tracked guilds never synced (first) or synced before ``cutoff`` (oldest first)."""
    rows = await conn.execute(
        select(guilds.c.id)
        .where(guilds.c.region == region, guilds.c.tracked, due(guilds, cutoff, now))
        .order_by(guilds.c.last_synced_at.asc().nulls_first(), guilds.c.id)
    )
    return [int(r) for r in rows.scalars()]


@dataclass(frozen=True)
class OutdatedGuild:
    id: int
    region: str
    realm: str
    name_slug: str
    synced: datetime  # last_synced_at, NEG_INF when never synced: the keyset's first column


async def outdated_guild_page(
    conn: AsyncConnection,
    region: str,
    cutoff: datetime,
    now: datetime,
    after: tuple[datetime, int] | None,
    limit: int,
) -> list[OutdatedGuild]:
    """A page of tracked outdated guilds, keyset-ordered by (last_synced_at NULLS FIRST, id),
    the order of :func:`outdated_guilds`. As for characters: a guild synced while a run pages
    moves past ``cutoff`` and drops out, so no guild is selected twice or skipped."""
    synced = func.coalesce(guilds.c.last_synced_at, literal(NEG_INF))
    stmt = select(guilds.c.id, guilds.c.region, guilds.c.realm, guilds.c.name_slug, synced).where(
        guilds.c.region == region, guilds.c.tracked, due(guilds, cutoff, now)
    )
    if after is not None:
        stmt = stmt.where(tuple_(synced, guilds.c.id) > tuple_(literal(after[0]), after[1]))
    rows = await conn.execute(stmt.order_by(synced, guilds.c.id).limit(limit))
    return [OutdatedGuild(int(r[0]), r[1], r[2], r[3], r[4]) for r in rows]


async def outdated_characters(
    conn: AsyncConnection,
    region: str,
    cutoff: datetime,
    now: datetime,
    after: tuple[datetime, int] | None,
    limit: int,
) -> list[tuple[int, datetime]]:
    """A page of outdated characters, keyset-ordered by (last_synced_at NULLS FIRST, id).

    Rows synced while a run pages through move past ``cutoff`` and drop out; rows in flight lie
    before the cursor. So a run never selects a character twice and never skips one.
    """
    synced = func.coalesce(characters.c.last_synced_at, literal(NEG_INF))
    stmt = select(characters.c.id, synced).where(
        characters.c.region == region, due(characters, cutoff, now)
    )
    if after is not None:
        stmt = stmt.where(tuple_(synced, characters.c.id) > tuple_(literal(after[0]), after[1]))
    rows = await conn.execute(stmt.order_by(synced, characters.c.id).limit(limit))
    return [(int(r[0]), r[1]) for r in rows]


@dataclass(frozen=True)
class GuildRef:
    id: int
    region: str
    realm: str
    name_slug: str
    guild_last_modified: str | None
    roster_last_modified: str | None

    @property
    def key(self) -> str:
        return f"guild/{self.region}/{self.realm}/{self.name_slug}"


async def load_guild(conn: AsyncConnection, guild_id: int) -> GuildRef | None:
    row = (
        await conn.execute(
            select(
                guilds.c.id,
                guilds.c.region,
                guilds.c.realm,
                guilds.c.name_slug,
                guilds.c.guild_last_modified,
                guilds.c.roster_last_modified,
            ).where(guilds.c.id == guild_id)
        )
    ).first()
    return GuildRef(*row) if row else None


async def store_guild(
    conn: AsyncConnection,
    guild: GuildRef,
    columns: dict[str, Any] | None,
    guild_json: Any,
    guild_lm: str | None,
    roster_json: Any,
    roster_lm: str | None,
) -> None:
    """Update the guild row; JSON and columns only where the API sent a body (not a 304)."""
    values: dict[str, Any] = {
        "last_synced_at": func.now(),
        "updated_at": func.now(),
        "not_found_at": None,
        "recheck_at": None,
        "guild_last_modified": guild_lm,
        "roster_last_modified": roster_lm,
    }
    if columns is not None:
        values.update(columns, guild_data_json=guild_json)
    if roster_json is not None:
        values["roster_json"] = roster_json
    await conn.execute(update(guilds).where(guilds.c.id == guild.id).values(**values))
    count_rows(conn, "guilds", updated=1)


# A roster is stored in a few set-based statements fed with column arrays (`unnest`): the SQL
# text is the same for every roster, so asyncpg prepares it once per connection, where a
# multi-row VALUES statement was compiled anew for each roster (~0.1 s of CPU for 300 members).

# Claim characters registered by name (no upstream id yet) so they are not inserted twice.
_CLAIM_BY_NAME = text("""
UPDATE characters c SET bnet_character_id = v.bid
FROM unnest(CAST(:realms AS text[]), CAST(:slugs AS text[]), CAST(:bids AS bigint[]))
    AS v(realm, name_slug, bid)
WHERE c.region = :region AND c.bnet_character_id IS NULL
  AND c.realm = v.realm AND c.name_slug = v.name_slug
  AND NOT EXISTS (SELECT 1 FROM characters o
                  WHERE o.region = :region AND o.bnet_character_id = v.bid)
""")

_UPSERT_ROSTER_CHARACTERS = text("""
INSERT INTO characters AS c (region, bnet_character_id, realm, name_slug, name, guild_id, level,
                             character_class)
SELECT :region, bid, realm, slug, name, :guild, lvl, cls
FROM unnest(CAST(:bids AS bigint[]), CAST(:realms AS text[]), CAST(:slugs AS text[]),
            CAST(:names AS text[]), CAST(:levels AS int[]), CAST(:classes AS text[]))
    AS t(bid, realm, slug, name, lvl, cls)
ON CONFLICT (region, bnet_character_id) DO UPDATE
SET name = EXCLUDED.name, name_slug = EXCLUDED.name_slug, realm = EXCLUDED.realm,
    guild_id = EXCLUDED.guild_id, level = EXCLUDED.level,
    character_class = coalesce(c.character_class, EXCLUDED.character_class), updated_at = now()
RETURNING c.id, c.bnet_character_id, (xmax = 0) AS inserted
""")

_UPSERT_MEMBERS = text("""
INSERT INTO guild_members (guild_id, character_id, rank, character_name, character_class, level,
                           member_data_json)
SELECT :guild, cid, rk, name, cls, lvl, CAST(raw AS jsonb)
FROM unnest(CAST(:cids AS bigint[]), CAST(:ranks AS int[]), CAST(:names AS text[]),
            CAST(:classes AS text[]), CAST(:levels AS int[]), CAST(:raws AS text[]))
    AS t(cid, rk, name, cls, lvl, raw)
ON CONFLICT (guild_id, character_id) DO UPDATE
SET rank = EXCLUDED.rank, character_name = EXCLUDED.character_name,
    character_class = EXCLUDED.character_class, level = EXCLUDED.level,
    member_data_json = EXCLUDED.member_data_json, last_seen_at = now(), left_at = NULL
""")

_MARK_LEFT = text("""
UPDATE guild_members SET left_at = now()
WHERE guild_id = :guild AND left_at IS NULL AND character_id <> ALL(CAST(:present AS bigint[]))
RETURNING character_id
""")

_UNLINK_LEFT = text("""
UPDATE characters SET guild_id = NULL, updated_at = now()
WHERE id = ANY(CAST(:ids AS bigint[])) AND guild_id = :guild
""")


async def store_roster(
    conn: AsyncConnection, guild: GuildRef, members: Sequence[RosterMember]
) -> dict[str, int]:
    """Upsert characters, members and ranks of a roster; mark members who left. Bulk statements.

    A member listed twice (same upstream id) is stored once, as first listed: one statement
    may not update a row twice.
    """
    region = guild.region
    unique = list({m.bnet_character_id: m for m in reversed(members)}.values())[::-1]
    if not unique:
        left = await _mark_left(conn, guild.id, [])
        return {"members": 0, "discovered": 0, "left": left}
    bids = [m.bnet_character_id for m in unique]
    realms = [m.realm for m in unique]
    slugs = [character_slug(m.name) for m in unique]
    names = [m.name for m in unique]
    levels = [m.level for m in unique]
    classes = [m.character_class for m in unique]
    await conn.execute(
        _CLAIM_BY_NAME, {"region": region, "realms": realms, "slugs": slugs, "bids": bids}
    )
    rows = (
        await conn.execute(
            _UPSERT_ROSTER_CHARACTERS,
            {"region": region, "guild": guild.id, "bids": bids, "realms": realms,
             "slugs": slugs, "names": names, "levels": levels, "classes": classes},
        )
    ).all()  # fmt: skip
    ids = {int(r[1]): int(r[0]) for r in rows}
    discovered = sum(1 for r in rows if r[2])
    count_rows(conn, "characters", inserted=discovered, updated=len(rows) - discovered)
    await conn.execute(
        _UPSERT_MEMBERS,
        {"guild": guild.id, "cids": [ids[b] for b in bids], "ranks": [m.rank for m in unique],
         "names": names, "classes": classes, "levels": levels,
         "raws": [json_text(m.raw) for m in unique]},
    )  # fmt: skip
    left = await _mark_left(conn, guild.id, list(ids.values()))
    await _store_ranks(conn, guild.id, unique)
    count_rows(conn, "guild_members", upserted=len(unique), updated=left)
    return {"members": len(unique), "discovered": discovered, "left": left}


async def _mark_left(conn: AsyncConnection, guild_id: int, present: list[int]) -> int:
    gone = await conn.execute(_MARK_LEFT, {"guild": guild_id, "present": present})
    left_ids = [int(r) for r in gone.scalars()]
    if left_ids:
        await conn.execute(_UNLINK_LEFT, {"ids": left_ids, "guild": guild_id})
    return len(left_ids)


async def _store_ranks(
    conn: AsyncConnection, guild_id: int, members: Sequence[RosterMember]
) -> None:
    counts: dict[int, int] = {}
    for m in members:
        counts[m.rank] = counts.get(m.rank, 0) + 1
    await conn.execute(update(ranks).where(ranks.c.guild_id == guild_id).values(member_count=0))
    stmt = insert(ranks).values(
        [
            {
                "guild_id": guild_id,
                "rank_id": rank,
                "rank_name": "Guild Master" if rank == 0 else f"Rank {rank}",
                "member_count": n,
            }
            for rank, n in sorted(counts.items())
        ]
    )
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[ranks.c.guild_id, ranks.c.rank_id],
            set_={"member_count": stmt.excluded.member_count},
        )
    )
    count_rows(conn, "ranks", upserted=len(counts))


@dataclass(frozen=True)
class CharacterRef:
    id: int
    region: str
    realm: str
    name_slug: str
    bnet_character_id: int | None
    http_last_modified: dict[str, str]
    last_synced_at: datetime | None = None

    @property
    def key(self) -> str:
        return f"character/{self.region}/{self.realm}/{self.name_slug}"


async def load_characters(conn: AsyncConnection, ids: Sequence[int]) -> list[CharacterRef]:
    """The characters of a batch, in the order given (missing ids are skipped)."""
    rows = await conn.execute(
        select(
            characters.c.id,
            characters.c.region,
            characters.c.realm,
            characters.c.name_slug,
            characters.c.bnet_character_id,
            characters.c.http_last_modified,
            characters.c.last_synced_at,
        ).where(characters.c.id.in_(list(ids)))
    )
    by_id = {
        int(r[0]): CharacterRef(int(r[0]), r[1], r[2], r[3], r[4], r[5] or {}, r[6]) for r in rows
    }
    return [by_id[i] for i in ids if i in by_id]


# Which JSON column each character endpoint fills.
CHARACTER_JSON_COLUMNS = {
    "profile": "profile_json",
    "equipment": "equipment_json",
    "mythic": "mythic_profile_json",
    "professions": "professions_json",
}


@dataclass
class CharacterResult:
    """What one character's sync produced; payloads of 304 answers are None (keep stored)."""

    ref: CharacterRef
    columns: dict[str, Any] | None
    payloads: dict[str, Any]
    last_modified: dict[str, str]


async def store_characters(conn: AsyncConnection, results: Sequence[CharacterResult]) -> None:
    """One UPDATE per character (executemany would lose per-row column sets for 304s)."""
    for result in results:
        ref = result.ref
        values: dict[str, Any] = {
            "last_synced_at": func.now(),
            "updated_at": func.now(),
            "not_found_at": None,
            "recheck_at": None,
            "is_private": False,
            "http_last_modified": result.last_modified,
        }
        for endpoint, payload in result.payloads.items():
            if payload is not None:
                values[CHARACTER_JSON_COLUMNS[endpoint]] = payload
        target = ref.id
        if result.columns is not None:
            cols = dict(result.columns)
            cols.pop("guild_bnet_id", None)
            if ref.bnet_character_id is None:
                target = await _resolve_pending(conn, ref, int(cols["bnet_character_id"]))
            values.update(cols)
        await conn.execute(update(characters).where(characters.c.id == target).values(**values))
    count_rows(conn, "characters", updated=len(results))


async def _resolve_pending(conn: AsyncConnection, ref: CharacterRef, bnet_id: int) -> int:
    """A character registered by name turned out to be a row we already know: merge into it."""
    other = (
        await conn.execute(
            select(characters.c.id).where(
                characters.c.region == ref.region,
                characters.c.bnet_character_id == bnet_id,
                characters.c.id != ref.id,
            )
        )
    ).scalar()
    if other is None:
        return ref.id
    await conn.execute(update(characters).where(characters.c.id == other).values(tracked=True))
    await conn.execute(characters.delete().where(characters.c.id == ref.id))
    return int(other)


def _missing_values(table: Any, recheck_at: datetime) -> dict[str, Any]:
    """404: keep the data, flag when it went missing (first time only), re-check slowly."""
    return {
        "not_found_at": func.coalesce(table.c.not_found_at, func.now()),
        "recheck_at": recheck_at,
        "last_synced_at": func.now(),
        "updated_at": func.now(),
    }


async def mark_character_missing(
    conn: AsyncConnection, character_id: int, recheck_at: datetime
) -> None:
    """Gone, renamed, hidden or private: Blizzard answers 404 for all of them."""
    await conn.execute(
        update(characters)
        .where(characters.c.id == character_id)
        .values(is_private=True, **_missing_values(characters, recheck_at))
    )


async def mark_character_due_at(
    conn: AsyncConnection, character_ids: Sequence[int], recheck_at: datetime
) -> None:
    """Not synced this time (a fault, or a payload we cannot use): keep the data and its
    ``last_synced_at`` — the row must never look fresh — and ask again from ``recheck_at``."""
    if character_ids:
        await conn.execute(
            update(characters)
            .where(characters.c.id.in_(list(character_ids)))
            .values(recheck_at=recheck_at, updated_at=func.now())
        )


async def mark_guild_missing(conn: AsyncConnection, guild_id: int, recheck_at: datetime) -> None:
    await conn.execute(
        update(guilds).where(guilds.c.id == guild_id).values(**_missing_values(guilds, recheck_at))
    )


async def guild_character_ids(conn: AsyncConnection, guild_id: int) -> list[int]:
    """Current members of a guild (those who left are not synced with it)."""
    rows = await conn.execute(
        select(guild_members.c.character_id)
        .where(guild_members.c.guild_id == guild_id, guild_members.c.left_at.is_(None))
        .order_by(guild_members.c.character_id)
    )
    return [int(r) for r in rows.scalars()]


async def status(conn: AsyncConnection) -> dict[str, Any]:
    """Battle.net's part of `starter.py status`: guilds, characters, members, PvP brackets."""
    g = (
        await conn.execute(
            select(
                func.count(),
                func.count().filter(guilds.c.last_synced_at.is_not(None)),
                func.count().filter(guilds.c.not_found_at.is_not(None)),
            ).select_from(guilds)
        )
    ).one()
    c = (
        await conn.execute(
            select(
                func.count(),
                # disjoint: a character once stored and later private or 404 keeps its old
                # profile, and counted twice (with_profile + private_or_missing > known)
                func.count().filter(
                    characters.c.profile_json.is_not(None), characters.c.is_private.is_(False)
                ),
                func.count().filter(characters.c.is_private),
                func.count().filter(
                    characters.c.last_synced_at.is_(None),
                    characters.c.profile_json.is_(None),
                    characters.c.is_private.is_(False),
                ),
            ).select_from(characters)
        )
    ).one()
    members = (
        await conn.execute(
            select(func.count()).select_from(guild_members).where(guild_members.c.left_at.is_(None))
        )
    ).scalar_one()
    pvp = (
        await conn.execute(
            text(
                "SELECT l.region, l.season_id, l.bracket, l.entry_count, l.last_snapshot_at, "
                "count(e.id) FILTER (WHERE e.equipment_processed_at IS NOT NULL) AS processed "
                "FROM pvp_leaderboards l LEFT JOIN pvp_leaderboard_entries e "
                "ON e.leaderboard_id = l.id AND e.snapshot_at = l.last_snapshot_at "
                "GROUP BY l.id ORDER BY l.region, l.season_id, l.bracket"
            )
        )
    ).all()
    return {
        "guilds": {"tracked": g[0], "synced": g[1], "not_found": g[2]},
        "characters": {
            "known": c[0],
            "with_profile": c[1],
            "private_or_missing": c[2],
            "never_synced": c[3],
        },
        "members": {"current": members},
        "pvp_brackets": [dict(r._mapping) for r in pvp],
    }
