"""Run a Scheduler over FakeSync children on any environment, and read what it started."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from tests.fakes import FakePlan, FakeSync
from workflows.plans import register_plan
from workflows.scheduler import Scheduler
from workflows.scheduler_types import SchedulerInput


@asynccontextmanager
async def fake_scheduler(
    client: Client, durations: dict[str, float] | None = None, **fields: Any
) -> AsyncIterator[WorkflowHandle[Scheduler, None]]:
    provider = f"fake-{uuid.uuid4().hex[:6]}"
    register_plan(provider, FakePlan(durations))
    queue = f"sched-{uuid.uuid4().hex[:6]}"
    inp = SchedulerInput(provider=provider, scope="eu", visibility=False, **fields)
    async with Worker(client, task_queue=queue, workflows=[Scheduler, FakeSync]):
        handle = await client.start_workflow(
            Scheduler.run, inp, id=f"scheduler/{provider}/eu", task_queue=queue
        )
        try:
            yield handle
        finally:
            await handle.terminate("test over")


async def started_children(handle: WorkflowHandle[Any, Any]) -> list[tuple[str, datetime]]:
    """(child id, time) of every child the scheduler started, across its runs, in order."""
    out: list[tuple[str, datetime]] = []
    client = handle._client
    run_id: str | None = handle.first_execution_run_id or handle.result_run_id
    while run_id:
        run = client.get_workflow_handle(handle.id, run_id=run_id)
        run_id = None
        async for event in run.fetch_history_events():
            if event.HasField("start_child_workflow_execution_initiated_event_attributes"):
                attrs = event.start_child_workflow_execution_initiated_event_attributes
                out.append((attrs.workflow_id, event.event_time.ToDatetime()))
            if event.HasField("workflow_execution_continued_as_new_event_attributes"):
                can = event.workflow_execution_continued_as_new_event_attributes
                run_id = can.new_execution_run_id
    return out


def key_of(child_id: str) -> str:
    """fake/<scope>/<kind>/<realm>/<name>/<request id> → <name>."""
    return child_id.split("/")[4]
