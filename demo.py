"""`python starter.py demo`: the whole product on one machine, against the sandbox.

Embedded Temporal + embedded Postgres (unless TEMPORAL_ADDRESS / DATABASE_URL say otherwise),
the Battle.net sandbox in its own process, and a worker in this one. It tracks the sandbox's
guilds, runs a full sync and prints what was stored and how close to the limit it ran.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from typing import Any

from pydantic import SecretStr

from activities.types import BattleNetSyncInput
from cli.common import services
from runtime import connect
from sandbox.admin_client import admin
from sandbox.battlenet import BattleNetSandboxConfig
from sandbox.server import SandboxProcess
from sandbox.world import BattleNetWorldConfig
from settings import Settings
from storage import battlenet as db
from storage.db import create_engine
from storage.status import database_status
from worker import build_worker
from workflows.battlenet import BattleNetSync


async def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    world = BattleNetWorldConfig(
        regions=("eu",), guilds_per_region=args.guilds, roster_min=30, roster_max=args.roster_max
    )
    config = BattleNetSandboxConfig(
        world=world, per_second=settings.BNET_RATE_PER_SECOND, per_hour=settings.BNET_RATE_PER_HOUR
    )
    with SandboxProcess(config) as sandbox:
        demo_settings = settings.model_copy(
            update={
                "BNET_API_BASE_URL": sandbox.url,
                "BNET_OAUTH_URL": f"{sandbox.url}/token",
                "BNET_CLIENT_ID": config.client_id,
                "BNET_CLIENT_SECRET": SecretStr(config.client_secret),
            }
        )
        async with services(demo_settings, temporal=True) as svc:
            print(f"sandbox:  {sandbox.url}  (Battle.net imitation, {config.per_second}/s)")
            if svc.temporal_ui:
                print(f"Web UI:   {svc.temporal_ui}")
            guilds = await admin(sandbox.url, "truth/guilds?region=eu")
            engine = create_engine(svc.database_url, pool_size=2)
            async with engine.begin() as conn:
                for g in guilds:
                    await db.track_guild(conn, "eu", g["realm_slug"], g["name"])
            print(f"tracking {len(guilds)} sandbox guilds; syncing…", flush=True)
            client = await connect(svc.temporal_address, settings.TEMPORAL_NAMESPACE)
            queue = f"demo-{uuid.uuid4().hex[:6]}"
            started = time.monotonic()
            async with build_worker(client, demo_settings, svc.database_url, queue) as parts:
                async with parts.worker:
                    counts = await client.execute_workflow(
                        BattleNetSync.run,
                        BattleNetSyncInput(region="eu", full=True, batch_size=25),
                        id=f"battlenet-sync/eu/demo-{time.strftime('%Y%m%dT%H%M%S')}",
                        task_queue=queue,
                        static_summary="Demo: full Battle.net sync of the sandbox",
                    )
                    elapsed = time.monotonic() - started
                    stored = await database_status(engine)
                    stats = await admin(sandbox.url, "stats")
                    _summary(counts.as_dict(), stored, stats, elapsed, config.per_second)
                    if args.keep and svc.temporal_ui:
                        print(f"open {svc.temporal_ui} ; Ctrl-C to stop", flush=True)
                        await _forever()
            await engine.dispose()
    return 0


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


async def _forever() -> None:
    while True:
        await asyncio.sleep(3600)
