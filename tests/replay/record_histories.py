"""Record the workflow histories that tests/replay/test_replay.py replays.

Run it whenever a workflow changes on purpose (and keep the old files that running workflows
could still have):

    .venv/bin/python -m tests.replay.record_histories

It starts its own Postgres, Temporal dev server and sandboxes, runs a small Battle.net sync that
continues-as-new once, a scheduler, a PvP sync and a Discord tenant sync (one channel parked,
one sleeping on a spent bucket), and writes one JSON history per workflow run into histories/.
`--discord-only` records just the Discord ones (files `*-d<n>.json`), keeping the others.
`--set k` records the kernel set instead (files `*-k<n>.json`): a manual guild add that sleeps
on a spent budget, a Battle.net master with a failed child and character batches sleeping on
the budget, a Scheduler that merges requests and meets an already-started child, and a Discord
tenant that continues-as-new carrying its state. `--bounded-set b` records the bounded set
(files `*-b<n>.json`): a Battle.net master whose guild phase pages guilds and continues-as-new
between pages, and a Discord tenant whose channels are paged from Postgres.
`--scheduler-set s` records the hardened Scheduler (files `Scheduler-s<n>.json`, one per run):
bad signals recorded as rejections, manual adds through the `submit` update (child ids fixed
when queued), a child carried through continue-as-new and terminated, found by the periodic
look (`scheduler_child_states`) and its slot freed. `--zwift-set z` records a ZwiftRacing club
scheduler and one ZwiftSync per kind (files
`*-z<n>.json`). A recording never overwrites a file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

import runtime
from activities.battlenet_build import pvp_queues
from activities.discord_types import TenantSyncInput
from activities.types import BattleNetSyncInput, EntitySyncInput, PvpSyncInput
from cli.scheduler import add, start
from storage.migrate import upgrade
from tests.integration.battlenet_support import track_sandbox_guilds
from tests.integration.discord_support import (
    create_tenant,
    discord_server,
    discord_settings,
    run_tenant_sync,
    track,
)
from tests.sandbox_helpers import admin, battlenet_sandbox, sandbox_settings
from worker import build_worker
from workflows.battlenet import BattleNetEntitySync, BattleNetSync
from workflows.discord import DiscordTenantSync
from workflows.pvp import PvpSync
from workflows.scheduler import Scheduler
from workflows.scheduler_types import SchedulerInput, SyncRequest

HISTORIES = Path(__file__).resolve().parent / "histories"


@asynccontextmanager
async def _servers(*extra_args: str) -> AsyncIterator[tuple[Client, str]]:
    """A fresh Postgres (migrated) and Temporal dev server for one recording."""
    data_dir = Path(tempfile.mkdtemp(prefix="ratesync-record-"))
    pg = runtime.start_postgres(data_dir, runtime.free_port())
    try:
        await asyncio.to_thread(upgrade, pg.url())
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=runtime.temporal_binary(),
            data_converter=pydantic_data_converter,
            search_attributes=[
                SearchAttributeKey.for_keyword(n) for n in runtime.SEARCH_ATTRIBUTES
            ],
            dev_server_extra_args=list(extra_args),
        )
        async with env:
            yield env.client, pg.url()
    finally:
        pg.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


async def record_discord_set(tag: str) -> list[Path]:
    """The Discord runs only, under a new tag (never overwriting): session 19 recorded its
    patched paths (tenant-fairness, tenant-head-channels) as ``*-f<n>.json``."""
    async with _servers() as (client, database_url):
        return await _write(client, await _discord_runs(client, database_url), tag, keep=True)


async def record(discord_only: bool = False) -> list[Path]:
    written: list[Path] = []
    async with _servers() as (client, database_url):
        with battlenet_sandbox(
            guilds_per_region=2, roster_min=30, roster_max=30, hidden_ratio=0.1,
            guildless_characters=2, pvp_entries=60,
        ) as sb:  # fmt: skip
            await track_sandbox_guilds(database_url, sb.url)
            queue = f"record-{uuid.uuid4().hex[:6]}"
            settings = sandbox_settings(sb.url, TEMPORAL_TASK_QUEUE=queue)
            picked = []
            if not discord_only:
                async with build_worker(client, settings, database_url, queue) as parts:
                    async with parts.worker:
                        picked = await _master_runs(client, queue)
                        picked += await _scheduler_runs(client, sb.url, settings)
                        picked += await _pvp_runs(client, settings, queue)
            written += await _write(client, picked, "")
        written += await _write(client, await _discord_runs(client, database_url), "d")
    return written


async def _master_runs(client: Client, queue: str) -> list[Any]:
    """A master that continues-as-new once, plus one child of each type."""
    master_id = "battlenet-sync/eu/recorded"
    await client.execute_workflow(
        BattleNetSync.run,
        BattleNetSyncInput(region="eu", page_size=10, batch_size=10),
        id=master_id,
        task_queue=queue,
    )
    runs = [wf async for wf in client.list_workflows(f'WorkflowId = "{master_id}"')]
    children = [wf async for wf in client.list_workflows(f'ParentWorkflowId = "{master_id}"')]
    return runs + _one_per_type(children)


async def _scheduler_runs(client: Client, sandbox_url: str, settings: Any) -> list[Any]:
    """A scheduler with signals, an update (manual add --wait) and a continue-as-new."""
    handle = await start(client, "battlenet", "eu", settings, every="1d")
    loner = next(c for c in admin(sandbox_url, "truth/characters?region=eu") if not c["guild_id"])
    args = argparse.Namespace(
        entity="character", region="eu", realm=loner["realm_slug"], name=loner["name"],
        priority="manual", wait=True, timeout=120.0,
    )  # fmt: skip
    await add(client, args, settings)
    await handle.signal(Scheduler.pause)
    await handle.signal(Scheduler.resume)
    await handle.signal(Scheduler.set_cadence, args=["sync", "12h"])
    for _ in range(400):  # the bulk sync reports done; then force a continue-as-new
        status = await handle.query(Scheduler.status)
        if not status.running:
            break
        await asyncio.sleep(0.1)
    await handle.signal(Scheduler.set_event_budget, 30)
    for _ in range(100):
        if (await handle.describe()).run_id != handle.first_execution_run_id:
            break
        await asyncio.sleep(0.1)
    await handle.signal(Scheduler.run_now, "sync")
    await asyncio.sleep(1.0)
    await handle.terminate("recorded")
    runs = [wf async for wf in client.list_workflows(f'WorkflowId = "{handle.id}"')]
    entity = [wf async for wf in client.list_workflows('WorkflowType = "BattleNetEntitySync"')]
    return runs + entity[:1]


async def _pvp_runs(client: Client, settings: Any, queue: str) -> list[Any]:
    sync_queue, processing_queue = pvp_queues(settings, queue)
    master_id = "pvp-sync/eu/recorded"
    await client.execute_workflow(
        PvpSync.run,
        PvpSyncInput(region="eu", brackets=["2v2", "rbg"], equipment_batch_size=25,
                     sync_queue=sync_queue, processing_queue=processing_queue),
        id=master_id,
        task_queue=queue,
    )  # fmt: skip
    for _ in range(100):  # visibility lags the runs' ends a little
        runs = [wf async for wf in client.list_workflows(f'WorkflowId = "{master_id}"')]
        children = [wf async for wf in client.list_workflows(f'ParentWorkflowId = "{master_id}"')]
        if runs and len(children) >= 3:
            break
        await asyncio.sleep(0.1)
    return runs + children[:1]


async def _write(client: Client, picked: list[Any], tag: str, keep: bool = False) -> list[Path]:
    """One file per run; with ``keep``, a file that exists is never overwritten (a running
    workflow could still have that history)."""
    written = []
    for n, wf in enumerate(picked):
        history = await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
        path = HISTORIES / f"{wf.workflow_type}-{tag}{n}.json"
        if keep and path.exists():
            raise FileExistsError(f"{path.name} exists: record a new set (--set <name>)")
        path.write_text(json.dumps({"workflow_id": wf.id, **history.to_json_dict()}, indent=1))
        written.append(path)
    return written


async def _discord_runs(client: Client, database_url: str) -> list[Any]:
    """A tenant of three channels: one parked after its retries, one sleeping on a spent
    bucket (1 request per 2 s, max wait 0.5 s) between its pages, one plain."""
    with discord_server(messages=(1, 2.0)) as sandbox:
        tenant = create_tenant(sandbox.url, name="Recorded", text_channels=[150, 20, 5])
        gid = int(tenant["guild_id"])
        broken = next(c["id"] for c in tenant["channels"] if c["messages"] == 5)
        admin(sandbox.url, "faults", {"error_rate": 1.0, "error_status": 502,
                                      "match": f"/channels/{broken}/messages"})  # fmt: skip
        await track(database_url, gid)
        queue = f"record-{uuid.uuid4().hex[:6]}"
        settings = discord_settings(
            sandbox.url, SYNC_CHANNEL_MAX_ATTEMPTS=2, RATE_LIMIT_MAX_WAIT_SECONDS=0.5
        )
        master_id = f"discord-sync/{gid}"
        await run_tenant_sync(client, settings, database_url, queue, gid, workflow_id=master_id)
    for _ in range(100):  # visibility lags the runs' ends a little
        runs = [wf async for wf in client.list_workflows(f'WorkflowId = "{master_id}"')]
        children = [wf async for wf in client.list_workflows(f'ParentWorkflowId = "{master_id}"')]
        if runs and len(children) >= 3:
            break
        await asyncio.sleep(0.1)
    return runs + children


async def record_set(tag: str) -> list[Path]:
    """The kernel set, on a dev server that suggests continue-as-new early (so the Discord
    tenant continues-as-new with channels still pending)."""
    suggest = ("--dynamic-config-value", "limit.historyCount.suggestContinueAsNew=60")
    async with _servers(*suggest) as (client, database_url):
        picked = await _battlenet_kernel_runs(client, database_url)
        picked += await _discord_kernel_runs(client, database_url)
        return await _write(client, picked, tag, keep=True)


async def _battlenet_kernel_runs(client: Client, database_url: str) -> list[Any]:
    with battlenet_sandbox(
        guilds_per_region=2, roster_min=12, roster_max=12, hidden_ratio=0, per_second=10
    ) as sb:
        guilds = admin(sb.url, "truth/guilds?region=eu")
        queue = f"record-{uuid.uuid4().hex[:6]}"
        settings = sandbox_settings(
            sb.url, TEMPORAL_TASK_QUEUE=queue, BNET_RATE_PER_SECOND=10,
            RATE_LIMIT_MAX_WAIT_SECONDS=0.05,
        )  # fmt: skip
        async with build_worker(client, settings, database_url, queue) as parts:
            async with parts.worker:
                first = guilds[0]
                add_id = f"guild/eu/{first['realm_slug']}/{first['name_slug']}/recorded"
                await client.execute_workflow(
                    BattleNetEntitySync.run,
                    EntitySyncInput("eu", "guild", first["realm_slug"], first["name"]),
                    id=add_id,
                    task_queue=queue,
                )
                second = guilds[1]
                await track_sandbox_guilds(database_url, sb.url)
                # The second guild answers 400 (non-retryable): its child fails.
                path = f"/data/wow/guild/{second['realm_slug']}/{second['name_slug']}"
                admin(sb.url, "faults", {"match": path, "error_rate": 1.0, "error_status": 400})
                master_id = "battlenet-sync/eu/recorded-kernel"
                await client.execute_workflow(
                    BattleNetSync.run,
                    BattleNetSyncInput(region="eu", full=True, batch_size=6, page_size=12),
                    id=master_id,
                    task_queue=queue,
                )
    runs = [wf async for wf in client.list_workflows(f'WorkflowId = "{master_id}"')]
    adds = [wf async for wf in client.list_workflows(f'WorkflowId = "{add_id}"')]
    children = [wf async for wf in client.list_workflows(f'ParentWorkflowId = "{master_id}"')]
    failed = [
        c
        for c in children
        if c.workflow_type == "GuildSync" and c.status is not None and c.status.name == "FAILED"
    ]
    return runs[:1] + adds + failed[:1] + _one_per_type(children)


async def _discord_kernel_runs(client: Client, database_url: str) -> list[Any]:
    with discord_server() as sandbox:
        tenant = create_tenant(sandbox.url, name="Kernel", text_channels=[40] * 12)
        gid = int(tenant["guild_id"])
        await track(database_url, gid)
        queue = f"record-{uuid.uuid4().hex[:6]}"
        settings = discord_settings(
            sandbox.url, TEMPORAL_TASK_QUEUE=queue, SYNC_MAX_CHANNEL_WORKERS=2,
            SYNC_MESSAGE_FETCH_SIZE=10,
        )  # fmt: skip
        async with build_worker(client, settings, database_url, queue) as parts:
            async with parts.worker:
                sched = await client.start_workflow(
                    Scheduler.run,
                    SchedulerInput(
                        provider="discord", scope=str(gid), cadences={"sync": "1d"},
                        max_concurrent=2, visibility=False,
                    ),
                    id=f"scheduler/discord/{gid}",
                    task_queue=queue,
                )  # fmt: skip
                for _ in range(100):  # the cadence's sync is running
                    if (await sched.query(Scheduler.status)).running:
                        break
                    await asyncio.sleep(0.1)
                await sched.signal(Scheduler.pause)
                for _ in range(2):  # two alike requests merge into one
                    await sched.signal(Scheduler.enqueue, SyncRequest(kind="sync"))
                await sched.signal(Scheduler.resume)  # ... which meets the running child
                for _ in range(600):
                    status = await sched.query(Scheduler.status)
                    if not status.running and status.dispatched_total >= 2:
                        break
                    await asyncio.sleep(0.2)
                await sched.terminate("recorded")
    master = f"discord-sync/{gid}"
    runs = [wf async for wf in client.list_workflows(f'WorkflowId = "{master}"')]
    scheduler = [wf async for wf in client.list_workflows(f'WorkflowId = "{sched.id}"')]
    return scheduler + runs


async def record_bounded_set(tag: str) -> list[Path]:
    """Every run of a Battle.net master over 4 guilds in guild pages of 2 (it continues-as-new
    after the first page) and of a Discord tenant of 4 channels in pages of 2 (likewise)."""
    async with _servers() as (client, database_url):
        picked = []
        with battlenet_sandbox(
            guilds_per_region=4, roster_min=3, roster_max=3, hidden_ratio=0
        ) as sb:
            await track_sandbox_guilds(database_url, sb.url)
            queue = f"record-{uuid.uuid4().hex[:6]}"
            settings = sandbox_settings(sb.url, TEMPORAL_TASK_QUEUE=queue)
            master_id = "battlenet-sync/eu/recorded-bounded"
            async with build_worker(client, settings, database_url, queue) as parts:
                async with parts.worker:
                    await client.execute_workflow(
                        BattleNetSync.run,
                        BattleNetSyncInput(region="eu", guild_page_size=2),
                        id=master_id,
                        task_queue=queue,
                    )
            picked += [wf async for wf in client.list_workflows(f'WorkflowId = "{master_id}"')]
        with discord_server() as sandbox:
            tenant = create_tenant(sandbox.url, name="Bounded", text_channels=[30, 0, 12, 5])
            gid = int(tenant["guild_id"])
            await track(database_url, gid)
            queue = f"record-{uuid.uuid4().hex[:6]}"
            settings = discord_settings(sandbox.url, TEMPORAL_TASK_QUEUE=queue)
            tenant_id = f"discord-sync/{gid}"
            async with build_worker(client, settings, database_url, queue) as parts:
                async with parts.worker:
                    await client.execute_workflow(
                        DiscordTenantSync.run,
                        TenantSyncInput(discord_guild_id=gid, channel_page_size=2),
                        id=tenant_id,
                        task_queue=queue,
                    )
            picked += [wf async for wf in client.list_workflows(f'WorkflowId = "{tenant_id}"')]
        return await _write(client, picked, tag, keep=True)


def _one_per_type(workflows: list[Any]) -> list[Any]:
    seen: dict[str, object] = {}
    for wf in workflows:
        seen.setdefault(wf.workflow_type, wf)
    return list(seen.values())


async def record_scheduler_set(tag: str) -> list[Path]:
    async with _servers() as (client, database_url):
        world = {"guilds_per_region": 1, "roster_min": 6, "roster_max": 6, "hidden_ratio": 0}
        with battlenet_sandbox(**world, per_second=2) as sb:
            queue = f"record-{uuid.uuid4().hex[:6]}"
            settings = sandbox_settings(sb.url, TEMPORAL_TASK_QUEUE=queue, BNET_RATE_PER_SECOND=2)
            members = admin(sb.url, "truth/characters?region=eu")
            async with build_worker(client, settings, database_url, queue) as parts:
                async with parts.worker:
                    sched = await client.start_workflow(
                        Scheduler.run,
                        SchedulerInput(provider="battlenet", scope="eu", max_concurrent=1,
                                       check_seconds=1.0, cadences={"sync": "3000000d"}),
                        id="scheduler/battlenet/eu", task_queue=queue,
                    )  # fmt: skip
                    await sched.signal(Scheduler.run_now, "bogus")
                    bad = SyncRequest(kind="character", key="realm/with/slash")
                    await sched.signal(Scheduler.enqueue, bad)
                    first = argparse.Namespace(
                        entity="character", region="eu", realm=members[0]["realm_slug"],
                        name=members[0]["name"], priority="manual", wait=True, timeout=120.0,
                    )  # fmt: skip
                    await add(client, first, settings)  # submit, then the child's result
                    slow = members[1]  # 2 requests/s: it runs for a few seconds
                    key = f"{slow['realm_slug']}/{slow['name']}"
                    await sched.signal(Scheduler.enqueue, SyncRequest(kind="character", key=key))
                    for _ in range(100):
                        status = await sched.query(Scheduler.status)
                        if status.running:
                            break
                        await asyncio.sleep(0.05)
                    child = status.running[0]
                    await sched.signal(Scheduler.set_event_budget, 20)
                    for _ in range(100):  # it continues-as-new, carrying the running child
                        if (await sched.describe()).run_id != sched.first_execution_run_id:
                            break
                        await sched.signal(Scheduler.resume)
                        await asyncio.sleep(0.1)
                    await sched.signal(Scheduler.set_event_budget, 0)
                    await client.get_workflow_handle(child).terminate("recorded")
                    for _ in range(100):  # the look finds it ended and frees the slot
                        if not (await sched.query(Scheduler.status)).running:
                            break
                        await asyncio.sleep(0.1)
                    await sched.terminate("recorded")
        runs = [wf async for wf in client.list_workflows('WorkflowId = "scheduler/battlenet/eu"')]
        return await _write(client, runs, tag, keep=True)


async def record_patch_set(tag: str) -> list[Path]:
    """Session 18's paths: a PvP run with its sync_runs row (patch pvp-sync-runs: completed, and
    failed on a bracket the season lacks), and a scheduler's region sync under the region's one
    id (patch one-sync-per-region)."""
    async with _servers() as (client, database_url):
        with battlenet_sandbox(
            guilds_per_region=1, roster_min=5, roster_max=5, pvp_entries=30
        ) as sb:
            await track_sandbox_guilds(database_url, sb.url)
            queue = f"record-{uuid.uuid4().hex[:6]}"
            settings = sandbox_settings(sb.url, TEMPORAL_TASK_QUEUE=queue)
            sync_queue, processing_queue = pvp_queues(settings, queue)
            async with build_worker(client, settings, database_url, queue) as parts:
                async with parts.worker:
                    for wid, brackets in (
                        ("pvp-sync/eu/runs", ["2v2"]),
                        ("pvp-sync/eu/bad", ["4v4"]),
                    ):
                        with contextlib.suppress(Exception):  # the 4v4 one fails, as recorded
                            await client.execute_workflow(
                                PvpSync.run,
                                PvpSyncInput(region="eu", brackets=brackets, sync_queue=sync_queue,
                                             processing_queue=processing_queue),
                                id=wid, task_queue=queue,
                            )  # fmt: skip
                    sched = await client.start_workflow(
                        Scheduler.run,
                        SchedulerInput(provider="battlenet", scope="eu", cadences={}),
                        id="scheduler/battlenet/eu", task_queue=queue,
                    )  # fmt: skip
                    await sched.signal(Scheduler.run_now, "sync")
                    for _ in range(300):  # the region's sync ran and was reported
                        status = await sched.query(Scheduler.status)
                        if status.last_result.get("sync"):
                            break
                        await asyncio.sleep(0.1)
                    await sched.terminate("recorded")
        picked = []
        for wid in (
            "pvp-sync/eu/runs",
            "pvp-sync/eu/bad",
            "scheduler/battlenet/eu",
            "battlenet-sync/eu",
        ):
            picked += [wf async for wf in client.list_workflows(f'WorkflowId = "{wid}"')]
        return await _write(client, picked, tag, keep=True)


async def record_zwift_set(tag: str) -> list[Path]:
    """A ZwiftRacing club scheduler at time scale 360 (every kind at once, most urgent first;
    event kinds waiting for each other; a manual rider add) and one ZwiftSync per kind: the
    riders sync sleeps on a durable timer for its club's second page (files ``*-z<n>.json``)."""
    from sandbox.admin_client import admin as zwift_admin
    from sandbox.server import SandboxProcess
    from sandbox.zwift import API_PREFIX, ZwiftSandboxConfig
    from sandbox.zwift_world import ZwiftWorldConfig
    from settings import Settings
    from storage import zwift as zdb
    from storage.db import create_engine
    from tests.scheduler_support import end_scheduler

    world = ZwiftWorldConfig(
        seed=5,
        club_sizes=(1050,),
        clubless=3,
        past_events=1,
        urgent_events=1,
        near_events=1,
        far_events=1,
        signups_min=2,
        signups_max=5,
    )
    config = ZwiftSandboxConfig(world=world, time_scale=360.0)
    async with _servers() as (client, database_url):
        with SandboxProcess(config) as sandbox:
            truth = await zwift_admin(sandbox.url, "truth")
            club = int(truth["clubs"][0]["club_id"])
            engine = create_engine(database_url, pool_size=1)
            async with engine.begin() as conn:
                await zdb.track_club(conn, club)
                for event in truth["events"]:
                    await zdb.track_event(conn, int(event["event_id"]), club)
            await engine.dispose()
            queue = f"record-{uuid.uuid4().hex[:6]}"
            settings = Settings(
                ZWIFT_API_BASE_URL=sandbox.url + API_PREFIX, ZWIFT_API_KEY=config.api_key,
                ZWIFT_TIME_SCALE=360.0, TEMPORAL_TASK_QUEUE=queue,
            )  # fmt: skip
            rider = next(int(r) for r, v in truth["riders"].items() if v["club_id"] is None)
            async with build_worker(client, settings, database_url, queue) as parts:
                async with parts.worker:
                    handle = await start(client, "zwift", str(club), settings)
                    args = argparse.Namespace(
                        entity="rider", club=club, rider_id=rider, priority="manual",
                        wait=True, timeout=60.0,
                    )  # fmt: skip
                    await asyncio.sleep(1.0)
                    await add(client, args, settings)
                    await asyncio.sleep(14.0)  # the riders sync's second page and POSTs
                    await end_scheduler(handle)
            sid = f"scheduler/zwift/{club}"
            picked = [wf async for wf in client.list_workflows(f'WorkflowId = "{sid}"')]
            children = [wf async for wf in client.list_workflows('WorkflowType = "ZwiftSync"')]
            seen: dict[str, Any] = {}
            for wf in children:  # one per kind (the id names it), a completed one if any
                kind = wf.id.split("/")[2]
                if kind not in seen or str(wf.status) == "WorkflowExecutionStatus.COMPLETED":
                    seen[kind] = wf
            picked += list(seen.values())
        return await _write(client, picked, tag, keep=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Record the replay-test histories.")
    parser.add_argument("--discord-only", action="store_true", help="only the Discord ones")
    parser.add_argument("--set", help="record the kernel set under this tag (e.g. k)")
    parser.add_argument("--bounded-set", help="record the bounded set under this tag (e.g. b)")
    parser.add_argument("--scheduler-set", help="record the scheduler set under this tag (s)")
    parser.add_argument("--patch-set", help="record session 18's patched paths under this tag")
    parser.add_argument("--discord-set", help="record the Discord runs under this tag (f)")
    parser.add_argument("--zwift-set", help="record the ZwiftRacing runs under this tag (z)")
    args = parser.parse_args()
    HISTORIES.mkdir(exist_ok=True)
    if args.zwift_set:
        paths = asyncio.run(record_zwift_set(args.zwift_set))
    elif args.discord_set:
        paths = asyncio.run(record_discord_set(args.discord_set))
    elif args.patch_set:
        paths = asyncio.run(record_patch_set(args.patch_set))
    elif args.scheduler_set:
        paths = asyncio.run(record_scheduler_set(args.scheduler_set))
    elif args.bounded_set:
        paths = asyncio.run(record_bounded_set(args.bounded_set))
    else:
        paths = asyncio.run(record_set(args.set) if args.set else record(args.discord_only))
    for path in paths:
        print(f"wrote {path.relative_to(HISTORIES.parent.parent.parent)}")
