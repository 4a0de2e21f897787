"""Stand-in children for scheduler tests: they take a set time and report back like real ones.

Kept in their own module with workflow-safe imports only (the workflow sandbox imports it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from providers.ratelimit import Priority
    from workflows.plans import ChildPlan
    from workflows.scheduler_types import SyncRequest
    from workflows.visibility import report_done


@dataclass
class FakeSyncInput:
    seconds: float
    report_to: str | None = None


@workflow.defn(name="FakeSync")
class FakeSync:
    @workflow.run
    async def run(self, inp: FakeSyncInput) -> None:
        if inp.seconds > 0:
            await workflow.sleep(timedelta(seconds=inp.seconds))
        await report_done(inp.report_to, "completed")


class FakePlan:
    """Every kind starts a FakeSync taking `durations[kind]` seconds (default 60)."""

    def __init__(self, durations: dict[str, float] | None = None) -> None:
        self.durations = durations or {}

    def default_priority(self, kind: str) -> int:
        return (
            Priority[kind.upper()] if kind.upper() in Priority.__members__ else Priority.INCREMENTAL
        )

    def child(
        self, provider: str, scope: str, request: SyncRequest, seq: int, now: datetime
    ) -> ChildPlan:
        seconds = self.durations.get(request.kind, 60.0)
        return ChildPlan(
            workflow="FakeSync",
            id=f"fake/{scope}/{request.kind}/{request.key or '-'}/{request.request_id}",
            summary=f"fake {request.kind}",
            build_arg=lambda report_to: FakeSyncInput(seconds, report_to),
        )


@dataclass
class DayChildInput:
    kind: str
    seconds: float
    more: bool
    report_to: str | None = None


@workflow.defn(name="ZwiftDayChild")
class ZwiftDayChild:
    """A ZwiftRacing kind's stand-in (tests/timeskip/test_zwift_day.py): takes its time, then
    ends ``more`` (a far slice with the rest of its pass left) or completed."""

    @workflow.run
    async def run(self, inp: DayChildInput) -> dict[str, str]:
        await workflow.sleep(timedelta(seconds=inp.seconds))
        status = "more" if inp.more else "completed"
        await report_done(inp.report_to, status)
        return {"status": status}


@dataclass
class DayDriverInput:
    scheduler_id: str
    adds_at: list[float]  # seconds after the start: a manual rider add each
    day_seconds: float


@workflow.defn(name="ZwiftDayDriver")
class ZwiftDayDriver:
    """Sends the manual adds of a simulated day at their times (so the test only waits for this
    workflow's result while the server skips time), then sleeps out the day. Returns each add's
    rider key and when it was sent, as ISO times."""

    @workflow.run
    async def run(self, inp: DayDriverInput) -> dict[str, str]:
        began = workflow.now()
        sent: dict[str, str] = {}
        handle = workflow.get_external_workflow_handle(inp.scheduler_id)
        for n, at in enumerate(inp.adds_at):
            await workflow.sleep(began + timedelta(seconds=at) - workflow.now())
            key = str(5574 + n)
            request = SyncRequest(kind="rider", key=key, priority=Priority.MANUAL,
                                  reason="manual add", request_id=f"add-{n}")  # fmt: skip
            sent[key] = workflow.now().isoformat()
            await handle.signal("enqueue", request)
        await workflow.sleep(began + timedelta(seconds=inp.day_seconds) - workflow.now())
        return sent
