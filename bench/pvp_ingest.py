"""PvP ingest: the bulk path vs the brief's "before" (row-by-row ORM), on the same Postgres.

    .venv/bin/python -m bench.pvp_ingest            # 5,000 entries
    .venv/bin/python -m bench.pvp_ingest --entries 1000

Both paths store the same 5,000-entry leaderboard (the real fixture's entries, grown) and the
equipment of every entry (the real equipment fixture, varied per character) into fresh
databases of one embedded Postgres; HTTP is left out, so the figures are database work only.
Targets: speed-up of 20x or more; leaderboard import within 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import registry

from providers.battlenet.pvp import equipment_hash, equipped_items, leaderboard_columns
from storage import pvp as db
from storage.db import create_engine
from storage.models import (
    characters,
    items,
    pvp_leaderboard_entries,
    pvp_leaderboard_entry_items,
    pvp_leaderboards,
)

FIXTURES = Path(__file__).resolve().parents[1] / "tests/fixtures/blizzard"
SNAPSHOT = datetime(2019, 12, 22, 9, 5, 19, tzinfo=UTC)
PROCESSING_THREADS = 4  # the PVP_PROCESSING_THREADS default


class _Row:
    """A plain mapped class: attributes set through the ORM's instrumentation."""

    def __init__(self, **values: Any) -> None:
        for key, value in values.items():
            setattr(self, key, value)

    def __getattr__(self, name: str) -> Any:  # for the type checker; mapped columns exist
        raise AttributeError(name)


class Character(_Row): ...


class Leaderboard(_Row): ...


class Entry(_Row): ...


class Item(_Row): ...


class EntryItem(_Row): ...


_orm = registry()
_orm.map_imperatively(Character, characters)
_orm.map_imperatively(Leaderboard, pvp_leaderboards)
_orm.map_imperatively(Entry, pvp_leaderboard_entries)
_orm.map_imperatively(Item, items)
_orm.map_imperatively(EntryItem, pvp_leaderboard_entry_items)


def make_ladder(size: int) -> dict[str, Any]:
    real = json.loads((FIXTURES / "pvp_leaderboard_2v2_season27_first50.json").read_text())
    entries = []
    for n in range(size):
        entry = copy.deepcopy(real["entries"][n % len(real["entries"])])
        entry["character"]["id"] = 200_000_000 + n
        entry["character"]["name"] = f"{entry['character']['name']}{n}"
        entry["rank"], entry["rating"] = n + 1, 3300 - n // 2
        entries.append(entry)
    return {**real, "entries": entries}


def make_equipment(n: int, template: dict[str, Any]) -> dict[str, Any]:
    """The real equipment payload; the item ids vary over a pool so items are shared."""
    payload = copy.deepcopy(template)
    for k, item in enumerate(payload["equipped_items"]):
        item["item"]["id"] = 150_000 + (n * 7 + k * 13) % 900
    return payload


class Counter:
    def __init__(self, engine: AsyncEngine) -> None:
        self.statements = 0
        event.listen(engine.sync_engine, "before_cursor_execute", self._hit)

    def _hit(self, *args: Any) -> None:
        self.statements += 1


async def bulk(engine: AsyncEngine, ladder: dict[str, Any], gear: list[dict[str, Any]]) -> dict:
    bodies = [json.dumps(g, ensure_ascii=False).encode() for g in gear]  # as received
    columns = leaderboard_columns(ladder, "eu/27/2v2")
    meta = {k: v for k, v in ladder.items() if k != "entries"}
    started = time.perf_counter()
    async with engine.begin() as conn:
        result = await db.import_leaderboard(conn, "eu", 27, "2v2", columns, meta, None, SNAPSHOT)
    board_seconds = time.perf_counter() - started
    async with engine.connect() as conn:
        ranges = await db.entry_id_ranges(conn, result.leaderboard_id, SNAPSHOT, 250)
    gate = asyncio.Semaphore(PROCESSING_THREADS)  # as the worker's pvp-processing queue does

    async def process(lo: int, hi: int) -> None:
        async with gate, engine.connect() as conn:
            batch = await db.entries_to_process(conn, result.leaderboard_id, SNAPSHOT, lo, hi)
        fresh = []
        for e in batch:  # what the activity does with each 200 answer (HTTP left out)
            payload, body = gear[e.entry_id % len(gear)], bodies[e.entry_id % len(gear)]
            items = equipped_items(payload, e.key)
            fresh.append(db.FreshEquipment(e, items, None, equipment_hash(body)))
        async with gate, engine.begin() as conn:
            await db.store_equipment(conn, fresh, [], [e.entry_id for e in batch])

    await asyncio.gather(*(process(lo, hi) for lo, hi in ranges))
    return {"board_seconds": board_seconds, "seconds": time.perf_counter() - started}


