"""A worker killed with SIGKILL mid-batch is replaced and the sync finishes exactly."""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import func, select

from activities.types import BattleNetSyncInput
from storage.db import create_engine
from storage.models import characters, guild_members
from tests.integration.battlenet_support import (
    assert_matches_truth,
    fetch_all,
    track_sandbox_guilds,
)
from tests.integration.worker_process import kill_and_replace, wait_until
from tests.sandbox_helpers import admin, battlenet_sandbox
from workflows.battlenet import BattleNetSync

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


async def test_resumes_after_worker_sigkill_without_duplicates_or_gaps(
    client, temporal_env, database_url, task_queue, tmp_path
):
    with battlenet_sandbox(guilds_per_region=2, roster_min=40, roster_max=40, per_second=40) as sb:
        await track_sandbox_guilds(database_url, sb.url)
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
            "TEMPORAL_TASK_QUEUE": task_queue,
            "BNET_CLIENT_ID": "sandbox-client",
            "BNET_CLIENT_SECRET": "sandbox-secret",
            "BNET_API_BASE_URL": sb.url,
            "BNET_OAUTH_URL": f"{sb.url}/token",
            "BNET_RATE_PER_SECOND": "40",
            "LOG_LEVEL": "WARNING",
        }
        log = tmp_path / "worker.log"
        handle = await client.start_workflow(
            BattleNetSync.run,
            BattleNetSyncInput(region="eu", batch_size=40, heartbeat_timeout_seconds=4),
            id=f"battlenet-sync/eu/crash-{uuid.uuid4().hex[:6]}",
            task_queue=task_queue,
        )
        # 80 characters x 4 requests + 4 guild requests at 40/s: kill well inside the batches.
        counts, before_restart = await kill_and_replace(
            env, log,
            lambda: wait_until(lambda: admin(sb.url, "stats")["requests"], 120, 60, "requests"),
            handle.result(), 120, at_kill=lambda: admin(sb.url, "stats")["requests"],
        )  # fmt: skip
        assert before_restart < 80 * 4 + 4, "the kill happened before the work was done"
        assert counts.children_failed == 0
        # The run's counts include what the killed attempt stored before it could report it.
        assert counts.characters + counts.characters_not_found == 80, counts
        rows = await fetch_all(database_url)
        assert_matches_truth(rows, sb.url, "eu")
        engine = create_engine(database_url, pool_size=1)
        async with engine.connect() as conn:
            n_chars = (await conn.execute(select(func.count()).select_from(characters))).scalar()
            n_members = (
                await conn.execute(select(func.count()).select_from(guild_members))
            ).scalar()
        await engine.dispose()
        assert n_chars == 80 and n_members == 80
