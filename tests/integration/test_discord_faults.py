"""Discord syncs under injected faults, on the real Temporal, Postgres and sandbox: the data
stays exact id by id, a channel that exists and is readable is never parked, and no failure
message carries SQL."""

from __future__ import annotations

import asyncio
import random

import pytest
from sqlalchemy import select, text
from temporalio.exceptions import ApplicationError

from activities.discord_types import TenantSyncInput
from sandbox.common import Faults
from storage.db import create_engine
from storage.models import sync_failures
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
from worker import build_worker
from workflows.discord import DiscordTenantSync

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

# About 30,000 messages: channels of every kind, threads listed three ways, one 403 channel.
TENANT = {
    "name": "Faulty",
    "text_channels": [8000, 6000, 5000, 4000, 2500, 1500, 500, 99, 1, 0],
    "announcement_channels": [1000],
    "voice_channels": [50],
    "forum_threads": [600, 300],
    "active_threads": [200],
    "archived_threads": [250],
    "no_history_channels": 1,
    "forbidden_channels": 1,
}
FAULTS = {"error_rate": 0.03, "reset_rate": 0.01, "truncate_rate": 0.02}  # 503s, resets, cuts


def _every_kind_seed(within: int = 150) -> int:
    """A random seed whose first ``within`` requests meet every kind of fault: at 1 % resets
    about one seed in twenty injected none in a whole run, and the test (rightly) fails a run
    that exercised nothing (CI, 2026-12-02)."""
    while True:
        seed = random.randrange(1 << 30)
        faults = Faults(seed=seed, **FAULTS)  # type: ignore[arg-type]  # the rates above
        kinds = set()
        for _ in range(within):
            decision = faults.decide("/any")
            kinds.add("truncate" if decision.truncate else decision.action)
        if {"error", "reset", "truncate"} <= kinds:
            return seed


async def test_thirty_thousand_messages_under_5xx_resets_and_cut_bodies_are_exact(
    client, database_url, task_queue
):
    # Strict limits the client must respect on its own: any 429 would be unexpected.
    with discord_server(messages=(20, 1.0), global_per_second=50) as sandbox:
        tenant = create_tenant(sandbox.url, **TENANT)
        gid = int(tenant["guild_id"])
        await track(database_url, gid)
        seed = _every_kind_seed()  # a new fault pattern each run; printed to replay it
        admin(sandbox.url, "faults", {**FAULTS, "seed": seed})
        settings = discord_settings(sandbox.url)
        result = await run_tenant_sync(client, settings, database_url, task_queue, gid)
        stats = admin(sandbox.url, "stats")
        readable = [
            c for c in tenant["channels"] if c["access"] == "ok" and c["type"] not in (4, 15)
        ]
        injected = stats["faults_injected"]
        print(
            f"\nfault seed {seed}: {result.messages} messages in {result.seconds:.1f}s, "
            f"{stats['requests']} requests, faults {injected}, by status {stats['by_status']}"
        )
        assert sum(c["messages"] for c in readable) >= 29_000
        assert min(injected.get(k, 0) for k in ("error", "reset", "truncate")) > 0
        assert (result.status, result.channels_failed) == ("completed", 0)
        assert sum(stats["rate_limited"].values()) == 0, stats["rate_limited"]
        assert result.messages == sum(c["messages"] for c in readable)
        stored = await stored_ids(database_url)
        for channel in readable:
            assert stored.get(int(channel["id"]), []) == truth_ids(sandbox.url, channel["id"])
        engine = create_engine(database_url, pool_size=1)
        async with engine.connect() as conn:
            parked = (await conn.execute(select(sync_failures.c.entity_key))).scalars().all()
        await engine.dispose()
        forbidden = [c["id"] for c in tenant["channels"] if c["access"] == "forbidden"]
        assert parked == [f"channel/{cid}" for cid in forbidden]


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
    client, database_url, task_queue, caplog
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
        assert (result.status, result.channels_done, result.channels_failed) == ("completed", 2, 0)
        stored = await stored_ids(database_url)
        for channel in tenant["channels"]:
            if channel["type"] == 0:
                assert stored[int(channel["id"])] == truth_ids(sandbox.url, channel["id"])
        engine = create_engine(database_url, pool_size=1)
        async with engine.connect() as conn:
            failures = (await conn.execute(select(sync_failures))).all()
        await engine.dispose()
        assert failures == []
        # The attempt that lost its connection failed retryably, in one line without SQL.
        failed = [
            r.exc_info[1]
            for r in caplog.records
            if r.exc_info and isinstance(r.exc_info[1], ApplicationError)
        ]
        lost = [e for e in failed if e.type == "DatabaseError"]
        assert lost, [str(e) for e in failed]
        for error in lost:
            assert not error.non_retryable and "discord: channel " in error.message
            assert "\n" not in error.message and "[SQL" not in error.message
            assert not any(word in error.message for word in ("INSERT", "UPDATE", "SELECT"))
