"""The shared rate budgets (RATE_LIMIT_BACKEND=postgres, migrations 0005/0009) as stored: the
one statement that reads them on the database's clock, and each budget shaped for people
(used, free, the pause, waiting per lane). `status` (cli/budget_view.py) and the dashboard
(api/dashboard.py) show the same numbers from here.

Nothing here imports a provider client or the HTTP layer: the read API imports it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from providers.shared_limit import LANES

LANE_NAMES = tuple(p.name.lower() for p in LANES)  # the order of rate_limit_clients.waiting

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


def budget(row: dict[str, Any]) -> dict[str, Any]:
    """One budget from its stored row (a row of ``rate_budgets``)."""
    now = float(row["db_now"])
    fp = str(row["fingerprint"])
    provider = str(row["provider"])
    name = str(row["bucket"])
    if name.startswith(f"{provider}:") and name.endswith(f":{fp}"):  # "<provider>:<name>:<fp>"
        name = name[len(provider) + 1 : -(len(fp) + 1)] or provider
    elif fp and fp in name:
        name = name.replace(fp, fp[:8])
    windows = []
    for w in row["windows"] or []:
        limit, leased, cooling = int(w["limit"]), int(w["leased"]), int(w["cooling"])
        windows.append(
            {
                "limit": limit,
                "period": float(w["period"]),
                "leased": leased,
                "cooling": cooling,
                "used": leased + cooling,
                "free": max(0, limit - leased - cooling),
                "wanted": int(w["demand"]),
            }
        )
    waiting = list(row["waiting"] or [])
    waiting += [0] * (len(LANE_NAMES) - len(waiting))
    paused = max(0.0, float(row["paused_until"]) - now)
    manual = max(0.0, float(row["manual_until"]) - now)
    processes = int(row["processes"])
    return {
        "budget": name,
        "provider": provider,
        "fingerprint": fp[:8],
        "windows": windows,
        "paused_until": _moment(float(row["paused_until"])) if paused else None,
        "paused_seconds": round(paused, 1),
        "manual_hold_seconds": round(manual, 1),
        "waiting": {lane: int(n) for lane, n in zip(LANE_NAMES, waiting, strict=False)},
        "processes": processes,
        "hosts": int(row["hosts"]),
        "requests": int(row["requests"]),
        "rate_limited": int(row["rate_limited"]),
        "statements": int(row["statements"]),
        "updated_at": row["updated_at"],
        "idle": not (processes or paused or any(w["used"] for w in windows)),
    }


def _moment(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
