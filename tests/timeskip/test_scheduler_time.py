"""The Scheduler over days of simulated time: cadence and pause/resume. Children are FakeSync
stand-ins that take a set time and report back.

Continue-as-new, priority order and ageing run on the real dev server instead
(tests/integration/test_scheduler_queue.py): the legacy time-skipping server stops skipping
time once a run has continued-as-new with abandoned children (RPC "Timeout expired").
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.scheduler_support import fake_scheduler
from workflows.scheduler import Scheduler
from workflows.scheduler_types import SyncRequest

pytestmark = pytest.mark.asyncio(loop_scope="session")


def scheduler(env: WorkflowEnvironment, durations: dict[str, float], **kw: Any) -> Any:
    return fake_scheduler(env.client, durations, **kw)


async def test_cadence_runs_on_schedule_over_days(skipping_env):
    async with scheduler(skipping_env, {"sync": 600}, cadences={"sync": "6h"}) as handle:
        await skipping_env.sleep(timedelta(days=2, minutes=1))
        status = await handle.query(Scheduler.status)
    # t = 0, 6h, …, 48h: nine runs, each finished long before the next is due
    assert status.dispatched_total == 9
    assert status.last_result["sync"] == "completed"
    assert status.queue_depth == {}


async def test_pause_holds_everything_and_resume_catches_up(skipping_env):
    async with scheduler(skipping_env, {"sync": 60}, cadences={"sync": "1h"}) as handle:
        await skipping_env.sleep(timedelta(minutes=30))
        await handle.signal(Scheduler.pause)
        await handle.signal(Scheduler.enqueue, SyncRequest(kind="character", key="draenor/x"))
        await skipping_env.sleep(timedelta(days=1))
        paused = await handle.query(Scheduler.status)
        await handle.signal(Scheduler.resume)
        await skipping_env.sleep(timedelta(minutes=5))
        resumed = await handle.query(Scheduler.status)
    assert paused.paused and paused.dispatched_total == 1  # only the run at t=0
    assert paused.queue_depth == {"manual": 1}
    assert not resumed.paused
    assert resumed.dispatched_total >= 2 and resumed.queue_depth == {}
