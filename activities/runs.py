"""A sync's `sync_runs` row, opened and closed by one of its provider's activities: the one
body every provider's start-run and finish-run activities share."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from activities.types import FinishRunInput, StartRunInput
from storage import sync as syncdb


async def open_run(engine: AsyncEngine, inp: StartRunInput) -> int:
    """The run's row id (the same one again for a retried call of the same workflow)."""
    async with engine.begin() as conn:
        return await syncdb.start_run(conn, inp.provider, inp.scope, inp.kind, inp.workflow_id)


async def close_run(engine: AsyncEngine, inp: FinishRunInput) -> None:
    async with engine.begin() as conn:
        await syncdb.finish_run(
            conn, inp.run_id, inp.status, inp.counts, inp.errors, inp.error or None
        )
