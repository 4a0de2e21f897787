"""The running schedule: one long-lived `Scheduler` workflow per provider scope.

It keeps, per sync kind, a cadence and its next due time (durable timers), a priority queue of
sync requests with ageing (a request gains one priority level per `ageing_seconds` waited, so
nothing starves), and the set of running children. Manual adds arrive by signal (`enqueue`) or
update (`enqueue_and_wait`, which returns when that request's sync finished). Children are
started with ParentClosePolicy.ABANDON and report back by signal, so the scheduler can
continue-as-new at any time, carrying its queue and running set.

What a request *does* is the provider's plan (`workflows.plans`); this module is generic.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import Priority as TaskPriority
from temporalio.exceptions import WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from providers.ratelimit import Priority
    from workflows.kernel import SlidingWindow, cause_message
    from workflows.plans import plan_for
    from workflows.scheduler_types import (
        AGEING_STEP,
        ChildDone,
        KindState,
        RequestOutcome,
        RunningChild,
        SchedulerInput,
        SchedulerStatus,
        SyncRequest,
        parse_cadence,
    )
    from workflows.visibility import search_attributes

HOUR = timedelta(hours=1)
MAX_WAIT_SAMPLES = 200
MAX_OUTCOMES = 200
MIN_EVENT_BUDGET = 20


def _task_priority(priority: int) -> TaskPriority:
    """A hint for Temporal's matching (1 = first … 5): manual work's workflow and activity tasks
    (inherited by the child) overtake a backlog's. Ordering is still ours: the queue and the
    rate limiter decide; this only shortens the manual child's waits in busy task queues."""
    if priority >= Priority.MANUAL:
        return TaskPriority(priority_key=1)
    if priority >= Priority.URGENT:
        return TaskPriority(priority_key=2)
    return TaskPriority.default


def scheduler_id(provider: str, scope: str) -> str:
    return f"scheduler/{provider}/{scope}"


