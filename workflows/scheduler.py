"""The running schedule: one long-lived `Scheduler` workflow per provider scope.

It keeps, per sync kind, a cadence and its next due time (durable timers), a priority queue of
sync requests with ageing (a request gains one priority level per `ageing_seconds` waited, so
nothing starves), and the set of running children. Manual adds arrive by signal (`enqueue`) or
update (`submit`, which answers at once with the request id and the child workflow id it will
use; the caller waits on that workflow, never inside the update). `enqueue_and_wait` (an update
held until the sync finished) is kept for callers of older versions. Children are started with
ParentClosePolicy.ABANDON and report back by signal, so the scheduler can continue-as-new at any
time, carrying its queue, running set and recent outcomes; a child started by an earlier run
that ends without reporting (terminated, reset away) is found by a periodic look
(`scheduler_child_states`) and frees its slot.

Nothing a message carries can fail a workflow task: every signal and update input is checked
(kind, key, lengths, cadence range, the plan's own rules, a dry run of the plan); what is refused
is recorded as a rejection, visible in `status`, and the queue is bounded (`max_queue`).

What a request *does* is the provider's plan (`workflows.plans`); this module is generic.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Literal

from temporalio import activity, workflow
from temporalio.common import Priority as TaskPriority
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

with workflow.unsafe.imports_passed_through():
    from providers.ratelimit import Priority
    from workflows.kernel import SlidingWindow, cause_message
    from workflows.plans import ProviderPlan, plan_for, plan_problem
    from workflows.scheduler_types import (
        AGEING_STEP,
        MAX_ID_BYTES,
        ChildDone,
        KindState,
        Rejection,
        RequestOutcome,
        RequestState,
        RunningChild,
        SchedulerInput,
        SchedulerStatus,
        Submitted,
        SyncRequest,
        check_kind,
        check_request,
        one_line,
        parse_cadence,
    )
    from workflows.visibility import search_attributes

HOUR = timedelta(hours=1)
MAX_WAIT_SAMPLES = 200
MAX_OUTCOMES = 200  # kept (and carried through continue-as-new) for `request` and `status`
MAX_REJECTIONS = 20
MIN_EVENT_BUDGET = 20
MAX_EVENT_BUDGET = 50_000  # below the server's history limit (51,200 events)
MIN_CHECK_SECONDS = 1.0
# Patches (histories recorded before them keep replaying):
CHILD_CHECK = "scheduler-child-check"  # look at children of earlier runs that never reported
IDS_AT_ENQUEUE = "scheduler-ids-at-enqueue"  # a request's child id is fixed when it is queued
CHILD_DEADLINE = "scheduler-child-deadline"  # a child running past its deadline is cancelled
CADENCE_GRID = "scheduler-cadence-grid"  # a cadence's next slot keeps its grid (no drift)
MORE = "more"  # a child's status: done with a slice, its kind has work left (queued again)
CLOSED = {
    "COMPLETED": "completed",
    "FAILED": "failed",
    "CANCELED": "canceled",
    "TERMINATED": "terminated",
    "TIMED_OUT": "timeout",
    "NOT_FOUND": "failed",
}


@activity.defn(name="scheduler_child_states")
async def child_states(child_ids: list[str]) -> dict[str, str]:
    """Each workflow's status (its latest run), e.g. RUNNING, TERMINATED, or NOT_FOUND.

    Only the ids of a scheduler's running set (at most its ``max_concurrent``): one cheap
    describe each, from the worker's own client."""
    client = activity.client()
    found: dict[str, str] = {}
    for child_id in child_ids:
        try:
            status = (await client.get_workflow_handle(child_id).describe()).status
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            found[child_id] = "NOT_FOUND"
            continue
        found[child_id] = status.name if status is not None else "UNKNOWN"
    return found