async def naive(engine: AsyncEngine, ladder: dict[str, Any], gear: list[dict[str, Any]]) -> dict:
    """The brief's "before": look up, insert and flush one row at a time through the ORM."""
    started = time.perf_counter()
    async with AsyncSession(engine, expire_on_commit=False) as session:
        board = Leaderboard(region="eu", season_id=27, bracket="2v2", entry_count=0)
        session.add(board)
        await session.flush()
        entries = []
        for raw in ladder["entries"]:
            c = raw["character"]
            found = (await session.execute(
                select(Character).where(characters.c.region == "eu",
                                        characters.c.bnet_character_id == c["id"])
            )).scalar()  # fmt: skip
            if found is None:
                found = Character(
                    region="eu", bnet_character_id=c["id"], name=c["name"],
                    name_slug=c["name"].lower(), realm=c["realm"]["slug"],
                )  # fmt: skip
                session.add(found)
                await session.flush()
            stats = raw["season_match_statistics"]
            entry = Entry(
                leaderboard_id=board.id, character_id=found.id, snapshot_at=SNAPSHOT,
                rank=raw["rank"], rating=raw["rating"], played=stats["played"],
                won=stats["won"], lost=stats["lost"], faction=raw["faction"]["type"],
                tier_id=raw["tier"]["id"], entry_json=raw,
            )  # fmt: skip
            session.add(entry)
            await session.flush()
            entries.append(entry)
        await session.commit()
        board_seconds = time.perf_counter() - started
        for n, entry in enumerate(entries):
            for item in equipped_items(gear[n % len(gear)], "naive"):
                row = (await session.execute(
                    select(Item).where(items.c.bnet_item_id == item.bnet_item_id)
                )).scalar()  # fmt: skip
                if row is None:
                    row = Item(
                        bnet_item_id=item.bnet_item_id, name=item.name, quality=item.quality,
                        slot=item.slot, item_json=item.raw,
                    )  # fmt: skip
                    session.add(row)
                    await session.flush()
                link = EntryItem(
                    entry_id=entry.id, item_id=row.id, slot=item.slot,
                    item_level=item.item_level, item_json=item.detail,
                )  # fmt: skip
                session.add(link)
                await session.flush()
            setattr(entry, "equipment_processed_at", datetime.now(UTC))  # noqa: B010
            character = await session.get(Character, entry.character_id)
            setattr(character, "equipment_hash", f"h{n % len(gear)}")  # noqa: B010
            await session.flush()
        await session.commit()
    return {"board_seconds": board_seconds, "seconds": time.perf_counter() - started}


async def run(size: int) -> None:
    from bench.common import throwaway_stack

    ladder = make_ladder(size)
    template = json.loads((FIXTURES / "character_equipment.json").read_text())
    gear = [make_equipment(n, template) for n in range(50)]
    async with throwaway_stack(temporal=False) as stack:
        results = {}
        for name, path in (("bulk (unnest, set-based)", bulk), ("naive row-by-row ORM", naive)):
            url = await stack.fresh_database()
            engine = create_engine(url, pool_size=PROCESSING_THREADS)
            counter = Counter(engine)
            results[name] = {**await path(engine, ladder, gear), "statements": counter.statements}
            await engine.dispose()
    rows = size * (1 + len(gear[0]["equipped_items"]))
    print(f"{size} entries, {rows} rows in all (entries + entry items)")
    print(f"{'path':<26} {'board s':>8} {'total s':>8} {'rows/s':>9} {'statements':>11}")
    for name, r in results.items():
        print(f"{name:<26} {r['board_seconds']:>8.3f} {r['seconds']:>8.2f} "
              f"{rows / r['seconds']:>9.0f} {r['statements']:>11}")  # fmt: skip
    b, n = results["bulk (unnest, set-based)"], results["naive row-by-row ORM"]
    print(f"speed-up: {n['seconds'] / b['seconds']:.1f}x overall, "
          f"{n['board_seconds'] / b['board_seconds']:.1f}x for the leaderboard import")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=5000)
    asyncio.run(run(parser.parse_args().entries))


if __name__ == "__main__":
    main()
