"""PvpSync end to end on the real dev server, embedded Postgres and the sandbox."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from activities.battlenet_build import pvp_queues
from activities.types import PvpSyncInput, PvpSyncResult
from storage.db import create_engine
from storage.models import (
    characters,
    pvp_leaderboard_entries,
    pvp_leaderboard_entry_items,
    pvp_leaderboards,
)
from tests.sandbox_helpers import admin, battlenet_sandbox, sandbox_settings
from worker import build_worker
from workflows.pvp import PvpSync

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


async def _sync(client, settings, database_url, task_queue, brackets) -> PvpSyncResult:
    sync_queue, processing_queue = pvp_queues(settings, task_queue)
    async with build_worker(client, settings, database_url, task_queue) as parts:
        async with parts.worker:
            return await client.execute_workflow(
                PvpSync.run,
                PvpSyncInput(
                    region="eu", brackets=brackets, equipment_batch_size=40,
                    sync_queue=sync_queue, processing_queue=processing_queue,
                ),
                id=f"pvp-sync/eu/test-{uuid.uuid4().hex[:6]}",
                task_queue=task_queue,
            )  # fmt: skip


async def _rows(database_url: str, query):
    engine = create_engine(database_url, pool_size=1)
    async with engine.connect() as conn:
        rows = [dict(r._mapping) for r in await conn.execute(query)]
    await engine.dispose()
    return rows


async def test_leaderboards_and_equipment_stored_exactly_and_private_skipped_next_time(
    client, database_url, task_queue
):
    with battlenet_sandbox(guilds_per_region=1, roster_min=5, roster_max=5, pvp_entries=200) as sb:
        settings = sandbox_settings(sb.url)
        first = await _sync(client, settings, database_url, task_queue, ["2v2", "3v3"])
        assert first.failed_brackets == [] and [b.bracket for b in first.brackets] == ["2v2", "3v3"]
        season = first.season
        stored = await _rows(
            database_url,
            select(
                pvp_leaderboards.c.bracket,
                characters.c.bnet_character_id,
                pvp_leaderboard_entries.c.rank,
                pvp_leaderboard_entries.c.rating,
                pvp_leaderboard_entries.c.entry_json,
                pvp_leaderboard_entries.c.equipment_processed_at,
            )
            .join(
                pvp_leaderboards, pvp_leaderboards.c.id == pvp_leaderboard_entries.c.leaderboard_id
            )
            .join(characters, characters.c.id == pvp_leaderboard_entries.c.character_id),
        )
        private: set[int] = set()
        for bracket in ("2v2", "3v3"):
            truth = admin(sb.url, f"truth/pvp/eu/{season}/{bracket}")
            private |= set(truth["private_character_ids"])
            mine = {r["bnet_character_id"]: r for r in stored if r["bracket"] == bracket}
            assert len(mine) == len(truth["leaderboard"]["entries"])
            for entry in truth["leaderboard"]["entries"]:
                row = mine[entry["character"]["id"]]
                assert (row["rank"], row["rating"]) == (entry["rank"], entry["rating"])
                assert row["entry_json"] == entry
                assert row["equipment_processed_at"] is not None
        assert private, "the sandbox board has private characters"
        items = await _rows(database_url, select(pvp_leaderboard_entry_items))
        assert items, "equipment items were stored"

        # A new snapshot: known-private characters cost no call at all; unchanged gear is reused.
        admin(sb.url, f"pvp/new-snapshot/eu/{season}/2v2", {})
        admin(sb.url, "reset", {})
        second = await _sync(client, settings, database_url, task_queue, ["2v2"])
        calls = admin(sb.url, f"requests/characters?ids={','.join(map(str, sorted(private)))}")
        assert sum(calls.values()) == 0, calls
        board = second.brackets[0]
        assert board.import_result.inserted == len(
            admin(sb.url, f"truth/pvp/eu/{season}/2v2")["leaderboard"]["entries"]
        )
        assert board.equipment.private_skipped > 0
        assert board.equipment.reused > 0


async def test_unknown_bracket_is_a_clear_non_retryable_error(client, database_url, task_queue):
    with battlenet_sandbox(guilds_per_region=1, roster_min=2, roster_max=2, pvp_entries=20) as sb:
        with pytest.raises(Exception) as err:
            await _sync(client, sandbox_settings(sb.url), database_url, task_queue, ["5v5"])
    assert "has no bracket(s) 5v5" in str(err.value.cause.cause)  # type: ignore[attr-defined]
