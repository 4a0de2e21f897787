"""A simulated day of one ZwiftRacing club's scheduler on the time-skipping test server.

The scheduler is the real one with the real Zwift plan (kinds, priorities, default cadences,
the endpoint families each kind holds); its children are stand-ins that take as long as the
real ones do at the standard-tier limits (an urgent pass of two events: two event windows of a
minute; a far slice: five; a riders sync of a 2,500-rider club: three hourly pages and three
15-minute POSTs) and, for far passes, end ``more`` once so the rest is queued again. Five
manual rider adds arrive through the day. What the calls themselves do against the strict
sandbox (0 429s, exact data) is tests/integration/test_zwift_club.py; this proves the order
over a day: every kind at its cadence, kinds of the same endpoints never at once, far events
never starved, manual adds served within one single-rider window of arriving.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.worker import Worker

from cli.scheduler import cadences
from providers.zwift.spec import SPEC
from settings import Settings
from tests.fakes import DayChildInput, DayDriverInput, ZwiftDayChild, ZwiftDayDriver
from tests.scheduler_support import FakeOf, end_scheduler, history
from workflows.plans import ChildPlan, register_plan
from workflows.scheduler import MAX_EVENT_BUDGET, Scheduler, child_states
from workflows.scheduler_types import SchedulerInput, SyncRequest
from workflows.zwift import RESOURCES, ZwiftPlan

pytestmark = pytest.mark.asyncio(loop_scope="session")

MINUTE, HOUR = 60.0, 3600.0
DURATIONS = {
    "urgent": 2 * MINUTE,
    "near": 4 * MINUTE,
    "far": 3 * MINUTE,  # one slice of ZWIFT_FAR_EVENTS_PER_RUN events
    "results": 3 * MINUTE,
    "riders": 2 * HOUR + 3 * 15 * MINUTE,
    "rider": 1.0,
}
SINGLE_RIDER_WINDOW = 60.0  # 5 per minute, one place kept for manual adds
ADDS_AT = [1 * HOUR, 5 * HOUR + 7 * MINUTE, 9 * HOUR + 30 * MINUTE, 13 * HOUR, 20 * HOUR]


class DayPlan(FakeOf):
    """The real Zwift plan (kinds, priorities, resources, ageing), whose children are
    ZwiftDayChild stand-ins."""

    def __init__(self) -> None:
        super().__init__(ZwiftPlan())

    def child(
        self, provider: str, scope: str, request: SyncRequest, seq: int, now: datetime
    ) -> ChildPlan:
        real = self.real.child(provider, scope, request, seq, now)
        kind = request.kind
        more = kind == "far" and request.reason != "continued"  # each far pass: two slices
        return ChildPlan(
            "ZwiftDayChild",
            real.id,
            real.summary,
            lambda report_to: DayChildInput(kind, DURATIONS[kind], more, report_to),
        )


def _kind(child_id: str) -> str:
    return child_id.split("/")[2]  # zwift-sync/<club>/<kind>[/<rider>]


async def test_a_simulated_day_runs_every_kind_in_order_and_starves_nothing(skipping_env):
    env = skipping_env
    provider = f"zwift-day-{uuid.uuid4().hex[:6]}"
    register_plan(provider, DayPlan())
    queue = f"zwift-day-{uuid.uuid4().hex[:6]}"
    every = cadences(SPEC, Settings(), None)
    assert every == {"urgent": "5m", "near": "10m", "riders": "6h", "results": "10m", "far": "2h"}
    # One run for the whole day: the test server stops skipping time once a run with abandoned
    # children has continued-as-new (which it suggests at 4K events); continue-as-new is
    # tests/integration/test_scheduler_queue.py's, on the dev server.
    inp = SchedulerInput(
        provider=provider,
        scope="20650",
        cadences=every,
        max_concurrent=4,
        visibility=False,
        event_budget=MAX_EVENT_BUDGET,
    )
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[Scheduler, ZwiftDayChild, ZwiftDayDriver],
        activities=[child_states],
    ):
        handle = await env.client.start_workflow(
            Scheduler.run, inp, id=f"scheduler/{provider}/20650", task_queue=queue
        )
        began = _utc(await env.get_current_time())
        try:
            sent = await env.client.execute_workflow(
                ZwiftDayDriver.run,
                DayDriverInput(handle.id, ADDS_AT, 24 * HOUR),
                id=f"day-driver-{uuid.uuid4().hex[:6]}",
                task_queue=queue,
            )
            arrived = {key: datetime.fromisoformat(at) for key, at in sent.items()}
            status = await handle.query(Scheduler.status)
            runs = await _children(handle)
            length = (
                await handle.describe()
            ).raw_description.workflow_execution_info.history_length
        finally:
            await end_scheduler(handle)

    day = began + timedelta(days=1)
    by_kind: dict[str, list[tuple[datetime, datetime | None, str]]] = {}
    for child_id, (start, end) in runs.items():
        if start >= day:  # started as the day ended
            continue
        by_kind.setdefault(_kind(child_id.partition("#")[0]), []).append((start, end, child_id))
    for spans in by_kind.values():
        spans.sort()
    print(
        f"\nsimulated day: { ({k: len(v) for k, v in by_kind.items()}) } runs, "
        f"{status.conflicts_avoided} conflicts avoided, rejected {status.rejected_total}, "
        f"{length} events in the scheduler's history"
    )
    assert status.rejected_total == 0, status.rejected
    # every kind at its cadence (a run that is still queued when it is due again is not doubled)
    assert len(by_kind["riders"]) == 4  # t = 0, 6h, 12h, 18h
    assert len(by_kind["urgent"]) >= 250  # of 288 slots of 5 minutes (some wait out a slice)
    assert len(by_kind["near"]) >= 100  # of 144
    assert len(by_kind["results"]) >= 140  # its own endpoint: never waits for the others
    # far events never starve: two slices a pass (the second queued when the first ends
    # "more"), each pass within its 2-hour cadence
    assert len(by_kind["far"]) >= 22
    _max_gap(by_kind["far"], day, timedelta(hours=2, minutes=30), "far")
    _max_gap(by_kind["urgent"], day, timedelta(minutes=10), "urgent")

    # kinds reading the same endpoints never ran at once (a child reports its end, which frees
    # its endpoints for the next, a few ms before its run closes: its calls are all made)
    shared = sorted(s for k in ("urgent", "near", "far") for s in by_kind[k])
    for (_, end, a), (start, _, b) in itertools.pairwise(shared):
        assert end is not None and end <= start + timedelta(seconds=1), f"{a} and {b} overlapped"
    assert status.conflicts_avoided > 0
    assert RESOURCES["urgent"] == RESOURCES["far"]

    # manual adds: started within one single-rider window of arriving, whatever else ran
    adds = {span[2].partition("#")[0].rsplit("/", 1)[-1]: span for span in by_kind["rider"]}
    assert set(adds) == set(arrived)
    for key, (start, end, _) in adds.items():
        waited = (start - arrived[key]).total_seconds()
        assert waited <= SINGLE_RIDER_WINDOW, (key, waited)
        assert end is not None


def _max_gap(
    spans: list[tuple[datetime, datetime | None, str]], day: datetime, most: timedelta, what: str
) -> None:
    starts = [s[0] for s in spans] + [day]
    for a, b in itertools.pairwise(starts):
        assert b - a <= most, f"{what}: {b - a} between runs at {a:%H:%M} and {b:%H:%M}"


async def _children(handle: Any) -> dict[str, tuple[datetime, datetime | None]]:
    """Each child run the scheduler started (``<id>#<run id>``: ids repeat), with its start and
    close times as the server has them."""
    found: dict[str, tuple[datetime, datetime | None]] = {}
    async for event in history(handle):
        if event.HasField("child_workflow_execution_started_event_attributes"):
            run = event.child_workflow_execution_started_event_attributes.workflow_execution
            described = await handle._client.get_workflow_handle(
                run.workflow_id, run_id=run.run_id
            ).describe()
            closed = described.close_time
            found[f"{run.workflow_id}#{run.run_id}"] = (
                _utc(described.start_time),
                None if closed is None else _utc(closed),
            )
    return found


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)
