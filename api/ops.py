"""What the dashboard shows (``GET /v1/ops/state``): the shared rate budgets, the running syncs
with their progress, the schedulers' queues and the 429s and dead letters of the last hour.

Everything but the schedulers is read from Postgres through the read API's pool (read-only):
the same rows `starter.py status` reads (storage.budgets, sync_runs, sync_progress, the Zwift
call log). The schedulers' queues are their ``status`` query, asked of Temporal with a short
timeout; when Temporal is unreachable they are "unknown" and the rest still shows. Rates
(requests/s of a budget, items/s of a run) are differences between this process's own reads,
so they need two reads (the page's second refresh) and are ``None`` before.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from temporalio.client import Client

from api.refresh import ClientSource
from storage.budgets import BUDGETS_SQL, GRACE, budget
from workflows.scheduler_types import SchedulerStatus

HOUR = 3600.0
RATE_SPAN = 15.0  # seconds of reads a rate is measured over
TEMPORAL_TIMEOUT = 1.5  # the whole Temporal part of one read: connect, list, query
TEMPORAL_EVERY = 2.0  # the schedulers' answer is reused this long (every page polls)
SCHEDULERS_SHOWN = 20
LISTED = 20  # runs, dead letters, parked channels: the newest this many

_BUDGETS = BUDGETS_SQL.text.replace(":grace", "$1")
_RUNS = """
SELECT r.id, r.workflow_id, r.provider, r.scope, r.kind, r.status, r.started_at,
       r.finished_at, r.errors, r.error, p.channels_total, p.channels_done, p.channels_failed,
       p.messages_processed, p.messages_per_second, p.waiting_until
FROM sync_runs r LEFT JOIN sync_progress p ON p.sync_run_id = r.id
WHERE r.status = 'running' OR r.finished_at > now() - interval '10 minutes'
ORDER BY r.status <> 'running', r.started_at DESC LIMIT $1
"""
# A Battle.net run's progress, as `sync battlenet --wait` counts it: done is what was synced
# since the run started, total that plus what is still due at its cutoff (its start less the
# staleness; a full run: its start).
_BNET = """
SELECT (SELECT count(*) FROM characters WHERE region = $1 AND last_synced_at >= $2) AS done,
       (SELECT count(*) FROM characters WHERE region = $1
            AND (last_synced_at IS NULL OR last_synced_at < $3)
            AND (recheck_at IS NULL OR recheck_at <= now())) AS due,
       (SELECT count(*) FROM guilds WHERE region = $1 AND tracked AND last_synced_at >= $2)
           AS guilds_done,
       (SELECT count(*) FROM guilds WHERE region = $1 AND tracked) AS guilds
"""
_PVP = """
SELECT count(*) AS entries, count(e.equipment_processed_at) AS processed
FROM pvp_leaderboard_entries e JOIN pvp_leaderboards b ON b.id = e.leaderboard_id
WHERE b.region = $1 AND e.snapshot_at >= $2
"""
_CLUBS = """
SELECT c.club_id, c.name,
       count(l.id) AS calls, count(l.id) FILTER (WHERE l.status = 429) AS rate_limited,
       count(l.id) FILTER (WHERE l.at > now() - interval '2 minutes') AS recent,
       max(l.at) AS last_call_at
FROM zwift_clubs c
LEFT JOIN zwift_sync_log l ON l.club_id = c.club_id AND l.at > now() - interval '1 hour'
WHERE c.tracked GROUP BY c.club_id, c.name ORDER BY c.club_id LIMIT $1
"""
_LAST_HOUR = """
SELECT (SELECT count(*) FROM zwift_sync_log
            WHERE status = 429 AND at > now() - interval '1 hour') AS zwift_429,
       (SELECT coalesce(sum(rate_limited), 0) FROM channel_sync_jobs
            WHERE updated_at > now() - interval '1 hour') AS discord_429,
       (SELECT count(*) FROM sync_failures
            WHERE last_failed_at > now() - interval '1 hour') AS dead_letters
"""
_DEAD = """
SELECT provider, entity_key, reason, attempts, left(last_error, 200) AS last_error,
       last_failed_at, next_retry_at
FROM sync_failures WHERE last_failed_at > now() - interval '1 hour'
ORDER BY last_failed_at DESC LIMIT $1
"""
_PARKED = """
SELECT t.discord_guild_id AS tenant, c.discord_channel_id AS channel, c.name, c.access,
       c.recheck_at
