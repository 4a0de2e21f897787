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
