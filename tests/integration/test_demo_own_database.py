"""Issue 11 item 4: the demo never touches the user's data.

It used to track its sandbox guilds in the user's database (DATABASE_URL) and full-sync
everything tracked there against the sandbox, marking the user's real rows 404, and to leave
its `battlenet-sync/eu/demo-…` run "Running" on the user's Temporal. Now it runs on a
Postgres and a Temporal of its own: the user's rows are byte for byte the same afterwards and
the user's Temporal holds no demo workflow.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from storage import battlenet as db
from storage.db import create_engine

pytestmark = [pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]
TABLES = ("guilds", "characters", "guild_members", "sync_runs", "sync_failures")


async def _snapshot(url: str) -> dict[str, list[str]]:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            return {
                t: [
                    r[0]
                    for r in await conn.execute(
                        text(f"SELECT row_to_json(x)::text FROM {t} x ORDER BY id")
                    )
                ]
                for t in TABLES
            }
    finally:
        await engine.dispose()


async def test_demo_leaves_the_users_database_and_temporal_untouched(temporal_env, database_url):
    engine = create_engine(database_url, pool_size=1)
    async with engine.begin() as conn:  # the user's own data: a real guild the demo must not sync
        await db.track_guild(conn, "eu", "stormrage", "avalerion")
        await db.track_guild(conn, "eu", "draenor", "sheday")
    await engine.dispose()
    before = await _snapshot(database_url)
    address = temporal_env.client.service_client.config.target_host
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "TEMPORAL_ADDRESS": address,
        "DATA_DIR": str(ROOT / ".data-never-used"),  # the demo keeps its own temporary dir
    }
    demo = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "starter.py", "demo", "--guilds", "1", "--roster-max", "30",
         "--zwift-seconds", "5"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    assert "summary:" in demo.stdout and '"guilds": 1' in demo.stdout, demo.stdout[-2000:]
    assert "zwift summary:" in demo.stdout and '"429s_received": 0' in demo.stdout
    assert await _snapshot(database_url) == before
    # the session's Temporal is shared with other tests: none of its workflows is the demo's
    demo_runs = [
        wf.id
        async for wf in temporal_env.client.list_workflows()
        if "demo" in wf.id
        or wf.task_queue.startswith("demo-")
        or wf.id.startswith("scheduler/zwift")
    ]
    assert not demo_runs, demo_runs
    assert not (ROOT / ".data-never-used").exists()
