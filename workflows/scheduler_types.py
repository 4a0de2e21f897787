"""State and messages of the generic Scheduler workflow (carried across continue-as-new)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from providers.ratelimit import Priority

# Priorities (higher first) are `Priority`: manual add > urgent > scheduled incremental >
# scheduled bulk > backfill; the same numbers order waiters in the rate limiter.
AGEING_STEP = Priority.INCREMENTAL - Priority.BULK  # one priority level

_SPEC = re.compile(r"^\s*(\d{1,12})\s*([smhd])\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MIN_CADENCE_SECONDS = 1
MAX_CADENCE_SECONDS = 365 * 86400

# What a scheduler accepts (checked in its handlers, its update validator and the CLI): a
# request that breaks these is refused with one line, never planned.
MAX_KIND_LENGTH = 32
MAX_KEY_LENGTH = 160
MAX_REASON_LENGTH = 200
MAX_REQUEST_ID_LENGTH = 64
MAX_ID_BYTES = 255  # child workflow ids (limit.maxIDLength: 1000 in the dev server, 255 in compose)
MAX_QUEUE = 1000  # requests waiting in one scheduler (carried through continue-as-new)
_KIND = re.compile(r"^[a-z][a-z0-9_-]*$")
# A caller's own request id has a "-" (the scheduler's own are r<seq>), so the two never meet.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_.]+-[A-Za-z0-9_.-]+$")
_OWN_ID = re.compile(r"^r[0-9]{1,15}$")


def parse_cadence(spec: str) -> int | None:
    """`"15m"`, `"2h"`, `"1d"`, `"900s"` → seconds (1 s .. 365 d); `"off"` → None.

    ValueError (one line) otherwise, so settings, the CLI and the Scheduler refuse alike."""
    if not isinstance(spec, str):
        raise ValueError(f"cadence {spec!r} is not text like '15m', '2h', '1d' or 'off'")
    if spec.strip().lower() in ("off", "none", "0"):
        return None
    match = _SPEC.match(spec.lower())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"cadence {spec[:40]!r} is not like '15m', '2h', '1d' or 'off'")
    seconds = int(match.group(1)) * _UNIT[match.group(2)]
    if not MIN_CADENCE_SECONDS <= seconds <= MAX_CADENCE_SECONDS:
        raise ValueError(f"cadence {spec[:40]!r} is out of range: use 1s .. 365d, or 'off'")
    return seconds


def check_kind(kind: object) -> str:
    """A sync kind's name as a request may carry it (ValueError otherwise)."""
    if not isinstance(kind, str) or not kind:
        raise ValueError("a request needs a kind")
    if len(kind) > MAX_KIND_LENGTH or not _KIND.match(kind):
        raise ValueError(f"kind {kind[:40]!r} is not a sync kind name (a-z, 0-9, '-', '_')")
    return kind


def check_request(request: object, own_ids: bool = False) -> None:
    """What every scheduler requires of a request, whatever its provider (ValueError, one
    line, naming what is wrong). The provider's plan then checks kind, key and scope.
    ``own_ids``: the request id may be one the scheduler gave (r<seq>); a sender's may not."""
    if not isinstance(request, SyncRequest):
        raise ValueError(f"a request is a SyncRequest, not {type(request).__name__}")
    check_kind(request.kind)
    key = request.key
    if not isinstance(key, str) or len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"a request key is text of at most {MAX_KEY_LENGTH} characters")
    if not key.isprintable():
        raise ValueError("a request key has no control characters (tab, newline, ...)")
    priority = request.priority
    lowest, highest = min(Priority), max(Priority)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ValueError("a request priority is a number, e.g. 40 (manual)")
    if not lowest <= priority <= highest:
        raise ValueError(f"a request priority is {int(lowest)} .. {int(highest)}, not {priority}")
    if not isinstance(request.reason, str) or len(request.reason) > MAX_REASON_LENGTH:
        raise ValueError(f"a request reason is text of at most {MAX_REASON_LENGTH} characters")
    rid = request.request_id
    own = own_ids and isinstance(rid, str) and _OWN_ID.match(rid)
    if not isinstance(rid, str) or (
        rid and not own and (len(rid) > MAX_REQUEST_ID_LENGTH or not _REQUEST_ID.match(rid))
    ):
        raise ValueError(
            f"a request id is empty or like 'add-1f3e…' (letters, digits, '-', '_', '.'; "
            f"at most {MAX_REQUEST_ID_LENGTH})"
        )
    if request.enqueued_at is not None and not isinstance(request.enqueued_at, datetime):
        raise ValueError("a request's enqueued_at is a time or absent")
    if not isinstance(request.child_id, str):
        raise ValueError("a request's child_id is text (the scheduler sets it)")


