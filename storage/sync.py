"""Shared sync bookkeeping: runs, dead letters (sync_failures) and durable checkpoints.

A checkpoint is written in the same transaction as the rows it covers. Battle.net batches
resume from the rows themselves (a character synced since the run's cutoff is done), so their
checkpoint is the visible progress of a batch, not what a retry reads.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from observability import metrics
from storage.models import sync_checkpoints, sync_failures, sync_runs

# The one vocabulary of a run's state (sync_runs.status), for every provider. The last four are
# how Temporal says a workflow ended without closing its row; `status` writes them when it checks
# running rows against Temporal. "abandoned": a later sync of the same scope found the row open.
RUN_STATES = (
    "running", "completed", "partial", "failed", "abandoned", "terminated", "canceled", "timed_out",
)  # fmt: skip
ENDED = RUN_STATES[1:]


async def start_run(
    conn: AsyncConnection, provider: str, scope: str, kind: str, workflow_id: str
) -> int:
    """Idempotent per workflow id: a retried activity finds the row it created."""
    found = (
        await conn.execute(
            select(sync_runs.c.id).where(
                sync_runs.c.workflow_id == workflow_id, sync_runs.c.status == "running"
            )
        )
    ).scalar()
    if found is not None:
        return int(found)
    row = await conn.execute(
        sync_runs.insert()
        .values(provider=provider, scope=scope, kind=kind, workflow_id=workflow_id)
        .returning(sync_runs.c.id)
    )
    return int(row.scalar_one())


async def finish_run(
    conn: AsyncConnection,
    run_id: int,
    status: str,
    counts: dict[str, Any],
    errors: int,
    error: str | None = None,
) -> None:
    if status not in ENDED:
        raise ValueError(f"a run cannot end {status!r}; it ends one of {', '.join(ENDED)}")
    before = sync_runs.alias("before")
    was = select(before.c.status).where(before.c.id == run_id).scalar_subquery()
    closed = await conn.execute(
        update(sync_runs)
        .where(sync_runs.c.id == run_id)
        .values(status=status, counts=counts, errors=errors, error=error, finished_at=func.now())
        # the status before this statement (its subquery sees the rows as they were): a
        # retried finish of a run already closed is not counted again
        .returning(sync_runs.c.provider, sync_runs.c.kind, sync_runs.c.status,
                   sync_runs.c.started_at, sync_runs.c.finished_at, was.label("was"))
    )  # fmt: skip
    metrics.runs_ended(r for r in closed.all() if r.was == "running")


async def open_runs(conn: AsyncConnection, limit: int = 50) -> list[tuple[int, str]]:
    """The newest runs still marked running: (row id, workflow id as recorded)."""
    rows = await conn.execute(
        select(sync_runs.c.id, sync_runs.c.workflow_id)
        .where(sync_runs.c.status == "running")
        .order_by(sync_runs.c.started_at.desc())
        .limit(limit)
    )
    return [(int(r[0]), str(r[1])) for r in rows]


async def close_open_run(
    conn: AsyncConnection, run_id: int, status: str, error: str | None, finished_at: datetime | None
) -> bool:
    """Close a row its workflow left running (it ended as Temporal says); False if it was
    closed meanwhile (the workflow's own finish wins)."""
    if status not in ENDED:
        raise ValueError(f"a run cannot end {status!r}")
    done = await conn.execute(
        update(sync_runs)
        .where(sync_runs.c.id == run_id, sync_runs.c.status == "running")
        .values(status=status, error=error, finished_at=finished_at or func.now())
        .returning(sync_runs.c.provider, sync_runs.c.kind, sync_runs.c.status)
    )
    closed = done.all()
    metrics.runs_ended(closed)  # ended unseen by its workflow: no duration
    return bool(closed)


async def record_failure(
    conn: AsyncConnection,
    provider: str,
    entity_key: str,
    reason: str,
    error: str,
    next_retry_at: datetime | None,
) -> int:
    """Upsert the dead letter; return how many times this entity has failed so far."""
    stmt = insert(sync_failures).values(
        provider=provider,
        entity_key=entity_key,
        reason=reason,
        last_error=error[:2000],
        next_retry_at=next_retry_at,
    )
    upsert = stmt.on_conflict_do_update(
        index_elements=[sync_failures.c.provider, sync_failures.c.entity_key],
        set_={
            "reason": stmt.excluded.reason,
            "last_error": stmt.excluded.last_error,
            "next_retry_at": stmt.excluded.next_retry_at,
            "attempts": sync_failures.c.attempts + 1,
            "last_failed_at": func.now(),
        },
    )
    return int((await conn.execute(upsert.returning(sync_failures.c.attempts))).scalar_one())


async def clear_failures(conn: AsyncConnection, provider: str, entity_keys: list[str]) -> None:
    if entity_keys:
        await conn.execute(
            sync_failures.delete().where(
                sync_failures.c.provider == provider, sync_failures.c.entity_key.in_(entity_keys)
            )
        )


async def set_checkpoint(conn: AsyncConnection, key: str, position: int) -> None:
    stmt = insert(sync_checkpoints).values(key=key, position=position)
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[sync_checkpoints.c.key],
            set_={"position": stmt.excluded.position, "updated_at": func.now()},
        )
    )


async def delete_checkpoint(conn: AsyncConnection, key: str) -> None:
    await conn.execute(sync_checkpoints.delete().where(sync_checkpoints.c.key == key))
