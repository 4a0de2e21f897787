"""Issue 11 item 9: one Battle.net sync per region at a time.

Two `sync battlenet --region eu` used to start two BattleNetSync runs (ids stamped to the
second) doing the same work twice; the second now meets the first's id and is refused in one
line, while another region still starts. The Scheduler's sync child takes the same id (it was
stamped too), so a scheduled sync meets a CLI-started one instead of running beside it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from providers.ratelimit import Priority
from tests.cli_support import run_cli, terminate
from tests.scheduler_support import FakeOf, fake_scheduler, started_children
from workflows.battlenet import BattleNetPlan
from workflows.scheduler import Scheduler
from workflows.scheduler_types import SyncRequest
from workflows.visibility import region_sync_id

pytestmark = [pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(env, *args, timeout=120)


def test_a_second_sync_of_the_same_region_is_refused(temporal_env, database_url, task_queue):
    address = temporal_env.client.service_client.config.target_host
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "TEMPORAL_ADDRESS": address,
        "TEMPORAL_TASK_QUEUE": task_queue,  # nobody polls it: the runs stay open
        "BNET_CLIENT_ID": "unused",
        "BNET_CLIENT_SECRET": "unused",
    }
    started: list[str] = []
    try:
        first = _cli(env, "sync", "battlenet", "--region", "eu")
        assert first.returncode == 0, first.stderr
        started.append("battlenet-sync/eu")
        second = _cli(env, "sync", "battlenet", "--region", "eu")
        assert second.returncode == 1, second.stdout + second.stderr
        line = second.stderr.strip().splitlines()[-1]
        assert "already running" in line and "battlenet-sync/eu" in line, line
        other = _cli(env, "sync", "battlenet", "--region", "us")
        assert other.returncode == 0, other.stderr
        started.append("battlenet-sync/us")
    finally:
        for workflow_id in started:
            terminate(address, workflow_id)


@pytest.mark.asyncio(loop_scope="session")
async def test_the_scheduler_meets_a_running_sync_of_its_region(client):
    region = "tw"
    running = await client.start_workflow(  # as `sync battlenet --region tw` leaves it
        "BattleNetSync", id=region_sync_id(region), task_queue=f"nobody-{uuid.uuid4().hex[:6]}"
    )
    try:
        async with fake_scheduler(client, plan=FakeOf(BattleNetPlan()), scope=region) as handle:
            await handle.signal(Scheduler.run_now, "sync")
            deadline = time.monotonic() + 30
            while (await handle.query(Scheduler.status)).last_result.get("sync") is None:
                assert time.monotonic() < deadline, "the scheduler never dispatched its sync"
                await asyncio.sleep(0.1)
            status = await handle.query(Scheduler.status)
            assert status.last_result["sync"] == "skipped", status
            assert [c for c, _ in await started_children(handle)] == [region_sync_id(region)]
            assert status.running == []  # the slot is free again
    finally:
        await running.terminate("test over")


@pytest.mark.asyncio(loop_scope="session")
async def test_a_region_sync_submitted_by_update_passes_the_validator(client):
    """The validator plans the request to check it; planning a region sync asked whether the
    one-id patch applies, which a validator may not ask ("read-only function ... patch")."""
    async with fake_scheduler(client, plan=FakeOf(BattleNetPlan()), scope="kr") as handle:
        request = SyncRequest(kind="sync", priority=Priority.URGENT, request_id="sync-kr-1")
        answer = await handle.execute_update(Scheduler.submit, request)
        assert answer.state == "queued" and answer.request_id == "sync-kr-1", answer
