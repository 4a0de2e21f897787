"""Inputs and outputs of ZwiftRacing's workflow and activity: ids, counts and a checkpoint.

No payload and no API key: answers go from the activity straight to Postgres.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from providers.ratelimit import Priority

HELD_WAIT_SECONDS = 5.0  # the longest an activity waits for a budget place; longer: a timer


@dataclass
class ZwiftCheckpoint:
    """Where a sync of one kind stands (carried by the workflow, across continue-as-new).

    riders: the club's pages (``cursor``, the inclusive from-rider of the next page, None for
    the first; ``seen_up_to`` the highest rider id listed so far), then the bulk refresh
    (``phase`` "bulk", ``after`` the last id posted). ``started_at`` is the listing's start on
    the database's clock (riders not listed since have left the club). Event kinds count the
    events read by this run (``events``): a far pass reads a bounded slice per run."""

    phase: str = ""
    cursor: int | None = None
    seen_up_to: int = -1
    after: int = 0
    started_at: datetime | None = None
    events: int = 0


@dataclass
class ZwiftStepInput:
    club_id: int
    kind: str  # riders | urgent | near | far | results | rider
    key: str = ""  # rider: the rider id
    priority: int = Priority.INCREMENTAL
    checkpoint: ZwiftCheckpoint = field(default_factory=ZwiftCheckpoint)
    max_wait_seconds: float = HELD_WAIT_SECONDS


@dataclass
class ZwiftStep:
    """One activity call: at most one upstream call per endpoint family it needs (a club page
    or a bulk POST; an event and its signups; an event's results; one rider)."""

    checkpoint: ZwiftCheckpoint
    done: bool = False
    more: bool = False  # done with this run, but the kind has work left (the far slice)
    resume_at: datetime | None = None  # a budget is spent until then: sleep durably
    progressed: bool = False  # something was stored (or settled: a 404 recorded)
    failed_attempts: int = 0
    calls: int = 0
    stored: int = 0  # riders, events, signups lists or results lists stored
    rate_limited: int = 0
    left: int = 0  # events of the pass still to read after this call
    detail: str = ""


@dataclass
class ZwiftSyncInput:
    club_id: int
    kind: str
    key: str = ""
    priority: int = Priority.INCREMENTAL
    report_to: str | None = None
    checkpoint: ZwiftCheckpoint = field(default_factory=ZwiftCheckpoint)
    carried: ZwiftSyncResult | None = None  # totals of earlier runs (continue-as-new)
    run_id: int | None = None  # its sync_runs row, once made (kept through continue-as-new)


@dataclass
class ZwiftSyncResult:
    club_id: int
    kind: str
    key: str = ""
    status: str = "completed"  # completed | more (the kind has work left)
    calls: int = 0
    stored: int = 0
    rate_limited: int = 0
    budget_waits: int = 0
    activity_calls: int = 0
    failures_without_progress: int = 0
    detail: str = ""
