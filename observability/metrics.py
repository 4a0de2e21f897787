"""ratesync's own Prometheus metrics (README "Metrics"): their definitions and the cheap calls
the other layers make. No Temporal import: ``providers/`` and ``storage/`` call this module.

Every worker serves them on ``METRICS_PORT`` (``observability.exporter``), together with the
Temporal SDK's runtime metrics. The calls are counter increments on prometheus_client's
metrics (a lock and an add); a process that serves nothing (the CLI, a test) just counts.

- ``ratesync_upstream_requests_total{provider,bucket,status}``: every HTTP request sent
  upstream (``providers.http.ProviderHTTP``), ``status`` the answer's HTTP status, or for no
  answer ``timeout``, ``connect`` (no connection), ``reset`` (the connection broke),
  ``cancelled`` (the caller stopped waiting) or ``error``. ``bucket`` is the rate budget whose
  place the request held, as ``status`` names it (``battlenet``, ``discord global``, Zwift's
  families ``clubs``, ``riders_get``, …), ``none`` for a request outside any budget (the
  Battle.net OAuth token).
- ``ratesync_rate_limited_total{provider,scope}``: 429 answers; ``scope`` is Discord's
  (``user``, ``global``, ``shared``: ``X-RateLimit-Scope``) where the answer names one, else
  the bucket.
- ``ratesync_limiter_wait_seconds{lane}``: how long a request waited for its place in a
  budget (local or shared), by lane (``manual`` … ``backfill``); a Discord request's route
  bucket wait and global limit wait are one observation (``ratelimit.after_waiting``).
- ``ratesync_bucket_utilisation{provider,bucket,window}``: places used / limit per window
  (collected at scrape time, ``observability.exporter``).
- ``ratesync_rows_upserted_total{table,outcome}``: rows the sync's store steps wrote, counted
  when their transaction commits (``storage.db.count_rows``).
- ``ratesync_sync_duration_seconds{provider,kind}`` and ``ratesync_sync_runs_total
  {provider,kind,outcome}``: sync runs (``sync_runs`` rows) as they end.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics

disable_created_metrics()  # no `_created` series beside each counter and histogram
REGISTRY = CollectorRegistry(auto_describe=True)

# Seconds: from a place free at once to a durable budget wait (RATE_LIMIT_MAX_WAIT_SECONDS).
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Seconds: a manual add (about a second) to a full sync of a large scope (hours).
SYNC_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)

UPSTREAM_REQUESTS = Counter(
    "ratesync_upstream_requests",
    "HTTP requests sent upstream, by provider, rate budget and answer (status code or error)",
    ["provider", "bucket", "status"],
    registry=REGISTRY,
)
RATE_LIMITED = Counter(
    "ratesync_rate_limited",
    "429 answers received, by provider and scope (Discord's user/global/shared, else the bucket)",
    ["provider", "scope"],
    registry=REGISTRY,
)
LIMITER_WAIT = Histogram(
    "ratesync_limiter_wait_seconds",
    "Seconds a request waited for its place in a rate budget, by priority lane",
    ["lane"],
    buckets=WAIT_BUCKETS,
    registry=REGISTRY,
)
ROWS_UPSERTED = Counter(
    "ratesync_rows_upserted",
    "Rows written by the sync's store steps, by table and outcome "
    "(inserted, updated, unchanged, deleted; upserted where the statement does not say which)",
    ["table", "outcome"],
    registry=REGISTRY,
)
SYNC_DURATION = Histogram(
    "ratesync_sync_duration_seconds",
    "Seconds a sync run took (sync_runs: started to finished, on the database clock)",
    ["provider", "kind"],
    buckets=SYNC_BUCKETS,
    registry=REGISTRY,
)
SYNC_RUNS = Counter(
    "ratesync_sync_runs",
    "Sync runs ended, by the status they ended with (sync_runs.status)",
    ["provider", "kind", "outcome"],
    registry=REGISTRY,
)

NO_BUCKET = "none"
# what a lane is called, by lane index (providers.shared_limit.lane_of): priority // 10
LANE_NAMES = ("backfill", "bulk", "incremental", "urgent", "manual")
OUTCOMES = ("inserted", "updated", "unchanged", "deleted", "upserted")
_STATUS_WORDS = {"timeout", "connect", "reset", "cancelled", "error"}

# The rate budgets of this process (``providers.shared_limit.budget``): bucket utilisation is
# read from them at scrape time. Weak: a budget that is gone is not reported.
_budgets: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def lane(priority: int) -> str:
    """The lane of a priority (above manual counts as manual)."""
    return LANE_NAMES[max(0, min(len(LANE_NAMES) - 1, int(priority) // 10))]


def upstream_request(provider: str, bucket: str | None, status: int | str) -> None:
    """One request sent upstream and how it ended (an HTTP status, or an error word)."""
    label = str(status) if isinstance(status, int) or status in _STATUS_WORDS else "error"
    UPSTREAM_REQUESTS.labels(provider, bucket or NO_BUCKET, label).inc()


def rate_limited(provider: str, scope: str) -> None:
    RATE_LIMITED.labels(provider, scope or NO_BUCKET).inc()


def limiter_waited(priority: int, seconds: float) -> None:
    """A request got its place in a budget after ``seconds``."""
    LIMITER_WAIT.labels(lane(priority)).observe(max(0.0, seconds))


def rows(table: str, **outcomes: int) -> None:
    """Rows one store statement wrote: ``rows("messages", inserted=3, unchanged=97)``."""
    for outcome, count in outcomes.items():
        if count > 0:
            ROWS_UPSERTED.labels(table, outcome).inc(count)


def run_ended(provider: str, kind: str, outcome: str, seconds: float | None = None) -> None:
    """A sync run ended (its ``sync_runs`` row closed); ``seconds`` it took, when it ended by
    itself (completed, partial, failed), not when another found it left open."""
    SYNC_RUNS.labels(provider, kind, outcome).inc()
    if seconds is not None:
        SYNC_DURATION.labels(provider, kind).observe(max(0.0, seconds))


def runs_ended(closed: Iterable[Any], outcome: str | None = None) -> None:
    """Rows of ``sync_runs`` closed by one statement (``provider``, ``kind``, ``status`` and,
    for a duration, ``started_at`` and ``finished_at``)."""
    for row in closed:
        started, finished = getattr(row, "started_at", None), getattr(row, "finished_at", None)
        seconds = (finished - started).total_seconds() if started and finished else None
        run_ended(str(row.provider), str(row.kind), outcome or str(row.status), seconds)


def track_budget(limiter: Any, provider: str) -> None:
    """A rate budget this process uses (its utilisation is reported)."""
    _budgets[limiter] = provider


def budgets() -> list[tuple[Any, str]]:
    """The live rate budgets of this process, with their provider."""
    return list(_budgets.items())
