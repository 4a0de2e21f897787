"""The retry contract on Battle.net: a transient fault never dead-letters a character or makes it
look fresh; a batch carries on past a failing character in one attempt; a fault that clears is
healed by the master's final pass; a manual guild add resumes where it stopped; looping
activities heartbeat within 5 s and database activities have short timeouts."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from activities.types import BattleNetSyncInput, EntitySyncInput
from tests.integration.battlenet_support import (
    assert_matches_truth,
    fetch_all,
    run_sync,
    track_sandbox_guilds,
)
from tests.sandbox_helpers import admin, battlenet_sandbox, sandbox_settings
from worker import build_worker
from workflows.battlenet import BattleNetEntitySync, BattleNetSync

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


def _victim(url: str) -> dict[str, Any]:
    """A visible guild member, and the path prefix of all its endpoints."""
    chars = [c for c in admin(url, "truth/characters?region=eu") if c["guild_id"]]
    victim = next(c for c in chars if not c["hidden"])
    victim["path"] = f"/profile/wow/character/{victim['realm_slug']}/{victim['name_slug']}"
    return victim


def _stored(rows: dict[str, list[dict[str, Any]]], bnet_id: int) -> dict[str, Any]:
    return next(c for c in rows["characters"] if c["bnet_character_id"] == bnet_id)


async def _events(client: Client, workflow_id: str) -> list[Any]:
    return [e async for e in client.get_workflow_handle(workflow_id).fetch_history_events()]


async def test_a_character_failing_transiently_is_deferred_never_dead_lettered_or_fresh(
    client, database_url, task_queue
):
    with battlenet_sandbox(guilds_per_region=1, roster_min=12, roster_max=12, hidden_ratio=0) as sb:
        await track_sandbox_guilds(database_url, sb.url)
        victim = _victim(sb.url)
        # Every answer about this character is cut in transit, on every attempt.
        admin(sb.url, "faults", {"match": victim["path"], "truncate_rate": 1.0})
        settings = sandbox_settings(sb.url)
        wid = f"battlenet-sync/eu/deferred-{uuid.uuid4().hex[:6]}"
        async with build_worker(client, settings, database_url, task_queue) as parts:
            async with parts.worker:
                counts = await client.execute_workflow(
                    BattleNetSync.run,
                    BattleNetSyncInput(region="eu", batch_size=12),
                    id=wid,
                    task_queue=task_queue,
                )
        rows = await fetch_all(database_url)
        stored = _stored(rows, victim["id"])
        assert counts.children_failed == 0 and counts.failed == 0
        assert counts.deferred == 1  # still failing after the final pass
        assert counts.characters == 11
        assert stored["last_synced_at"] is None, "a transient fault made the character fresh"
        assert stored["profile_json"] is None
        assert stored["recheck_at"] is not None
        assert stored["recheck_at"] - datetime.now(UTC) < timedelta(minutes=1)
        assert not [f for f in rows["sync_failures"] if victim["name_slug"] in f["entity_key"]]
        # The batch carried on past the failing character: its 11 siblings were stored by the
        # first attempt of the first call, and no call of the batch failed.
        batch = await _events(client, f"{wid}/characters/1-0")
        started = [e for e in batch if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED]
        assert started and all(
            e.activity_task_started_event_attributes.attempt == 1 for e in started
        )
        # Heartbeat timeouts ≤ 5 s for looping activities; short start-to-close for database ones.
        scheduled = [
            e.activity_task_scheduled_event_attributes
            for wf in (wid, f"{wid}/characters/1-0")
            for e in await _events(client, wf)
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        ]
        for attrs in scheduled:
            if attrs.activity_type.name == "bnet_sync_characters":
                assert timedelta(0) < attrs.heartbeat_timeout.ToTimedelta() <= timedelta(seconds=3)
            else:
                assert attrs.start_to_close_timeout.ToTimedelta() <= timedelta(seconds=15)

        # Once the fault is gone, the next ordinary run syncs it (it is still outdated).
        admin(sb.url, "faults", {"clear": True})
        await asyncio.sleep(max(0.0, (stored["recheck_at"] - datetime.now(UTC)).total_seconds()))
        again = await run_sync(client, settings, database_url, task_queue)
        assert again.characters == 1 and again.deferred == 0
        assert_matches_truth(await fetch_all(database_url), sb.url, "eu")


async def test_a_fault_that_clears_is_healed_by_the_final_pass(client, database_url, task_queue):
    with battlenet_sandbox(guilds_per_region=1, roster_min=10, roster_max=10, hidden_ratio=0) as sb:
        await track_sandbox_guilds(database_url, sb.url)
        victim = _victim(sb.url)
        # The character's first three requests fail: every in-client try of the first pass.
        admin(sb.url, "faults", {"match": victim["path"], "force_5xx": 3})
        counts = await run_sync(client, sandbox_settings(sb.url), database_url, task_queue)
        assert counts.deferred == 0 and counts.children_failed == 0 and counts.failed == 0
        assert counts.characters == 10
        rows = await fetch_all(database_url)
        assert not rows["sync_failures"]
        assert_matches_truth(rows, sb.url, "eu")


async def test_a_manual_guild_add_resumes_after_a_budget_sleep(client, database_url, task_queue):
    """Each character of the guild is fetched once although the budget runs out mid-batch."""
    with battlenet_sandbox(
        guilds_per_region=1, roster_min=12, roster_max=12, hidden_ratio=0, per_second=10
    ) as sb:
        guild = admin(sb.url, "truth/guilds?region=eu")[0]
        settings = sandbox_settings(
            sb.url, BNET_RATE_PER_SECOND=10, RATE_LIMIT_MAX_WAIT_SECONDS=0.05
        )
        wid = f"guild/eu/{guild['realm_slug']}/{guild['name_slug']}/{uuid.uuid4().hex[:6]}"
        async with build_worker(client, settings, database_url, task_queue) as parts:
            async with parts.worker:
                result = await client.execute_workflow(
                    BattleNetEntitySync.run,
                    EntitySyncInput("eu", "guild", guild["realm_slug"], guild["name"]),
                    id=wid,
                    task_queue=task_queue,
                )
        events = await _events(client, wid)
        timers = [e for e in events if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED]
        assert timers, "the budget never ran out: the test proves nothing"
        ids = [c["id"] for c in admin(sb.url, "truth/characters?region=eu") if c["guild_id"]]
        per_character = admin(sb.url, f"requests/characters?ids={','.join(map(str, ids))}")
        assert result.characters == 12
        assert set(per_character.values()) == {4}, per_character  # 4 endpoints, once each
        assert admin(sb.url, "stats")["throttled"] == 0
        scheduled = [
            e.activity_task_scheduled_event_attributes
            for e in events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        ]
        guild_calls = [a for a in scheduled if a.activity_type.name == "bnet_sync_guild"]
        assert guild_calls and all(
            timedelta(0) < a.heartbeat_timeout.ToTimedelta() <= timedelta(seconds=3)
            for a in guild_calls
        )
        assert_matches_truth(await fetch_all(database_url), sb.url, "eu")
