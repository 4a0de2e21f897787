"""What `starter.py status` shows: counts of what is stored, failures and the latest runs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.models import characters, guild_members, guilds, sync_failures, sync_runs


async def database_status(engine: AsyncEngine, runs: int = 5) -> dict[str, Any]:
    async with engine.connect() as conn:
        g = (
            await conn.execute(
                select(
                    func.count(),
                    func.count().filter(guilds.c.last_synced_at.is_not(None)),
                    func.count().filter(guilds.c.not_found_at.is_not(None)),
                ).select_from(guilds)
            )
        ).one()
        c = (
            await conn.execute(
                select(
                    func.count(),
                    func.count().filter(characters.c.profile_json.is_not(None)),
                    func.count().filter(characters.c.is_private),
                    func.count().filter(characters.c.last_synced_at.is_(None)),
                ).select_from(characters)
            )
        ).one()
        members = (
            await conn.execute(
                select(func.count())
                .select_from(guild_members)
                .where(guild_members.c.left_at.is_(None))
            )
        ).scalar_one()
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
        pvp = (
            await conn.execute(
                text(
                    "SELECT l.region, l.season_id, l.bracket, l.entry_count, l.last_snapshot_at, "
                    "count(e.id) FILTER (WHERE e.equipment_processed_at IS NOT NULL) AS processed "
                    "FROM pvp_leaderboards l LEFT JOIN pvp_leaderboard_entries e "
                    "ON e.leaderboard_id = l.id AND e.snapshot_at = l.last_snapshot_at "
                    "GROUP BY l.id ORDER BY l.region, l.season_id, l.bracket"
                )
            )
        ).all()
        discord = (
            await conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM tenants) AS tenants, "
                    "(SELECT count(*) FROM channels) AS channels, "
                    "(SELECT count(*) FROM channels WHERE access <> 'ok') AS no_access, "
                    "(SELECT coalesce(sum(message_count), 0)::bigint FROM channels) AS messages"
                )
            )
        ).one()
        latest = (
            await conn.execute(
                select(
                    sync_runs.c.workflow_id,
                    sync_runs.c.status,
                    sync_runs.c.started_at,
                    sync_runs.c.finished_at,
                    sync_runs.c.errors,
                )
                .order_by(sync_runs.c.started_at.desc())
                .limit(runs)
            )
        ).all()
    return {
        "guilds": {"tracked": g[0], "synced": g[1], "not_found": g[2]},
        "characters": {
            "known": c[0],
            "with_profile": c[1],
            "private_or_missing": c[2],
            "never_synced": c[3],
        },
        "members": {"current": members},
        "failures": {reason: n for reason, n in failures},
        "recent_failures": [dict(r._mapping) for r in recent_failures],
        "pvp_brackets": [dict(r._mapping) for r in pvp],
        "discord": dict(discord._mapping),
        "runs": [dict(r._mapping) for r in latest],
    }
