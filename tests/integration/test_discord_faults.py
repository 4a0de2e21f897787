"""Discord syncs under injected faults, on the real Temporal, Postgres and sandbox: the data
stays exact id by id, a channel that exists and is readable is never parked, and no failure
message carries SQL."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select, text

from activities.discord_types import TenantSyncInput
from storage.db import create_engine
from storage.models import channel_sync_jobs, sync_failures
from tests.integration.discord_support import (
    create_tenant,
    discord_server,
    discord_settings,
    stored_ids,
    track,
    truth_ids,
)
from tests.sandbox_helpers import admin
from worker import build_worker
from workflows.discord import DiscordTenantSync

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


async def _terminate_other_connections(database_url: str) -> int:
    """Kill every other session on the test database, as a Postgres restart would."""
    engine = create_engine(database_url, pool_size=1)
    async with engine.connect() as conn:
        killed = await conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
        count = int(killed.scalar_one())
    await engine.dispose()
    return count


async def test_a_database_connection_lost_mid_channel_is_retried_not_parked(
    client, database_url, task_queue
):
    # 4 pages per second per channel: the big channel is mid-way when the connections die.
    with discord_server(messages=(2, 0.5)) as sandbox:
        tenant = create_tenant(sandbox.url, name="Restart", text_channels=[2000, 40])
        gid = int(tenant["guild_id"])
        await track(database_url, gid)
        settings = discord_settings(sandbox.url, SYNC_CHANNEL_MAX_ATTEMPTS=2)
        async with build_worker(client, settings, database_url, task_queue) as parts:
            async with parts.worker:
                handle = await client.start_workflow(
                    DiscordTenantSync.run,
                    TenantSyncInput(discord_guild_id=gid),
                    id=f"discord-sync/{gid}/{task_queue}",
                    task_queue=task_queue,
                )
                for _ in range(400):
                    if admin(sandbox.url, "stats")["by_route"].get("messages", 0) >= 6:
                        break
                    await asyncio.sleep(0.025)
                assert await _terminate_other_connections(database_url) >= 1
                result = await asyncio.wait_for(handle.result(), 90)
        assert (result.status, result.channels_done, result.channels_failed) == ("done", 2, 0)
        stored = await stored_ids(database_url)
        for channel in tenant["channels"]:
            if channel["type"] == 0:
                assert stored[int(channel["id"])] == truth_ids(sandbox.url, channel["id"])
        engine = create_engine(database_url, pool_size=1)
        async with engine.connect() as conn:
            failures = (await conn.execute(select(sync_failures))).all()
            errors = (await conn.execute(select(channel_sync_jobs.c.error_message))).scalars()
            messages = [m for m in errors if m]
        await engine.dispose()
        assert failures == []
        assert not any("INSERT" in m or "UPDATE" in m or "SELECT" in m for m in messages)