def one_line(exc: BaseException, limit: int = 200) -> str:
    """An exception as one short line (what a rejection records)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, ValueError):
        text = f"{type(exc).__name__}: {text}"
    return text[:limit]


@dataclass
class SyncRequest:
    """One unit of work for a scheduler: a sync kind and, for entity kinds, the entity key."""

    kind: str
    key: str = ""
    priority: int = Priority.MANUAL
    reason: str = ""
    request_id: str = ""
    enqueued_at: datetime | None = None
    child_id: str = ""  # set by the scheduler when queued: the workflow that will serve it


@dataclass
class RequestOutcome:
    request_id: str
    kind: str
    key: str
    status: str  # completed | failed | partial | terminated | … | rejected (never planned)
    waited_seconds: float = 0.0
    ran_seconds: float = 0.0
    detail: str = ""
    child_id: str = ""  # the workflow that served it ("" when it never started)


@dataclass
class Submitted:
    """What the `submit` update answers at once: the request is queued (or merged into an
    equal one already waiting). Its child's id is known once it is dispatched (`request`)."""

    request_id: str
    state: str  # queued | merged | known (this request id was submitted before)
    merged_into: str = ""
    child_id: str = ""  # "" when not known yet (a request queued by an earlier version)


@dataclass
class RequestState:
    """Where one request is (the `request` query): queued, running in ``child_id``, done
    (``outcome``), or unknown (never seen, or long forgotten)."""

    request_id: str
    state: str  # queued | running | done | unknown
    child_id: str = ""
    outcome: RequestOutcome | None = None


@dataclass
class Rejection:
    """A message the scheduler refused (bad input, or a request its plan could not plan)."""

    at: datetime
    what: str  # e.g. "enqueue character draenor/x", "run_now bogus"
    reason: str


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
    event_budget: int = 0  # >0: continue-as-new past this many events, not at the server's hint
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
    max_queue: int = MAX_QUEUE  # a request beyond this many waiting is rejected
    check_seconds: float = 60.0  # how often children started by an earlier run are looked at
    child_deadline_seconds: float = 24 * 3600.0  # a child running longer is stuck: cancelled
    next_check: datetime | None = None
    outcomes: list[RequestOutcome] = field(default_factory=list)  # recent, newest last
    aliases: dict[str, list[str]] = field(default_factory=dict)  # request → merged into it
    rejections: list[Rejection] = field(default_factory=list)  # recent, newest last
    rejected_total: int = 0
    conflicts: int = 0  # requests that waited for a running child holding their resources


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
    rejected_total: int = 0
    rejected: list[str] = field(default_factory=list)  # the latest, "<when> <what>: <reason>"
    # requests that would have competed with a running child for the same resources (e.g. a
    # Zwift club's endpoint windows) and waited for it instead: conflicts avoided, not 429s
    conflicts_avoided: int = 0
    # when the oldest queued request was queued: a query's clock stands still at the last
    # workflow task, so the metrics compute its wait from this (ratesync_scheduler_*)
    oldest_enqueued_at: datetime | None = None
