"""State and messages of the generic Scheduler workflow (carried across continue-as-new)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from providers.ratelimit import Priority

# Priorities (higher first) are `Priority`: manual add > urgent > scheduled incremental >
# scheduled bulk > backfill; the same numbers order waiters in the rate limiter.
AGEING_STEP = Priority.INCREMENTAL - Priority.BULK  # one priority level

_SPEC = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_cadence(spec: str) -> int | None:
    """`"15m"`, `"2h"`, `"1d"`, `"900s"` → seconds; `"off"` → None. ValueError otherwise."""
    if spec.strip().lower() in ("off", "none", "0"):
        return None
    match = _SPEC.match(spec.lower())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"cadence {spec!r} is not like '15m', '2h', '1d' or 'off'")
    return int(match.group(1)) * _UNIT[match.group(2)]


@dataclass
class SyncRequest:
    """One unit of work for a scheduler: a sync kind and, for entity kinds, the entity key."""

    kind: str
    key: str = ""
    priority: int = Priority.MANUAL
    reason: str = ""
    request_id: str = ""
    enqueued_at: datetime | None = None


@dataclass
class RequestOutcome:
    request_id: str
    kind: str
    key: str
    status: str  # completed | failed | timeout
    waited_seconds: float = 0.0
    ran_seconds: float = 0.0
    detail: str = ""


@dataclass
class KindState:
    every_seconds: int | None = None
    priority: int = Priority.INCREMENTAL
    next_due: datetime | None = None
    last_status: str | None = None
    last_finished_at: datetime | None = None
    last_detail: str = ""


@dataclass
class RunningChild:
    child_id: str
    request: SyncRequest
    started_at: datetime


@dataclass
class ChildDone:
    """Sent by a child to its scheduler when it ends (reaches the latest run after CAN)."""

    child_id: str
    status: str
    detail: str = ""


@dataclass
class SchedulerInput:
    provider: str
    scope: str
    cadences: dict[str, str] = field(default_factory=dict)  # kind → "15m" (first start only)
    max_concurrent: int = 4
    ageing_seconds: float = 60.0
    event_budget: int = 0  # >0: continue-as-new past this many events (tests); else server hint
    visibility: bool = True  # set search attributes on children (needs them registered)
    # carried across continue-as-new
    kinds: dict[str, KindState] = field(default_factory=dict)
    queue: list[SyncRequest] = field(default_factory=list)
    running: list[RunningChild] = field(default_factory=list)
    paused: bool = False
    waits: list[tuple[datetime, float]] = field(default_factory=list)
    seq: int = 0
    dispatched: int = 0
    started: bool = False


@dataclass
class SchedulerStatus:
    provider: str
    scope: str
    paused: bool
    queue_depth: dict[str, int]
    running: list[str]
    oldest_wait_seconds: float
    avg_wait_seconds_last_hour: float
    max_wait_seconds_last_hour: float
    next_due: dict[str, str | None]
    last_result: dict[str, str | None]
    dispatched_total: int
