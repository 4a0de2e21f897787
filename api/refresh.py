"""The refresh hook: a site asks for one entity to be synced now (``POST /v1/refresh/…``).

The request goes to the running scheduler of the entity's scope as its ``enqueue`` signal at
manual priority, exactly as ``starter.py add`` sends it, and the hook answers 202 with the
request id at once: it never waits on the sync, let alone on the upstream. What the scheduler
would refuse is refused here first (422, one line), so a bad request never reaches it; the
scheduler checks again and records any rejection (``scheduler status``). Each client (its
address) may call the hook API_REFRESH_PER_MINUTE times a minute (a token bucket); beyond that
429 with ``Retry-After``, so a site cannot flood the scheduler.

No provider client is imported here: the keys are built from the entity names the way the
CLI's ``add`` builds them (``realm-slug/Name``, a rider id, a tenant id).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from providers.ratelimit import Priority
from workflows.scheduler_types import SyncRequest

ClientSource = Callable[[], Awaitable[Client]]


@dataclass(frozen=True)
class Target:
    provider: str  # the scheduler's provider (`scheduler/<provider>/<scope>`)
    scope: str
    kind: str
    key: str
    start_hint: str  # how to start the scheduler that is not running


class NoScheduler(Exception):
    """The scope's scheduler is not running: the hook cannot queue (409, naming the fix)."""


class RefreshLimiter:
    """A token bucket per client: ``per_minute`` calls, refilled continuously."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(per_minute)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, who: str) -> float:
        """0 if ``who`` may call now (a token is taken), else the seconds until it may."""
        now = self.clock()
        tokens, at = self._buckets.get(who, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            self._buckets[who] = (tokens - 1.0, now)
            if len(self._buckets) > 10_000:  # forget full buckets: memory stays bounded
                self._buckets = {k: v for k, v in self._buckets.items() if v[0] < self.burst}
            return 0.0
        self._buckets[who] = (tokens, now)
        return (1.0 - tokens) / self.rate


async def enqueue(client: Client, target: Target) -> dict[str, str]:
    request = SyncRequest(
        kind=target.kind,
        key=target.key,
        priority=Priority.MANUAL,
        reason="refresh hook",
        request_id=f"api-{uuid.uuid4().hex[:16]}",
    )
    scheduler = f"scheduler/{target.provider}/{target.scope}"
    try:
        await client.get_workflow_handle(scheduler).signal("enqueue", request)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise NoScheduler(
                f"no scheduler runs for {target.provider} {target.scope}: start it with "
                f"`{target.start_hint}`"
            ) from None
        raise
    return {
        "request_id": request.request_id,
        "scheduler": scheduler,
        "kind": target.kind,
        "key": target.key,
        "status": "queued",
    }
