"""The scheduler's queue on the real dev server: continue-as-new loses nothing, manual adds go
first, ageing serves low priority within its bound. FakeSync children take a set time."""

from __future__ import annotations

import asyncio

import pytest

from providers.ratelimit import Priority
from tests.scheduler_support import fake_scheduler, key_of, started_children
from workflows.scheduler import Scheduler
from workflows.scheduler_types import SyncRequest

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


async def _until(handle, predicate, timeout: float = 60.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status = await handle.query(Scheduler.status)
        if predicate(status):
            return status
        assert asyncio.get_running_loop().time() < deadline, f"gave up; last status {status}"
        await asyncio.sleep(0.2)


async def test_no_queued_request_is_lost_across_continue_as_new(client):
    async with fake_scheduler(
        client, {"character": 0.2, "sync": 0.1}, cadences={"sync": "2s"},
        max_concurrent=2, event_budget=60,
    ) as handle:  # fmt: skip
        for n in range(30):
            await handle.signal(Scheduler.enqueue, SyncRequest(kind="character", key=f"realm/c{n}"))
        status = await _until(handle, lambda s: not s.queue_depth and not s.running, 90)
        children = await started_children(handle)
        describe = await handle.describe()
    keys = sorted(key_of(c) for c, _ in children if "/character/" in c)
    assert keys == sorted(f"c{n}" for n in range(30)), "a queued request was lost or doubled"
    assert status.dispatched_total == len(children)
    assert describe.run_id != handle.first_execution_run_id, "it never continued-as-new"


async def test_manual_add_starts_before_an_earlier_backlog(client):
    async with fake_scheduler(client, {"character": 0.5}, max_concurrent=1) as handle:
        for n in range(5):
            await handle.signal(
                Scheduler.enqueue,
                SyncRequest(kind="character", key=f"realm/low{n}", priority=Priority.BACKFILL),
            )
        await handle.signal(Scheduler.enqueue, SyncRequest(kind="character", key="realm/manual"))
        await _until(handle, lambda s: s.dispatched_total == 6 and not s.running, 60)
        order = [key_of(c) for c, _ in await started_children(handle)]
    # the first backlog item may already run when the add arrives; the add comes right after
    assert order.index("manual") <= 1
    assert order[order.index("manual") + 1 :] == sorted(order[order.index("manual") + 1 :])


async def test_ageing_serves_low_priority_within_its_bound_under_constant_manual_adds(client):
    ageing, run = 1.0, 0.3
    async with fake_scheduler(
        client, {"character": run}, max_concurrent=1, ageing_seconds=ageing
    ) as handle:
        for n in range(3):  # the slot is busy when the backfill request arrives
            await handle.signal(Scheduler.enqueue, SyncRequest(kind="character", key=f"realm/p{n}"))
        await handle.signal(
            Scheduler.enqueue,
            SyncRequest(kind="character", key="realm/old", priority=Priority.BACKFILL),
        )
        for n in range(40):  # a manual add every 0.15 s: twice as fast as they can be served
            await handle.signal(Scheduler.enqueue, SyncRequest(kind="character", key=f"realm/m{n}"))
            await asyncio.sleep(0.15)
        started = await started_children(handle)
    first_at = next(t for c, t in started if key_of(c) == "p0")
    old_at = next((t for c, t in started if key_of(c) == "old"), None)
    assert old_at is not None, "the backfill request never ran: it starved"
    waited = (old_at - first_at).total_seconds()
    # backfill (0) climbs one level (10) per ageing step; at manual (40) it is the oldest there
    bound = (Priority.MANUAL - Priority.BACKFILL) / 10 * ageing + 3 * run + 1.0
    print(f"\nbackfill request served after {waited:.2f}s under a stream of manual adds")
    assert waited <= bound, f"backfill waited {waited:.1f}s > bound {bound:.1f}s"
    assert [key_of(c) for c, _ in started].index("old") > 1, "it did wait behind manual adds"
