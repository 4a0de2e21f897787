"""A worker SIGKILLed right after a ZwiftRacing bulk POST: the one restarted in its place waits out
the rest of the POST's window — held in Postgres, not in the dead process — before the next POST,
and the strict sandbox answers no 429; the club ends exactly as the sandbox has it.

Real `python worker.py` processes, the real dev server and Postgres, the sandbox at time scale
120 (a bulk POST window of 15 minutes is 7.5 s, longer than an activity waits in place; the club
window is set to 6 minutes, 3 s, so the second page comes quickly).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import uuid

import pytest
from sqlalchemy import text

from activities.zwift_types import ZwiftSyncInput
from sandbox.admin_client import admin
from sandbox.server import SandboxProcess
from sandbox.zwift import API_PREFIX, ZwiftSandboxConfig
from sandbox.zwift_world import ZwiftWorldConfig
from storage import zwift as db
from storage.db import create_engine
from tests.integration.worker_process import kill_and_replace
from workflows.zwift import ZwiftSync

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
SCALE = 120.0
POST_WINDOW = 900.0 / SCALE


async def test_a_killed_worker_s_bulk_post_window_is_waited_out_by_its_replacement(
    client, temporal_env, database_url, task_queue, tmp_path
):
    world = ZwiftWorldConfig(seed=21, club_sizes=(1500,), clubless=0, past_events=0,
                             urgent_events=0, near_events=0, far_events=0)  # fmt: skip
    config = ZwiftSandboxConfig(world=world, time_scale=SCALE, clubs=(1, 360.0))
    engine = create_engine(database_url, pool_size=1)
    with SandboxProcess(config) as sandbox:
        truth = await admin(sandbox.url, "truth")
        club = int(truth["clubs"][0]["club_id"])
        async with engine.begin() as conn:
            await db.track_club(conn, club)
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
            "TEMPORAL_TASK_QUEUE": task_queue,
            "ZWIFT_API_BASE_URL": sandbox.url + API_PREFIX,
            "ZWIFT_API_KEY": config.api_key,
            "ZWIFT_TIME_SCALE": str(SCALE),
            "ZWIFT_RATE_CLUBS": "1/360",
            "RATE_LIMIT_BACKEND": "postgres",
            "LOG_LEVEL": "WARNING",
        }
        handle = await client.start_workflow(
            ZwiftSync.run,
            ZwiftSyncInput(club_id=club, kind="riders"),
            id=f"zwift-sync/{club}/riders/crash-{uuid.uuid4().hex[:6]}",
            task_queue=task_queue,
        )
        log = tmp_path / "worker.log"

        async def posted() -> None:  # the first bulk POST answered
            for _ in range(600):
                if (await admin(sandbox.url, "stats"))["by_family"]["riders_post"] >= 1:
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(f"no bulk POST within 30 s: {log.read_text()[-2000:]}")

        result, _ = await kill_and_replace(env, log, posted, handle.result(), 90)
        stats = await admin(sandbox.url, "stats")
    async with engine.connect() as conn:
        posts = [
            r.at
            for r in await conn.execute(
                text("SELECT at FROM zwift_sync_log WHERE endpoint = 'riders_post' ORDER BY at")
            )
        ]
        members = set(
            (
                await conn.execute(
                    text("SELECT rider_id FROM zwift_riders WHERE club_id = :c"), {"c": club}
                )
            ).scalars()
        )
    await engine.dispose()
    print(f"\nbulk POSTs at {[p.isoformat(timespec='milliseconds') for p in posts]}, {stats}")
    assert stats["throttled"] == 0, stats["throttled_by_family"]
    assert stats["max_arrivals_in_window"]["riders_post"] == 1  # the sandbox's own count
    assert result.status == "completed"
    assert members == set(truth["clubs"][0]["rider_ids"])
    assert stats["by_family"]["riders_post"] >= 2
    # each POST a whole window after the one before, across the kill (the log row is written
    # after the answer, so the gap is at least the window less one request's time)
    for before, after in itertools.pairwise(posts):
        assert (after - before).total_seconds() >= POST_WINDOW - 0.5, posts
