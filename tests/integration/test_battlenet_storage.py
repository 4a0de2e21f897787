"""Battle.net roster storage on the real Postgres: set-based, the same SQL for every roster,
and name slugs that do not depend on the database's locale."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import event, select

import runtime
from observability import metrics
from providers.battlenet.parse import RosterMember
from providers.battlenet.pvp import leaderboard_columns
from storage import battlenet as db
from storage import pvp
from storage.db import create_engine
from storage.migrate import upgrade
from storage.models import characters, guild_members, ranks
from tests.conftest import _psql


@pytest.fixture
async def engine(database_url):
    engine = create_engine(database_url, pool_size=2)
    yield engine
    await engine.dispose()


@pytest.fixture
async def c_locale_engine(pg_server: runtime.EmbeddedPostgres):
    """A database whose ctype is plain C, as a user's server may have it: there SQL's lower()
    leaves non-ASCII letters alone (lower('É') = 'É')."""
    name = f"t_c_{uuid.uuid4().hex[:10]}"
    _psql(pg_server, f"CREATE DATABASE \"{name}\" TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'")
    await asyncio.to_thread(upgrade, pg_server.url(name))
    engine = create_engine(pg_server.url(name), pool_size=2)
    yield engine
    await engine.dispose()
    _psql(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _member(bid: int, name: str, rank: int = 1, level: int = 80) -> RosterMember:
    raw = {"character": {"id": bid, "name": name, "realm": {"slug": "draenor"}}, "rank": rank}
    return RosterMember(bid, name, "draenor", level, 1 + bid % 12, rank, raw)


async def _guild(engine, name: str = "the-guild") -> db.GuildRef:
    async with engine.begin() as conn:
        gid = await db.track_guild(conn, "eu", "draenor", name)
        ref = await db.load_guild(conn, gid)
    assert ref is not None
    return ref


async def _store(engine, guild: db.GuildRef, members: list[RosterMember]) -> dict[str, int]:
    async with engine.begin() as conn:
        return await db.store_roster(conn, guild, members)


async def _members(engine, guild: db.GuildRef) -> dict[str, tuple]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(
                guild_members.c.character_name, guild_members.c.rank, guild_members.c.left_at,
                guild_members.c.member_data_json, characters.c.guild_id, characters.c.name_slug,
            )
            .join(characters, characters.c.id == guild_members.c.character_id)
            .where(guild_members.c.guild_id == guild.id)
        )  # fmt: skip
        return {r[0]: tuple(r[1:]) for r in rows}


async def test_a_roster_is_stored_joined_updated_and_left(c_locale_engine):
    engine = c_locale_engine
    guild = await _guild(engine)
    async with engine.begin() as conn:  # registered by name before the roster knew it
        await db.track_character(conn, "eu", "draenor", "ÉOWYN")
    first = [_member(1, "Éowyn", rank=0), _member(2, "Brok"), _member(3, "Cara", rank=2)]
    assert await _store(engine, guild, first) == {"members": 3, "discovered": 2, "left": 0}
    stored = await _members(engine, guild)
    assert stored["Éowyn"][0] == 0 and stored["Éowyn"][3] == guild.id
    assert stored["Éowyn"][4] == "éowyn"  # Python's Unicode lower, whatever the server locale
    assert stored["Brok"][2] == first[1].raw  # the member document, as JSONB
    async with engine.connect() as conn:
        named = await conn.execute(select(characters.c.bnet_character_id))
        assert sorted(named.scalars()) == [1, 2, 3]  # the registered row was claimed, not doubled

    second = [_member(1, "Éowyn", rank=0), _member(3, "Cara", rank=1, level=81)]
    assert await _store(engine, guild, second) == {"members": 2, "discovered": 0, "left": 1}
    stored = await _members(engine, guild)
    assert stored["Brok"][1] is not None and stored["Brok"][3] is None  # left, unlinked
    assert stored["Cara"][0] == 1 and stored["Cara"][1] is None
    async with engine.connect() as conn:
        counts = dict((await conn.execute(select(ranks.c.rank_id, ranks.c.member_count))).all())
    assert counts == {0: 1, 1: 1, 2: 0}

    assert await _store(engine, guild, []) == {"members": 0, "discovered": 0, "left": 2}


async def test_a_member_listed_twice_is_stored_once(engine):
    """Failed before: one INSERT … ON CONFLICT DO UPDATE touched the row twice (Postgres
    refuses: "cannot affect row a second time"), so the guild could never be stored."""
    guild = await _guild(engine)
    twice = [_member(7, "Dup", rank=3), _member(8, "Other"), _member(7, "Dup", rank=4)]
    assert await _store(engine, guild, twice) == {"members": 2, "discovered": 2, "left": 0}
    assert (await _members(engine, guild))["Dup"][0] == 3  # as first listed


async def test_every_roster_runs_the_same_sql_text(engine):
    """Failed before: a multi-row VALUES statement, compiled anew per roster size (~0.1 s of
    CPU each for 300 members, which bounded a full sync's guild phase). Now column arrays:
    one text per statement, which asyncpg prepares once per connection."""
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    for n, size in enumerate((3, 300)):
        guild = await _guild(engine, f"guild-{n}")
        seen.clear()
        await _store(engine, guild, [_member(n * 1000 + i, f"M{n}x{i}") for i in range(size)])
        if n == 0:
            small = list(seen)
    assert seen == small
    assert max(len(s) for s in seen) < 2_000


async def test_a_ladders_new_characters_get_the_same_slug_in_a_c_locale_database(c_locale_engine):
    """Failed before: the PvP import slugged names with SQL's lower(), so in a C-locale
    database 'Éowyn' was stored as 'Éowyn' and the API's lookup of 'éowyn' missed it."""
    entry = {
        "character": {"id": 41, "name": "Éowyn", "realm": {"id": 1, "slug": "draenor"}},
        "faction": {"type": "ALLIANCE"}, "rank": 1, "rating": 2400,
        "season_match_statistics": {"played": 10, "won": 6, "lost": 4}, "tier": {"id": 5},
    }  # fmt: skip
    columns = leaderboard_columns({"entries": [entry]}, "eu/27/2v2")
    async with c_locale_engine.begin() as conn:
        await pvp.import_leaderboard(
            conn, "eu", 27, "2v2", columns, {}, None, datetime(2026, 12, 4, tzinfo=UTC)
        )
        slugs = (await conn.execute(select(characters.c.name_slug))).scalars().all()
    assert slugs == ["éowyn"]


async def test_a_document_with_nan_or_a_huge_integer_is_stored(engine):
    """Failed before: the documents were written with json.dumps, which writes NaN (stdlib json
    reads it from a body), and Postgres refuses it as JSON, so the character never stored.
    Now orjson writes them (null for NaN); an integer beyond 64 bits still goes through."""
    async with engine.begin() as conn:
        cid = await db.track_character(conn, "eu", "draenor", "Nan")
        (ref,) = await db.load_characters(conn, [cid])
        equipment = {"stats": float("nan"), "big": 2**70 + 1, "name": "Éowyn's"}
        result = db.CharacterResult(ref, None, {"equipment": equipment}, {})
        await db.store_characters(conn, [result])
        stored = (
            await conn.execute(select(characters.c.equipment_json).where(characters.c.id == cid))
        ).scalar_one()
    assert stored == {"stats": None, "big": 2**70 + 1, "name": "Éowyn's"}


def _rows_metric(table: str, outcome: str) -> float:
    labels = {"table": table, "outcome": outcome}
    return metrics.REGISTRY.get_sample_value("ratesync_rows_upserted_total", labels) or 0.0


async def test_rows_are_counted_when_their_transaction_commits_never_when_rolled_back(engine):
    """Failed before: the metric counted a statement's rows when it ran, so a store whose
    transaction then rolled back (a later statement failed) still showed its rows written."""
    guild = await _guild(engine)
    before = _rows_metric("characters", "inserted")
    with pytest.raises(RuntimeError):
        async with engine.begin() as conn:
            await db.store_roster(conn, guild, [_member(1, "Gone"), _member(2, "Too")])
            raise RuntimeError("a later step of the transaction failed")
    async with engine.connect() as conn:  # read, never committed: nothing counted either
        await db.store_roster(conn, guild, [_member(3, "Read")])
    assert _rows_metric("characters", "inserted") == before
    await _store(engine, guild, [_member(4, "Kept"), _member(5, "Also")])
    assert _rows_metric("characters", "inserted") == before + 2
