"""`python starter.py demo`: the whole product on one machine, against the sandbox.

It never touches the user's data: whatever DATABASE_URL and TEMPORAL_ADDRESS say, the demo runs
its own embedded Postgres and its own in-memory Temporal dev server (free ports, a temporary
directory removed at the end), the Battle.net sandbox in its own process and a worker on its own
task queue in this one. It tracks the sandbox's guilds, runs a full sync and prints what was
stored and how close to the limit it ran; then (``--zwift-seconds``, 30 by default) it runs a
ZwiftRacing club scheduler per sandbox club at time scale 360 — every kind at once, most urgent
first, a manual rider add — and prints what was stored, the calls per endpoint and the 429s.

One Ctrl-C stops it within seconds: the sync is cancelled and its workflow terminated (nothing
is left "Running"), the worker stops without waiting for running activities, the servers stop
last and the temporary directory goes; one line says so, exit 130 (0 for a SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr

import runtime
from activities.types import BattleNetSyncInput
from runtime import connect
from sandbox.admin_client import admin
from sandbox.battlenet import BattleNetSandboxConfig
from sandbox.server import SandboxProcess
from sandbox.world import BattleNetWorldConfig
from settings import Settings
from storage import battlenet as db
from storage.db import create_engine
from storage.migrate import upgrade
from storage.status import database_status
from worker import StopSignal, build_worker
from workflows.battlenet import BattleNetSync


@dataclass
class DemoServices:
    database_url: str
    temporal_address: str
    temporal_ui: str


@asynccontextmanager
async def own_services(namespace: str) -> AsyncIterator[DemoServices]:
    """A Postgres and a Temporal of the demo's own, in a temporary directory: never the user's."""
    home = Path(tempfile.mkdtemp(prefix="ratesync-demo-"))
    started: list[Any] = []
    try:
        pg = await asyncio.to_thread(
            runtime.start_postgres, home, runtime.free_port(), fast_unsafe=True
        )
        started.append(pg)
        ui_port = runtime.free_port()
        tmp = await asyncio.to_thread(
            runtime.start_temporal,
            home, runtime.free_port(), ui_port, namespace, persistent=False,
        )  # fmt: skip
        started.append(tmp)
        await asyncio.to_thread(upgrade, pg.url())
        yield DemoServices(pg.url(), tmp.address, f"http://127.0.0.1:{ui_port}")
    finally:
        for server in reversed(started):
            await asyncio.to_thread(server.stop)
        shutil.rmtree(home, ignore_errors=True)


async def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    """The demo, stopped cleanly by one SIGINT or SIGTERM (asyncio's own Ctrl-C handling
    cancelled every task at once, the worker's running activities among them: a traceback for
    each, and a run that needed a second Ctrl-C)."""
    stop = StopSignal(asyncio.get_running_loop())
    finished = await stop.until(_demo(args, settings))
    if finished is not None:
        return finished
    print("interrupted: the demo stopped; its servers and temporary data are gone",
          file=sys.stderr, flush=True)  # fmt: skip
    return stop.exit_code


@contextmanager
def _sandbox(config: Any) -> Iterator[SandboxProcess]:
    """The sandbox process, spawned with SIGINT blocked: it inherits the blocked signal, so a
    terminal's Ctrl-C (sent to the whole foreground group) stops the demo alone, which then
    stops the sandbox (it used to die first, printing a KeyboardInterrupt traceback of its
    own). A Ctrl-C during the spawn waits, and reaches the demo once unblocked."""
    sandbox = SandboxProcess(config)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        sandbox.start()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    try:
        yield sandbox
    finally:
        sandbox.stop()


async def _demo(args: argparse.Namespace, settings: Settings) -> int:
    world = BattleNetWorldConfig(
        regions=("eu",), guilds_per_region=args.guilds, roster_min=30, roster_max=args.roster_max
    )
    config = BattleNetSandboxConfig(
        world=world, per_second=settings.BNET_RATE_PER_SECOND, per_hour=settings.BNET_RATE_PER_HOUR
    )
    with _sandbox(config) as sandbox:
        demo_settings = settings.model_copy(
            update={
                "BNET_API_BASE_URL": sandbox.url,
                "BNET_OAUTH_URL": f"{sandbox.url}/token",
                "BNET_CLIENT_ID": config.client_id,
                "BNET_CLIENT_SECRET": SecretStr(config.client_secret),
            }
        )
        async with own_services(settings.TEMPORAL_NAMESPACE) as svc:
            print(f"sandbox:  {sandbox.url}  (Battle.net imitation, {config.per_second}/s)")
            print(f"Web UI:   {svc.temporal_ui}  (the demo's own Temporal; its own database too)")
            guilds = await admin(sandbox.url, "truth/guilds?region=eu")
            engine = create_engine(svc.database_url, pool_size=2)
            try:
                async with engine.begin() as conn:
                    for g in guilds:
                        await db.track_guild(conn, "eu", g["realm_slug"], g["name"])
                print(f"tracking {len(guilds)} sandbox guilds; syncing…", flush=True)
                client = await connect(svc.temporal_address, settings.TEMPORAL_NAMESPACE)
                await _sync(client, args, demo_settings, svc, engine, sandbox.url, config)
                if args.zwift_seconds > 0:
                    await _zwift(client, args.zwift_seconds, settings, svc, engine)
                if args.keep:
                    print(f"open {svc.temporal_ui} ; Ctrl-C to stop", flush=True)
                    await _forever()
            finally:
                await engine.dispose()
    return 0


async def _sync(
    client: Any,
    args: argparse.Namespace,
    settings: Settings,
    svc: DemoServices,
    engine: Any,
    sandbox_url: str,
    config: BattleNetSandboxConfig,
) -> None:
    queue = f"demo-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    async with build_worker(
        client, settings, svc.database_url, queue, graceful_shutdown=timedelta(0)
    ) as parts:
        handle = None
        try:
            async with parts.worker:
                handle = await client.start_workflow(
                    BattleNetSync.run,
                    BattleNetSyncInput(region="eu", full=True, batch_size=25),
                    id=f"battlenet-sync/eu/demo-{time.strftime('%Y%m%dT%H%M%S')}",
                    task_queue=queue,
                    static_summary="Demo: full Battle.net sync of the sandbox",
                )
                counts = await handle.result()
                elapsed = time.monotonic() - started
                stored = await database_status(engine)
                stats = await admin(sandbox_url, "stats")
                _summary(counts.as_dict(), stored, stats, elapsed, config.per_second)
        finally:
            # ended early (Ctrl-C): leave nothing "Running". After the worker stopped, so its
            # cancelled activities still had a workflow to report to (else a warning for each).
            if handle is not None:
                with suppress(Exception):
                    if (await handle.describe()).status.name == "RUNNING":
                        await handle.terminate("the demo ended")


def _summary(
    counts: dict[str, int],
    stored: dict[str, Any],
    stats: dict[str, Any],
    elapsed: float,
    limit: int,
) -> None:
    span = (stats.get("last_request_at") or 0) - (stats.get("first_request_at") or 0)
    rate = stats["requests"] / span if span > 0 else 0.0
    summary = {
        "guilds": stored["guilds"]["synced"],
        "members": stored["members"]["current"],
        "characters_stored": stored["characters"]["with_profile"],
        "characters_missing_404": stored["characters"]["private_or_missing"],
        "requests_made": stats["requests"],
        "429s_received": stats["throttled"],
        "max_requests_in_any_1s_window": stats["max_in_window"]["1"],
        "elapsed_seconds": round(elapsed, 1),
        "achieved_rate_per_second": round(rate, 1),
        "limit_per_second": limit,
        "rate_ratio": round(rate / limit, 3),
    }
    print("summary:", json.dumps(summary, indent=2))
    print(f"workflow counts: {counts}")


ZWIFT_SCALE = 360.0  # 1 per hour becomes 1 per 10 s


async def _zwift(
    client: Any, seconds: float, settings: Settings, svc: DemoServices, engine: Any
) -> None:
    """ZwiftRacing: a club scheduler per sandbox club for ``seconds`` (their tracked events
    spread over them), one manual rider add, then what was stored and how the calls went."""
    from cli.scheduler import add, start
    from sandbox.zwift import API_PREFIX, ZwiftSandboxConfig
    from sandbox.zwift_world import ZwiftWorldConfig
    from storage import zwift as zdb

    world = ZwiftWorldConfig(
        seed=7, club_sizes=(1100, 40), clubless=5, past_events=2, urgent_events=1,
        near_events=2, far_events=2, signups_min=5, signups_max=30,
    )  # fmt: skip
    config = ZwiftSandboxConfig(world=world, time_scale=ZWIFT_SCALE)
    queue = f"demo-zwift-{uuid.uuid4().hex[:6]}"
    with _sandbox(config) as sandbox:
        zsettings = settings.model_copy(
            update={
                "ZWIFT_API_BASE_URL": sandbox.url + API_PREFIX,
                "ZWIFT_API_KEY": SecretStr(config.api_key),
                "ZWIFT_TIME_SCALE": ZWIFT_SCALE,
                "TEMPORAL_TASK_QUEUE": queue,
            }
        )
        truth = await admin(sandbox.url, "truth")
        clubs = [int(c["club_id"]) for c in truth["clubs"]]
        async with engine.begin() as conn:
            for club in clubs:
                await zdb.track_club(conn, club)
            for n, event in enumerate(truth["events"]):
                await zdb.track_event(conn, int(event["event_id"]), clubs[n % len(clubs)])
        print(
            f"ZwiftRacing: sandbox {sandbox.url} at time scale {ZWIFT_SCALE:g}; club schedulers "
            f"for {', '.join(map(str, clubs))} for {seconds:g} s…",
            flush=True,
        )
        rider = next(int(r) for r, v in truth["riders"].items() if v["club_id"] is None)
        began = time.monotonic()
        async with build_worker(
            client, zsettings, svc.database_url, queue, graceful_shutdown=timedelta(0)
        ) as parts:
            try:
                async with parts.worker:
                    for club in clubs:
                        await start(client, "zwift", str(club), zsettings)
                    await asyncio.sleep(min(2.0, seconds / 2))
                    asked = time.monotonic()
                    args = argparse.Namespace(
                        entity="rider", club=clubs[0], rider_id=rider, priority="manual",
                        wait=True, timeout=30.0,
                    )  # fmt: skip
                    added = await add(client, args, zsettings)
                    latency = time.monotonic() - asked
                    await asyncio.sleep(max(0.0, seconds - (time.monotonic() - began)))
            finally:
                await _end_zwift(client, clubs)
        stored = (await _stored(engine))["zwift"]
        stats = await admin(sandbox.url, "stats")
    summary = {
        **stored,
        "manual_add": f"rider {rider} {added.get('status')} in {latency:.2f}s",
        "calls_by_endpoint": stats["by_family"],
        "429s_received": stats["throttled"],
        "simulated_minutes": round((time.monotonic() - began) * ZWIFT_SCALE / 60),
    }
    print("zwift summary:", json.dumps(summary, indent=2))


async def _stored(engine: Any) -> dict[str, Any]:
    from storage.zwift import status

    async with engine.connect() as conn:
        return await status(conn)


async def _end_zwift(client: Any, clubs: list[int]) -> None:
    """Nothing left running: the club schedulers and their children."""
    for club in clubs:
        with suppress(Exception):
            await client.get_workflow_handle(f"scheduler/zwift/{club}").terminate("demo over")
    with suppress(Exception):
        query = 'WorkflowType = "ZwiftSync" AND ExecutionStatus = "Running"'
        async for wf in client.list_workflows(query):
            with suppress(Exception):
                await client.get_workflow_handle(wf.id, run_id=wf.run_id).terminate("demo over")


async def _forever() -> None:
    while True:
        await asyncio.sleep(3600)