@workflow.defn
class Scheduler:
    @workflow.init
    def __init__(self, inp: SchedulerInput) -> None:
        # State exists before the first signal is handled (signals can precede `run`).
        self._state = inp
        self._wake = False
        self._outcomes: dict[str, RequestOutcome] = {}
        self._aliases: dict[str, list[str]] = {}
        self._watchers: list[asyncio.Task[None]] = []

    # -- messages -------------------------------------------------------------------------

    @workflow.signal
    def enqueue(self, request: SyncRequest) -> None:
        self._add(request)

    @workflow.update
    async def enqueue_and_wait(self, request: SyncRequest) -> RequestOutcome:
        rid = self._add(request)
        await workflow.wait_condition(lambda: rid in self._outcomes)
        return self._outcomes[rid]

    @enqueue_and_wait.validator
    def _check_request(self, request: SyncRequest) -> None:
        if not request.kind:
            raise ValueError("a request needs a kind")

    @workflow.signal
    def pause(self) -> None:
        self._state.paused = True
        self._wake = True

    @workflow.signal
    def resume(self) -> None:
        self._state.paused = False
        self._wake = True

    @workflow.signal
    def run_now(self, kind: str) -> None:
        state = self._state.kinds.setdefault(kind, KindState())
        state.next_due = workflow.now()
        self._wake = True

    @workflow.signal
    def set_cadence(self, kind: str, spec: str) -> None:
        try:
            every = parse_cadence(spec)
        except ValueError as exc:
            workflow.logger.warning("ignored set_cadence: %s", exc)
            return
        state = self._state.kinds.setdefault(kind, KindState())
        state.every_seconds = every
        state.next_due = workflow.now() + timedelta(seconds=every) if every else None
        self._wake = True

    @workflow.signal
    def set_event_budget(self, events: int) -> None:
        """Continue-as-new once history holds this many events (0: the server's hint).

        At least MIN_EVENT_BUDGET, so a fresh run never continues-as-new at once (a loop).
        """
        self._state.event_budget = max(MIN_EVENT_BUDGET, events) if events > 0 else 0
        self._wake = True

    @workflow.signal
    def child_done(self, done: ChildDone) -> None:
        self._finish(done.child_id, done.status, done.detail)

    @workflow.query
    def status(self) -> SchedulerStatus:
        return self._status()

    # -- main loop ------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: SchedulerInput) -> None:
        inp = self._state
        if not inp.started:
            inp.started = True
            for kind, spec in inp.cadences.items():
                every = parse_cadence(spec)
                inp.kinds[kind] = KindState(
                    every_seconds=every,
                    priority=plan_for(inp.provider).default_priority(kind),
                    next_due=workflow.now() if every else None,
                )
        while True:
            now = workflow.now()
            if not inp.paused:
                self._enqueue_due(now)
                await self._dispatch()
            self._describe(now)
            if self._should_continue_as_new() and workflow.all_handlers_finished():
                workflow.continue_as_new(inp)
            self._wake = False
            timeout = self._next_wakeup(now)
            try:
                await workflow.wait_condition(
                    lambda: self._wake, timeout=timeout, timeout_summary="next cadence"
                )
            except TimeoutError:
                pass

    # -- internals ------------------------------------------------------------------------

    def _add(self, request: SyncRequest) -> str:
        state = self._state
        state.seq += 1
        request = replace(
            request,
            request_id=request.request_id or f"r{state.seq}",
            enqueued_at=request.enqueued_at or workflow.now(),
        )
        for queued in state.queue:  # same work already waiting: keep one, the more urgent
            if queued.kind == request.kind and queued.key == request.key and not request.reason:
                queued.priority = max(queued.priority, request.priority)
                self._alias(request.request_id, queued.request_id)
                self._wake = True
                return request.request_id
        state.queue.append(request)
        self._wake = True
        return request.request_id

    def _alias(self, rid: str, target: str) -> None:
        """A merged request finishes when the one it merged into does."""
        self._aliases.setdefault(target, []).append(rid)

    def _enqueue_due(self, now: datetime) -> None:
        state = self._state
        for kind, ks in state.kinds.items():
            if ks.next_due is None or ks.next_due > now:
                continue
            busy = any(r.kind == kind for r in state.queue) or any(
                c.request.kind == kind for c in state.running
            )
            if not busy:
                self._add(SyncRequest(kind=kind, priority=ks.priority, reason="cadence"))
            ks.next_due = now + timedelta(seconds=ks.every_seconds) if ks.every_seconds else None

    def _effective(self, request: SyncRequest, now: datetime) -> float:
        """Priority plus one level per `ageing_seconds` waited, up to the manual level.

        The cap is what bounds a low-priority wait: once it reaches the top level it is the
        oldest there and goes next, however fast higher-priority requests keep arriving.
        """
        assert request.enqueued_at is not None
        waited = (now - request.enqueued_at).total_seconds()
        aged = request.priority + AGEING_STEP * int(waited // self._state.ageing_seconds)
        return min(aged, max(request.priority, Priority.MANUAL))

    async def _dispatch(self) -> None:
        state = self._state
        plan = plan_for(state.provider)
        window = SlidingWindow(state.max_concurrent, count=lambda: len(state.running))
        # Handlers can run while a child start is awaited: re-check pause and time each round.
        while state.queue and window.has_room() and not state.paused:
            now = workflow.now()
            best = max(
                state.queue,
                key=lambda r: (self._effective(r, now), -(r.enqueued_at or now).timestamp()),
            )
            state.queue.remove(best)
            child = plan.child(state.provider, state.scope, best, state.seq, now)
            child_id = child.id
            report_to = workflow.info().workflow_id
            # Count it as running before the start is awaited: a fast child can report done
            # (by signal) before the start call returns, and that report must find it.
            running = RunningChild(child_id, best, now)
            state.running.append(running)
            try:
                handle = await workflow.start_child_workflow(
                    child.workflow,
                    child.build_arg(report_to),
                    id=child_id,
                    static_summary=child.summary,
                    parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                    priority=_task_priority(best.priority),
                    search_attributes=(
                        search_attributes(state.provider, state.scope, best.kind)
                        if state.visibility
                        else None
                    ),
                )
            except WorkflowAlreadyStartedError:
                if running in state.running:
                    state.running.remove(running)
                self._record(best, "failed", 0.0, f"{child_id} is already running")
                continue
            assert best.enqueued_at is not None
            waited = (now - best.enqueued_at).total_seconds()
            state.waits.append((now, waited))
            del state.waits[:-MAX_WAIT_SAMPLES]
            state.dispatched += 1
            if running in state.running:  # not already reported done
                self._watch(handle, child_id)

    def _watch(self, handle: Any, child_id: str) -> None:
        """Children of this run are awaited too, so a terminated child is noticed."""

        async def watch() -> None:
            try:
                await handle
                self._finish(child_id, "completed", "")
            except Exception as exc:
                self._finish(child_id, "failed", cause_message(exc))

        self._watchers = [t for t in self._watchers if not t.done()]
        self._watchers.append(asyncio.create_task(watch()))

    def _finish(self, child_id: str, status: str, detail: str) -> None:
        state = self._state
        found = next((c for c in state.running if c.child_id == child_id), None)
        if found is None:
            return  # already reported (signal and handle both arrive)
        state.running.remove(found)
        now = workflow.now()
        ks = state.kinds.setdefault(found.request.kind, KindState())
        ks.last_status, ks.last_finished_at, ks.last_detail = status, now, detail[:200]
        assert found.request.enqueued_at is not None
        waited = (found.started_at - found.request.enqueued_at).total_seconds()
        self._record(found.request, status, waited, detail, (now - found.started_at))
        self._wake = True

    def _record(
        self,
        request: SyncRequest,
        status: str,
        waited: float,
        detail: str,
        ran: timedelta = timedelta(),
    ) -> None:
        outcome = RequestOutcome(
            request.request_id, request.kind, request.key, status, waited,
            ran.total_seconds(), detail[:200],
        )  # fmt: skip
        for rid in [request.request_id, *self._aliases.pop(request.request_id, [])]:
            self._outcomes[rid] = replace(outcome, request_id=rid)
        while len(self._outcomes) > MAX_OUTCOMES:
            self._outcomes.pop(next(iter(self._outcomes)))

    def _next_wakeup(self, now: datetime) -> timedelta | None:
        dues = [k.next_due for k in self._state.kinds.values() if k.next_due is not None]
        if self._state.paused or not dues:
            return None
        return max(timedelta(milliseconds=10), min(dues) - now)

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        budget = self._state.event_budget
        if budget and info.get_current_history_length() >= max(budget, MIN_EVENT_BUDGET):
            return True
        return info.is_continue_as_new_suggested()

    def _describe(self, now: datetime) -> None:
        s = self._status()
        workflow.set_current_details(
            f"{'paused; ' if s.paused else ''}queue {sum(s.queue_depth.values())}, "
            f"running {len(s.running)}: {', '.join(s.running[:5]) or '-'}; "
            f"next due {min((v for v in s.next_due.values() if v), default='-')}"
        )

    def _status(self) -> SchedulerStatus:
        state = self._state
        now = workflow.now()
        depth: dict[str, int] = {}
        names = {p.value: p.name.lower() for p in Priority}
        for r in state.queue:
            label = names.get(r.priority, str(r.priority))
            depth[label] = depth.get(label, 0) + 1
        recent = [w for t, w in state.waits if now - t <= HOUR]
        oldest = max(
            ((now - r.enqueued_at).total_seconds() for r in state.queue if r.enqueued_at),
            default=0.0,
        )
        return SchedulerStatus(
            provider=state.provider,
            scope=state.scope,
            paused=state.paused,
            queue_depth=depth,
            running=[c.child_id for c in state.running][:20],
            oldest_wait_seconds=round(oldest, 3),
            avg_wait_seconds_last_hour=round(sum(recent) / len(recent), 3) if recent else 0.0,
            max_wait_seconds_last_hour=round(max(recent), 3) if recent else 0.0,
            next_due={
                k: v.next_due.isoformat() if v.next_due else None for k, v in state.kinds.items()
            },
            last_result={k: v.last_status for k, v in state.kinds.items()},
            dispatched_total=state.dispatched,
        )
