"""A 5,000-entry leaderboard lands in a handful of round trips, exactly and idempotently."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select

from providers.battlenet.pvp import leaderboard_columns
from storage import pvp as db
from storage.db import create_engine
from storage.models import characters, pvp_leaderboard_entries, pvp_leaderboards

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures/blizzard"


def ladder(size: int = 5000, shift: int = 0) -> dict[str, Any]:
    """The real 2v2 fixture (first 50 entries) grown to `size` entries with distinct characters."""
    real = json.loads((FIXTURE / "pvp_leaderboard_2v2_season27_first50.json").read_text())
    entries = []
    for n in range(size):
        entry = copy.deepcopy(real["entries"][n % len(real["entries"])])
        entry["character"]["id"] = 100_000_000 + n
        entry["character"]["name"] = f"{entry['character']['name']}{n}"
        entry["rank"] = n + 1
        entry["rating"] = 3200 - n // 3 + shift
        entries.append(entry)
    return {**real, "entries": entries}


class StatementCounter:
    def __init__(self, engine: Any) -> None:
        self.count = 0
        event.listen(engine.sync_engine, "before_cursor_execute", self._hit)

    def _hit(self, *args: Any) -> None:
        self.count += 1


async def _import(engine: Any, payload: dict[str, Any], snapshot: datetime) -> db.ImportResult:
    columns = leaderboard_columns(payload, "eu/27/2v2")
    meta = {k: v for k, v in payload.items() if k != "entries"}
    async with engine.begin() as conn:
        return await db.import_leaderboard(
            conn, "eu", 27, "2v2", columns, meta, "Sun, 22 Dec 2019 09:05:19 GMT", snapshot
        )


async def test_a_5000_entry_import_takes_at_most_five_round_trips_and_is_exact(database_url):
    engine = create_engine(database_url, pool_size=1)
    payload = ladder()
    snapshot = datetime(2019, 12, 22, 9, 5, 19, tzinfo=UTC)
    async with engine.connect():  # open the pool's connection outside the count
        pass
    counter = StatementCounter(engine)
    result = await _import(engine, payload, snapshot)
    assert counter.count <= 5, f"{counter.count} statements"
    assert result.entries == result.inserted == result.new_characters == 5000
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(
                    characters.c.bnet_character_id,
                    characters.c.name,
                    characters.c.realm,
                    pvp_leaderboard_entries.c.rank,
                    pvp_leaderboard_entries.c.rating,
                    pvp_leaderboard_entries.c.won,
                    pvp_leaderboard_entries.c.faction,
                    pvp_leaderboard_entries.c.entry_json,
                ).join(characters, characters.c.id == pvp_leaderboard_entries.c.character_id)
            )
        ).all()
        board = (await conn.execute(select(pvp_leaderboards))).one()._mapping
    await engine.dispose()
    by_id = {r[0]: r for r in rows}
    assert len(by_id) == 5000
    for entry in payload["entries"]:
        row = by_id[entry["character"]["id"]]
        assert row[1] == entry["character"]["name"]
        assert row[2] == entry["character"]["realm"]["slug"]
        assert (row[3], row[4]) == (entry["rank"], entry["rating"])
        assert row[5] == entry["season_match_statistics"]["won"]
        assert row[6] == entry["faction"]["type"]
        assert row[7] == entry
    assert board["entry_count"] == 5000 and board["bracket_type"] == "ARENA_2v2"
    assert "entries" not in board["leaderboard_json"]


async def test_reimport_is_idempotent_and_a_new_snapshot_adds_rows(database_url):
    engine = create_engine(database_url, pool_size=1)
    first_at = datetime(2019, 12, 22, 9, 5, 19, tzinfo=UTC)
    await _import(engine, ladder(2000), first_at)
    again = await _import(engine, ladder(2000), first_at)
    assert again.inserted == 0 and again.new_characters == 0
    newer = await _import(engine, ladder(2000, shift=7), first_at + timedelta(minutes=10))
    assert newer.inserted == 2000 and newer.new_characters == 0
    async with engine.connect() as conn:
        counts: dict[datetime, int] = dict(
            (
                await conn.execute(
                    select(pvp_leaderboard_entries.c.snapshot_at, func.count()).group_by(
                        pvp_leaderboard_entries.c.snapshot_at
                    )
                )
            ).all()
        )
        old_ratings = (
            await conn.execute(
                select(func.min(pvp_leaderboard_entries.c.rating)).where(
                    pvp_leaderboard_entries.c.snapshot_at == first_at
                )
            )
        ).scalar()
        n_chars = (await conn.execute(select(func.count()).select_from(characters))).scalar()
    await engine.dispose()
    assert counts == {first_at: 2000, first_at + timedelta(minutes=10): 2000}
    assert old_ratings == 3200 - 1999 // 3, "the old snapshot was not touched"
    assert n_chars == 2000
