"""Discord rate limits end to end: buckets learned from headers, forced 429s, the breaker,
dead letters — against the strict sandbox, on the real Temporal and Postgres."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from temporalio.client import WorkflowFailureError

from storage.db import create_engine
from storage.models import channel_sync_jobs, sync_failures, sync_runs
from tests.integration.discord_support import (
    create_tenant,
    discord_server,
    discord_settings,
    run_tenant_sync,
    stored_ids,
    track,
    truth_ids,
)
from tests.sandbox_helpers import admin

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


def _assert_truth(url: str, tenant: dict, stored: dict[int, list[int]]) -> None:
    for channel in tenant["channels"]:
        if channel["access"] == "ok" and channel["type"] not in (4, 15):
            assert stored.get(int(channel["id"]), []) == truth_ids(url, channel["id"])


async def test_thirty_channels_under_strict_limits_get_at_most_one_429_per_bucket(
    client, database_url, task_queue
):
    # Per-channel bucket 5 per 1 s and a global 40/s: 30 channels of 7 pages each (fetch 10).
    with discord_server(messages=(5, 1.0), global_per_second=40) as sandbox:
        tenant = create_tenant(sandbox.url, name="Thirty", text_channels=[61] * 30)
        gid = int(tenant["guild_id"])
        await track(database_url, gid)
        settings = discord_settings(
            sandbox.url,
            SYNC_MESSAGE_FETCH_SIZE=10,
            SYNC_MAX_CHANNEL_WORKERS=30,
            DISCORD_GLOBAL_RATE_PER_SECOND=40,
        )
        result = await run_tenant_sync(client, settings, database_url, task_queue, gid)
        stats = admin(sandbox.url, "stats")
        print(
            f"\n30 channels: {result.seconds:.1f}s, {stats['requests']} requests, "
            f"429s {stats['rate_limited']}, by bucket {stats['rate_limited_by_bucket']}"
        )
        assert result.status == "completed" and result.messages == 30 * 61
        assert all(n <= 1 for n in stats["rate_limited_by_bucket"].values())
        assert stats["throttled"] <= len(stats["rate_limited_by_bucket"])
        assert stats["global_max_in_window"] <= 40
        _assert_truth(sandbox.url, tenant, await stored_ids(database_url))


async def test_forced_bucket_and_global_429s_are_survived(client, database_url, task_queue):
    with discord_server(lifted=True) as sandbox:
        tenant = create_tenant(sandbox.url, name="Bursts", text_channels=[250, 120, 40])
        gid = int(tenant["guild_id"])
        await track(database_url, gid)
        admin(
            sandbox.url,
            "discord/faults",
            {"force_bucket_429": 3, "force_global_429": 2, "retry_after": 0.3},
        )
        settings = discord_settings(sandbox.url, SYNC_MESSAGE_FETCH_SIZE=50)
        result = await run_tenant_sync(client, settings, database_url, task_queue, gid)
        stats = admin(sandbox.url, "stats")
        assert stats["rate_limited"].get("user") == 3 and stats["rate_limited"].get("global") == 2
        assert result.status == "completed" and result.messages == 410
        assert result.rate_limit_encounters == 5
        _assert_truth(sandbox.url, tenant, await stored_ids(database_url))


async def test_a_429_is_a_budget_wait_and_never_spends_an_attempt(client, database_url, task_queue):
    # One attempt per channel: a 429 that spent an attempt would park the channel.
    with discord_server(lifted=True) as sandbox:
        tenant = create_tenant(sandbox.url, name="Patient", text_channels=[250, 120, 40])
        gid = int(tenant["guild_id"])
        await track(database_url, gid)
        admin(sandbox.url, "discord/faults", {"force_bucket_429": 6, "retry_after": 0.2})
        settings = discord_settings(
            sandbox.url, SYNC_MESSAGE_FETCH_SIZE=50, SYNC_CHANNEL_MAX_ATTEMPTS=1
        )
        result = await run_tenant_sync(client, settings, database_url, task_queue, gid)
        stats = admin(sandbox.url, "stats")
        assert (result.status, result.channels_done, result.channels_failed) == ("completed", 3, 0)
        assert stats["rate_limited"].get("user") == 6
        assert result.messages == 410 and result.rate_limit_encounters == 6
        _assert_truth(sandbox.url, tenant, await stored_ids(database_url))
        engine = create_engine(database_url, pool_size=1)
        async with engine.connect() as conn:
            failures = (await conn.execute(select(sync_failures))).all()
            retries = (await conn.execute(select(channel_sync_jobs.c.retry_count))).scalars()
            retry_counts = list(retries)
        await engine.dispose()
        assert failures == [] and retry_counts == [0, 0, 0]


async def test_a_429_while_listing_the_guild_waits_for_its_bucket_in_the_same_attempt(
    client, database_url, task_queue
):
    with discord_server(lifted=True) as sandbox:
        tenant = create_tenant(sandbox.url, name="Listing", text_channels=[30, 20])
        gid = int(tenant["guild_id"])
        await track(database_url, gid)
        admin(
            sandbox.url,
            "discord/faults",
            {"force_bucket_429": 2, "retry_after": 0.2, "route": "guild_channels"},
        )
        settings = discord_settings(sandbox.url)
        result = await run_tenant_sync(client, settings, database_url, task_queue, gid)
        stats = admin(sandbox.url, "stats")
        history = await client.get_workflow_handle(
            f"discord-sync/{gid}/{task_queue}"
        ).fetch_history()
        assert (result.status, result.channels_done, result.messages) == ("completed", 2, 50)
        assert stats["rate_limited"].get("user") == 2
        scheduled = {
            e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
            for e in history.events
            if e.HasField("activity_task_scheduled_event_attributes")
        }
        begin_attempts = [
            e.activity_task_started_event_attributes.attempt
            for e in history.events
            if e.HasField("activity_task_started_event_attributes")
            and scheduled[e.activity_task_started_event_attributes.scheduled_event_id]
            == "discord_begin_tenant_sync"
        ]
        assert begin_attempts == [1]  # the 429s were waited out, no attempt spent


async def test_invalid_request_breaker_stops_the_run_before_a_ban(client, database_url, task_queue):
    with discord_server(lifted=True) as sandbox:
        tenant = create_tenant(sandbox.url, name="Denied", text_channels=[5] * 12)
        gid = int(tenant["guild_id"])
        await track(database_url, gid)
        admin(sandbox.url, "discord/faults", {"force_status": {"status": 403, "count": -1}})
        settings = discord_settings(
            sandbox.url, DISCORD_INVALID_REQUEST_BUDGET=5, SYNC_MAX_CHANNEL_WORKERS=2
        )
        with pytest.raises(WorkflowFailureError) as failure:
            await run_tenant_sync(client, settings, database_url, task_queue, gid)
        message = str(failure.value.cause)
        assert "circuit breaker open" in message and "sandbox-bot-token" not in message
        stats = admin(sandbox.url, "stats")
        assert stats["by_status"].get("403", 0) <= 5 + 2  # stopped at the budget (+ in flight)
        engine = create_engine(database_url, pool_size=1)
        async with engine.connect() as conn:
            run = (await conn.execute(select(sync_runs.c.status, sync_runs.c.error))).one()
        await engine.dispose()
        assert run.status == "failed" and "circuit breaker" in run.error


async def test_a_channel_that_always_fails_is_parked_and_the_tenant_completes(
    client, database_url, task_queue
):
    with discord_server(lifted=True) as sandbox:
        tenant = create_tenant(sandbox.url, name="Parked", text_channels=[30, 30, 30])
        gid = int(tenant["guild_id"])
        broken = tenant["channels"][0]["id"] if tenant["channels"][0]["type"] == 0 else None
        broken = broken or next(c["id"] for c in tenant["channels"] if c["type"] == 0)
        await track(database_url, gid)
        admin(
            sandbox.url,
            "faults",
            {"error_rate": 1.0, "error_status": 502, "match": f"/channels/{broken}/messages"},
        )
        settings = discord_settings(sandbox.url, SYNC_CHANNEL_MAX_ATTEMPTS=2)
        result = await run_tenant_sync(client, settings, database_url, task_queue, gid)
        assert result.status == "partial"
        assert (result.channels_failed, result.channels_done) == (1, 2)
        assert result.messages == 60
        engine = create_engine(database_url, pool_size=1)
        async with engine.connect() as conn:
            everything = (await conn.execute(select(sync_failures))).all()
            print("FAILURES", everything)
            dead = everything[0]
            job = (
                await conn.execute(
                    select(channel_sync_jobs).where(channel_sync_jobs.c.status == "failed")
                )
            ).one()
        await engine.dispose()
        assert dead.entity_key == f"channel/{broken}" and "502" in dead.last_error
        assert job.retry_count == 1 and "502" in job.error_message


async def test_a_channel_terminated_by_hand_is_parked_and_the_tenant_completes(
    client, database_url, task_queue
):
    import asyncio

    from activities.discord_types import TenantSyncInput
    from worker import build_worker
    from workflows.discord import DiscordTenantSync

    with discord_server(messages=(2, 0.5)) as sandbox:
        tenant = create_tenant(sandbox.url, name="Terminated", text_channels=[2000, 30])
        gid = int(tenant["guild_id"])
        big = next(c["id"] for c in tenant["channels"] if c["messages"] == 2000)
        await track(database_url, gid)
        settings = discord_settings(sandbox.url)
        async with build_worker(client, settings, database_url, task_queue) as parts:
            async with parts.worker:
                handle = await client.start_workflow(
                    DiscordTenantSync.run,
                    TenantSyncInput(discord_guild_id=gid),
                    id=f"discord-sync/{gid}",
                    task_queue=task_queue,
                )
                child = client.get_workflow_handle(f"discord-channel/{gid}/{big}/run-1")
                for _ in range(200):
                    if admin(sandbox.url, "stats")["by_route"].get("messages", 0) >= 4:
                        break
                    await asyncio.sleep(0.05)
                await child.terminate("an operator stopped it")
                result = await asyncio.wait_for(handle.result(), 60)
                history = await handle.fetch_history()
        # The master parks the channel (dead letter) instead of failing the tenant. (Its activity
        # may still finish the channel before it notices the termination: the data is right
        # either way, so the dead-letter row itself is not asserted.)
        assert result.status == "partial"
        assert (result.channels_done, result.channels_failed) == (1, 1)
        scheduled = [
            e.activity_task_scheduled_event_attributes.activity_type.name
            for e in history.events
            if e.HasField("activity_task_scheduled_event_attributes")
        ]
        assert "discord_park_channel" in scheduled
