"""How long does a manual add take while a large backlog is syncing, compared with none?

    .venv/bin/python -m bench.manual_add_latency            # 5,000-character backlog, ~6 min
    .venv/bin/python -m bench.manual_add_latency --quick    # 1,500 characters, 10 adds, ~2 min

Real Temporal dev server (with the Provider/Scope/SyncKind search attributes), real Postgres,
the sandbox in its own process enforcing a strict sliding window, one worker. Each scenario gets
a fresh stack and starts the Scheduler (`cli.scheduler.start`), whose first `sync` is the
backlog: every tracked guild, then every character their rosters revealed. Manual adds are
`cli.scheduler.add(..., wait=True)` of guildless characters (never part of the backlog) at
seeded random times, run concurrently; latency is the wall time of that call, i.e. from the
update (signal) to the character's rows being stored. Target: p95 under backlog ≤ 2 x p95
without backlog, and no 429s.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import time
import uuid
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from bench.common import throwaway_stack
from cli import CliError
from cli.scheduler import add, start
from providers.ratelimit import Priority
from sandbox.admin_client import admin
from sandbox.battlenet import BattleNetSandboxConfig
from sandbox.server import SandboxProcess
from sandbox.world import BattleNetWorldConfig
from settings import Settings
from storage import battlenet as db
from storage.db import create_engine
from tests.sandbox_helpers import sandbox_settings
from worker import build_worker
from workflows.scheduler import Scheduler

REGION = "eu"
SEED = 20261126
ADD_TIMEOUT = 300.0


@dataclass(frozen=True)
class Plan:
    guilds: int
    roster: int
    adds: int
    backlog_window: float  # adds spread over this many seconds once characters are syncing
    idle_window: float  # ... and over this many seconds without a backlog

    @property
    def characters(self) -> int:
        return self.guilds * self.roster


@dataclass
class AddResult:
    offset: float
    latency: float
    status: str
    waited: float = 0.0
    ran: float = 0.0
    backlog_at_issue: bool = False
    backlog_at_end: bool = False


@dataclass
class Scenario:
    name: str
    adds: list[AddResult] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    backlog_synced: int | None = None  # characters the backlog had synced when it was stopped
    lead_in: float = 0.0  # seconds from scheduler start to the first add's clock
    manual_waits: list[float] = field(default_factory=list)  # limiter wait per manual request
    loop_lag: list[float] = field(default_factory=list)  # worker event-loop lag samples
    breakdown: Breakdown | None = None


@dataclass
class Breakdown:
    """Where the manual adds' time went, summed over their BattleNetEntitySync histories."""

    children: int = 0
    child_total: float = 0.0  # child started → child closed
    activity_queue: float = 0.0  # activity scheduled → started (task queue, poller, slot)
    activity_run: dict[str, float] = field(default_factory=dict)  # started → completed, by type

    def child_workflow_tasks(self) -> float:
        return self.child_total - self.activity_queue - sum(self.activity_run.values())


def _probe_manual_waits(limiter: Any, waits: list[float]) -> None:
    """Record how long each manual-priority request waited for its limiter slot.

    Wraps this one instance's `acquire` (which `slot` calls); the limiter itself is unchanged.
    """
    acquire = limiter.acquire

    async def timed(priority: int = Priority.BULK, max_wait: float | None = None) -> Any:
        began = time.monotonic()
        handle = await acquire(priority, max_wait)
        if priority >= Priority.MANUAL:
            waits.append(time.monotonic() - began)
        return handle

    limiter.acquire = timed


async def _measure_loop_lag(samples: list[float], period: float = 0.05) -> None:
    """How late a `period` sleep wakes up in this process, i.e. in the worker's event loop."""
    while True:
        began = time.monotonic()
        await asyncio.sleep(period)
        samples.append(time.monotonic() - began - period)


