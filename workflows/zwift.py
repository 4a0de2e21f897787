"""ZwiftRacing workflows: `ZwiftSync` (one kind of one club's sync) and the club scheduler's plan.

A club's `Scheduler` (the generic one, with :class:`ZwiftPlan`) owns the order of every call:
kinds that read the same endpoint families (urgent, near and far events: events and signups)
never run at once — the plan names each kind's families (``resources``) and the scheduler
starts a request only when none of its families is held by a running one, highest priority
(with ageing) first. So kinds never compete for a window; the windows themselves are the shared
durable budgets (one per family and API key), which also order the calls of other clubs and of
one-offs started from the CLI. A far pass reads a bounded slice per run and ends ``more``: the
scheduler queues its continuation at once, so nearer events go in between.

`ZwiftSync` calls ``zwift_step`` until the kind is done; a step that found its budget spent
for longer than a few seconds makes it sleep on a durable timer (``run_until_done``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.types import HEARTBEAT_SECONDS, FinishRunInput, StartRunInput
    from activities.zwift import EVENT_PASSES, ZwiftActivities
    from activities.zwift_types import (
        ZwiftStep,
        ZwiftStepInput,
        ZwiftSyncInput,
        ZwiftSyncResult,
    )
    from providers.ratelimit import Priority
    from providers.zwift.parse import id_of
    from providers.zwift.spec import SPEC as ZWIFT
    from workflows.kernel import WORK_DEADLINE, db_call, heartbeat, run_until_done
    from workflows.plans import ChildPlan
    from workflows.scheduler_types import SyncRequest
    from workflows.visibility import reporting

STEP_TIMEOUT = timedelta(minutes=2)  # one step: a few seconds of budget wait and two calls
MANUAL_DEADLINE = timedelta(minutes=15)  # a manual add that cannot be served by then fails
# The endpoint families each kind reads: kinds sharing one never run at once in a club.
RESOURCES: dict[str, frozenset[str]] = {
    "riders": frozenset({"clubs", "riders_post"}),
    "urgent": frozenset({"events", "event_signups"}),
    "near": frozenset({"events", "event_signups"}),
    "far": frozenset({"events", "event_signups"}),
    "results": frozenset({"results"}),
    "rider": frozenset(),  # manual adds: the single-rider family keeps a place for them
}
# A ZwiftSync records its run in sync_runs (status, the dashboard, the runs and duration
# metrics) as the other providers' syncs do; histories recorded before it have no such calls.
RUN_ROWS = "zwift-run-rows"


def sync_id(club: str, kind: str, key: str = "") -> str:
    """One sync of a kind per club at a time (a rider add: one per rider)."""
    return f"zwift-sync/{club}/{kind}" + (f"/{key}" if key else "")


@workflow.defn
class ZwiftSync:
    @workflow.run
    async def run(self, inp: ZwiftSyncInput) -> ZwiftSyncResult:
        return await reporting(inp.report_to, self._run(inp), lambda r: r.status)

    async def _run(self, inp: ZwiftSyncInput) -> ZwiftSyncResult:
        if inp.run_id is None and workflow.patched(RUN_ROWS):
            start = StartRunInput("zwift", str(inp.club_id), inp.kind, workflow.info().workflow_id)
            inp.run_id = await workflow.execute_activity_method(
                ZwiftActivities.zwift_start_run, start, **db_call()
            )
        try:
            total = await self._steps(inp)
        except workflow.ContinueAsNewError:
            raise
        except Exception as exc:
            await self._finish(inp, "failed", inp.carried, str(getattr(exc, "cause", None) or exc))
            raise
        await self._finish(inp, "completed", total)
        return total

    async def _finish(
        self, inp: ZwiftSyncInput, status: str, total: ZwiftSyncResult | None, error: str = ""
    ) -> None:
        if inp.run_id is None:
            return
        counts = {} if total is None else {
            "calls": total.calls, "stored": total.stored, "rate_limited": total.rate_limited,
            "more": int(total.status == "more"),
        }  # fmt: skip
        finish = FinishRunInput(inp.run_id, status, counts, int(status == "failed"), error[:300])
        await workflow.execute_activity_method(
            ZwiftActivities.zwift_finish_run, finish, **db_call()
        )

    async def _steps(self, inp: ZwiftSyncInput) -> ZwiftSyncResult:
        total = inp.carried or ZwiftSyncResult(inp.club_id, inp.kind, inp.key)
        checkpoint = inp.checkpoint
        what = f"club {inp.club_id} {inp.kind}" + (f" {inp.key}" if inp.key else "")
        manual = inp.kind == "rider"

        def call(retry: RetryPolicy) -> Awaitable[ZwiftStep]:
            return workflow.execute_activity_method(
                ZwiftActivities.zwift_step,
                ZwiftStepInput(inp.club_id, inp.kind, inp.key, inp.priority, checkpoint),
                start_to_close_timeout=STEP_TIMEOUT,
                schedule_to_close_timeout=MANUAL_DEADLINE if manual else WORK_DEADLINE,
                heartbeat_timeout=heartbeat(HEARTBEAT_SECONDS),
                retry_policy=retry,
                summary=what,
            )

        def on_step(step: ZwiftStep) -> None:
            nonlocal checkpoint
            checkpoint = step.checkpoint
            total.calls += step.calls
            total.stored += step.stored
            total.rate_limited += step.rate_limited
            total.activity_calls += 1
            if step.detail:
                total.detail = step.detail[:200]
            if step.more:
                total.status = "more"

        def describe() -> None:
            workflow.set_current_details(
                f"zwift {what}: {total.stored} stored in {total.calls} calls"
            )

        def waiting(until: datetime) -> None:
            workflow.set_current_details(
                f"zwift {what}: rate budget spent, waiting until {until:%H:%M:%S} UTC"
            )

        def carry_on() -> None:
            workflow.continue_as_new(dataclasses.replace(inp, checkpoint=checkpoint, carried=total))

        await run_until_done(
            call, total, on_step=on_step, describe=describe, waiting=waiting,
            continue_as_new=carry_on,
        )  # fmt: skip
        workflow.set_current_details(f"zwift {what}: {total.status}, {total.stored} stored")
        return total


class ZwiftPlan:
    """Scope = club id. Kinds: riders, urgent, near, far, results (scope-wide) and rider (a
    manual add, keyed by the rider id)."""

    def default_priority(self, kind: str) -> int:
        return ZWIFT.priority(kind)

    def resources(self, kind: str) -> frozenset[str]:
        return RESOURCES.get(kind, frozenset())

    def ageing_cap(self, kind: str) -> int:
        """Waiting lifts near and far passes past each other and past the rider sync, never past
        an urgent pass or a manual add: those stay short, so nothing starves."""
        return Priority.URGENT - 1 if kind in ("near", "far") else Priority.MANUAL

    def check(self, scope: str, request: SyncRequest) -> None:
        check_id_text(scope, "zwift scope", "club id")
        found = ZWIFT.kind(request.kind)
        if found is None:
            kinds = ", ".join(k.name for k in ZWIFT.kinds)
            raise ValueError(f"zwift has no sync kind {request.kind[:40]!r} (one of {kinds})")
        if found.entity:
            check_id_text(request.key, f"a zwift {request.kind} request's key", "rider id")
        elif request.key:
            raise ValueError(f"a zwift {request.kind} request has no key")

    def child(
        self, provider: str, scope: str, request: SyncRequest, seq: int, now: datetime
    ) -> ChildPlan:
        self.check(scope, request)
        kind, key = request.kind, request.key
        label = {"rider": f"rider {key} (manual add)", "riders": "members and rider stats"}
        return ChildPlan(
            workflow="ZwiftSync",
            id=sync_id(scope, kind, key),
            summary=f"ZwiftRacing club {scope}: {label.get(kind, f'{kind} events')}",
            build_arg=lambda report_to: ZwiftSyncInput(
                club_id=int(scope), kind=kind, key=key, priority=request.priority,
                report_to=report_to,
            ),
        )  # fmt: skip


def check_id_text(value: str, what: str, noun: str) -> int:
    """A positive id as text (ValueError, one line, otherwise)."""
    number = id_of(value) if isinstance(value, str) else None
    if number is None:
        raise ValueError(f"{what} {str(value)[:30]!r} is no {noun} (a positive number)")
    return number


WORKFLOWS = [ZwiftSync]
__all__ = ["EVENT_PASSES", "RESOURCES", "WORKFLOWS", "ZwiftPlan", "ZwiftSync", "sync_id"]
