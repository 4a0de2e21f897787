"""Injected 429s, 5xx, resets and truncated bodies are survived with the data still exact;
404 characters are recorded and not retried on the next run; no secret reaches the history."""

from __future__ import annotations

import uuid

import pytest

from activities.types import BattleNetSyncInput
from tests.integration.battlenet_support import (
    assert_matches_truth,
    fetch_all,
    run_sync,
    track_sandbox_guilds,
)
from tests.sandbox_helpers import admin, battlenet_sandbox, sandbox_settings
from worker import build_worker
from workflows.battlenet import BattleNetSync

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


async def test_survives_injected_429s_5xx_resets_and_truncated_bodies(
    client, database_url, task_queue
):
    with battlenet_sandbox(guilds_per_region=2, roster_min=10, roster_max=16) as sb:
        await track_sandbox_guilds(database_url, sb.url)
        admin(
            sb.url,
            "faults",
            {"force_429": 3, "error_rate": 0.03, "reset_rate": 0.01, "truncate_rate": 0.02},
        )
        counts = await run_sync(client, sandbox_settings(sb.url), database_url, task_queue)
        stats = admin(sb.url, "stats")
        admin(sb.url, "faults", {"clear": True})
        assert stats["throttled"] >= 3, "the forced 429s were served"
        assert stats["by_status"].get("503", 0) > 0
        assert counts.failed == 0 and counts.children_failed == 0
        assert_matches_truth(await fetch_all(database_url), sb.url, "eu")


async def test_missing_characters_are_recorded_and_not_retried_next_run(
    client, database_url, task_queue
):
    with battlenet_sandbox(
        guilds_per_region=1, roster_min=30, roster_max=30, hidden_ratio=0.2
    ) as sb:
        await track_sandbox_guilds(database_url, sb.url)
        settings = sandbox_settings(sb.url)
        first = await run_sync(client, settings, database_url, task_queue)
        assert first.characters_not_found > 0
        # Everything is outdated again (full), but the 404s wait for their slow re-check.
        admin(sb.url, "reset", {})
        again = await run_sync(client, settings, database_url, task_queue, full=True)
        assert again.characters_not_found == 0
        assert again.characters == 30 - first.characters_not_found
        rows = await fetch_all(database_url)
        missing = [f for f in rows["sync_failures"] if f["reason"] == "not_found"]
        assert len(missing) == first.characters_not_found
        assert all(f["attempts"] == 1 and f["next_retry_at"] for f in missing)


async def test_unchanged_data_answers_304_and_only_bumps_last_synced(
    client, database_url, task_queue
):
    with battlenet_sandbox(guilds_per_region=1, roster_min=5, roster_max=5, hidden_ratio=0) as sb:
        truth = await track_sandbox_guilds(database_url, sb.url)
        settings = sandbox_settings(sb.url)
        await run_sync(client, settings, database_url, task_queue)
        chars = admin(sb.url, "truth/characters?region=eu")
        touched = chars[0]
        admin(sb.url, f"touch/character/eu/{touched['realm_slug']}/{touched['name_slug']}", {})
        admin(sb.url, "reset", {})
        again = await run_sync(client, settings, database_url, task_queue, full=True)
        stats = admin(sb.url, "stats")
        assert stats["by_status"].get("304", 0) >= 4 * 4 + 2  # 4 untouched chars + guild/roster
        assert again.characters_not_modified == 4
        rows = await fetch_all(database_url)
        assert_matches_truth(rows, sb.url, "eu")
        assert truth


async def test_client_secret_and_token_never_enter_workflow_history(
    client, database_url, task_queue
):
    secret = f"s3cret-{uuid.uuid4().hex}"
    with battlenet_sandbox(guilds_per_region=1, roster_min=5, roster_max=8) as sb:
        admin(sb.url, "reset", {})
        await track_sandbox_guilds(database_url, sb.url)
        # The sandbox accepts its own secret only: use a wrong one first to prove failures are
        # clean too, then the right one.
        settings = sandbox_settings(sb.url, BNET_CLIENT_SECRET=secret)
        async with build_worker(client, settings, database_url, task_queue) as parts:
            async with parts.worker:
                handle = await client.start_workflow(
                    BattleNetSync.run,
                    BattleNetSyncInput(region="eu"),
                    id=f"battlenet-sync/eu/secret-{uuid.uuid4().hex[:6]}",
                    task_queue=task_queue,
                )
                with pytest.raises(Exception):  # noqa: B017 - any failure; we inspect history
                    await handle.result()
        histories = [await handle.fetch_history()]
        good = sandbox_settings(sb.url)
        async with build_worker(client, good, database_url, task_queue) as parts:
            async with parts.worker:
                handle = await client.start_workflow(
                    BattleNetSync.run,
                    BattleNetSyncInput(region="eu"),
                    id=f"battlenet-sync/eu/secret-ok-{uuid.uuid4().hex[:6]}",
                    task_queue=task_queue,
                )
                await handle.result()
                token = parts.resource("battlenet", "client")._token
        assert token
        histories.append(await handle.fetch_history())
        async for wf in client.list_workflows(f'WorkflowId STARTS_WITH "{handle.id}/"'):
            histories.append(await client.get_workflow_handle(wf.id).fetch_history())
        for history in histories:
            text = history.to_json()
            assert secret not in text
            assert "sandbox-secret" not in text
            assert token not in text


async def test_exhausted_budget_ends_the_activity_and_the_workflow_sleeps_on_a_timer(
    client, database_url, task_queue
):
    with battlenet_sandbox(guilds_per_region=1, roster_min=12, roster_max=12, per_second=10) as sb:
        await track_sandbox_guilds(database_url, sb.url)
        settings = sandbox_settings(
            sb.url, BNET_RATE_PER_SECOND=10, RATE_LIMIT_MAX_WAIT_SECONDS=0.05
        )
        wid = f"battlenet-sync/eu/budget-{uuid.uuid4().hex[:6]}"
        async with build_worker(client, settings, database_url, task_queue) as parts:
            async with parts.worker:
                counts = await client.execute_workflow(
                    BattleNetSync.run,
                    BattleNetSyncInput(region="eu", batch_size=12),
                    id=wid,
                    task_queue=task_queue,
                )
        assert counts.characters + counts.characters_not_found == 12
        batch = client.get_workflow_handle(f"{wid}/characters/1-0")
        events = [e async for e in batch.fetch_history_events()]
        timers = [e for e in events if e.HasField("timer_started_event_attributes")]
        assert timers, "the batch never slept on a durable timer"
        assert admin(sb.url, "stats")["throttled"] == 0
        assert_matches_truth(await fetch_all(database_url), sb.url, "eu")