async def _breakdown(client: Client) -> Breakdown:
    """Sum the phases of every manual add's child workflow from its history."""
    out = Breakdown()
    async for wf in client.list_workflows('WorkflowType = "BattleNetEntitySync"'):
        out.children += 1
        scheduled: dict[int, tuple[str, float]] = {}
        started: dict[int, float] = {}
        first: float | None = None
        last = 0.0
        async for event in client.get_workflow_handle(wf.id).fetch_history_events():
            at = event.event_time.ToDatetime().timestamp()
            first = at if first is None else first
            last = at
            if event.HasField("activity_task_scheduled_event_attributes"):
                kind = event.activity_task_scheduled_event_attributes.activity_type.name
                scheduled[event.event_id] = (kind, at)
            elif event.HasField("activity_task_started_event_attributes"):
                started[event.activity_task_started_event_attributes.scheduled_event_id] = at
            elif event.HasField("activity_task_completed_event_attributes"):
                sid = event.activity_task_completed_event_attributes.scheduled_event_id
                kind, queued_at = scheduled[sid]
                out.activity_queue += started[sid] - queued_at
                out.activity_run[kind] = out.activity_run.get(kind, 0.0) + at - started[sid]
        out.child_total += last - (first or last)
    return out


async def _track_guilds(database_url: str, guilds: Sequence[dict[str, Any]]) -> None:
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            for g in guilds:
                await db.track_guild(conn, REGION, g["realm_slug"], g["name"])
    finally:
        await engine.dispose()


def _backlog_child(running: Sequence[str]) -> str | None:
    return next((c for c in running if c.startswith("battlenet-sync/")), None)


async def _backlog_running(handle: WorkflowHandle[Any, Any]) -> bool:
    status = await handle.query(Scheduler.status)
    return _backlog_child(status.running) is not None


async def _backlog_progress(client: Client, handle: WorkflowHandle[Any, Any]) -> dict[str, Any]:
    """The running BattleNetSync's `progress` query ({} when none runs)."""
    child = _backlog_child((await handle.query(Scheduler.status)).running)
    if child is None:
        return {}
    try:
        progress: dict[str, Any] = await client.get_workflow_handle(child).query("progress")
    except RPCError:
        return {}
    return progress


async def _wait_for_characters_phase(
    client: Client, handle: WorkflowHandle[Any, Any], timeout: float = 120.0
) -> None:
    """Until the backlog has read every roster and is syncing characters at full rate."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (await _backlog_progress(client, handle)).get("phase") == "characters":
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the backlog did not reach its characters phase within {timeout:.0f}s")


async def _wait_until_idle(handle: WorkflowHandle[Any, Any], timeout: float = 60.0) -> None:
    """Until the scheduler's first `sync` (over no tracked guilds) has finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = await handle.query(Scheduler.status)
        if not status.running and status.last_result.get("sync") is not None:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the scheduler's first sync did not finish within {timeout:.0f}s")


async def _one_add(
    client: Client,
    handle: WorkflowHandle[Any, Any],
    settings: Settings,
    character: dict[str, Any],
    t0: float,
    offset: float,
) -> AddResult:
    await asyncio.sleep(max(0.0, t0 + offset - time.monotonic()))
    backlog_at_issue = await _backlog_running(handle)
    args = argparse.Namespace(
        entity="character", region=REGION, realm=character["realm_slug"],
        name=character["name"], priority="manual", wait=True, timeout=ADD_TIMEOUT,
    )  # fmt: skip
    began = time.monotonic()
    try:
        outcome = await add(client, args, settings)
    except CliError:
        return AddResult(
            offset, time.monotonic() - began, "timeout", backlog_at_issue=backlog_at_issue
        )
    latency = time.monotonic() - began
    return AddResult(
        offset=offset,
        latency=latency,
        status=str(outcome["status"]),
        waited=float(outcome.get("waited_seconds", 0.0)),
        ran=float(outcome.get("ran_seconds", 0.0)),
        backlog_at_issue=backlog_at_issue,
        backlog_at_end=await _backlog_running(handle),
    )


