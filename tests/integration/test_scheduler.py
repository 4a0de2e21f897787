"""The running schedule on the real dev server + Postgres + sandbox: manual adds jump the queue."""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cli import CliError
from cli.scheduler import add, start
from tests.integration.battlenet_support import fetch_all, track_sandbox_guilds
from tests.sandbox_helpers import admin, battlenet_sandbox, sandbox_settings
from tests.scheduler_support import end_scheduler
from worker import build_worker
from workflows.scheduler import Scheduler

pytestmark = [pytest.mark.integration]
session_loop = pytest.mark.asyncio(loop_scope="session")
ROOT = Path(__file__).resolve().parents[2]


def _add_args(region: str, realm: str, name: str, **kw: object) -> argparse.Namespace:
    values = {"entity": "character", "region": region, "realm": realm, "name": name,
              "priority": "manual", "wait": True, "timeout": 60.0}  # fmt: skip
    values.update(kw)
    return argparse.Namespace(**values)


async def _wait_requests(url: str, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while admin(url, "stats")["requests"] < n:
        assert time.monotonic() < deadline, f"fewer than {n} requests after {timeout}s"
        await asyncio.sleep(0.1)


@session_loop
async def test_manual_add_during_a_large_running_sync_finishes_within_seconds(
    client, database_url, task_queue
):
    world = {"guilds_per_region": 3, "roster_min": 120, "roster_max": 120,
             "guildless_characters": 3, "hidden_ratio": 0.0, "per_second": 50}  # fmt: skip
    with battlenet_sandbox(**world) as sb:
        await track_sandbox_guilds(database_url, sb.url)
        settings = sandbox_settings(sb.url, TEMPORAL_TASK_QUEUE=task_queue, BNET_RATE_PER_SECOND=50)
        members = {c["id"]: c for c in admin(sb.url, "truth/characters?region=eu")}
        async with build_worker(client, settings, database_url, task_queue) as parts:
            async with parts.worker:
                handle = await start(client, "battlenet", "eu", settings, every="1d")
                try:
                    await _wait_requests(sb.url, 300)  # the bulk sync is well under way
                    before = await fetch_all(database_url)
                    # an entity of the running master's backlog that it has not reached yet:
                    # the last one in the order it syncs them (never synced, highest row id)
                    pending = [c for c in before["characters"] if c["last_synced_at"] is None]
                    assert pending, "the backlog was already done"
                    last = max(pending, key=lambda c: c["id"])
                    loner = members[last["bnet_character_id"]]
                    began = time.monotonic()
                    outcome = await add(
                        client, _add_args("eu", loner["realm_slug"], loner["name"]), settings
                    )
                    latency = time.monotonic() - began
                    status = await handle.query(Scheduler.status)
                finally:
                    await end_scheduler(handle)
        print(f"\nmanual add latency during a 360-character sync at 50/s: {latency:.2f}s")
        assert outcome["status"] == "completed", outcome
        assert latency < 5.0
        assert any(r.startswith("battlenet-sync/") for r in status.running), (
            "the bulk sync was still running when the add finished"
        )
        rows = await fetch_all(database_url)
        stored = next(c for c in rows["characters"] if c["bnet_character_id"] == loner["id"])
        truth = admin(sb.url, f"truth/character/eu/{loner['realm_slug']}/{loner['name_slug']}")
        assert stored["profile_json"] == truth["profile"]
        assert stored["equipment_json"] == truth["equipment"]
        assert stored["tracked"]
        # visible by search attribute in the Web UI / `temporal workflow list --query`
        found: list[str] = []
        for _ in range(50):
            query = 'Provider = "battlenet" AND Scope = "eu" AND SyncKind = "character"'
            found = [wf.id async for wf in client.list_workflows(query)]
            if found:
                break
            await asyncio.sleep(0.2)
        assert any(w.startswith(f"character/eu/{loner['realm_slug']}/") for w in found)


@session_loop
async def test_temporal_setup_registers_the_search_attributes(client):
    from cli.scheduler import setup_search_attributes
    from runtime import missing_search_attributes

    await setup_search_attributes(client)  # idempotent on a server that has them
    assert await missing_search_attributes(client) == []


@session_loop
async def test_add_wait_reports_a_clear_timeout(client, database_url, task_queue):
    with battlenet_sandbox(guilds_per_region=1, roster_min=5, roster_max=5) as sb:
        settings = sandbox_settings(sb.url, TEMPORAL_TASK_QUEUE=task_queue)
        async with build_worker(client, settings, database_url, task_queue) as parts:
            async with parts.worker:
                handle = await start(client, "battlenet", "eu", settings, every="1d")
                try:
                    await handle.signal(Scheduler.pause)
                    with pytest.raises(CliError) as err:
                        await add(client, _add_args("eu", "draenor", "Foo", timeout=1.5), settings)
                finally:
                    await end_scheduler(handle)
        message = str(err.value)
        assert "timed out after 1.5s" in message and "still queued or running" in message
        assert "\n" not in message


@session_loop
async def test_fifty_concurrent_add_waits_all_succeed_while_the_scheduler_continues_as_new(
    client, database_url, task_queue
):
    """`add --wait` used to hold a workflow update open for the whole sync: the 11th at once
    was refused ("limit on number of concurrent in-flight updates has been reached (10)") and
    the open updates kept the scheduler from continuing-as-new. Now the update answers at once
    and each caller waits on its own child workflow."""
    # 20 requests/s: the 50 syncs take ~15 s, longer than a client retries a refused update
    world = {"guilds_per_region": 2, "roster_min": 30, "roster_max": 30,
             "guildless_characters": 0, "hidden_ratio": 0.0, "per_second": 20}  # fmt: skip
    with battlenet_sandbox(**world) as sb:
        settings = sandbox_settings(sb.url, TEMPORAL_TASK_QUEUE=task_queue, BNET_RATE_PER_SECOND=20)
        # region us: its scheduler is this test's alone (the other tests here use eu's)
        characters = admin(sb.url, "truth/characters?region=us")[:50]
        assert len(characters) == 50
        async with build_worker(client, settings, database_url, task_queue) as parts:
            async with parts.worker:
                handle = await start(client, "battlenet", "us", settings, every="off")
                try:
                    await handle.signal(Scheduler.set_event_budget, 20)  # continue-as-new often
                    outcomes = await asyncio.gather(
                        *(
                            add(client, _add_args("us", c["realm_slug"], c["name"], timeout=120.0),
                                settings)
                            for c in characters
                        ),
                        return_exceptions=True,
                    )  # fmt: skip
                    done_at = datetime.now(UTC)
                    continued, held = await _runs(client, handle)
                finally:
                    await end_scheduler(handle)
    errors = [o for o in outcomes if not isinstance(o, dict)]
    assert errors == [], [(getattr(e, "status", None), e) for e in errors[:3]]
    added = [o for o in outcomes if isinstance(o, dict)]
    assert [o["status"] for o in added] == ["completed"] * 50, added[:3]
    assert held == [], f"updates held open across workflow tasks (events apart): {held[:5]}"
    assert continued and min(continued) < done_at, "it did not continue-as-new meanwhile"
    assert len({o["child_id"] for o in added}) == 50
    rows = await fetch_all(database_url)
    synced = {c["bnet_character_id"] for c in rows["characters"] if c["last_synced_at"]}
    assert {c["id"] for c in characters} <= synced


async def _runs(client, handle) -> tuple[list[datetime], list[int]]:
    """When each run of the scheduler continued-as-new, and how many events each update that
    was not completed in the task that accepted it stayed open."""
    continued: list[datetime] = []
    held: list[int] = []
    run_id = handle.first_execution_run_id or handle.result_run_id
    while run_id:
        run = client.get_workflow_handle(handle.id, run_id=run_id)
        run_id = None
        accepted: dict[str, int] = {}
        async for event in run.fetch_history_events():
            if event.HasField("workflow_execution_update_accepted_event_attributes"):
                attrs = event.workflow_execution_update_accepted_event_attributes
                accepted[attrs.protocol_instance_id] = event.event_id
            if event.HasField("workflow_execution_update_completed_event_attributes"):
                meta = event.workflow_execution_update_completed_event_attributes.meta
                opened = accepted.pop(meta.update_id, event.event_id)
                if event.event_id - opened > 3:
                    held.append(event.event_id - opened)
            if event.HasField("workflow_execution_continued_as_new_event_attributes"):
                continued.append(event.event_time.ToDatetime().replace(tzinfo=UTC))
                can = event.workflow_execution_continued_as_new_event_attributes
                run_id = can.new_execution_run_id
        held.extend(-1 for _ in accepted)  # accepted and never completed in that run
    return continued, held
