"""The workflow kernel: the orchestration every provider's workflows share.

- :class:`SlidingWindow` — a bounded fan-out of child workflows (samples-python
  ``batch_sliding_window``): a new child starts as soon as one of at most ``size`` ends.
- :func:`run_until_done` — call a checkpointed activity until it says it is done: sleep on a
  durable timer until ``resume_at`` when the rate budget is spent (``polling/infrequent``: a
  slow wait is a timer, not a held worker slot), count only attempts that made no progress
  toward parking, and continue-as-new when Temporal suggests it.
- :func:`root_cause`, :func:`cause_type`, :func:`cause_message` — unwrap a failure chain
  (workflow → child → activity → application error) to the error that says why.
- The retry contract (README, "The retry contract"): :func:`retry_policy`, the timeouts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    FailureError,
    TimeoutType,
)
from temporalio.exceptions import (
    TimeoutError as TemporalTimeoutError,
)

with workflow.unsafe.imports_passed_through():
    from activities.errors import NON_RETRYABLE
    from activities.types import HEARTBEAT_SECONDS

BACKOFF_CAP = timedelta(seconds=60)
DB_CALL_TIMEOUT = timedelta(seconds=15)  # start-to-close of a database-only activity
DB_CALL_DEADLINE = timedelta(minutes=10)  # schedule-to-close: a database down longer fails
WORK_DEADLINE = timedelta(hours=6)  # schedule-to-close of a checkpointed activity (all attempts)


def retry_policy(
    maximum_attempts: int = 0, non_retryable: Sequence[str] = NON_RETRYABLE
) -> RetryPolicy:
    """Exponential backoff capped at 60 s; no attempt limit unless one is given (the activity's
    schedule-to-close bounds it); non-retryable only what recurs on every attempt."""
    return RetryPolicy(
        initial_interval=timedelta(milliseconds=500),  # after a crash, retry at once
        backoff_coefficient=2.0,
        maximum_interval=BACKOFF_CAP,
        maximum_attempts=maximum_attempts,
        non_retryable_error_types=list(non_retryable),
    )


CHECKPOINTED = retry_policy()
BOOKKEEPING = retry_policy()


def db_call(**overrides: Any) -> dict[str, Any]:
    """Options of a database-only activity: short attempts, retried while the database is away."""
    options: dict[str, Any] = {
        "start_to_close_timeout": DB_CALL_TIMEOUT,
        "schedule_to_close_timeout": DB_CALL_DEADLINE,
        "retry_policy": BOOKKEEPING,
    }
    options.update(overrides)
    return options


def heartbeat(seconds: int | float) -> timedelta:
    """A looping activity's heartbeat timeout: at most 3 s, so a killed worker costs seconds.
    (The background heartbeater beats every third of it; the SDK sends every 0.8 of it.)"""
    return timedelta(seconds=min(float(seconds), HEARTBEAT_SECONDS))


# -- failures -------------------------------------------------------------------------------


def root_cause(err: BaseException) -> BaseException:
    """The innermost failure of a chain (child → activity → application error)."""
    cause = err
    while isinstance(cause, FailureError) and cause.cause is not None:
        cause = cause.cause
    return cause


def cause_type(err: BaseException) -> str:
    """The failure's type name: an ApplicationError's type, "Timeout:HEARTBEAT" for a timeout,
    else the exception class (terminated, cancelled...)."""
    cause = root_cause(err)
    if isinstance(cause, ApplicationError):
        return cause.type or ""
    if isinstance(cause, TemporalTimeoutError):
        return f"Timeout:{cause.type.name if cause.type is not None else 'UNKNOWN'}"
    return type(cause).__name__


def cause_message(err: BaseException) -> str:
    cause = root_cause(err)
    return str(cause.message if isinstance(cause, FailureError) else cause)


# -- run an activity until done -------------------------------------------------------------


class Step(Protocol):
    """What one call of a checkpointed activity reports back."""

    @property
    def resume_at(self) -> datetime | None: ...  # the budget is spent until then

    @property
    def done(self) -> bool: ...

    @property
    def progressed(self) -> bool: ...  # it stored something

    @property
    def failed_attempts(self) -> int: ...  # attempts of this call that failed first


class AttemptCounter(Protocol):
    """Carried by the caller (across continue-as-new): what parking counts."""

    failures_without_progress: int
    budget_waits: int


@dataclass
class Attempts:
    failures_without_progress: int = 0
    budget_waits: int = 0


S = TypeVar("S", bound=Step)


async def run_until_done(
    call: Callable[[RetryPolicy], Awaitable[S]],
    attempts: AttemptCounter,
    *,
    on_step: Callable[[S], None],
    max_failures: int | None = None,
    describe: Callable[[], None] | None = None,
    waiting: Callable[[datetime], None] | None = None,
    min_sleep: timedelta = timedelta(),
    continue_as_new: Callable[[], None] | None = None,
) -> S:
    """Call ``call(retry_policy)`` (one activity execution) until its step is ``done``.

    A step that stopped on a spent budget is followed by a durable sleep until ``resume_at``
    (that never spends an attempt). With ``max_failures``, attempts that failed without any
    progress are counted across calls and the retry policy gets only what is left, so a
    failing entity cannot loop on budget waits; without it, Temporal retries until the
    activity's schedule-to-close timeout. Raises the ActivityError of a call that gave up.

    A call whose last attempt timed out (its worker was killed or lost: no heartbeat, no
    answer) is the worker's fault, not the entity's: it is called again without counting, up
    to ``LOST_WORKER_ALLOWANCE`` times ``max_failures`` per call of this function.
    """
    lost = 0
    while True:
        left = (
            0 if max_failures is None else max(1, max_failures - attempts.failures_without_progress)
        )
        if describe is not None:
            describe()
        try:
            step = await call(retry_policy(maximum_attempts=left))
        except ActivityError as err:
            allowance = LOST_WORKER_ALLOWANCE * (max_failures or 0)
            if _worker_lost(err) and lost < allowance and workflow.patched(WORKER_LOST):
                lost += 1
                workflow.logger.info("activity lost with its worker; called again, uncounted")
                continue
            raise
        on_step(step)
        if step.progressed:
            attempts.failures_without_progress = 0
        else:
            attempts.failures_without_progress += step.failed_attempts
        if step.done:
            return step
        if step.resume_at is not None:
            attempts.budget_waits += 1
            if waiting is not None:
                waiting(step.resume_at)
            wait = max(min_sleep, step.resume_at - workflow.now())
            await workflow.sleep(wait, summary="rate budget exhausted")
        if continue_as_new is not None and workflow.info().is_continue_as_new_suggested():
            continue_as_new()


# A killed or lost worker ends an attempt with a heartbeat or start-to-close timeout.
WORKER_LOST = "worker-lost-uncounted"
LOST_WORKER_ALLOWANCE = 4


def _worker_lost(err: ActivityError) -> bool:
    cause = err.cause
    return isinstance(cause, TemporalTimeoutError) and cause.type in (
        TimeoutType.HEARTBEAT,
        TimeoutType.START_TO_CLOSE,
    )


# -- the sliding window ---------------------------------------------------------------------

H = TypeVar("H")


class SlidingWindow:
    """At most ``size`` children at once; a new one starts as soon as one ends.

    ``submit(start, finish)`` waits for room, then starts a child and runs ``finish(handle)``
    in a task (it awaits the child's result and accounts for it). By default the start is
    awaited before ``submit`` returns, so children start one after another in submission
    order; with ``start_in_task`` the start happens in the task too (histories recorded that
    way keep replaying). ``running`` may be counted by the caller (``count``), e.g. from state
    that survives continue-as-new. ``close()`` stops new starts; ``drain()`` awaits the tasks.
    """

    def __init__(
        self,
        size: int,
        *,
        count: Callable[[], int] | None = None,
        start_in_task: bool = False,
    ) -> None:
        self.size = max(1, size)
        self.closed = False
        self.max_running = 0
        self._running = 0
        self._count = count
        self._start_in_task = start_in_task
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def running(self) -> int:
        return self._count() if self._count is not None else self._running

    def reshape(self, size: int, start_in_task: bool) -> tuple[int, bool]:
        """Change the window's size and way of starting (for the children submitted from now
        on); returns the old ones, to put back."""
        old = (self.size, self._start_in_task)
        self.size, self._start_in_task = max(1, size), start_in_task
        return old

    def has_room(self) -> bool:
        return self.running < self.size and not self.closed

    def close(self) -> None:
        self.closed = True

    async def wait_for_room(self) -> bool:
        await workflow.wait_condition(lambda: self.running < self.size or self.closed)
        return not self.closed

    async def submit(
        self,
        start: Callable[[], Awaitable[H]],
        finish: Callable[[H], Awaitable[None]],
        *,
        refused: Callable[[BaseException], bool] = lambda _: False,
    ) -> bool:
        """Start one child once there is room; False when closed or the start was refused
        (``refused(error)`` says which start errors mean "someone else runs it")."""
        if not await self.wait_for_room():
            return False
        self._running += 1
        self.max_running = max(self.max_running, self.running)

        async def body(handle: H | None) -> None:
            try:
                if handle is None:
                    if self.closed:  # closed while this start waited its turn
                        return
                    try:
                        handle = await start()
                    except Exception as exc:
                        if refused(exc):
                            return
                        raise
                await finish(handle)
            finally:
                self._running -= 1

        if self._start_in_task:
            self._tasks.append(asyncio.create_task(body(None)))
            return True
        try:
            handle = await start()
        except Exception as exc:
            self._running -= 1
            if refused(exc):
                return False
            raise
        self._tasks.append(asyncio.create_task(body(handle)))
        return True

    async def drain(self) -> None:
        tasks, self._tasks = self._tasks, []
        await asyncio.gather(*tasks)