async def _stop_everything(client: Client, handle: WorkflowHandle[Any, Any]) -> None:
    with suppress(RPCError):
        await handle.terminate("bench over")
    query = 'WorkflowType = "BattleNetSync" AND ExecutionStatus = "Running"'
    async for wf in client.list_workflows(query):
        with suppress(RPCError):
            await client.get_workflow_handle(wf.id).terminate("bench over")


async def run_scenario(
    url: str,
    limit: int,
    name: str,
    guilds: Sequence[dict[str, Any]],
    characters: Sequence[dict[str, Any]],
    window: float,
    rng: random.Random,
) -> Scenario:
    """Track `guilds` (the backlog; none for the idle scenario), start the scheduler, add."""
    scenario = Scenario(name)
    offsets = sorted(rng.uniform(0.0, window) for _ in characters)
    async with throwaway_stack(quiet=True) as stack:
        database_url, client = stack.database_url, stack.client
        assert client is not None
        await _track_guilds(database_url, guilds)
        queue = f"bench-{uuid.uuid4().hex[:6]}"
        settings = sandbox_settings(
            url, TEMPORAL_TASK_QUEUE=queue, BNET_RATE_PER_SECOND=limit, BNET_MAX_CONCURRENT=40,
            SCHEDULER_PVP_EVERY="off",
        )  # fmt: skip
        await admin(url, "reset", {})
        async with build_worker(client, settings, database_url, queue) as parts:
            _probe_manual_waits(parts.resource("battlenet", "limiter"), scenario.manual_waits)
            async with parts.worker:
                started = time.monotonic()
                handle = await start(client, "battlenet", REGION, settings, every="1d")
                try:
                    if guilds:
                        await _wait_for_characters_phase(client, handle)
                    else:
                        await _wait_until_idle(handle)
                    t0 = time.monotonic()
                    scenario.lead_in = t0 - started
                    lag = asyncio.create_task(_measure_loop_lag(scenario.loop_lag))
                    try:
                        scenario.adds = list(
                            await asyncio.gather(
                                *(
                                    _one_add(client, handle, settings, c, t0, o)
                                    for c, o in zip(characters, offsets, strict=True)
                                )
                            )
                        )
                    finally:
                        lag.cancel()
                    if guilds:
                        progress = await _backlog_progress(client, handle)
                        scenario.backlog_synced = progress.get("characters")
                    scenario.stats = await admin(url, "stats")
                finally:
                    await _stop_everything(client, handle)
        scenario.breakdown = await _breakdown(client)
    return scenario


