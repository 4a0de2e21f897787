"""Run a Scheduler over FakeSync children on any environment, and read what it started."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import datetime
from typing import Any

from temporalio.api.enums.v1 import WorkflowTaskFailedCause
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from temporalio.worker import Worker

from tests.fakes import FakePlan, FakeSync, FakeSyncInput
from workflows.plans import ChildPlan, ProviderPlan, register_plan
from workflows.scheduler import Scheduler, child_states
from workflows.scheduler_types import SchedulerInput, SyncRequest


class FakeOf:
    """A real provider's plan (its kinds, keys, scope rules, ids and inputs, built as it builds
    them) whose children are FakeSync stand-ins taking ``seconds``."""

    def __init__(self, real: Any, seconds: float = 0.2) -> None:
        self.real, self.seconds = real, seconds

    def default_priority(self, kind: str) -> int:
        return int(self.real.default_priority(kind))

    def check(self, scope: str, request: SyncRequest) -> None:
        self.real.check(scope, request)

    def __getattr__(self, name: str) -> Any:
        """The real plan's optional parts (``resources``, ``ageing_cap``) where it has them."""
        if name in ("resources", "ageing_cap"):
            return getattr(self.real, name)
        raise AttributeError(name)

    def child(
        self, provider: str, scope: str, request: SyncRequest, seq: int, now: datetime
    ) -> ChildPlan:
        real = self.real.child(provider, scope, request, seq, now)

        def build(report_to: str) -> FakeSyncInput:
            real.build_arg(report_to)  # whatever the real input would raise, it raises
            return FakeSyncInput(self.seconds, report_to)

        return ChildPlan("FakeSync", real.id, real.summary, build)


@asynccontextmanager
async def fake_scheduler(
    client: Client,
    durations: dict[str, float] | None = None,
    *,
    plan: ProviderPlan | None = None,
    scope: str = "eu",
    **fields: Any,
) -> AsyncIterator[WorkflowHandle[Scheduler, None]]:
    """A Scheduler over FakeSync children: ``FakePlan(durations)``, or ``plan``."""
    provider = f"fake-{uuid.uuid4().hex[:6]}"
    register_plan(provider, plan or FakePlan(durations))
    queue = f"sched-{uuid.uuid4().hex[:6]}"
    inp = SchedulerInput(provider=provider, scope=scope, visibility=False, **fields)
    async with Worker(
        client, task_queue=queue, workflows=[Scheduler, FakeSync], activities=[child_states]
    ):
        handle = await client.start_workflow(
            Scheduler.run, inp, id=f"scheduler/{provider}/eu", task_queue=queue
        )
        try:
            yield handle
        finally:
            await end_scheduler(handle)


async def history(handle: WorkflowHandle[Any, Any]) -> AsyncIterator[HistoryEvent]:
    """The events of every run of ``handle``, first to last, across continue-as-new."""
    client = handle._client
    run_id: str | None = handle.first_execution_run_id or handle.result_run_id
    while run_id:
        run = client.get_workflow_handle(handle.id, run_id=run_id)
        run_id = None
        async for event in run.fetch_history_events():
            yield event
            if event.HasField("workflow_execution_continued_as_new_event_attributes"):
                run_id = (
                    event.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
                )


async def end_scheduler(handle: WorkflowHandle[Any, Any], reason: str = "test over") -> None:
    """Terminate the scheduler and every child of it still running. A scheduler's children are
    abandoned when it closes, and one left running with no worker holds its id for good: a
    Battle.net sync's is the region's one id (battlenet-sync/<region>), which every later test
    on the same server would meet."""
    with suppress(RPCError):
        await handle.terminate(reason)
    async for event in history(handle):  # children that did start (not one that met an id)
        if event.HasField("child_workflow_execution_started_event_attributes"):
            child = event.child_workflow_execution_started_event_attributes.workflow_execution
            with suppress(RPCError):  # most have ended by themselves
                await handle._client.get_workflow_handle(
                    child.workflow_id, run_id=child.run_id
                ).terminate(reason)


async def started_children(handle: WorkflowHandle[Any, Any]) -> list[tuple[str, datetime]]:
    """(child id, time) of every child the scheduler started, across its runs, in order."""
    out: list[tuple[str, datetime]] = []
    async for event in history(handle):
        if event.HasField("start_child_workflow_execution_initiated_event_attributes"):
            attrs = event.start_child_workflow_execution_initiated_event_attributes
            out.append((attrs.workflow_id, event.event_time.ToDatetime()))
    return out


def key_of(child_id: str) -> str:
    """fake/<scope>/<kind>/<realm>/<name>/<request id> → <name>."""
    return child_id.split("/")[4]


async def task_failures(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """The failed workflow tasks of every run of ``handle`` (a poisoned scheduler has them).

    Not counted: the server's UnhandledCommand (a signal arrived while a task that would
    continue-as-new was completing; the workflow sees it in the next task), which is normal."""
    unhandled = WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND
    out: list[str] = []
    async for event in history(handle):
        if event.HasField("workflow_task_failed_event_attributes"):
            failed = event.workflow_task_failed_event_attributes
            if failed.cause != unhandled:
                out.append(
                    f"{WorkflowTaskFailedCause.Name(failed.cause)}: {failed.failure.message}"
                )
    return out