# Temporal's task priority keys (1 first … 5): the scheduler's own tasks first (SCHEDULER_TASKS:
# a manual add's `submit` and its child's start never queue behind a backlog's workflow tasks),
# then manual and urgent children; every other child says 3, the server's default, explicitly —
# a child that says nothing inherits its parent's key, the scheduler's 1.
SCHEDULER_TASKS = 1
BACKLOG_TASKS = 3


def _task_priority(priority: int) -> TaskPriority:
    """A hint for Temporal's matching (1 = first … 5): manual work's workflow and activity tasks
    (inherited by the child) overtake a backlog's. Ordering is still ours: the queue and the
    rate limiter decide; this only shortens the manual child's waits in busy task queues."""
    if priority >= Priority.MANUAL:
        return TaskPriority(priority_key=1)
    if priority >= Priority.URGENT:
        return TaskPriority(priority_key=2)
    return TaskPriority(priority_key=BACKLOG_TASKS)


def scheduler_id(provider: str, scope: str) -> str:
    return f"scheduler/{provider}/{scope}"


@workflow.defn
class Scheduler:
    @workflow.init
    def __init__(self, inp: SchedulerInput) -> None:
        # State exists before the first signal is handled (signals can precede `run`).
        self._state = inp
        self._wake = False
        self._outcomes: dict[str, RequestOutcome] = {o.request_id: o for o in inp.outcomes}
        self._aliases: dict[str, list[str]] = inp.aliases
        self._watchers: list[asyncio.Task[None]] = []
        self._watched: set[str] = set()  # running children this run awaits itself
        self._checks = False  # CHILD_CHECK (decided when `run` starts)
        self._deadlines = False  # CHILD_DEADLINE (decided when `run` starts)
        self._phases = False  # CADENCE_GRID (decided when `run` starts)
        self._ids_fixed: bool | None = None  # IDS_AT_ENQUEUE (decided at the first request)
        self._blocked: set[str] = set()  # requests counted as waiting for a held resource

    # -- messages -------------------------------------------------------------------------

    @workflow.signal
    def enqueue(self, request: SyncRequest) -> None:
        """Queue ``request``; one whose sender's request id is known already is ignored."""
        self._add(request)

    @workflow.update
    def submit(self, request: SyncRequest) -> Submitted:
        """Queue ``request`` and answer at once: its id, and the child workflow id that will
        serve it (``merged_into`` when an equal request was waiting). A request id the caller
        chose (``add-…``) makes a retried submit harmless (state ``known``)."""
        rid = request.request_id
        if rid and self._knows(rid):
            return Submitted(rid, "known", child_id=self._child_of(rid))
        rid, merged = self._add(request)
        return Submitted(
            rid, "merged" if merged else "queued", merged_into=merged, child_id=self._child_of(rid)
        )

    @submit.validator
    def _check_submit(self, request: SyncRequest) -> None:
        if request.request_id and self._knows(request.request_id):
            return
        problem = self._problem(request)
        if problem is None and len(self._state.queue) >= self._state.max_queue:
            problem = self._full()
        if problem:
            raise ValueError(problem)

    @workflow.update
    async def enqueue_and_wait(self, request: SyncRequest) -> RequestOutcome:
        """Kept for callers of earlier versions: held open until the request's sync ended
        (which counts against the server's 10 in-flight updates; use `submit`)."""
        rid, _ = self._add(request)
        await workflow.wait_condition(lambda: rid in self._outcomes)
        return self._outcomes[rid]

    @enqueue_and_wait.validator
    def _check_request(self, request: SyncRequest) -> None:
        problem = self._problem(request)
        if problem:
            raise ValueError(problem)

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
        problem = self._kind_problem(kind)
        if problem:
            self._reject(f"run_now {str(kind)[:40]}", problem)
            return
        state = self._state.kinds.get(kind)
        if state is None:
            state = self._state.kinds[kind] = KindState(priority=self._default_priority(kind))
        state.next_due = workflow.now()
        self._wake = True

    @workflow.signal
    def set_cadence(self, kind: str, spec: str) -> None:
        every = self._cadence("set_cadence", kind, spec)
        if every is False:
            return
        state = self._state.kinds.get(kind)
        if state is None:
            state = self._state.kinds[kind] = KindState(priority=self._default_priority(kind))
        state.every_seconds = every
        state.next_due = workflow.now() + timedelta(seconds=every) if every else None
        self._wake = True

    def _cadence(self, what: str, kind: str, spec: str) -> int | Literal[False] | None:
        """Seconds of ``spec`` for ``kind`` (None: off); False when refused (recorded)."""
        try:
            every = parse_cadence(spec)
        except ValueError as exc:
            self._reject(f"{what} {str(kind)[:40]}", one_line(exc))
            return False
        problem = self._kind_problem(kind)
        if problem:
            self._reject(f"{what} {str(kind)[:40]}", problem)
            return False
        return every

    @workflow.signal
    def set_event_budget(self, events: int) -> None:
        """Continue-as-new once history holds this many events (0: the server's hint).

        At least MIN_EVENT_BUDGET, so a fresh run never continues-as-new at once (a loop).
        """
        if isinstance(events, bool) or not isinstance(events, int):
            self._reject("set_event_budget", f"an event budget is a number, not {events!r:.40}")
            return
        events = min(events, MAX_EVENT_BUDGET)
        self._state.event_budget = max(MIN_EVENT_BUDGET, events) if events > 0 else 0
        self._wake = True

    @workflow.signal
    def child_done(self, done: ChildDone) -> None:
        if not isinstance(done, ChildDone) or not isinstance(done.child_id, str):
            return
        if done.status == MORE and done.child_id in self._watched:
            # its continuation reuses its id: queued once the child has closed (its handle
            # ends), never while it is still running, which would refuse the start
            return
        self._finish(done.child_id, str(done.status)[:20], str(done.detail))

    @workflow.query
    def status(self) -> SchedulerStatus:
        return self._status()

    @workflow.query
    def request(self, request_id: str) -> RequestState:
        """Where one request is: queued, running (in ``child_id``), done, or unknown."""
        if request_id in self._outcomes:
            done = self._outcomes[request_id]
            return RequestState(request_id, "done", done.child_id, done)
        target = self._target_of(request_id)
        for queued in self._state.queue:
            if queued.request_id == target:
                return RequestState(request_id, "queued", queued.child_id)
        for running in self._state.running:
            if running.request.request_id == target:
                return RequestState(request_id, "running", running.child_id)
        return RequestState(request_id, "unknown")

    # -- main loop ------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: SchedulerInput) -> None:
        inp = self._state
        self._checks = workflow.patched(CHILD_CHECK)
        self._deadlines = workflow.patched(CHILD_DEADLINE)
        self._phases = workflow.patched(CADENCE_GRID)
        if not inp.started:
            inp.started = True
            for kind, spec in inp.cadences.items():
                every = self._cadence("cadence", kind, spec)
                if every is False:
                    continue
                inp.kinds[kind] = KindState(
                    every_seconds=every,
                    priority=self._default_priority(kind),
                    next_due=workflow.now() if every else None,
                )
        while True:
            now = workflow.now()
            await self._end_overdue_children(now)  # before dispatch: a freed slot is used now
            if not inp.paused:
                self._enqueue_due(now)
                await self._dispatch()
            await self._check_children(now)
            self._describe(now)
            if self._should_continue_as_new() and workflow.all_handlers_finished():
                self._carry()
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

    def _add(self, request: SyncRequest) -> tuple[str, str]:
        """Queue ``request`` (or merge it into an equal one waiting): (its id, the id it merged
        into or ""). A request that cannot be planned, or one beyond ``max_queue``, is recorded
        as rejected instead: nothing a sender puts in a request can fail a workflow task."""
        state = self._state
        rid = request.request_id if isinstance(request, SyncRequest) else ""
        if rid and isinstance(rid, str) and self._knows(rid):  # the same request sent again
            return rid, ""
        problem = self._problem(request)
        state.seq += 1
        if problem is None and len(state.queue) >= state.max_queue:
            problem = self._full()
        if problem is not None:
            self._reject_request(request, rid or f"r{state.seq}", problem)
            return rid or f"r{state.seq}", ""
        request = replace(
            request,
            request_id=rid or f"r{state.seq}",
            enqueued_at=request.enqueued_at or workflow.now(),
            child_id="",  # never the sender's: the plan names it
        )
        for queued in state.queue:  # same work already waiting: keep one, the more urgent
            if queued.kind == request.kind and queued.key == request.key and not request.reason:
                queued.priority = max(queued.priority, request.priority)
                self._alias(request.request_id, queued.request_id)
                self._wake = True
                return request.request_id, queued.request_id
        if self._fix_ids():
            plan = self._plan()
            assert plan is not None  # else _problem said so
            child = plan.child(state.provider, state.scope, request, state.seq, workflow.now())
            request.child_id = child.id
        state.queue.append(request)
        self._wake = True
        return request.request_id, ""

    def _full(self) -> str:
        return f"the queue is full ({self._state.max_queue} requests wait): try again later"

    def _fix_ids(self) -> bool:
        if self._ids_fixed is None:
            self._ids_fixed = workflow.patched(IDS_AT_ENQUEUE)
        return self._ids_fixed

    def _plan(self) -> ProviderPlan | None:
        try:
            return plan_for(self._state.provider)
        except ValueError:
            return None

    def _problem(self, request: SyncRequest) -> str | None:
        """Why ``request`` cannot be served (one line), or None."""
        plan = self._plan()
        if plan is None:
            return f"no scheduler plan for provider {self._state.provider[:40]!r}"
        state = self._state
        try:
            check_request(request)  # as sent: a sender's id may not look like r<seq>
        except ValueError as exc:
            return one_line(exc)
        planned = replace(request, request_id=request.request_id or f"r{state.seq + 1}")
        return plan_problem(
            plan, state.provider, state.scope, planned, workflow.now(), state.seq + 1,
            workflow.info().workflow_id,
        )  # fmt: skip

    def _kind_problem(self, kind: str) -> str | None:
        """Why a scope-wide request of ``kind`` (run_now, a cadence) cannot be served."""
        try:
            check_kind(kind)
        except ValueError as exc:
            return one_line(exc)
        return self._problem(SyncRequest(kind=kind, priority=self._default_priority(kind)))

    def _default_priority(self, kind: str) -> int:
        plan = self._plan()
        try:
            priority = int(plan.default_priority(kind)) if plan is not None else None
        except Exception:
            priority = None
        if priority is None or not min(Priority) <= priority <= max(Priority):
            return Priority.INCREMENTAL
        return priority

    def _reject_request(self, request: object, rid: str, reason: str) -> None:
        if isinstance(request, SyncRequest):
            kind, key = str(request.kind)[:40], str(request.key)[:60]
        else:
            kind, key = type(request).__name__, ""
        self._reject(f"request {rid[:64]} {kind} {key}".rstrip(), reason)
        outcome = RequestOutcome(rid[:64], kind, key, "rejected", detail=reason[:200])
        self._outcomes[outcome.request_id] = outcome
        self._trim_outcomes()

    def _reject(self, what: str, reason: str) -> None:
        state = self._state
        workflow.logger.warning("scheduler rejected %s: %s", what, reason)
        state.rejections.append(Rejection(workflow.now(), what[:120], reason[:200]))
        del state.rejections[:-MAX_REJECTIONS]
        state.rejected_total += 1

    def _knows(self, rid: str) -> bool:
        state = self._state
        return (
            rid in self._outcomes
            or any(r.request_id == rid for r in state.queue)
            or any(c.request.request_id == rid for c in state.running)
            or any(rid in merged for merged in self._aliases.values())
        )

    def _target_of(self, rid: str) -> str:
        return next((t for t, merged in self._aliases.items() if rid in merged), rid)

    def _child_of(self, rid: str) -> str:
        """The workflow id that serves (or will serve, or served) request ``rid``."""
        if rid in self._outcomes:
            return self._outcomes[rid].child_id
        target = self._target_of(rid)
        for queued in self._state.queue:
            if queued.request_id == target:
                return queued.child_id
        for running in self._state.running:
            if running.request.request_id == target:
                return running.child_id
        return ""

    def _alias(self, rid: str, target: str) -> None:
        """A merged request finishes when the one it merged into does."""
        self._aliases.setdefault(target, []).append(rid)

    def _carry(self) -> None:
        """What the next run needs of this one's memory: recent outcomes, live merges."""
        state = self._state
        state.outcomes = list(self._outcomes.values())[-MAX_OUTCOMES:]
        live = {r.request_id for r in state.queue} | {c.request.request_id for c in state.running}
        state.aliases = {t: m for t, m in self._aliases.items() if t in live}

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
            if not ks.every_seconds:
                ks.next_due = None
            elif self._phases:
                # keep each cadence on its own grid (the next slot after now): timers that fire
                # a little late do not drift, so kinds of commensurate cadences fall due together
                # and the more urgent goes first, not whichever timer fired a moment earlier
                step = timedelta(seconds=ks.every_seconds)
                ks.next_due += step * ((now - ks.next_due) // step + 1)
            else:
                ks.next_due = now + timedelta(seconds=ks.every_seconds)

    def _effective(self, request: SyncRequest, now: datetime) -> float:
        """Priority plus one level per `ageing_seconds` waited, up to the manual level.

        The cap is what bounds a low-priority wait: once it reaches the top level it is the
        oldest there and goes next, however fast higher-priority requests keep arriving.
        """
        assert request.enqueued_at is not None
        waited = (now - request.enqueued_at).total_seconds()
        step = max(self._state.ageing_seconds, 0.001)
        aged = request.priority + AGEING_STEP * int(waited // step)
        return min(aged, max(request.priority, self._ageing_cap(request.kind)))

    def _ageing_cap(self, kind: str) -> int:
        """The highest level ageing lifts ``kind`` to: the manual level, or lower where the plan
        says (``ageing_cap(kind)``: e.g. far events age past near ones, never past urgent)."""
        capped = getattr(self._plan(), "ageing_cap", None)
        if capped is None:
            return Priority.MANUAL
        try:
            return min(int(capped(kind)), Priority.MANUAL)
        except Exception:  # a plan's bug: the default, never a task failure
            return Priority.MANUAL

    async def _dispatch(self) -> None:
        state = self._state
        plan = self._plan()
        window = SlidingWindow(state.max_concurrent, count=lambda: len(state.running))
        # Handlers can run while a child start is awaited: re-check pause and time each round.
        while state.queue and window.has_room() and not state.paused:
            now = workflow.now()
            ready = self._unblocked(plan)
            if not ready:
                break  # each waits for a running child of its endpoints: it ends, we wake
            best = max(
                ready,
                key=lambda r: (self._effective(r, now), -(r.enqueued_at or now).timestamp()),
            )
            state.queue.remove(best)
            report_to = workflow.info().workflow_id
            try:  # checked when queued; a plan may still refuse (or break): a rejection
                if plan is None:
                    raise ValueError(f"no scheduler plan for provider {state.provider[:40]!r}")
                child = plan.child(state.provider, state.scope, best, state.seq, now)
                child_id = best.child_id or child.id
                if len(child_id.encode()) > MAX_ID_BYTES:
                    raise ValueError(f"its workflow id would be over {MAX_ID_BYTES} bytes long")
                arg = child.build_arg(report_to)
            except Exception as exc:
                self._reject_request(best, best.request_id, one_line(exc))
                self._forget_aliases(best.request_id, "rejected", one_line(exc))
                continue
            # Count it as running before the start is awaited: a fast child can report done
            # (by signal) before the start call returns, and that report must find it.
            running = RunningChild(child_id, best, now)
            state.running.append(running)
            try:
                handle = await workflow.start_child_workflow(
                    child.workflow,
                    arg,
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
                # Started outside this scheduler (`sync` on the CLI): that run does the work,
                # and doing it twice at once is what one id per scope prevents.
                if running in state.running:
                    state.running.remove(running)
                detail = f"{child_id} is already running: not started again"
                self._record(best, "skipped", 0.0, detail)
                ks = state.kinds.setdefault(best.kind, KindState())
                ks.last_status, ks.last_finished_at, ks.last_detail = "skipped", now, detail
                continue
            assert best.enqueued_at is not None
            waited = (now - best.enqueued_at).total_seconds()
            state.waits.append((now, waited))
            del state.waits[:-MAX_WAIT_SAMPLES]
            state.dispatched += 1
            if running in state.running:  # not already reported done
                self._watch(handle, child_id)

    def _unblocked(self, plan: ProviderPlan | None) -> list[SyncRequest]:
        """The queued requests that may start now. A plan may name what each kind holds while
        it runs (``resources(kind)``: e.g. the endpoint families it reads); a request whose
        resources a running child holds waits for it, counted once as a conflict avoided."""
        state = self._state
        resources = getattr(plan, "resources", None)
        if resources is None:
            return list(state.queue)
        held: set[str] = set()
        for child in state.running:
            held |= _resources(resources, child.request.kind)
        ready = []
        for request in state.queue:
            if _resources(resources, request.kind) & held:
                if request.request_id not in self._blocked:
                    self._blocked.add(request.request_id)
                    state.conflicts += 1
            else:
                ready.append(request)
        return ready

    def _forget_aliases(self, rid: str, status: str, detail: str) -> None:
        """Requests merged into a rejected one end with it."""
        for merged in self._aliases.pop(rid, []):
            outcome = RequestOutcome(merged, "", "", status, detail=detail[:200])
            self._outcomes[merged] = outcome
        self._trim_outcomes()

    async def _check_children(self, now: datetime) -> None:
        """Children an earlier run started report by signal; one that ended without a word
        (terminated, reset away, lost) would hold its slot and kind for ever. Every
        ``check_seconds`` the ones this run does not await are looked up."""
        state = self._state
        if not self._checks:
            return
        orphans = [c.child_id for c in state.running if c.child_id not in self._watched]
        if not orphans:
            state.next_check = None
            return
        every = timedelta(seconds=max(MIN_CHECK_SECONDS, state.check_seconds))
        if state.next_check is None:
            state.next_check = now + every
        if now < state.next_check:
            return
        try:
            found = await workflow.execute_activity(
                child_states,
                orphans,
                start_to_close_timeout=timedelta(seconds=10),
                schedule_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_attempts=3),
                summary="look at children of earlier runs",
            )
        except ActivityError as exc:  # the next look tries again
            workflow.logger.warning("could not look at children %s: %s", orphans, exc)
            found = {}
        for child_id, status in found.items():
            if status != "RUNNING":
                self._finish(
                    child_id,
                    CLOSED.get(status, "failed"),
                    f"{child_id} ended ({status.lower()}) without reporting to the scheduler",
                )
        state.next_check = workflow.now() + every

    async def _end_overdue_children(self, now: datetime) -> None:
        """A child still running ``child_deadline_seconds`` after it started is stuck (a
        deadlock, a budget that never comes back): it is asked to cancel and its slot and kind
        are freed, recorded as ``timeout``."""
        if not self._deadlines:
            return
        deadline = timedelta(seconds=self._state.child_deadline_seconds)
        for child in [c for c in self._state.running if now - c.started_at >= deadline]:
            try:
                await workflow.get_external_workflow_handle(child.child_id).cancel()
            except Exception as exc:  # already closed, or never started: the slot goes anyway
                workflow.logger.info("cancelling %s: %s", child.child_id, one_line(exc))
            self._finish(
                child.child_id,
                "timeout",
                f"{child.child_id} still running after {deadline}: cancelled, slot freed",
            )

    def _watch(self, handle: Any, child_id: str) -> None:
        """Children of this run are awaited too, so a terminated child is noticed."""

        async def watch() -> None:
            try:
                result = await handle
                self._finish(child_id, MORE if _status_of(result) == MORE else "completed", "")
            except Exception as exc:
                self._finish(child_id, "failed", cause_message(exc))

        self._watchers = [t for t in self._watchers if not t.done()]
        self._watchers.append(asyncio.create_task(watch()))
        self._watched.add(child_id)

    def _finish(self, child_id: str, status: str, detail: str) -> None:
        state = self._state
        found = next((c for c in state.running if c.child_id == child_id), None)
        if found is None:
            return  # already reported (signal and handle both arrive)
        state.running.remove(found)
        self._watched.discard(child_id)
        now = workflow.now()
        ks = state.kinds.setdefault(found.request.kind, KindState())
        ks.last_status, ks.last_finished_at, ks.last_detail = status, now, detail[:200]
        assert found.request.enqueued_at is not None
        waited = (found.started_at - found.request.enqueued_at).total_seconds()
        self._record(found.request, status, waited, detail, now - found.started_at, child_id)
        if status == MORE:  # the child did a slice of its kind's work: the rest queues now
            request = found.request
            self._add(SyncRequest(kind=request.kind, key=request.key,
                                  priority=request.priority, reason="continued"))  # fmt: skip
        self._wake = True

    def _record(
        self,
        request: SyncRequest,
        status: str,
        waited: float,
        detail: str,
        ran: timedelta = timedelta(),
        child_id: str = "",
    ) -> None:
        outcome = RequestOutcome(
            request.request_id, request.kind, request.key, status, waited,
            ran.total_seconds(), detail[:200], child_id,
        )  # fmt: skip
        for rid in [request.request_id, *self._aliases.pop(request.request_id, [])]:
            self._outcomes[rid] = replace(outcome, request_id=rid)
        self._trim_outcomes()

    def _trim_outcomes(self) -> None:
        while len(self._outcomes) > MAX_OUTCOMES:
            self._outcomes.pop(next(iter(self._outcomes)))

    def _next_wakeup(self, now: datetime) -> timedelta | None:
        dues = [k.next_due for k in self._state.kinds.values() if k.next_due is not None]
        if self._state.paused:
            dues = []
        if self._checks and self._state.next_check is not None:
            dues.append(self._state.next_check)
        if self._deadlines and self._state.running:
            deadline = timedelta(seconds=self._state.child_deadline_seconds)
            dues.append(min(c.started_at for c in self._state.running) + deadline)
        if not dues:
            return None
        return max(timedelta(milliseconds=10), min(dues) - now)

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        budget = self._state.event_budget
        if budget:  # an explicit budget replaces the server's hint (at most MAX_EVENT_BUDGET)
            return info.get_current_history_length() >= max(budget, MIN_EVENT_BUDGET)
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
        queued = [r.enqueued_at for r in state.queue if r.enqueued_at]
        oldest = max(((now - at).total_seconds() for at in queued), default=0.0)
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
            conflicts_avoided=state.conflicts,
            oldest_enqueued_at=min(queued, default=None),
            rejected_total=state.rejected_total,
            rejected=[
                f"{r.at.isoformat(timespec='seconds')} {r.what}: {r.reason}"
                for r in state.rejections[-10:]
            ],
        )


def _resources(resources: Any, kind: str) -> set[str]:
    """What a plan says ``kind`` holds; a plan that breaks holds nothing (never a task failure)."""
    try:
        return set(resources(kind))
    except Exception:
        return set()


def _status_of(result: Any) -> object:
    """A child result's ``status`` (a dict: started by type name, no result type given)."""
    return result.get("status") if isinstance(result, dict) else getattr(result, "status", None)