def _percentile(values: Sequence[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q% of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _row(s: Scenario) -> str:
    lat = [a.latency for a in s.adds]
    ok = sum(a.status == "completed" for a in s.adds)
    during = sum(a.backlog_at_issue and a.backlog_at_end for a in s.adds)
    slot = s.manual_waits or [0.0]
    return (
        f"{s.name:<22} {ok:>3}/{len(s.adds):<3} {during:>7} "
        f"{_percentile(lat, 50):>7.2f} {_percentile(lat, 95):>7.2f} {max(lat):>7.2f} "
        f"{statistics.median(a.waited for a in s.adds):>10.2f} "
        f"{statistics.median(a.ran for a in s.adds):>7.2f} "
        f"{_percentile(slot, 50):>8.3f} {max(slot):>8.3f} "
        f"{s.stats.get('requests', 0):>8} {s.stats.get('throttled', 0):>5}"
    )


def _sync_activity(b: Breakdown) -> float:
    """The character sync: since the one-step add, `bnet_add_character` also registers it."""
    runs = b.activity_run
    return runs.get("bnet_sync_characters", 0.0) + runs.get("bnet_add_character", 0.0)


def _breakdown_row(s: Scenario) -> str:
    b = s.breakdown or Breakdown()
    n = max(1, b.children)
    total = statistics.fmean(a.latency for a in s.adds)
    lag = s.loop_lag or [0.0]
    lag_text = f"{_percentile(lag, 95) * 1000:.0f} / {max(lag) * 1000:.0f}"
    return (
        f"{s.name:<22} {total:>6.3f} {total - b.child_total / n:>16.3f} "
        f"{b.child_workflow_tasks() / n:>14.3f} {b.activity_queue / n:>9.3f} "
        f"{b.activity_run.get('bnet_track_entity', 0.0) / n:>9.3f} "
        f"{_sync_activity(b) / n:>8.3f} {lag_text:>19}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,500-character backlog, 10 adds")
    parser.add_argument("--limit", type=int, default=100, help="requests per second")
    args = parser.parse_args()
    plan = (
        Plan(guilds=3, roster=500, adds=10, backlog_window=40.0, idle_window=15.0)
        if args.quick
        else Plan(guilds=10, roster=500, adds=20, backlog_window=120.0, idle_window=30.0)
    )
    world = BattleNetWorldConfig(
        regions=(REGION,), guilds_per_region=plan.guilds, roster_min=plan.roster,
        roster_max=plan.roster, guildless_characters=2 * plan.adds, hidden_ratio=0.0,
    )  # fmt: skip
    config = BattleNetSandboxConfig(world=world, per_second=args.limit)
    rng = random.Random(SEED)
    with SandboxProcess(config) as sandbox:
        guilds = await admin(sandbox.url, f"truth/guilds?region={REGION}")
        truth = await admin(sandbox.url, f"truth/characters?region={REGION}")
        loners = [c for c in truth if c["guild_id"] is None]
        rng.shuffle(loners)
        backlog = await run_scenario(
            sandbox.url, args.limit, f"backlog {plan.characters} chars", guilds,
            loners[: plan.adds], plan.backlog_window, rng,
        )  # fmt: skip
        idle = await run_scenario(
            sandbox.url, args.limit, "no backlog", [], loners[plan.adds : 2 * plan.adds],
            plan.idle_window, rng,
        )  # fmt: skip
    print(
        f"limit {args.limit}/s (strict sliding window), one worker; backlog {plan.guilds} guilds "
        f"x {plan.roster} = {plan.characters} characters\n{plan.adds} manual adds per scenario "
        f"at seeded random times over {plan.backlog_window:.0f}s from the backlog's characters "
        f"phase ({backlog.lead_in:.1f}s after start) / over {plan.idle_window:.0f}s (no backlog)"
    )
    print(
        f"{'scenario':<22} {'ok':>7} {'in bklg':>7} {'p50 s':>7} {'p95 s':>7} {'max s':>7} "
        f"{'queued p50':>10} {'ran p50':>7} {'slot p50':>8} {'slot max':>8} "
        f"{'requests':>8} {'429s':>5}"
    )
    print(_row(idle))
    print(_row(backlog))
    print("where the time goes, mean per add in seconds (from the adds' child histories):")
    print(
        f"{'scenario':<22} {'total':>6} {'update+scheduler':>16} {'child wf tasks':>14} "
        f"{'act queue':>9} {'track act':>9} {'sync act':>8} {'loop lag p95/max ms':>19}"
    )
    print(_breakdown_row(idle))
    print(_breakdown_row(backlog))
    p95_idle = _percentile([a.latency for a in idle.adds], 95)
    p95_backlog = _percentile([a.latency for a in backlog.adds], 95)
    ratio = p95_backlog / p95_idle if p95_idle > 0 else math.inf
    throttled = idle.stats.get("throttled", 0) + backlog.stats.get("throttled", 0)
    verdict = "met" if ratio <= 2.0 else "NOT met"
    print(
        f"p95 ratio backlog / no backlog: {ratio:.2f} (target ≤ 2.00: {verdict}); "
        f"sandbox 429s: {throttled}; backlog characters synced when stopped: "
        f"{backlog.backlog_synced if backlog.backlog_synced is not None else '?'}"
        f"/{plan.characters}"
    )


if __name__ == "__main__":
    asyncio.run(main())
