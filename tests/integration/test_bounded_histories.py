"""Bounded histories and payloads (issue 10): the Battle.net guild phase and the Discord channel
listing go through the workflow in keyset pages, one page per run (continue-as-new between
pages), so neither an activity result nor a run's history grows with the number of guilds or
channels. Real Temporal dev server, embedded Postgres and the sandboxes; a small page size in
the workflow input stands in for thousands of entities.
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.testing import ActivityEnvironment

from activities.battlenet import BattleNetActivities
from activities.discord import DiscordActivities
from activities.discord_types import (
    CHANNEL_PAGE_MAX,
    ChannelPageInput,
    TenantSyncInput,
    TenantSyncResult,
)
from activities.types import (
    CHARACTER_PAGE_MAX,
    GUILD_PAGE_MAX,
    BattleNetSyncInput,
    SelectCharactersInput,
    SelectGuildPageInput,
    SyncCounts,
)
from settings import Settings
from storage import discord as ddb
from storage import sync as syncdb
from storage.db import create_engine
from storage.models import characters, guilds
from tests.integration.battlenet_support import assert_matches_truth, fetch_all
from tests.integration.battlenet_support import track_sandbox_guilds as track_guilds
from tests.integration.discord_support import (
    create_tenant,
    discord_server,
    discord_settings,
    stored_ids,
    track,
    truth_ids,
)
from tests.sandbox_helpers import battlenet_sandbox, sandbox_settings
from worker import build_worker
from workflows.battlenet import BattleNetSync
from workflows.discord import DiscordTenantSync

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

# A run that starts at most PAGE children, plus its bookkeeping, stays under this many events
# (at most ~9 events a child, ~30 of bookkeeping, whatever the total); one run over every guild
# (or channel) of these tests has well over it (~110 for the guilds, ~100 for the channels).
PAGE = 3
MAX_EVENTS_PER_RUN = 75


async def _runs(client: Client, workflow_id: str) -> list[WorkflowHistory]:
    """Every run of a workflow, first to last, followed through continue-as-new."""
    desc = await client.get_workflow_handle(workflow_id).describe()
    run_id: str | None = desc.raw_description.workflow_execution_info.first_run_id or desc.run_id
    histories = []
    while run_id:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        histories.append(history)
        last = history.events[-1]
        run_id = None
        if last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    return histories


def _activity_results(history: WorkflowHistory) -> list[tuple[str, Any]]:
    """(activity type, decoded JSON result) of every completed activity of a run."""
    scheduled = {
        e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }
    out = []
    for e in history.events:
        if e.event_type != EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            continue
        attrs = e.activity_task_completed_event_attributes
        payloads = attrs.result.payloads
        value = json.loads(payloads[0].data) if payloads and payloads[0].data else None
        out.append((scheduled[attrs.scheduled_event_id], value))
    return out


def _children_started(history: WorkflowHistory, workflow_type: str) -> int:
    return sum(
        1
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED
        and e.start_child_workflow_execution_initiated_event_attributes.workflow_type.name
        == workflow_type
    )


def _start_tasks(history: WorkflowHistory, workflow_type: str) -> int:
    """In how many workflow tasks the run started children of ``workflow_type``."""
    tasks, task = set(), 0
    for e in history.events:
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            task = e.event_id
        elif (
            e.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED
            and e.start_child_workflow_execution_initiated_event_attributes.workflow_type.name
            == workflow_type
        ):
            tasks.add(task)
    return len(tasks)


def _run_input(history: WorkflowHistory) -> Any:
    started = history.events[0].workflow_execution_started_event_attributes
    return json.loads(started.input.payloads[0].data)


def _listed(value: Any, key: str) -> int:
    """How many entities an activity result (or a run input) carries under ``key``."""
    if isinstance(value, list):
        return len(value)  # a bare list of targets
    if isinstance(value, dict):
        inner = value.get(key)
        return len(inner) if isinstance(inner, list) else 0
    return 0


# -- Battle.net --------------------------------------------------------------------------------


async def _battlenet_sync(
    client: Client, settings: Settings, database_url: str, task_queue: str, workflow_id: str,
    **fields: Any,
) -> SyncCounts:  # fmt: skip
    inp = BattleNetSyncInput(region="eu", **fields)
    async with build_worker(client, settings, database_url, task_queue) as parts:
        async with parts.worker:
            return await client.execute_workflow(
                BattleNetSync.run, inp, id=workflow_id, task_queue=task_queue
            )


async def test_guild_phase_pages_and_continues_as_new_between_pages(
    client, database_url, task_queue
):
    n = 10
    with battlenet_sandbox(guilds_per_region=n, roster_min=2, roster_max=3, hidden_ratio=0) as sb:
        await track_guilds(database_url, sb.url)
        workflow_id = f"battlenet-sync/eu/bounded-{uuid.uuid4().hex[:8]}"
        counts = await _battlenet_sync(
            client, sandbox_settings(sb.url), database_url, task_queue, workflow_id,
            guild_page_size=PAGE,
        )  # fmt: skip
        assert_matches_truth(await fetch_all(database_url), sb.url, "eu")

    assert counts.guilds == n and counts.guilds_not_found == 0  # each guild synced once
    runs = await _runs(client, workflow_id)
    assert len(runs) >= math.ceil(n / PAGE), f"{len(runs)} runs for {n} guilds in pages of {PAGE}"
    for history in runs:
        assert _children_started(history, "GuildSync") <= PAGE
        # a page's guilds start together, not one workflow task after another (at ~15 requests
        # a second, a region's guild phase was far under its budget)
        assert _start_tasks(history, "GuildSync") <= 1, _start_tasks(history, "GuildSync")
        assert len(history.events) <= MAX_EVENTS_PER_RUN, len(history.events)
        for activity_type, value in _activity_results(history):
            assert _listed(value, "targets") <= PAGE, (activity_type, value)
    # every guild was started by exactly one page
    assert sum(_children_started(h, "GuildSync") for h in runs) == n


async def test_a_runs_character_batches_start_together(client, database_url, task_queue):
    """The window's batches start in the workflow task that has room for them: a run's first
    window is one task's starts, not one task per start (~0.1 s each, at every run's start)."""
    with battlenet_sandbox(guilds_per_region=2, roster_min=5, roster_max=5, hidden_ratio=0) as sb:
        await track_guilds(database_url, sb.url)
        workflow_id = f"battlenet-sync/eu/batches-{uuid.uuid4().hex[:8]}"
        counts = await _battlenet_sync(
            client, sandbox_settings(sb.url), database_url, task_queue, workflow_id,
            batch_size=2, window=8,
        )  # fmt: skip
        assert_matches_truth(await fetch_all(database_url), sb.url, "eu")
    assert counts.characters == 10, counts
    runs = await _runs(client, workflow_id)
    started = sum(_children_started(h, "CharacterBatchSync") for h in runs)
    tasks = sum(_start_tasks(h, "CharacterBatchSync") for h in runs)
    assert started >= 5 and tasks == 1, (started, tasks)


async def test_guild_page_activity_never_returns_more_than_the_maximum(database_url):
    """Whatever limit the input asks for, one page holds at most GUILD_PAGE_MAX guilds, and
    the pages cover every outdated guild once, in keyset order."""
    total = GUILD_PAGE_MAX + 7
    engine = create_engine(database_url, pool_size=1)
    async with engine.begin() as conn:
        await conn.execute(
            insert(guilds),
            [
                {"region": "eu", "realm": "r", "name_slug": f"g{i}", "name": f"g{i}"}
                for i in range(total)
            ],
        )
    acts = BattleNetActivities(engine, client=None, not_found_recheck_seconds=60)  # type: ignore[arg-type]
    env = ActivityEnvironment()
    cutoff = datetime.now(UTC) - timedelta(hours=1)
    seen: list[int] = []
    page = await env.run(acts.bnet_select_guild_page, SelectGuildPageInput("eu", cutoff, 10**6))
    assert len(page.targets) == GUILD_PAGE_MAX and page.more
    seen += [t.id for t in page.targets]
    page = await env.run(
        acts.bnet_select_guild_page,
        SelectGuildPageInput("eu", cutoff, 10**6, page.last_synced, page.last_id),
    )
    assert len(page.targets) == 7 and not page.more
    seen += [t.id for t in page.targets]
    await engine.dispose()
    assert len(seen) == len(set(seen)) == total and seen == sorted(seen)


async def test_character_page_activity_never_returns_more_than_the_maximum(database_url):
    total = CHARACTER_PAGE_MAX + 3
    engine = create_engine(database_url, pool_size=1)
    async with engine.begin() as conn:
        await conn.execute(
            insert(characters),
            [
                {"region": "eu", "realm": "r", "name_slug": f"c{i}", "name": f"c{i}"}
                for i in range(total)
            ],
        )
    acts = BattleNetActivities(engine, client=None, not_found_recheck_seconds=60)  # type: ignore[arg-type]
    env = ActivityEnvironment()
    cutoff = datetime.now(UTC) - timedelta(hours=1)
    page = await env.run(acts.bnet_select_characters, SelectCharactersInput("eu", cutoff, 10**6))
    assert len(page.ids) == CHARACTER_PAGE_MAX
    rest = await env.run(
        acts.bnet_select_characters,
        SelectCharactersInput("eu", cutoff, 10**6, page.last_synced, page.last_id),
    )
    await engine.dispose()
    assert len(rest.ids) == 3 and not set(rest.ids) & set(page.ids)


# -- Discord -----------------------------------------------------------------------------------


async def _tenant_sync(
    client: Client, settings: Settings, database_url: str, task_queue: str, inp: TenantSyncInput,
    workflow_id: str,
) -> TenantSyncResult:  # fmt: skip
    async with build_worker(client, settings, database_url, task_queue) as parts:
        async with parts.worker:
            return await client.execute_workflow(
                DiscordTenantSync.run, inp, id=workflow_id, task_queue=task_queue
            )


async def test_tenant_sync_pages_channels_from_postgres_and_continues_as_new(
    client, database_url, task_queue
):
    with discord_server(lifted=True) as sandbox:
        tenant = create_tenant(
            sandbox.url, name="Bounded", text_channels=[3, 0, 120, 5, 1, 2, 7, 0, 1, 0, 2],
            active_threads=[2], archived_threads=[4], forbidden_channels=1,
        )  # fmt: skip
        gid = int(tenant["guild_id"])
        await track(database_url, gid)
        workflow_id = f"discord-sync/{gid}/{task_queue}"
        result = await _tenant_sync(
            client, discord_settings(sandbox.url, SYNC_MESSAGE_FETCH_SIZE=50), database_url,
            task_queue, TenantSyncInput(discord_guild_id=gid, channel_page_size=PAGE),
            workflow_id,
        )  # fmt: skip
        readable = [
            c for c in tenant["channels"] if c["access"] == "ok" and c["type"] not in (4, 15)
        ]  # categories and forums have no messages of their own
        stored = await stored_ids(database_url)
        for channel in readable:
            assert stored.get(int(channel["id"]), []) == truth_ids(sandbox.url, channel["id"])

    n = len(readable) + 1  # and the forbidden one, skipped by its child
    assert result.status == "completed", result
    assert result.channels == n
    assert result.channels_done == len(readable) and result.channels_skipped == 1
    assert result.messages == sum(c["messages"] for c in readable)
    runs = await _runs(client, workflow_id)
    assert len(runs) >= math.ceil(n / PAGE), f"{len(runs)} runs for {n} channels"
    for history in runs:
        assert _children_started(history, "ChannelSync") <= PAGE
        assert len(history.events) <= MAX_EVENTS_PER_RUN, len(history.events)
        state = _run_input(history).get("state") or {}
        assert _listed(state, "pending") <= PAGE  # what continue-as-new carries is one page
        for activity_type, value in _activity_results(history):
            assert _listed(value, "channels") <= PAGE, (activity_type, value)
    assert sum(_children_started(h, "ChannelSync") for h in runs) == n


async def test_channel_page_activity_never_returns_more_than_the_maximum(database_url):
    total = CHANNEL_PAGE_MAX + 5
    engine = create_engine(database_url, pool_size=1)
    async with engine.begin() as conn:
        tenant = await ddb.track_tenant(conn, 4242)
        listed = [{"id": str(10_000 + i), "type": 0, "name": f"c{i}"} for i in range(total)]
        row_ids = await ddb.store_channels(conn, tenant, listed)
        run_id = await syncdb.start_run(conn, "discord", "4242", "incremental", "wf#run")
        await ddb.begin_run(conn, run_id, tenant, "wf#run", "incremental", row_ids)

    def no_client() -> Any:
        raise AssertionError("listing a page needs no Discord client")

    acts = DiscordActivities(engine, no_client, max_workers=2, fetch_size=100, recheck_seconds=60)
    env = ActivityEnvironment()
    page = await env.run(acts.discord_channel_page, ChannelPageInput(run_id, 0, 10**6))
    assert len(page.channels) == CHANNEL_PAGE_MAX and page.more
    rest = await env.run(
        acts.discord_channel_page, ChannelPageInput(run_id, page.last_channel_id, 10**6)
    )
    assert len(rest.channels) == 5 and not rest.more
    await engine.dispose()
    seen = [c.channel_id for c in page.channels + rest.channels]
    assert sorted(seen) == sorted(row_ids) and seen == sorted(seen)
    discord_ids = {c.discord_channel_id for c in page.channels + rest.channels}
    assert discord_ids == {10_000 + i for i in range(total)}


async def test_a_listing_of_many_thousand_channels_and_threads_is_stored_and_paged(database_url):
    """Archived threads make a listing of thousands: it is stored (no statement over the
    driver's 32,767 parameters) and its jobs are read back page by page, each once."""
    total = 12_000
    engine = create_engine(database_url, pool_size=1)
    async with engine.begin() as conn:
        tenant = await ddb.track_tenant(conn, 4343)
        listed = [{"id": str(50_000 + i), "type": 11, "name": f"t{i}"} for i in range(total)]
        row_ids = await ddb.store_channels(conn, tenant, listed)
        assert len(row_ids) == total
        run_id = await syncdb.start_run(conn, "discord", "4343", "full", "wf#big")
        await ddb.begin_run(conn, run_id, tenant, "wf#big", "full", row_ids)
    seen: list[int] = []
    after = 0
    async with engine.connect() as conn:
        while page := await ddb.run_channel_page(conn, run_id, after, CHANNEL_PAGE_MAX):
            assert len(page) <= CHANNEL_PAGE_MAX
            seen += [row_id for row_id, _ in page]
            after = page[-1][0]
    await engine.dispose()
    assert seen == sorted(row_ids)
