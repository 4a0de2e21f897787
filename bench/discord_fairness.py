"""Discord tenant fairness: a 1-channel tenant synced alone, then beside a 100-channel tenant.

    .venv/bin/python -m bench.discord_fairness                 # 1 x 3,000 vs 100 x 800
    .venv/bin/python -m bench.discord_fairness --small 5000 --big-channels 100 --big 1500

Both tenants are on one bot token, so one global limit (50/s) in one worker. The sandbox's
message bucket is 10 per 1 s per channel (``--bucket``), so that the small tenant alone is
held by its own channel's bucket, not by the global limit: beside the big tenant it should
then lose almost nothing. Real Temporal dev server, real Postgres, the Discord sandbox in its
own process, the worker in this process (so that every request of the small tenant can be
timed: its wait for its channel's bucket, for the global limit, and its HTTP time; and its
waits in Temporal's task queues, read from its workflows' histories).
Target: the small tenant beside the big one finishes within 2x its time alone.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import subprocess
import time
import uuid
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

import runtime
from activities.discord_types import TenantSyncInput
from bench.common import code_version, quiet_runtime, throwaway_stack
from bench.discord_sync import _install_trace
from runtime import SEARCH_ATTRIBUTES
from sandbox.admin_client import admin
from sandbox.discord import DiscordSandboxConfig
from sandbox.discord_world import DiscordWorldConfig
from sandbox.server import SandboxProcess
from settings import Settings
from storage import discord as db
from storage.db import create_engine
from worker import build_worker
from workflows.discord import DiscordTenantSync

TOKEN = "sandbox-bot-token"


async def temporal_waits(
    client: Client, workflow_id: str, timeline_from: float | None = None
) -> dict[str, float]:
    """Seconds the workflow and its children waited in Temporal's queues: workflow tasks
    (scheduled -> started) and activity tasks (scheduled -> started), summed. With
    ``timeline_from`` (a wall-clock time) every event is printed, that many seconds after it."""
    waits = {"workflow_tasks": 0.0, "activity_tasks": 0.0, "activities": 0}
    ids = [workflow_id]
    while ids:
        handle = client.get_workflow_handle(ids.pop())
        scheduled: dict[int, float] = {}
        async for event in handle.fetch_history_events():
            at = event.event_time.ToMicroseconds() / 1e6
            kind = event.event_type
            if timeline_from is not None:
                name = EventType.Name(kind).removeprefix("EVENT_TYPE_")
                print(f"  {handle.id[:24]:<24} +{at - timeline_from:6.3f}s {name}")
            if kind in (
                EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
                EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
            ):
                scheduled[event.event_id] = at
            elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                began = scheduled.get(
                    event.workflow_task_started_event_attributes.scheduled_event_id
                )
                waits["workflow_tasks"] += at - began if began else 0.0
            elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                began = scheduled.get(
                    event.activity_task_started_event_attributes.scheduled_event_id
                )
                waits["activity_tasks"] += at - began if began else 0.0
                waits["activities"] += 1
            elif kind == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED:
                ids.append(
                    event.child_workflow_execution_started_event_attributes.workflow_execution.workflow_id
                )
    return waits


def request_waits(records: list[dict[str, Any]], majors: set[int], since: float) -> dict[str, Any]:
    """The requests of ``majors`` (channel or guild ids) started after ``since``: how many,
    and the seconds they spent waiting for their bucket, for the global limit, and in HTTP."""
    mine = [r for r in records if r.get("major") in majors and r.get("t0", 0) >= since]
    done = [r for r in mine if "t_http_end" in r and "t_bucket" in r]
    done.sort(key=lambda r: r["t0"])
    # from one answer to the same tenant's next request: parse, store, the activity's loop (a
    # busy event loop shows here), and the workflow between a channel's activities
    gaps = [b["t0"] - a["t_end"] for a, b in itertools.pairwise(done) if "t_end" in a]
    return {
        "requests": len(mine),
        "first": done[0]["t0"] - since if done else 0.0,
        "last": max((r.get("t_end", 0.0) for r in done), default=since) - since,
        "gaps": sum(g for g in gaps if g > 0),
        "bucket_wait": sum(r["t_bucket"] - r["t0"] for r in done),
        "global_wait": sum(r["t_http"] - r["t_bucket"] for r in done),
        "http": sum(r["t_http_end"] - r["t_http"] for r in done),
    }


async def sync(client: Client, queue: str, gid: int, workflow_id: str) -> tuple[float, Any]:
    began = time.monotonic()
    result = await client.execute_workflow(
        DiscordTenantSync.run, TenantSyncInput(discord_guild_id=gid), id=workflow_id,
        task_queue=queue,
    )  # fmt: skip
    return time.monotonic() - began, result


async def run(args: argparse.Namespace) -> None:
    limit, period = (float(v) for v in args.bucket.split("/"))
    config = DiscordSandboxConfig(
        world=DiscordWorldConfig(tenants=0), messages=(int(limit), period)
    )
    records = _install_trace()
    if args.no_eager:  # what-if: activities only through the task queue (worker.py's Workers)
        import temporalio.worker

        init = temporalio.worker.Worker.__init__

        def no_eager(self: Any, *a: Any, **kw: Any) -> None:
            init(self, *a, **{**kw, "disable_eager_activity_execution": True})

        temporalio.worker.Worker.__init__ = no_eager  # type: ignore[method-assign]
    extra = runtime.dev_server_args()
    if args.temporal_fairness:  # the server honours fairness keys (off by default in 1.32)
        extra += ["--dynamic-config-value", "matching.enableFairness=true"]
    for value in args.dynamic_config:
        extra += ["--dynamic-config-value", value]
    async with (
        throwaway_stack(temporal=False) as stack,
        await WorkflowEnvironment.start_local(
            dev_server_existing_path=runtime.temporal_binary(),
            data_converter=pydantic_data_converter, runtime=quiet_runtime(),
            search_attributes=[SearchAttributeKey.for_keyword(n) for n in SEARCH_ATTRIBUTES],
            dev_server_log_level="error", dev_server_extra_args=extra,
        ) as env,
    ):  # fmt: skip
        client = env.client
        with SandboxProcess(config) as sandbox:
            url = sandbox.url
            small_spec = {"name": "Small", "text_channels": [args.small]}
            alone = await admin(url, "tenants", small_spec)
            beside = await admin(url, "tenants", {**small_spec, "name": "Small beside"})
            bigs = [
                await admin(
                    url,
                    "tenants",
                    {"name": f"Big {n}", "text_channels": [args.big] * args.big_channels},
                )
                for n in range(args.big_tenants)
            ]
            gids = {"alone": int(alone["guild_id"]), "beside": int(beside["guild_id"])}
            gids.update((f"big{n}", int(big["guild_id"])) for n, big in enumerate(bigs))
            database_url = await stack.fresh_database()
            engine = create_engine(database_url, pool_size=1)
            async with engine.begin() as conn:
                for gid in gids.values():
                    await db.track_tenant(conn, gid)
            await engine.dispose()
            settings = Settings(
                DISCORD_BOT_TOKEN=TOKEN, DISCORD_API_BASE_URL=f"{url}/api/v10",
                SYNC_MAX_CHANNEL_WORKERS=args.workers, LOG_LEVEL="WARNING",
                DISCORD_TENANT_WEIGHTS=args.weights,
            )  # fmt: skip
            queue = f"bench-fair-{uuid.uuid4().hex[:6]}"

            def majors(layout: dict[str, Any]) -> set[int]:
                return {int(layout["guild_id"])} | {int(c["id"]) for c in layout["channels"]}

            async with build_worker(client, settings, database_url, queue) as parts:
                async with parts.worker:
                    since = time.monotonic()
                    t_alone, r_alone = await sync(client, queue, gids["alone"], f"alone-{queue}")
                    w_alone = request_waits(records, majors(alone), since)
                    q_alone = await temporal_waits(client, f"alone-{queue}")
                    big_handles: list[WorkflowHandle[Any, Any]] = [
                        await client.start_workflow(
                            DiscordTenantSync.run,
                            TenantSyncInput(discord_guild_id=gids[f"big{n}"]),
                            id=f"big{n}-{queue}",
                            task_queue=queue,
                        )
                        for n in range(args.big_tenants)
                    ]
                    before = (await admin(url, "stats"))["requests"]
                    await asyncio.sleep(args.head_start)
                    ramp = (await admin(url, "stats"))["requests"] - before
                    since, wall_since = time.monotonic(), time.time()
                    before = (await admin(url, "stats"))["requests"]
                    t_beside, r_beside = await sync(
                        client, queue, gids["beside"], f"beside-{queue}"
                    )
                    during = (await admin(url, "stats"))["requests"] - before
                    w_beside = request_waits(records, majors(beside), since)
                    q_beside = await temporal_waits(
                        client, f"beside-{queue}", wall_since if args.timeline else None
                    )
                    if args.timeline:
                        mine = majors(beside)
                        for r in sorted(records, key=lambda r: r.get("t0", 0)):
                            if r.get("major") in mine and r.get("t0", 0) >= since:
                                print(f"  request {r['route']:<44} +{r['t0'] - since:6.3f}s "
                                      f"-> +{r.get('t_end', 0) - since:6.3f}s")  # fmt: skip
                    big_state = None
                    for handle in big_handles:
                        big_state = (await handle.describe()).status
                        if big_state == WorkflowExecutionStatus.RUNNING:
                            await handle.terminate("benchmark over")
            stats = await admin(url, "stats")

    try:
        print(f"code: {code_version()}")
    except subprocess.CalledProcessError:  # a copy of the tree outside git (a baseline)
        print("code: a copy outside git")
    print(
        f"small tenant: 1 channel x {args.small} messages; {args.big_tenants} big: "
        f"{args.big_channels} channels x "
        f"{args.big}; messages bucket {args.bucket} per channel, global 50/s; "
        f"SYNC_MAX_CHANNEL_WORKERS={args.workers}; weights {args.weights!r}; Temporal "
        f"fairness {'on' if args.temporal_fairness else 'off (default)'}"
        + "".join(f"; {v}" for v in args.dynamic_config)
    )
    print(f"big tenant's head start: {args.head_start:.0f}s, {ramp} requests in it")
    for label, t, r, w, q in (("alone", t_alone, r_alone, w_alone, q_alone),
                              ("beside", t_beside, r_beside, w_beside, q_beside)):  # fmt: skip
        print(
            f"small {label:<6}: {t:6.2f}s wall ({r.status}, {r.messages} messages, "
            f"{w['requests']} requests); its requests waited: bucket {w['bucket_wait']:.2f}s, "
            f"global limit {w['global_wait']:.2f}s, HTTP {w['http']:.2f}s, between "
            f"requests {w['gaps']:.2f}s; first request at +{w['first']:.2f}s, last answer "
            f"+{w['last']:.2f}s; Temporal queues: "
            f"workflow tasks {q['workflow_tasks']:.2f}s, activity tasks {q['activity_tasks']:.2f}s "
            f"({q['activities']} activities)"
        )
    state = big_state.name if big_state else "?"
    print(f"while the small synced beside it: {during} requests in {t_beside:.1f}s "
          f"({during / t_beside:.1f}/s); big tenant {state}")  # fmt: skip
    print(f"429s {stats['rate_limited']}; global max in any 1 s window "
          f"{stats['global_max_in_window']}")  # fmt: skip
    ratio = t_beside / t_alone
    print(f"ratio beside/alone: {ratio:.2f} (target <= 2.0: {'PASS' if ratio <= 2 else 'FAIL'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", type=int, default=3000, help="messages of the small channel")
    parser.add_argument("--big", type=int, default=800, help="messages per big channel")
    parser.add_argument("--big-channels", type=int, default=100)
    parser.add_argument("--big-tenants", type=int, default=1, help="big tenants beside it")
    parser.add_argument(
        "--temporal-fairness", action="store_true", help="matching.enableFairness=true"
    )
    parser.add_argument(
        "--dynamic-config", action="append", default=[], metavar="KEY=JSON",
        help="a dynamic config value of the dev server (repeatable)",
    )  # fmt: skip
    parser.add_argument("--no-eager", action="store_true", help="no eager activity execution")
    parser.add_argument("--bucket", default="10/1", help="the sandbox's messages bucket")
    parser.add_argument("--workers", type=int, default=100, help="SYNC_MAX_CHANNEL_WORKERS")
    parser.add_argument("--head-start", type=float, default=3.0, help="seconds the big runs first")
    parser.add_argument(
        "--weights", default="", help="DISCORD_TENANT_WEIGHTS (once activities/discord_build.py "
        "hands it to the limiter)",
    )  # fmt: skip
    parser.add_argument("--timeline", action="store_true", help="print the small's events")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
