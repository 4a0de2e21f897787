"""A worker killed with SIGKILL mid-channel is replaced; the channel ends with exactly the truth."""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import func, select

from activities.discord_types import TenantSyncInput
from storage.db import create_engine
from storage.models import channel_sync_jobs, messages
from tests.integration.discord_support import (
    TOKEN,
    create_tenant,
    discord_server,
    stored_ids,
    track,
    truth_ids,
)
from tests.integration.worker_process import kill_and_replace, wait_until
from tests.sandbox_helpers import admin
from workflows.discord import DiscordTenantSync

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


async def test_channel_resumes_after_worker_sigkill_with_exactly_the_truth(
    client, temporal_env, database_url, task_queue, tmp_path
):
    # 4 pages per second per channel: a 3,000-message channel takes ~8 s, long enough to kill.
    with discord_server(messages=(2, 0.5)) as sandbox:
        tenant = create_tenant(sandbox.url, name="Crash", text_channels=[3000, 120])
        gid = int(tenant["guild_id"])
        big = next(c for c in tenant["channels"] if c["messages"] == 3000)
        await track(database_url, gid)
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
            "TEMPORAL_TASK_QUEUE": task_queue,
            "DISCORD_BOT_TOKEN": TOKEN,
            "DISCORD_API_BASE_URL": f"{sandbox.url}/api/v10",
            "LOG_LEVEL": "WARNING",
        }
        log = tmp_path / "worker.log"
        handle = await client.start_workflow(
            DiscordTenantSync.run,
            TenantSyncInput(discord_guild_id=gid, heartbeat_timeout_seconds=3),
            id=f"discord-sync/{gid}/crash-{uuid.uuid4().hex[:6]}",
            task_queue=task_queue,
        )
        result, pages_before_restart = await kill_and_replace(
            env, log,
            lambda: wait_until(
                lambda: admin(sandbox.url, "stats")["by_route"].get("messages", 0), 12, 60, "pages"
            ),
            handle.result(), 120,
            at_kill=lambda: admin(sandbox.url, "stats")["by_route"]["messages"],
        )  # fmt: skip
        assert pages_before_restart < 31, "the kill happened after the big channel was done"
        assert result.status == "completed" and result.channels_done == 2
        stored = await stored_ids(database_url)
        assert stored[int(big["id"])] == truth_ids(sandbox.url, big["id"])
        engine = create_engine(database_url, pool_size=1)
        async with engine.connect() as conn:
            count = (await conn.execute(select(func.count()).select_from(messages))).scalar()
            retries = (
                await conn.execute(select(func.max(channel_sync_jobs.c.retry_count)))
            ).scalar()
        await engine.dispose()
        assert count == 3120
        assert retries >= 1  # the killed attempt was retried, from the stored cursor
        # At most one page was fetched twice (the one in flight when the worker died).
        assert admin(sandbox.url, "stats")["by_route"]["messages"] <= 31 + 2 + 1 + 1
