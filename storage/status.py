"""What `starter.py status` shows: each provider's counts (its spec's ``status``), the dead
letters, the latest runs and the shared rate budgets."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from providers.registry import SPECS
from providers.spec import load
from storage.budgets import BUDGETS_SQL, GRACE, budget_counters, rate_budgets  # noqa: F401
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