FROM channels c JOIN tenants t ON t.id = c.tenant_id
WHERE c.access IN ('forbidden', 'not_found') AND c.recheck_at > now()
ORDER BY c.recheck_at DESC LIMIT $1
"""


class Rates:
    """Per key, (monotonic time, counters…) of this process's reads over the last hour."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._seen: dict[Any, deque[tuple[float, tuple[float, ...]]]] = {}

    def add(self, key: Any, *values: float) -> None:
        now = self.clock()
        seen = self._seen.setdefault(key, deque())
        seen.append((now, values))
        while len(seen) > 2 and now - seen[1][0] >= HOUR:
            seen.popleft()

    def per_second(self, key: Any, index: int = 0) -> float | None:
        """The counter's rate over the last RATE_SPAN seconds of reads (None: one read)."""
        seen = self._seen.get(key)
        if not seen or len(seen) < 2:
            return None
        last = seen[-1]
        first = next((s for s in seen if last[0] - s[0] <= RATE_SPAN), seen[-2])
        if first is last:
            first = seen[-2]
        seconds = last[0] - first[0]
        return max(0.0, (last[1][index] - first[1][index]) / seconds) if seconds > 0 else None

    def growth(self, key: Any, index: int = 0) -> tuple[float, float]:
        """(how much the counter grew, over how many seconds): this process's reads of it
        in the last hour."""
        seen = self._seen.get(key)
        if not seen:
            return 0.0, 0.0
        return seen[-1][1][index] - seen[0][1][index], seen[-1][0] - seen[0][0]

    def forget(self, gone: Callable[[Any], bool]) -> None:
        for key in [k for k in self._seen if gone(k)]:
            del self._seen[key]


