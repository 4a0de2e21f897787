"""One clock for every time that crosses a process: the Temporal server's.

A worker's wall clock may be off (a laptop, a VM after suspend, a container without NTP). A
time an activity hands to a workflow (``resume_at``: sleep until the budget is back,
``retry_at``: a deferred character's recheck) is compared there with ``workflow.now()``, the
server's clock; a recheck time stored in Postgres is compared with the database's ``now()``.
Computed from the worker's wall clock, a clock 30 s ahead made every budget sleep 30 s longer
and one 30 s behind made it end before the budget was back. So activities compute such times
here: the attempt's start as the server stamped it, plus the time elapsed since on this
process's monotonic clock. Local waits (the rate limiter) use the monotonic clock only.

:class:`ClockInterceptor` (installed by ``worker.build_worker``) notes each attempt's start on
the monotonic clock; outside an activity the local clock is the best there is.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

_started: ContextVar[float | None] = ContextVar("ratesync_attempt_started", default=None)


def server_now() -> datetime:
    """Now on the Temporal server's clock (inside an activity; the local clock elsewhere)."""
    started = _started.get()
    if started is None or not activity.in_activity():
        return datetime.now(UTC)
    elapsed = time.monotonic() - started
    return activity.info().started_time + timedelta(seconds=elapsed)


def server_time(local_epoch: float) -> datetime:
    """A moment given on this process's wall clock (epoch seconds, e.g. a limiter's
    ``resume_at``) moved onto the server's clock: only its distance from now is kept."""
    return server_now() + timedelta(seconds=local_epoch - time.time())


def server_after(seconds: float) -> datetime:
    """``seconds`` from now, on the server's clock."""
    return server_now() + timedelta(seconds=seconds)


class _Inbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        token = _started.set(time.monotonic())
        try:
            return await super().execute_activity(input)
        finally:
            _started.reset(token)


class ClockInterceptor(Interceptor):
    """Notes when each activity attempt started, on the monotonic clock."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Inbound(next)
