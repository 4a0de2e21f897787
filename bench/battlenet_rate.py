"""How close to Battle.net's limit does a full sync run, and does it ever get a 429?

    .venv/bin/python -m bench.battlenet_rate            # ~60 s of requests at 100/s
    .venv/bin/python -m bench.battlenet_rate --quick    # ~15 s

Real Temporal dev server, real Postgres, the sandbox in its own process enforcing a strict
sliding window, one worker. Side by side, the same sandbox hit by bare HTTP calls paced by
aiolimiter's AsyncLimiter(N, 1) and by our limiter, to show why the limiter is built as it is.
Targets: sync ratio ≥ 0.95, 0 429s, busiest 1-s window ≤ limit.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

import httpx
from aiolimiter import AsyncLimiter

from activities.types import BattleNetSyncInput
from bench.common import throwaway_stack
from providers.ratelimit import RateLimiter, Window
from sandbox.admin_client import admin
from sandbox.battlenet import BattleNetSandboxConfig
from sandbox.server import SandboxProcess
from sandbox.world import BattleNetWorldConfig
from storage import battlenet as db
from storage.db import create_engine
from tests.sandbox_helpers import sandbox_settings
from worker import build_worker
from workflows.battlenet import BattleNetSync


def _rate(stats: dict[str, Any]) -> float:
    span = (stats["last_request_at"] or 0) - (stats["first_request_at"] or 0)
    return stats["requests"] / span if span > 0 else 0.0


async def full_sync(url: str, limit: int) -> dict[str, Any]:
    async with throwaway_stack() as stack:
        guilds = await admin(url, "truth/guilds?region=eu")
        engine = create_engine(stack.database_url, pool_size=1)
        async with engine.begin() as conn:
            for g in guilds:
                await db.track_guild(conn, "eu", g["realm_slug"], g["name"])
        await engine.dispose()
        settings = sandbox_settings(url, BNET_RATE_PER_SECOND=limit, BNET_MAX_CONCURRENT=40)
        await admin(url, "reset", {})
        queue = f"bench-{uuid.uuid4().hex[:6]}"
        started = time.monotonic()
        assert stack.client is not None
        async with build_worker(stack.client, settings, stack.database_url, queue) as parts:
            async with parts.worker:
                counts = await stack.client.execute_workflow(
                    BattleNetSync.run,
                    BattleNetSyncInput(region="eu", full=True, batch_size=50),
                    id=f"battlenet-sync/eu/bench-{uuid.uuid4().hex[:6]}",
                    task_queue=queue,
                )
        elapsed = time.monotonic() - started
        stats = await admin(url, "stats")
    return {"stats": stats, "elapsed": elapsed, "characters": counts.characters}


async def bare_calls(url: str, limit: int, total: int, use_aiolimiter: bool) -> dict[str, Any]:
    """`total` status calls through 20 connections, paced by one limiter or the other."""
    await admin(url, "reset", {})
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{url}/token",
            data={"grant_type": "client_credentials"},
            auth=("sandbox-client", "sandbox-secret"),
        )
    token = answer.json()["access_token"]
    chars = (await admin(url, "truth/characters?region=eu"))[:50]
    naive = AsyncLimiter(limit, 1)
    ours = RateLimiter("bench", [Window(limit, 1.0)])
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=20)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=30) as http:

        async def one(i: int) -> None:
            c = chars[i % len(chars)]
            path = f"{url}/profile/wow/character/{c['realm_slug']}/{c['name_slug']}/status"
            params = {"namespace": "profile-eu"}
            if use_aiolimiter:
                async with naive:
                    await http.get(path, params=params)
            else:
                async with ours.slot():
                    await http.get(path, params=params)

        await asyncio.gather(*(one(i) for i in range(total)))
    return await admin(url, "stats")


def _row(name: str, stats: dict[str, Any], limit: int) -> str:
    rate = _rate(stats)
    return (
        f"{name:<34} {stats['requests']:>8} {rate:>9.1f} {rate / limit:>7.3f} "
        f"{stats['throttled']:>6} {stats['max_in_window']['1']:>10}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="~15 s instead of ~60 s")
    parser.add_argument("--limit", type=int, default=100, help="requests per second")
    args = parser.parse_args()
    roster = 75 if args.quick else 300
    world = BattleNetWorldConfig(regions=("eu",), guilds_per_region=5, roster_min=roster,
                                 roster_max=roster)  # fmt: skip
    config = BattleNetSandboxConfig(world=world, per_second=args.limit)
    with SandboxProcess(config) as sandbox:
        sync = await full_sync(sandbox.url, args.limit)
        naive = await bare_calls(sandbox.url, args.limit, 1500, use_aiolimiter=True)
        ours = await bare_calls(sandbox.url, args.limit, 1500, use_aiolimiter=False)
    print(f"limit {args.limit}/s (strict sliding window), one worker, {sync['characters']} "
          f"characters in {sync['elapsed']:.1f}s")  # fmt: skip
    print(f"{'run':<34} {'requests':>8} {'req/s':>9} {'ratio':>7} {'429s':>6} {'max in 1s':>10}")
    print(_row("full sync (Temporal + Postgres)", sync["stats"], args.limit))
    print(_row("bare calls, aiolimiter(N, 1s)", naive, args.limit))
    print(_row("bare calls, ratesync limiter", ours, args.limit))


if __name__ == "__main__":
    asyncio.run(main())
