"""DiscordTenantSync against the Discord sandbox: paging compared with the truth id by id."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from storage.db import create_engine
from storage.models import channel_sync_jobs, messages, sync_failures
from tests.integration.discord_support import (
    channel_rows,
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

SIZES = [0, 1, 99, 100, 101, 25_000]


async def _message_count(database_url: str) -> int:
    engine = create_engine(database_url, pool_size=1)
    async with engine.connect() as conn:
        count = (await conn.execute(select(func.count()).select_from(messages))).scalar_one()
    await engine.dispose()
    return int(count)


async def test_full_and_incremental_paging_match_the_truth_id_by_id(
    client, database_url, task_queue
):
    with discord_server(lifted=True) as sandbox:
        tenant = create_tenant(
            sandbox.url,
            name="Paging",
            text_channels=SIZES,
            announcement_channels=[7],
            voice_channels=[5],
            forum_threads=[3, 0],
            active_threads=[2],
            archived_threads=[4],
            no_history_channels=1,
            forbidden_channels=1,
        )
        gid = int(tenant["guild_id"])
        await track(database_url, gid)
        settings = discord_settings(sandbox.url)

        first = await run_tenant_sync(client, settings, database_url, task_queue, gid)
        readable = [
            c for c in tenant["channels"] if c["access"] == "ok" and c["type"] not in (4, 15)
        ]
        stored = await stored_ids(database_url)
        for channel in readable:
            assert stored.get(int(channel["id"]), []) == truth_ids(sandbox.url, channel["id"]), (
                channel
            )
        assert first.status == "completed"
        assert first.messages == sum(c["messages"] for c in readable)
        assert first.channels_skipped == 1  # the 403 channel
        assert first.channels_failed == 0
        assert first.max_concurrent_channels <= settings.SYNC_MAX_CHANNEL_WORKERS

        rows = await channel_rows(database_url)
        hidden = {c["access"]: int(c["id"]) for c in tenant["channels"] if c["access"] != "ok"}
        assert rows[hidden["forbidden"]]["access"] == "forbidden"
        assert rows[hidden["no_history"]]["access"] == "no_history"
        assert hidden["forbidden"] not in stored and hidden["no_history"] not in stored
        engine = create_engine(database_url, pool_size=1)
        async with engine.connect() as conn:
            parked = (await conn.execute(select(sync_failures.c.entity_key))).scalars().all()
        assert parked == [f"channel/{hidden['forbidden']}"]

        # New messages arrive; an incremental sync fetches only those (one page per channel
        # that has news, one empty page per other channel).
        by_size = {c["messages"]: int(c["id"]) for c in readable if c["type"] == 0}
        admin(sandbox.url, f"channels/{by_size[100]}/messages", {"count": 150})
        admin(sandbox.url, f"channels/{by_size[0]}/messages", {"count": 1})
        before = admin(sandbox.url, "stats")["requests"]
        second = await run_tenant_sync(
            client, settings, database_url, task_queue, gid, workflow_id=f"inc-{task_queue}"
        )
        assert second.messages == 151
        requests = admin(sandbox.url, "stats")["requests"] - before
        parents = [c for c in tenant["channels"] if c["type"] in (0, 5, 15) and not c["thread"]]
        parents = [c for c in parents if c["access"] != "forbidden"]
        listing = 3 + len(parents)  # guild, channels, active threads, archived per parent
        pages = len(readable) + 1 + 1  # one each (+ the no-history one), 150 news = 2 pages
        assert requests == listing + pages
        stored = await stored_ids(database_url)
        for channel in readable:
            assert stored.get(int(channel["id"]), []) == truth_ids(sandbox.url, channel["id"])

        # A full sync re-reads everything and duplicates nothing.
        total = await _message_count(database_url)
        third = await run_tenant_sync(
            client,
            settings,
            database_url,
            task_queue,
            gid,
            full=True,
            workflow_id=f"full-{task_queue}",
        )
        assert third.messages == total
        assert await _message_count(database_url) == total
        async with engine.connect() as conn:
            statuses = (
                await conn.execute(
                    select(channel_sync_jobs.c.status, func.count())
                    .where(channel_sync_jobs.c.mode == "full")
                    .group_by(channel_sync_jobs.c.status)
                )
            ).all()
        await engine.dispose()
        assert dict(statuses) == {"done": len(readable) + 1}  # the 403 one stays parked


async def test_a_sync_after_an_interrupted_one_starts_a_fresh_run(client, database_url, task_queue):
    import asyncio

    from activities.discord_types import TenantSyncInput
    from storage.models import sync_runs
    from worker import build_worker
    from workflows.discord import DiscordTenantSync

    with discord_server(messages=(2, 0.5)) as sandbox:
        tenant = create_tenant(sandbox.url, name="Interrupted", text_channels=[3000, 40])
        gid = int(tenant["guild_id"])
        await track(database_url, gid)
        settings = discord_settings(sandbox.url)
        workflow_id = f"discord-sync/{gid}"
        async with build_worker(client, settings, database_url, task_queue) as parts:
            async with parts.worker:
                handle = await client.start_workflow(
                    DiscordTenantSync.run,
                    TenantSyncInput(discord_guild_id=gid),
                    id=workflow_id,
                    task_queue=task_queue,
                )
                for _ in range(200):  # some pages stored, far from done
                    if admin(sandbox.url, "stats")["by_route"].get("messages", 0) >= 6:
                        break
                    await asyncio.sleep(0.05)
                await handle.terminate("interrupted by the test")
        admin(sandbox.url, "limits", {"lifted": True})
        full = await run_tenant_sync(
            client, settings, database_url, task_queue, gid, full=True, workflow_id=workflow_id
        )
        assert full.status == "completed" and full.channels_done == 2
        assert full.messages == 3040  # a full run re-read everything: its cursors were cleared
        engine = create_engine(database_url, pool_size=1)
        async with engine.connect() as conn:
            runs = (
                (await conn.execute(select(sync_runs.c.status).order_by(sync_runs.c.id)))
                .scalars()
                .all()
            )
            jobs = (
                await conn.execute(
                    select(channel_sync_jobs.c.status, func.count()).group_by(
                        channel_sync_jobs.c.status
                    )
                )
            ).all()
        await engine.dispose()
        assert runs == ["abandoned", "completed"]
        statuses: dict[str, int] = {str(k): int(v) for k, v in jobs}
        assert statuses.get("abandoned", 0) >= 1  # the big channel, cut off mid-way
        assert not {"pending", "running", "waiting"} & set(statuses)  # nothing left open
        stored = await stored_ids(database_url)
        for channel in tenant["channels"]:
            if channel["type"] == 0:
                assert stored[int(channel["id"])] == truth_ids(sandbox.url, channel["id"])
