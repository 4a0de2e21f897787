"""Two Discord tenants on one bot token: the small one is not starved by the big one.

A tenant with 1 channel is synced alone, then (an identical one) beside a tenant with 100
channels, in one worker: one global limit of 50/s for both. The sandbox's message bucket is
10 per 1 s per channel, so alone the small tenant is held by its own channel's bucket, and the
big tenant alone asks for far more than the global limit. Before the global limit's line was
fair between tenants, the small tenant's one waiter stood behind the big tenant's ~100 at
every request: ~10x its time alone (bench/discord_fairness.py). Now it must finish within 2x.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from activities.discord_types import TenantSyncInput, TenantSyncResult
from sandbox.discord import DiscordSandboxConfig
from sandbox.discord_world import DiscordWorldConfig
from sandbox.server import SandboxProcess
from tests.integration.discord_support import (
    create_tenant,
    discord_settings,
    stored_ids,
    track,
    truth_ids,
)
from tests.sandbox_helpers import admin
from worker import build_worker
from workflows.discord import DiscordTenantSync

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

SMALL_MESSAGES = 5000  # 51 pages: ~5 s alone at its bucket's 10 per second
BIG_CHANNELS = 100
BIG_MESSAGES = 800  # 9 pages a channel, 900 requests: ~18 s at 50/s, longer than the test needs
GLOBAL = 50


async def _sync(client: Client, queue: str, gid: int, name: str) -> tuple[float, TenantSyncResult]:
    began = time.monotonic()
    result = await client.execute_workflow(
        DiscordTenantSync.run, TenantSyncInput(discord_guild_id=gid), id=f"{name}-{queue}",
        task_queue=queue,
    )  # fmt: skip
    return time.monotonic() - began, result


async def _messages_asked(url: str) -> int:
    stats = await asyncio.to_thread(admin, url, "stats")
    return int(stats["by_route"].get("messages", 0))


async def test_a_one_channel_tenant_beside_a_100_channel_tenant_takes_at_most_twice_as_long(
    client, database_url, task_queue
):
    config = DiscordSandboxConfig(
        world=DiscordWorldConfig(tenants=0), global_per_second=GLOBAL, messages=(10, 1.0)
    )
    with SandboxProcess(config) as sandbox:  # its own process: its CPU is not the worker's
        url = sandbox.url
        alone = create_tenant(url, name="Small", text_channels=[SMALL_MESSAGES])
        beside = create_tenant(url, name="Small beside", text_channels=[SMALL_MESSAGES])
        big = create_tenant(url, name="Big", text_channels=[BIG_MESSAGES] * BIG_CHANNELS)
        for tenant in (alone, beside, big):
            await track(database_url, int(tenant["guild_id"]))
        settings = discord_settings(url, SYNC_MAX_CHANNEL_WORKERS=BIG_CHANNELS)
        async with build_worker(
            client, settings, database_url, task_queue, graceful_shutdown=timedelta(0)
        ) as parts:
            async with parts.worker:
                t_alone, r_alone = await _sync(client, task_queue, int(alone["guild_id"]), "alone")

                big_sync = await client.start_workflow(
                    DiscordTenantSync.run, TenantSyncInput(discord_guild_id=int(big["guild_id"])),
                    id=f"big-{task_queue}", task_queue=task_queue,
                )  # fmt: skip
                before = await _messages_asked(url)
                deadline = time.monotonic() + 30
                while await _messages_asked(url) - before < 2 * GLOBAL:  # at full rate by now
                    assert time.monotonic() < deadline, "the big tenant never got going"
                    await asyncio.sleep(0.1)

                asked = await _messages_asked(url)
                t_beside, r_beside = await _sync(
                    client, task_queue, int(beside["guild_id"]), "beside"
                )
                rate = (await _messages_asked(url) - asked) / t_beside
                big_state = (await big_sync.describe()).status
                if big_state == WorkflowExecutionStatus.RUNNING:
                    await big_sync.terminate("the test is over")
        stats = admin(url, "stats")
        stored = await stored_ids(database_url)
        for tenant in (alone, beside):
            (channel,) = [c["id"] for c in tenant["channels"] if c["type"] == 0]
            assert stored[int(channel)] == truth_ids(url, channel)

    print(f"small tenant alone {t_alone:.2f}s, beside the big one {t_beside:.2f}s "
          f"({t_beside / t_alone:.2f}x); messages asked for meanwhile {rate:.1f}/s")  # fmt: skip
    assert r_alone.status == r_beside.status == "completed"
    assert r_alone.messages == r_beside.messages == SMALL_MESSAGES
    assert t_beside <= 2 * t_alone, (t_alone, t_beside)
    # The big tenant ran beside it the whole time, with the global limit the contended budget:
    # the messages asked for went at close to the global rate (the small's own 10/s among them).
    assert big_state == WorkflowExecutionStatus.RUNNING
    assert rate >= 0.8 * GLOBAL, rate
    assert stats["rate_limited"]["global"] == 0
    assert stats["global_max_in_window"] <= GLOBAL


DEEP_TENANTS = 4
DEEP_CHANNELS = 12
DEEP_MESSAGES = 5000  # 50 pages a channel: ~1 page a second each among 48, longer than the test


async def test_a_one_channel_tenant_beside_four_deep_tenants_is_not_queued_behind_their_calls(
    client, database_url, task_queue
):
    """The worker's default SYNC_MAX_CHANNEL_WORKERS (10) slots, and four tenants of 12 deep
    channels each: their 48 channels want every slot all the time. Before, a channel call held
    its slot for up to 60 s, and so did the 1-channel tenant's listing and bookkeeping, which
    queued on the same slots: it took 35x its time alone (bench/discord_fairness.py
    --big-tenants 4), the fairness keys and priority levels notwithstanding (they order the
    waiting tasks; they free no slot). Now channel paging has a queue of its own, a tenant's
    leading channel a priority level of its own, and a call gives its slot up as soon as a task
    of a better priority (another tenant's leading channel) waits for one."""
    config = DiscordSandboxConfig(
        world=DiscordWorldConfig(tenants=0), global_per_second=GLOBAL, messages=(10, 1.0)
    )
    with SandboxProcess(config) as sandbox:
        url = sandbox.url
        alone = create_tenant(url, name="Small", text_channels=[SMALL_MESSAGES])
        beside = create_tenant(url, name="Small beside", text_channels=[SMALL_MESSAGES])
        deep = [
            create_tenant(url, name=f"Deep {n}", text_channels=[DEEP_MESSAGES] * DEEP_CHANNELS)
            for n in range(DEEP_TENANTS)
        ]
        for tenant in (alone, beside, *deep):
            await track(database_url, int(tenant["guild_id"]))
        settings = discord_settings(url)
        assert settings.SYNC_MAX_CHANNEL_WORKERS == 10  # the default: far fewer than 48
        async with build_worker(
            client, settings, database_url, task_queue, graceful_shutdown=timedelta(0)
        ) as parts:
            async with parts.worker:
                t_alone, r_alone = await _sync(client, task_queue, int(alone["guild_id"]), "alone")
                handles = [
                    await client.start_workflow(
                        DiscordTenantSync.run,
                        TenantSyncInput(discord_guild_id=int(t["guild_id"])),
                        id=f"deep{n}-{task_queue}",
                        task_queue=task_queue,
                    )
                    for n, t in enumerate(deep)
                ]
                before = await _messages_asked(url)
                deadline = time.monotonic() + 30
                while await _messages_asked(url) - before < 3 * GLOBAL:  # every slot taken
                    assert time.monotonic() < deadline, "the deep tenants never got going"
                    await asyncio.sleep(0.1)
                t_beside, r_beside = await asyncio.wait_for(
                    _sync(client, task_queue, int(beside["guild_id"]), "beside"), 120
                )
                states = [(await h.describe()).status for h in handles]
                for handle, state in zip(handles, states, strict=True):
                    if state == WorkflowExecutionStatus.RUNNING:
                        await handle.terminate("the test is over")
        stats = admin(url, "stats")
        stored = await stored_ids(database_url)
        (channel,) = [c["id"] for c in beside["channels"] if c["type"] == 0]
        assert stored[int(channel)] == truth_ids(url, channel)

    print(f"small tenant alone {t_alone:.2f}s, beside {DEEP_TENANTS} deep tenants "
          f"{t_beside:.2f}s ({t_beside / t_alone:.2f}x)")  # fmt: skip
    assert r_alone.status == r_beside.status == "completed"
    assert r_beside.messages == SMALL_MESSAGES
    assert all(state == WorkflowExecutionStatus.RUNNING for state in states)  # contended
    assert t_beside <= 2 * t_alone, (t_alone, t_beside)
    assert stats["rate_limited"]["global"] == 0