class Ops:
    """Reads the dashboard's state; one per app (its rates are its own reads)."""

    def __init__(
        self, pool_of: Callable[[], asyncpg.Pool], settings: Any, temporal: ClientSource | None
    ) -> None:
        self.pool_of = pool_of
        self.backend = str(settings.RATE_LIMIT_BACKEND)
        self.bnet_staleness = timedelta(seconds=float(settings.BNET_STALENESS_SECONDS))
        self.temporal = temporal
        self.rates = Rates()
        self._lock = asyncio.Lock()
        self._schedulers: tuple[float, dict[str, Any]] | None = None

    async def state(self) -> dict[str, Any]:
        """The whole dashboard, as ``GET /v1/ops/state`` answers it."""
        pool = self.pool_of()
        async with pool.acquire() as conn:
            budgets = await self._budgets(conn)
            runs = await self._runs(conn)
            clubs = await self._clubs(conn)
            last_hour = await self._last_hour(conn, budgets["items"])
        return {
            "generated_at": datetime.now(UTC),
            "budgets": budgets,
            "runs": runs,
            "zwift_clubs": clubs,
            "schedulers": await self.schedulers(),
            "last_hour": last_hour,
        }

    # --- budgets ------------------------------------------------------------------------------

    async def _budgets(self, conn: asyncpg.Connection) -> dict[str, Any]:
        shared = self.backend == "postgres"
        try:
            rows = await conn.fetch(_BUDGETS, GRACE)
        except asyncpg.UndefinedTableError:
            unmigrated = "unknown: no rate budget tables (run `starter.py db upgrade`)"
            return {"shared": shared, "note": unmigrated, "items": []}
        items = []
        for row in rows:
            item = budget(dict(row))
            item["bucket"] = str(row["bucket"])
            key = ("budget", item["bucket"])
            self.rates.add(key, item["requests"], item["rate_limited"])
            item["requests_per_second"] = _round(self.rates.per_second(key))
            items.append(item)
        if not shared:  # budgets of processes that share one although this API does not
            items = [b for b in items if b["processes"]]
        note: str | None = None
        if not shared:
            note = "RATE_LIMIT_BACKEND=local: each worker keeps its own budget, not visible here"
        elif not items:
            note = "no shared budget in use"
        items.sort(key=lambda b: (b["idle"], b["provider"], b["budget"]))
        return {"shared": shared, "note": note, "items": items}

    # --- runs ---------------------------------------------------------------------------------

    async def _runs(self, conn: asyncpg.Connection) -> list[dict[str, Any]]:
        runs = []
        for row in await conn.fetch(_RUNS, LISTED):
            run: dict[str, Any] = {
                k: row[k]
                for k in ("id", "workflow_id", "provider", "scope", "kind", "status",
                          "started_at", "finished_at", "errors", "error")
            }  # fmt: skip
            run["workflow_id"] = str(run["workflow_id"]).partition("#")[0]
            run.update(await self._progress(conn, row))
            key = ("run", row["id"])
            if run["status"] == "running" and run["done"] is not None:
                self.rates.add(key, run["done"])
                if run["rate"] is None:
                    run["rate"] = _round(self.rates.per_second(key))
            total, done = run["total"], run["done"]
            run["percent"] = (
                round(100.0 * min(done, total) / total, 1) if total and done is not None else None
            )
            runs.append(run)
        listed = {("run", r["id"]) for r in runs}
        self.rates.forget(lambda key: key[0] == "run" and key not in listed)
        return runs

    async def _progress(self, conn: asyncpg.Connection, row: asyncpg.Record) -> dict[str, Any]:
        """done/total, their unit, a rate (None: measured by the dashboard) and a detail."""
        none: dict[str, Any] = {"done": None, "total": None, "unit": "", "rate": None}
        if row["channels_total"] is not None:  # Discord: its progress row
            done = int(row["channels_done"]) + int(row["channels_failed"])
            detail = f"{row['messages_processed']} messages"
            if row["channels_failed"]:
                detail += f", {row['channels_failed']} channels failed"
            rate = row["messages_per_second"]
            return {"done": done, "total": int(row["channels_total"]), "unit": "channels",
                    "rate": None if rate is None else round(float(rate), 1),
                    "rate_unit": "messages/s", "detail": detail}  # fmt: skip
        if row["provider"] != "battlenet" or row["status"] != "running":
            return none
        started: datetime = row["started_at"]
        if row["kind"] == "pvp":
            pvp = await conn.fetchrow(_PVP, row["scope"], started)
            assert pvp is not None
            return {**none, "done": int(pvp["processed"]), "total": int(pvp["entries"]),
                    "unit": "entries (equipment)", "rate_unit": "entries/s"}  # fmt: skip
        cutoff = started if row["kind"] == "full" else started - self.bnet_staleness
        counts = await conn.fetchrow(_BNET, row["scope"], started, cutoff)
        assert counts is not None
        done = int(counts["done"])
        return {**none, "done": done, "total": done + int(counts["due"]), "unit": "characters",
                "rate_unit": "characters/s",
                "detail": f"guilds {counts['guilds_done']}/{counts['guilds']}"}  # fmt: skip

    async def _clubs(self, conn: asyncpg.Connection) -> list[dict[str, Any]]:
        try:
            rows = await conn.fetch(_CLUBS, LISTED)
        except asyncpg.UndefinedTableError:
            return []
        return [dict(r) for r in rows]

    # --- the last hour ------------------------------------------------------------------------

    async def _last_hour(
        self, conn: asyncpg.Connection, budgets: list[dict[str, Any]]
    ) -> dict[str, Any]:
        counts = await conn.fetchrow(_LAST_HOUR)
        assert counts is not None
        by_budget = []
        for b in budgets:
            grew, seconds = self.rates.growth(("budget", b["bucket"]), 1)
            if b["rate_limited"] or grew:
                by_budget.append({"budget": b["budget"], "provider": b["provider"],
                                  "rate_limited_total": b["rate_limited"],
                                  "rate_limited_seen": int(grew),
                                  "seen_seconds": round(seconds)})  # fmt: skip
        return {
            "rate_limited": {
                "zwift": int(counts["zwift_429"]),
                "discord": int(counts["discord_429"]),
                "budgets": by_budget,
            },
            "dead_letters": int(counts["dead_letters"]),
            "dead_letter_list": [dict(r) for r in await conn.fetch(_DEAD, LISTED)],
            "parked_channels": [dict(r) for r in await conn.fetch(_PARKED, LISTED)],
        }

    # --- schedulers (Temporal) ----------------------------------------------------------------

    async def schedulers(self) -> dict[str, Any]:
        """The running schedulers' queues, reused for TEMPORAL_EVERY seconds; ``state`` is
        "unknown" with a ``note`` when Temporal did not answer within TEMPORAL_TIMEOUT."""
        async with self._lock:
            now = time.monotonic()
            if self._schedulers is not None and now - self._schedulers[0] < TEMPORAL_EVERY:
                return self._schedulers[1]
            try:
                found = await asyncio.wait_for(self._ask_temporal(), TEMPORAL_TIMEOUT)
                answer: dict[str, Any] = {"state": "known", "items": found}
            except Exception as exc:
                reason = "no Temporal connection" if self.temporal is None else _why(exc)
                answer = {"state": "unknown", "note": f"unknown: {reason}", "items": []}
            self._schedulers = (time.monotonic(), answer)
            return answer

    async def _ask_temporal(self) -> list[dict[str, Any]]:
        if self.temporal is None:
            raise LookupError("no Temporal connection")
        client: Client = await self.temporal()
        query = 'WorkflowType = "Scheduler" AND ExecutionStatus = "Running"'
        ids = [wf.id async for wf in client.list_workflows(query, limit=SCHEDULERS_SHOWN)]
        answers = await asyncio.gather(*(_status(client, wid) for wid in ids))
        return sorted(answers, key=lambda s: str(s["scheduler"]))


async def _status(client: Client, workflow_id: str) -> dict[str, Any]:
    handle = client.get_workflow_handle(workflow_id)
    try:
        status = await handle.query(
            "status", result_type=SchedulerStatus, rpc_timeout=timedelta(seconds=TEMPORAL_TIMEOUT)
        )
    except Exception as exc:  # no worker polls its queue, or it did not answer in time
        return {"scheduler": workflow_id, "state": "unknown", "note": _why(exc)}
    answer = {
        "scheduler": workflow_id,
        "state": "paused" if status.paused else "running",
        "queued": sum(status.queue_depth.values()),
        **asdict(status),
    }
    # the query's wait is as of the scheduler's last workflow task; its oldest request's
    # arrival gives the wait as of now (a paused scheduler runs no task while it waits)
    enqueued = getattr(status, "oldest_enqueued_at", None)
    if isinstance(enqueued, datetime):
        waited = (datetime.now(UTC) - enqueued.astimezone(UTC)).total_seconds()
        answer["oldest_wait_seconds"] = round(max(status.oldest_wait_seconds, waited), 1)
    return answer


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return f"Temporal did not answer within {TEMPORAL_TIMEOUT:g} s"
    text = str(exc).splitlines()[0][:160] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
