"""The Scheduler on the real dev server cannot be poisoned, leaks no slot and keeps a bounded
queue. Children are FakeSync stand-ins, planned by the real providers' plans (``FakeOf``), so
the kinds, keys, scopes and child ids are the real ones.

Before the fix each bad message below failed the scheduler's workflow task for good (Temporal
retries it for ever and nothing is served again); a child terminated after a continue-as-new
held its slot for ever; the queue took any number of requests.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateFailedError

from tests.fakes import FakeSyncInput
from tests.scheduler_support import FakeOf, fake_scheduler, started_children, task_failures
from workflows.battlenet import BattleNetPlan
from workflows.discord import DiscordPlan
from workflows.plans import ChildPlan
from workflows.scheduler import Scheduler
from workflows.scheduler_types import SyncRequest

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


async def _until(handle, predicate, timeout: float = 30.0, what: str = "the condition"):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status = await handle.query(Scheduler.status)
        if predicate(status):
            return status
        assert asyncio.get_running_loop().time() < deadline, f"no {what}; last status {status}"
        await asyncio.sleep(0.1)


def _character(key: str) -> SyncRequest:
    return SyncRequest(kind="character", key=key, reason="manual add")


async def test_bad_signals_are_rejections_and_the_scheduler_keeps_serving(client):
    async with fake_scheduler(client, plan=FakeOf(BattleNetPlan()), max_concurrent=2) as handle:
        await handle.signal(Scheduler.run_now, "bogus")
        await handle.signal(Scheduler.run_now, "character")  # an entity kind needs its key
        await handle.signal(Scheduler.set_cadence, args=["sync", "3000000d"])
        await handle.signal(Scheduler.set_cadence, args=["bogus", "1h"])
        await handle.signal(Scheduler.enqueue, SyncRequest(kind="bogus"))
        await handle.signal(Scheduler.enqueue, _character("draenor/" + "x" * 1100))
        await handle.signal(Scheduler.enqueue, _character("realm/with/slash"))
        huge = SyncRequest(kind="character", key="a/b", priority=10**9)
        await handle.signal(Scheduler.enqueue, huge)
        await handle.signal("enqueue", "not a request")  # undecodable: dropped by the SDK
        await handle.signal(Scheduler.enqueue, _character("draenor/Good"))
        status = await _until(handle, lambda s: s.last_result.get("character") == "completed")
        failures = await task_failures(handle)
        children = [c for c, _ in await started_children(handle)]
    assert failures == [], failures
    assert status.rejected_total == 8, status.rejected
    joined = "\n".join(status.rejected)
    for reason in ("no sync kind 'bogus'", "out of range", "at most 160", "one '/'", "priority"):
        assert reason in joined, f"{reason!r} not in {joined}"
    assert len(children) == 1 and children[0].startswith("character/eu/draenor/good/")


async def test_submit_refuses_bad_requests_at_once_and_answers_good_ones_with_the_child_id(client):
    async with fake_scheduler(client, plan=FakeOf(BattleNetPlan(), seconds=0.5)) as handle:
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await handle.execute_update(Scheduler.submit, _character("draenor/" + "x" * 1100))
        assert "at most 160" in str(err.value.cause)
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update(Scheduler.submit, SyncRequest(kind="sync", key="x/y"))
        good = _character("draenor/Foo")
        good.request_id = "add-test1"
        submitted = await handle.execute_update(Scheduler.submit, good)
        again = await handle.execute_update(Scheduler.submit, good)  # a retried send
        await handle.signal(Scheduler.enqueue, good)  # the same request resent as a signal
        assert submitted.state == "queued" and submitted.child_id.startswith("character/eu/")
        assert again.state == "known" and again.child_id == submitted.child_id
        await client.get_workflow_handle(submitted.child_id).result()
        await _until(handle, lambda s: not s.running)
        state = await handle.query(Scheduler.request, "add-test1")
        status = await handle.query(Scheduler.status)
        failures = await task_failures(handle)
        started = await started_children(handle)
    assert state.state == "done" and state.outcome is not None
    assert state.outcome.status == "completed" and state.outcome.child_id == submitted.child_id
    assert status.dispatched_total == 1 and failures == []
    assert [c for c, _ in started] == [submitted.child_id], "a resent request started twice"


async def test_bad_cadences_in_the_start_input_are_rejections_not_a_dead_scheduler(client):
    cadences = {"sync": "3000000d", "bogus": "1h", "pvp": "1h"}
    async with fake_scheduler(client, plan=FakeOf(BattleNetPlan()), cadences=cadences) as handle:
        await handle.signal(Scheduler.enqueue, _character("draenor/Good"))
        status = await _until(handle, lambda s: s.dispatched_total >= 2 and not s.running)
        failures = await task_failures(handle)
    assert failures == [], failures
    assert status.rejected_total == 2 and set(status.next_due) == {"pvp", "character"}
    assert status.last_result["pvp"] == "completed"


class _Breaking:
    """A plan that breaks in every way a plan can: the Scheduler must survive each."""

    def default_priority(self, kind: str) -> int:
        return 20

    def child(self, provider, scope, request, seq, now) -> ChildPlan:
        if request.key == "overflow":
            return ChildPlan("FakeSync", "x", "x", lambda _: now + timedelta(days=10**9))
        if request.key == "raises":
            raise OverflowError("date value out of range")
        if request.key == "long-id":
            return ChildPlan("FakeSync", "x" * 300, "x", lambda _: None)
        return ChildPlan(
            "FakeSync", f"fake/{request.key}/{request.request_id}", "ok",
            lambda report_to: FakeSyncInput(0.1, report_to),
        )  # fmt: skip


async def test_a_plan_that_raises_anything_is_a_rejection(client):
    async with fake_scheduler(client, plan=_Breaking()) as handle:
        for key in ("overflow", "raises", "long-id", "fine"):
            await handle.signal(Scheduler.enqueue, SyncRequest(kind="character", key=key))
        status = await _until(handle, lambda s: s.last_result.get("character") == "completed")
        failures = await task_failures(handle)
    assert failures == [], failures
    assert status.rejected_total == 3, status.rejected
    assert "OverflowError" in "\n".join(status.rejected)


async def test_a_discord_scheduler_with_a_scope_that_is_no_guild_id_rejects_and_lives(client):
    async with fake_scheduler(
        client, plan=FakeOf(DiscordPlan()), scope="abc", cadences={"sync": "1h"}
    ) as handle:
        await handle.signal(Scheduler.run_now, "sync")
        await handle.signal(Scheduler.pause)
        status = await _until(handle, lambda s: s.paused)
        failures = await task_failures(handle)
    assert failures == [], failures
    assert status.dispatched_total == 0 and status.rejected_total == 2
    assert "no guild id" in status.rejected[0]


async def test_the_queue_is_bounded(client):
    async with fake_scheduler(client, {"character": 60}, max_concurrent=1, max_queue=5) as handle:
        await handle.signal(Scheduler.enqueue, _character("realm/first"))
        await _until(handle, lambda s: len(s.running) == 1)
        for n in range(9):
            await handle.signal(Scheduler.enqueue, _character(f"realm/c{n}"))
        status = await _until(handle, lambda s: s.rejected_total == 4)
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await handle.execute_update(Scheduler.submit, _character("realm/late"))
        failures = await task_failures(handle)
    assert sum(status.queue_depth.values()) == 5 and len(status.running) == 1
    assert "queue is full" in status.rejected[-1]
    assert "queue is full" in str(err.value.cause)
    assert failures == []


async def test_a_child_terminated_after_continue_as_new_frees_its_slot(client):
    async with fake_scheduler(
        client, {"character": 600}, max_concurrent=1, check_seconds=1.0
    ) as handle:
        await handle.signal(Scheduler.enqueue, _character("realm/stuck"))
        status = await _until(handle, lambda s: len(s.running) == 1)
        stuck = status.running[0]
        await handle.signal(Scheduler.set_event_budget, 20)
        for _ in range(6):  # enough events for the budget: the next run carries the child
            await handle.signal(Scheduler.resume)
        for _ in range(100):
            if (await handle.describe()).run_id != handle.first_execution_run_id:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the scheduler never continued-as-new")
        await handle.signal(Scheduler.set_event_budget, 0)
        await client.get_workflow_handle(stuck).terminate("an operator ended it")
        await handle.signal(Scheduler.enqueue, _character("realm/next"))
        began = asyncio.get_running_loop().time()
        status = await _until(
            handle, lambda s: s.dispatched_total == 2, 20, "dispatch of the next request"
        )
        freed_after = asyncio.get_running_loop().time() - began
        failures = await task_failures(handle)
    assert status.last_result["character"] == "terminated"
    assert freed_after < 10, freed_after
    assert failures == []


async def test_outcomes_and_merges_survive_continue_as_new(client):
    async with fake_scheduler(client, {"character": 0.1}, event_budget=20) as handle:
        first = _character("realm/one")
        first.request_id = "add-one"
        await handle.execute_update(Scheduler.submit, first)
        await _until(handle, lambda s: s.dispatched_total == 1 and not s.running)
        for _ in range(8):
            await handle.signal(Scheduler.resume)
        for _ in range(100):
            if (await handle.describe()).run_id != handle.first_execution_run_id:
                break
            await asyncio.sleep(0.1)
        state = await handle.query(Scheduler.request, "add-one")
        run_id = (await handle.describe()).run_id
    assert run_id != handle.first_execution_run_id, "it never continued-as-new"
    assert state.state == "done" and state.outcome is not None
    assert state.outcome.status == "completed"


async def test_a_child_stuck_past_its_deadline_is_cancelled_and_frees_its_slot(client):
    """A child that keeps running (here: a fake sync of 600 s) holds its slot only until
    ``child_deadline_seconds``: then it is cancelled, recorded as a timeout, and the next
    request is served."""
    async with fake_scheduler(
        client, {"character": 600}, max_concurrent=1, child_deadline_seconds=2.0
    ) as handle:
        await handle.signal(Scheduler.enqueue, _character("realm/stuck"))
        status = await _until(handle, lambda s: len(s.running) == 1)
        stuck = status.running[0]
        following = _character("realm/next")
        following.request_id = "add-next"
        await handle.signal(Scheduler.enqueue, following)
        try:
            status = await _until(
                handle, lambda s: s.dispatched_total == 2, 20, "dispatch of the next request"
            )
        except AssertionError as err:
            where = await handle.query(Scheduler.request, "add-next")
            raise AssertionError(f"{err}; the next request: {where}") from None
        failures = await task_failures(handle)
        for _ in range(50):
            described = await client.get_workflow_handle(stuck).describe()
            if described.status != WorkflowExecutionStatus.RUNNING:
                break
            await asyncio.sleep(0.1)
    assert status.last_result["character"] == "timeout"
    assert described.status == WorkflowExecutionStatus.CANCELED
    assert failures == []
