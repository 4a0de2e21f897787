"""A ZwiftRacing club's scheduler on the real dev server, Postgres and the strict sandbox at
time scale 360 (1 per hour becomes 1 per 10 s; ZWIFT_TEST_TIME_SCALE=60 runs it at 60) for at
least a simulated 2 hours: every kind runs at its cadence, manual rider
adds are served within one single-rider window, no call is answered 429, and what is stored
equals the sandbox's truth — a club of more than 1000 riders (two pages, the inclusive cursor's
repeat dropped; two bulk POSTs), every tracked event with its signups, results once finished.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

import pytest
from sqlalchemy import text

from cli.scheduler import add, start
from sandbox.admin_client import admin
from sandbox.server import SandboxProcess
from sandbox.zwift import API_PREFIX, ZwiftSandboxConfig
from sandbox.zwift_world import ZwiftWorldConfig
from settings import Settings
from storage import zwift as db
from storage.db import create_engine
from tests.scheduler_support import end_scheduler
from worker import build_worker
from workflows.scheduler import Scheduler

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
# CI runs it at 360 (about 20 s); issue 13 asks for a simulated 2 hours at 60, which takes two
# minutes: ZWIFT_TEST_TIME_SCALE=60 runs it so (the waits below scale with it)
SCALE = float(os.environ.get("ZWIFT_TEST_TIME_SCALE", "360"))
SLOWER = 360.0 / SCALE


def _settings(url: str, key: str, task_queue: str) -> Settings:
    return Settings(
        ZWIFT_API_BASE_URL=url + API_PREFIX,
        ZWIFT_API_KEY=key,
        ZWIFT_TIME_SCALE=SCALE,
        RATE_LIMIT_BACKEND="postgres",
        TEMPORAL_TASK_QUEUE=task_queue,
    )


def _add_args(club: int, rider: int) -> argparse.Namespace:
    return argparse.Namespace(
        entity="rider", club=club, rider_id=rider, priority="manual", wait=True, timeout=30.0
    )


async def _rows(engine: Any, sql: str, **params: Any) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(sql), params)).all())


async def _until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"{what} not within {timeout}s"
        await asyncio.sleep(0.5)


async def test_a_club_scheduler_keeps_riders_events_signups_and_results_equal_to_the_truth(
    client, database_url, task_queue
):
    world = ZwiftWorldConfig(
        seed=11, club_sizes=(1150, 12), clubless=10, past_events=2, urgent_events=2,
        near_events=2, far_events=2, signups_min=3, signups_max=15,
    )  # fmt: skip
    config = ZwiftSandboxConfig(world=world, time_scale=SCALE)
    engine = create_engine(database_url, pool_size=2)
    with SandboxProcess(config) as sandbox:
        settings = _settings(sandbox.url, config.api_key, task_queue)
        truth = await admin(sandbox.url, "truth")
        big = next(c for c in truth["clubs"] if len(c["rider_ids"]) > 1000)
        club = int(big["club_id"])
        clubless = [int(r) for r, v in truth["riders"].items() if v["club_id"] is None][:3]
        async with engine.begin() as conn:
            await db.track_club(conn, club)
            for event in truth["events"]:
                await db.track_event(conn, int(event["event_id"]), club)
        async with build_worker(client, settings, database_url, task_queue) as parts:
            async with parts.worker:
                handle = await start(client, "zwift", str(club), settings)
                started = time.monotonic()
                latencies = []
                try:
                    await asyncio.sleep(2.0 * SLOWER)  # the first kinds are under way
                    for rider in clubless:
                        began = time.monotonic()
                        outcome = await add(client, _add_args(club, rider), settings)
                        latencies.append(time.monotonic() - began)
                        assert outcome["status"] == "completed", outcome

                    async def riders_done() -> bool:
                        found = await _rows(
                            engine,
                            "SELECT count(*) FROM zwift_riders WHERE club_id = :c "
                            "AND last_synced_at > (SELECT last_synced_at FROM zwift_clubs "
                            "WHERE club_id = :c)",
                            c=club,
                        )
                        return found[0][0] >= len(big["rider_ids"])

                    await _until(riders_done, 90 * SLOWER, "the bulk refresh of the whole club")

                    async def results_done() -> bool:
                        now = (await admin(sandbox.url, "clock"))["now"]
                        finished = [
                            e["event_id"] for e in truth["events"] if e["finishes_at"] <= now
                        ]
                        stored = await _rows(
                            engine,
                            "SELECT count(*) FROM zwift_events WHERE results_synced_at IS NOT "
                            "NULL AND event_id = ANY(:ids)",
                            ids=finished,
                        )
                        return stored[0][0] == len(finished)

                    await _until(results_done, 30 * SLOWER, "results of every finished event")
                    # at least a simulated 2 hours of every kind at its cadence
                    await asyncio.sleep(max(0.0, started + 7200 / SCALE - time.monotonic()))
                    status = await handle.query(Scheduler.status)
                finally:
                    await end_scheduler(handle)
        stats = await admin(sandbox.url, "stats")
        truth = await admin(sandbox.url, "truth")
    print(
        f"\nzwift club at S={SCALE:g}: calls {stats['by_family']}, 429s {stats['throttled']}, "
        f"manual adds {[round(x, 2) for x in latencies]} s, conflicts avoided "
        f"{status.conflicts_avoided}, last {status.last_result}"
    )
    try:
        assert stats["throttled"] == 0, stats["throttled_by_family"]
        # served at once: the single-rider family keeps a place for manual adds
        assert max(latencies) < 2.0, latencies
        assert stats["by_family"]["clubs"] == 2  # two pages, once each
        assert stats["by_family"]["riders_post"] >= 2
        assert status.rejected_total == 0, status.rejected
        assert status.conflicts_avoided >= 1  # event kinds waited for each other
        for kind in ("riders", "urgent", "near", "far", "results"):
            assert status.last_result.get(kind) in ("completed", "more"), (kind, status)

        stored = {
            r.rider_id: r
            for r in await _rows(engine, "SELECT rider_id, club_id, name FROM zwift_riders")
        }
        members = {r for r, v in stored.items() if v.club_id == club}
        assert members == set(big["rider_ids"])
        for rider in [*big["rider_ids"][:50], *clubless]:
            assert stored[rider].name == truth["riders"][str(rider)]["name"]
        added = await _rows(
            engine, "SELECT rider_id FROM zwift_riders WHERE tracked AND added_for_club = :c",
            c=club,
        )  # fmt: skip
        assert {r.rider_id for r in added} == set(clubless)

        events = {e["event_id"]: e for e in truth["events"]}
        rows = await _rows(
            engine, "SELECT event_id, starts_at, signups_synced_at FROM zwift_events"
        )
        assert {r.event_id for r in rows} == set(events)
        for row in rows:
            truth_event = events[row.event_id]
            assert (
                row.starts_at is not None
                and int(row.starts_at.timestamp()) == truth_event["starts_at"]
            )
            signups = await _rows(
                engine,
                "SELECT rider_id FROM zwift_event_signups WHERE event_id = :e",
                e=row.event_id,
            )
            # signups only grow in the sandbox: the list read is a prefix of today's
            assert {s.rider_id for s in signups} <= set(truth_event["signups"])
            if truth_event["class"] in ("past", "running"):
                assert {s.rider_id for s in signups} == set(truth_event["signups"])
            if truth_event["results"] is not None:
                results = await _rows(
                    engine,
                    "SELECT rider_id FROM zwift_event_results WHERE event_id = :e",
                    e=row.event_id,
                )
                assert {r.rider_id for r in results} == set(truth_event["results"])
        logged = await _rows(
            engine, "SELECT count(*), count(*) FILTER (WHERE status = 429) FROM zwift_sync_log"
        )
        assert logged[0][0] == stats["requests"] and logged[0][1] == 0
    finally:
        await engine.dispose()
