"""What `starter.py status` shows: each provider's counts (its spec's ``status``), the dead
letters, the latest runs and the shared rate budgets."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from providers.registry import SPECS
from providers.spec import load
from storage.models import sync_failures, sync_runs


async def database_status(engine: AsyncEngine, runs: int = 5) -> dict[str, Any]:
    async with engine.connect() as conn:
        failures = (
            await conn.execute(
                select(sync_failures.c.reason, func.count()).group_by(sync_failures.c.reason)
            )
        ).all()
        recent_failures = (
            await conn.execute(
                select(
                    sync_failures.c.entity_key,
                    sync_failures.c.reason,
                    sync_failures.c.attempts,
                    sync_failures.c.next_retry_at,
                )
                .order_by(sync_failures.c.last_failed_at.desc())
                .limit(10)
            )
        ).all()
        latest = (
            await conn.execute(
                select(
                    sync_runs.c.id,
                    sync_runs.c.workflow_id,
                    sync_runs.c.provider,
                    sync_runs.c.scope,
                    sync_runs.c.kind,
                    sync_runs.c.status,
                    sync_runs.c.started_at,
                    sync_runs.c.finished_at,
                    sync_runs.c.errors,
                    sync_runs.c.error,
                )
                .order_by(sync_runs.c.started_at.desc())
                .limit(runs)
            )
        ).all()
        sections: dict[str, Any] = {}
        for spec in SPECS:  # each provider's own counts, in registry order
            sections.update(await load(spec.status)(conn))
    return {
        **sections,
        "failures": {reason: n for reason, n in failures},
        "recent_failures": [dict(r._mapping) for r in recent_failures],
        "runs": [dict(r._mapping) for r in latest],
    }


# The shared rate budgets (migration 0005), read in one statement on the database's clock. A
# lease nobody renewed is not free yet: rate_limit_sync turns it into places cooling until
# expiry + period + its grace second (GRACE), so it is counted as cooling here until then.
GRACE = 1.0
BUDGETS_SQL = text(
    """
SELECT b.bucket, b.provider, b.fingerprint, b.paused_until, b.manual_until,
       b.statements, b.requests, b.rate_limited, b.updated_at, n.t AS db_now,
       (SELECT coalesce(jsonb_agg(jsonb_build_object(
            'limit', (w.v ->> 0)::integer,
            'period', (w.v ->> 1)::double precision,
            'leased', (SELECT coalesce(sum(l.places), 0) FROM rate_limit_leases l
                       WHERE l.bucket = b.bucket AND l.win = w.i - 1 AND l.expires_at >= n.t),
            'cooling', (SELECT coalesce(sum(k.places), 0) FROM rate_limit_cooling k
                        WHERE k.bucket = b.bucket AND k.win = w.i - 1 AND k.free_at > n.t)
                     + (SELECT coalesce(sum(l.places), 0) FROM rate_limit_leases l
                        WHERE l.bucket = b.bucket AND l.win = w.i - 1 AND l.expires_at < n.t
                          AND l.expires_at + l.period + :grace > n.t),
            'demand', (SELECT coalesce(sum(c.demand[w.i]), 0) FROM rate_limit_clients c
                       WHERE c.bucket = b.bucket AND c.expires_at >= n.t)
        ) ORDER BY w.i), '[]'::jsonb)
        FROM jsonb_array_elements(b.windows) WITH ORDINALITY AS w(v, i)) AS windows,
       (SELECT count(*) FROM rate_limit_clients c
        WHERE c.bucket = b.bucket AND c.expires_at >= n.t) AS processes,
       (SELECT count(DISTINCT c.host) FROM rate_limit_clients c
        WHERE c.bucket = b.bucket AND c.expires_at >= n.t) AS hosts,
       (SELECT array_agg(x.s ORDER BY x.i) FROM (
            SELECT u.i, sum(u.w)::integer AS s
            FROM rate_limit_clients c, unnest(c.waiting) WITH ORDINALITY AS u(w, i)
            WHERE c.bucket = b.bucket AND c.expires_at >= n.t GROUP BY u.i) x) AS waiting
FROM rate_limit_buckets b, (SELECT extract(epoch FROM clock_timestamp()) AS t) n
ORDER BY b.provider, b.bucket
"""
)


async def rate_budgets(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Every shared rate budget as stored: per window its limit, period and the places leased
    to live processes, cooling down (given back, used up, or held by a process that stopped
    renewing) and wanted; the pause, the manual hold, the waiting requests per lane, the live
    processes, the counters; ``db_now`` is the database clock (epoch seconds) they were read at.
    Raises ``sqlalchemy.exc.ProgrammingError`` on a database without migration 0005."""
    rows = (await conn.execute(BUDGETS_SQL, {"grace": GRACE})).all()
    return [dict(r._mapping) for r in rows]


async def budget_counters(conn: AsyncConnection, provider: str) -> tuple[int, int] | None:
    """(requests, rate-limited calls) counted so far by every shared budget of ``provider``, by
    every process (each process adds its own at its next call of rate_limit_sync, within a
    second); None when the provider has no shared budget. They only grow: the difference of two
    reads is what every process sent (and the 429 pauses it shared) in between."""
    row = (
        await conn.execute(
            text(
                "SELECT count(*) AS n, coalesce(sum(requests), 0) AS requests, "
                "coalesce(sum(rate_limited), 0) AS rate_limited "
                "FROM rate_limit_buckets WHERE provider = :provider"
            ),
            {"provider": provider},
        )
    ).one()
    return (int(row.requests), int(row.rate_limited)) if row.n else None
