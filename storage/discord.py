"""Discord storage: tenants, channels, messages and the per-channel job/progress rows.

A page of messages is stored by one statement: the page's raw JSON goes to Postgres as one
parameter, Postgres extracts the indexed columns, upserts the rows, advances the channel's cursor
and the job's counters — one round trip, one transaction, so the cursor never runs ahead of the
rows it covers (and a replayed page is absorbed by the upsert on ``discord_message_id``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from observability import metrics
from storage.db import count_rows
from storage.models import channel_sync_jobs, channels, sync_progress, sync_runs, tenants

# Channel types whose messages we mirror: text, voice (text-in-voice), announcement, threads,
# stage. Categories, forums and media channels have no messages of their own (their posts are
# threads, listed separately).
MESSAGE_CHANNEL_TYPES = frozenset({0, 2, 5, 10, 11, 12, 13})
# Rows (or ids) per statement: asyncpg takes at most 32,767 parameters, and a listing with its
# archived threads can hold tens of thousands of channels.
ROWS_PER_STATEMENT = 2000


def _chunks(items: Sequence[Any], size: int = ROWS_PER_STATEMENT) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True)
class ChannelRef:
    id: int
    discord_channel_id: int
    tenant_id: int
    type: int
    access: str
    last_message_id: int | None
    channel_last_message_id: int | None  # what Discord said the newest message is


@dataclass(frozen=True)
class PageStored:
    inserted: int
    reactions: int
    attachments: int


# --- tenants and channels ----------------------------------------------------------------


async def track_tenant(conn: AsyncConnection, discord_guild_id: int) -> int:
    """Register a tenant (idempotent); return its row id."""
    stmt = insert(tenants).values(discord_guild_id=discord_guild_id, tracked=True)
    stmt = stmt.on_conflict_do_update(
        index_elements=[tenants.c.discord_guild_id],
        set_={"tracked": True, "updated_at": func.now()},
    )
    return int((await conn.execute(stmt.returning(tenants.c.id))).scalar_one())


async def tenant_id(conn: AsyncConnection, discord_guild_id: int) -> int | None:
    found = await conn.execute(
        select(tenants.c.id).where(tenants.c.discord_guild_id == discord_guild_id)
    )
    value = found.scalar()
    return None if value is None else int(value)


async def store_guild(conn: AsyncConnection, tenant: int, guild: dict[str, Any]) -> None:
    await conn.execute(
        update(tenants)
        .where(tenants.c.id == tenant)
        .values(name=guild.get("name"), guild_json=guild, updated_at=func.now())
    )
    count_rows(conn, "tenants", updated=1)


def _snowflake(value: Any) -> int | None:
    return int(value) if isinstance(value, str) and value.isdigit() else None


def channel_row(tenant: int, channel: dict[str, Any]) -> dict[str, Any]:
    return {
        "discord_channel_id": int(channel["id"]),
        "tenant_id": tenant,
        "name": channel.get("name"),
        "type": int(channel.get("type", 0)),
        "parent_id": _snowflake(channel.get("parent_id")),
        "position": channel.get("position"),
        "channel_json": channel,
    }


async def store_channels(
    conn: AsyncConnection, tenant: int, listed: Sequence[dict[str, Any]]
) -> list[int]:
    """Upsert the listed channels (threads included); return their row ids in order."""
    by_discord: dict[int, int] = {}
    for chunk in _chunks(listed):
        stmt = insert(channels).values([channel_row(tenant, c) for c in chunk])
        stmt = stmt.on_conflict_do_update(
            index_elements=[channels.c.discord_channel_id],
            set_={
                "tenant_id": stmt.excluded.tenant_id,
                "name": stmt.excluded.name,
                "type": stmt.excluded.type,
                "parent_id": stmt.excluded.parent_id,
                "position": stmt.excluded.position,
                "channel_json": stmt.excluded.channel_json,
                "updated_at": func.now(),
            },
        )
        rows = await conn.execute(stmt.returning(channels.c.id, channels.c.discord_channel_id))
        by_discord.update((int(r.discord_channel_id), int(r.id)) for r in rows)
        count_rows(conn, "channels", upserted=len(chunk))
    return [by_discord[int(c["id"])] for c in listed]


_CHANNEL_REF = select(
    channels.c.id,
    channels.c.discord_channel_id,
    channels.c.tenant_id,
    channels.c.type,
    channels.c.access,
    channels.c.last_message_id,
    channels.c.channel_json["last_message_id"].astext.label("listed_last"),
)


def _channel_ref(row: Any) -> ChannelRef:
    return ChannelRef(
        id=int(row.id),
        discord_channel_id=int(row.discord_channel_id),
        tenant_id=int(row.tenant_id),
        type=int(row.type),
        access=str(row.access),
        last_message_id=row.last_message_id,
        channel_last_message_id=_snowflake(row.listed_last),
    )


async def load_channel(conn: AsyncConnection, channel_id: int) -> ChannelRef | None:
    row = (await conn.execute(_CHANNEL_REF.where(channels.c.id == channel_id))).first()
    return None if row is None else _channel_ref(row)


async def load_channels(conn: AsyncConnection, channel_ids: Sequence[int]) -> list[ChannelRef]:
    """Several channels (a query per ROWS_PER_STATEMENT of them), in the order asked for."""
    by_id: dict[int, ChannelRef] = {}
    for chunk in _chunks(channel_ids):
        rows = await conn.execute(_CHANNEL_REF.where(channels.c.id.in_(list(chunk))))
        by_id.update((int(r.id), _channel_ref(r)) for r in rows)
    return [by_id[i] for i in channel_ids if i in by_id]


async def parked_channels(conn: AsyncConnection, discord_guild_id: int) -> set[int]:
    """Discord ids of the tenant's channels that denied access and are not due a re-check."""
    rows = await conn.execute(
        select(channels.c.discord_channel_id)
        .join(tenants, tenants.c.id == channels.c.tenant_id)
        .where(
            tenants.c.discord_guild_id == discord_guild_id,
            channels.c.access.in_(["forbidden", "not_found"]),
            channels.c.recheck_at > func.now(),
        )
    )
    return {int(r) for r in rows.scalars()}


async def set_channel_access(
    conn: AsyncConnection, channel_id: int, access: str, recheck_at: datetime | None = None
) -> None:
    await conn.execute(
        update(channels)
        .where(channels.c.id == channel_id)
        .values(access=access, recheck_at=recheck_at, updated_at=func.now())
    )


# --- runs and jobs -----------------------------------------------------------------------


async def begin_run(
    conn: AsyncConnection,
    run_id: int,
    tenant: int,
    workflow_id: str,
    mode: str,
    channel_ids: Sequence[int],
) -> None:
    """Create the run's progress row and one pending job per channel (idempotent).

    A full sync starts every channel from the beginning: the cursors are cleared here, once,
    in the transaction that creates the jobs (a retry finds the jobs and changes nothing).
    """
    stmt = insert(sync_progress).values(
        sync_run_id=run_id,
        tenant_id=tenant,
        workflow_id=workflow_id,
        mode=mode,
        channels_total=len(channel_ids),
        status="running",
        started_at=func.now(),
    )
    created = await conn.execute(
        stmt.on_conflict_do_nothing(index_elements=[sync_progress.c.sync_run_id]).returning(
            sync_progress.c.id
        )
    )
    if created.first() is None:
        return
    for chunk in _chunks(channel_ids):
        await conn.execute(
            insert(channel_sync_jobs).values(
                [{"sync_run_id": run_id, "channel_id": c, "mode": mode} for c in chunk]
            )
        )
        if mode == "full":
            await conn.execute(
                update(channels)
                .where(channels.c.id.in_(list(chunk)))
                .values(last_message_id=None, updated_at=func.now())
            )


async def run_channel_page(
    conn: AsyncConnection, run_id: int, after_channel_id: int, limit: int
) -> list[tuple[int, int]]:
    """A keyset page of a run's channels (its jobs, made by :func:`begin_run`): (channels.id,
    discord_channel_id) after ``after_channel_id``, by channels.id. The jobs are fixed when the
    run begins, so the pages cover every one of them once, whatever their status meanwhile."""
    j = channel_sync_jobs
    rows = await conn.execute(
        select(j.c.channel_id, channels.c.discord_channel_id)
        .join(channels, channels.c.id == j.c.channel_id)
        .where(j.c.sync_run_id == run_id, j.c.channel_id > after_channel_id)
        .order_by(j.c.channel_id)
        .limit(limit)
    )
    return [(int(r[0]), int(r[1])) for r in rows]


async def abandon_stale_runs(conn: AsyncConnection, scope: str, run_key: str) -> None:
    """Close what an interrupted sync of this tenant left open (one sync per tenant runs at a
    time, so any other open run is dead): its run, progress row and unfinished jobs."""
    stale = select(sync_runs.c.id).where(
        sync_runs.c.provider == "discord",
        sync_runs.c.scope == scope,
        sync_runs.c.status == "running",
        sync_runs.c.workflow_id != run_key,
    )
    ids = [int(i) for i in (await conn.execute(stale)).scalars()]
    if not ids:
        return
    closed = await conn.execute(
        update(sync_runs)
        .where(sync_runs.c.id.in_(ids))
        .values(status="abandoned", finished_at=func.now(), error="interrupted")
        .returning(sync_runs.c.provider, sync_runs.c.kind, sync_runs.c.status)
    )
    metrics.runs_ended(closed.all())  # a conflict: no duration (it ended unseen)
    await conn.execute(
        update(sync_progress)
        .where(sync_progress.c.sync_run_id.in_(ids))
        .values(status="abandoned", completed_at=func.now(), updated_at=func.now())
    )
    await close_open_jobs(conn, ids, "abandoned")


async def close_open_jobs(conn: AsyncConnection, run_ids: Sequence[int], status: str) -> None:
    await conn.execute(
        update(channel_sync_jobs)
        .where(
            channel_sync_jobs.c.sync_run_id.in_(list(run_ids)),
            channel_sync_jobs.c.status.in_(["pending", "running", "waiting"]),
        )
        .values(status=status, waiting_until=None, completed_at=func.now(), updated_at=func.now())
    )


def _job(run_id: int, channel_id: int) -> Any:
    return (channel_sync_jobs.c.sync_run_id == run_id) & (
        channel_sync_jobs.c.channel_id == channel_id
    )


async def job_started(
    conn: AsyncConnection, run_id: int, channel_id: int, worker_id: str, retries: int
) -> None:
    await conn.execute(
        update(channel_sync_jobs)
        .where(_job(run_id, channel_id))
        .values(
            status="running",
            worker_id=worker_id,
            retry_count=func.greatest(channel_sync_jobs.c.retry_count, retries),
            started_at=func.coalesce(channel_sync_jobs.c.started_at, func.now()),
            waiting_until=None,
            updated_at=func.now(),
        )
    )


async def job_waiting(
    conn: AsyncConnection, run_id: int, channel_id: int, until: datetime, rate_limited: int
) -> None:
    await conn.execute(
        update(channel_sync_jobs)
        .where(_job(run_id, channel_id))
        .values(
            status="waiting",
            waiting_until=until,
            rate_limited=channel_sync_jobs.c.rate_limited + rate_limited,
            updated_at=func.now(),
        )
    )


async def job_finished(
    conn: AsyncConnection,
    run_id: int,
    channel_id: int,
    status: str,
    error_type: str | None = None,
    error_message: str | None = None,
) -> dict[str, Any]:
    """Close a job (done / skipped / failed); return its counters."""
    row = (
        await conn.execute(
            update(channel_sync_jobs)
            .where(_job(run_id, channel_id))
            .values(
                status=status,
                completed_at=func.now(),
                waiting_until=None,
                error_type=error_type,
                error_message=None if error_message is None else error_message[:2000],
                updated_at=func.now(),
            )
            .returning(
                channel_sync_jobs.c.messages_processed,
                channel_sync_jobs.c.reactions,
                channel_sync_jobs.c.attachments,
                channel_sync_jobs.c.api_calls,
                channel_sync_jobs.c.rate_limited,
                channel_sync_jobs.c.retry_count,
                channel_sync_jobs.c.started_at,
                channel_sync_jobs.c.completed_at,
            )
        )
    ).first()
    if status == "done":
        await conn.execute(
            update(channels)
            .where(channels.c.id == channel_id)
            .values(last_synced_at=func.now(), access="ok", recheck_at=None)
        )
    return {} if row is None else dict(row._mapping)


_STORE_PAGE = text(
    """
WITH page AS (
    SELECT m FROM jsonb_array_elements(convert_from(CAST(:page AS bytea), 'UTF8')::jsonb) AS m
), page_rows AS (
    SELECT (m->>'id')::bigint AS discord_message_id,
           (m->'author'->>'id')::bigint AS author_id,
           (m->>'timestamp')::timestamptz AS created_at,
           (m->>'edited_timestamp')::timestamptz AS edited_at,
           coalesce((m->>'type')::int, 0) AS type,
           CASE WHEN coalesce(m->'message_reference'->>'type', '0') = '0'
                THEN (m->'message_reference'->>'message_id')::bigint END AS reply_to_message_id,
           coalesce((SELECT sum((r->>'count')::int) FROM jsonb_array_elements(
                CASE jsonb_typeof(m->'reactions') WHEN 'array' THEN m->'reactions'
                ELSE '[]'::jsonb END) AS r), 0)::int AS reaction_count,
           coalesce(CASE jsonb_typeof(m->'attachments') WHEN 'array'
                THEN jsonb_array_length(m->'attachments') END, 0) AS attachment_count,
           m AS message_json
    FROM page
), upserted AS (
    INSERT INTO messages (discord_message_id, channel_id, author_id, created_at, edited_at,
                          type, reply_to_message_id, reaction_count, attachment_count,
                          message_json)
    SELECT discord_message_id, :channel_id, author_id, created_at, edited_at, type,
           reply_to_message_id, reaction_count, attachment_count, message_json
    FROM page_rows
    ON CONFLICT (discord_message_id) DO UPDATE SET
        channel_id = EXCLUDED.channel_id,
        author_id = EXCLUDED.author_id,
        edited_at = EXCLUDED.edited_at,
        type = EXCLUDED.type,
        reply_to_message_id = EXCLUDED.reply_to_message_id,
        reaction_count = EXCLUDED.reaction_count,
        attachment_count = EXCLUDED.attachment_count,
        message_json = EXCLUDED.message_json
    WHERE messages.message_json IS DISTINCT FROM EXCLUDED.message_json
    RETURNING (xmax = 0) AS inserted
), totals AS (
    SELECT count(*) AS n, coalesce(sum(reaction_count), 0) AS reactions,
           coalesce(sum(attachment_count), 0) AS attachments
    FROM page_rows
), inserted AS (
    SELECT count(*) AS n FROM upserted WHERE inserted
), cursor_moved AS (
    UPDATE channels SET
        last_message_id = greatest(coalesce(last_message_id, 0), :newest),
        message_count = message_count + (SELECT n FROM inserted),
        updated_at = now()
    WHERE id = :channel_id
    RETURNING id
)
UPDATE channel_sync_jobs SET
    messages_processed = messages_processed + (SELECT n FROM totals),
    reactions = reactions + (SELECT reactions FROM totals),
    attachments = attachments + (SELECT attachments FROM totals),
    pages = pages + 1,
    api_calls = api_calls + :api_calls,
    last_message_id = :newest,
    status = 'running',
    waiting_until = NULL,
    messages_per_second = (messages_processed + (SELECT n FROM totals))
        / greatest(extract(epoch FROM clock_timestamp() - coalesce(started_at, now())), 0.001),
    updated_at = now()
WHERE sync_run_id = :run_id AND channel_id = :channel_id
RETURNING (SELECT n FROM inserted) AS inserted,
          (SELECT count(*) FROM upserted) AS written,
          (SELECT n FROM totals) AS total,
          (SELECT reactions FROM totals) AS reactions,
          (SELECT attachments FROM totals) AS attachments
"""
)


async def store_page(
    conn: AsyncConnection,
    run_id: int,
    channel_id: int,
    raw_page: bytes,
    newest_id: int,
    api_calls: int = 1,
) -> PageStored:
    """Upsert one page, advance the channel cursor to ``newest_id`` and the job's counters.

    One statement, hence atomic even on an autocommit connection: the cursor never moves
    without the rows it covers (also when the connection commits without waiting for the WAL
    flush, :func:`unflushed_commits`: a crash of Postgres may then lose the last pages, but
    always with the cursor that covers them, so they are fetched again).
    """
    row = (
        await conn.execute(
            _STORE_PAGE,
            {
                "page": raw_page,  # bytes as received: no decode/encode round trip
                "channel_id": channel_id,
                "newest": newest_id,
                "api_calls": api_calls,
                "run_id": run_id,
            },
        )
    ).first()
    if row is None:  # no job row (a page stored outside a run): still stored, no counters
        return PageStored(0, 0, 0)
    inserted, written = int(row.inserted), int(row.written)
    count_rows(conn, "messages", inserted=inserted, updated=written - inserted,
                 unchanged=int(row.total) - written)  # fmt: skip
    return PageStored(int(row.inserted), int(row.reactions), int(row.attachments))


@asynccontextmanager
async def unflushed_commits(
    conn: AsyncConnection, run_id: int, channel_id: int
) -> AsyncIterator[None]:
    """Commits on ``conn`` in the block do not wait for the WAL flush (``synchronous_commit =
    off``); as the block ends, however it ends, one synchronous write flushes the WAL through
    all of them, so nothing stored in it is told (to Temporal) before it is on disk. A
    connection that cannot be put back to durable commits is closed, never pooled again."""
    await conn.execute(text("SET synchronous_commit TO off"))
    try:
        yield
    except BaseException:
        with suppress(Exception):  # the block's own error is the one to report
            await _flush(conn, run_id, channel_id)
        raise
    await _flush(conn, run_id, channel_id)


async def _flush(conn: AsyncConnection, run_id: int, channel_id: int) -> None:
    try:
        await conn.execute(text("SET synchronous_commit TO on"))
        await conn.execute(  # a write: its commit waits for the flush of every WAL before it
            update(channel_sync_jobs).where(_job(run_id, channel_id)).values(updated_at=func.now())
        )
    except BaseException:
        await conn.invalidate()
        raise


async def count_api_calls(conn: AsyncConnection, run_id: int, channel_id: int, calls: int) -> None:
    """Requests that stored no page (an empty last page, a 429) still count."""
    if calls:
        await conn.execute(
            update(channel_sync_jobs)
            .where(_job(run_id, channel_id))
            .values(api_calls=channel_sync_jobs.c.api_calls + calls, updated_at=func.now())
        )


async def finish_run_progress(conn: AsyncConnection, run_id: int, status: str) -> dict[str, Any]:
    """Roll the jobs up into the run's progress row; return the totals."""
    j = channel_sync_jobs
    totals = (
        await conn.execute(
            select(
                func.count().label("channels"),
                func.count().filter(j.c.status == "done").label("done"),
                func.count().filter(j.c.status == "skipped").label("skipped"),
                func.count().filter(j.c.status == "failed").label("failed"),
                func.coalesce(func.sum(j.c.messages_processed), 0).label("messages"),
                func.coalesce(func.sum(j.c.reactions), 0).label("reactions"),
                func.coalesce(func.sum(j.c.attachments), 0).label("attachments"),
                func.coalesce(func.sum(j.c.api_calls), 0).label("api_calls"),
                func.coalesce(func.sum(j.c.rate_limited), 0).label("rate_limited"),
                func.coalesce(func.sum(j.c.retry_count), 0).label("retries"),
                func.avg(func.extract("epoch", j.c.completed_at - j.c.started_at)).label(
                    "avg_channel_seconds"
                ),
            ).where(j.c.sync_run_id == run_id)
        )
    ).one()
    result = {k: (float(v) if k == "avg_channel_seconds" and v is not None else v)
              for k, v in totals._mapping.items()}  # fmt: skip
    for key, value in result.items():
        if key != "avg_channel_seconds":
            result[key] = int(value or 0)
    if status == "failed":  # the breaker stopped the run: what never finished is aborted
        await close_open_jobs(conn, [run_id], "aborted")
    p = sync_progress
    await conn.execute(
        update(p)
        .where(p.c.sync_run_id == run_id)
        .values(
            status=status,
            completed_at=func.now(),
            channels_done=result["done"] + result["skipped"],
            channels_failed=result["failed"],
            messages_processed=result["messages"],
            api_calls=result["api_calls"],
            rate_limited=result["rate_limited"],
            retry_count=result["retries"],
            messages_per_second=result["messages"]
            / func.greatest(func.extract("epoch", func.now() - p.c.started_at), 0.001),
            updated_at=func.now(),
        )
    )
    if status == "completed":
        tenant = select(p.c.tenant_id).where(p.c.sync_run_id == run_id).scalar_subquery()
        await conn.execute(
            update(tenants).where(tenants.c.id == tenant).values(last_synced_at=func.now())
        )
    return result


async def reset_cursors(
    conn: AsyncConnection, discord_guild_id: int, discord_channel_id: int | None = None
) -> tuple[int, int]:
    """Clear cursors and progress of a tenant (or one of its channels); keep the messages.

    Returns (channels reset, progress rows removed). Raises LookupError for an unknown id.
    """
    tenant = await tenant_id(conn, discord_guild_id)
    if tenant is None:
        raise LookupError(f"tenant {discord_guild_id} is not tracked")
    where = channels.c.tenant_id == tenant
    if discord_channel_id is not None:
        where = where & (channels.c.discord_channel_id == discord_channel_id)
    ids = [int(r) for r in (await conn.execute(select(channels.c.id).where(where))).scalars()]
    if discord_channel_id is not None and not ids:
        raise LookupError(
            f"channel {discord_channel_id} is not a channel of tenant {discord_guild_id}"
        )
    removed = 0
    for chunk in _chunks(ids):
        await conn.execute(
            update(channels)
            .where(channels.c.id.in_(list(chunk)))
            .values(last_message_id=None, last_synced_at=None, access="ok", recheck_at=None)
        )
        removed += (
            await conn.execute(
                channel_sync_jobs.delete().where(channel_sync_jobs.c.channel_id.in_(list(chunk)))
            )
        ).rowcount or 0
    if discord_channel_id is None:
        removed += (
            await conn.execute(sync_progress.delete().where(sync_progress.c.tenant_id == tenant))
        ).rowcount or 0
    return len(ids), removed


async def latest_run(conn: AsyncConnection, discord_guild_id: int) -> dict[str, Any] | None:
    """The newest run of a tenant: its progress row plus the run's status."""
    tenant = await tenant_id(conn, discord_guild_id)
    if tenant is None:
        return None
    p = sync_progress
    row = (
        await conn.execute(
            select(p, sync_runs.c.status.label("run_status"))
            .join(sync_runs, sync_runs.c.id == p.c.sync_run_id)
            .where(p.c.tenant_id == tenant)
            .order_by(p.c.id.desc())
            .limit(1)
        )
    ).first()
    return None if row is None else dict(row._mapping)


async def tenant_stored(conn: AsyncConnection, discord_guild_id: int) -> dict[str, int]:
    """What is stored of a tenant, whatever any run says: channels and messages."""
    row = (
        await conn.execute(
            select(
                func.count(channels.c.id).label("channels"),
                func.coalesce(func.sum(channels.c.message_count), 0).label("messages"),
            )
            .select_from(tenants.join(channels, channels.c.tenant_id == tenants.c.id))
            .where(tenants.c.discord_guild_id == discord_guild_id)
        )
    ).one()
    return {"channels": int(row.channels), "messages": int(row.messages)}


async def last_sync_run(conn: AsyncConnection, scope: str) -> dict[str, Any] | None:
    """The tenant's newest sync_runs row, whatever became of it (one that failed before its
    channels were listed has no progress row)."""
    row = (
        await conn.execute(
            select(
                sync_runs.c.workflow_id, sync_runs.c.status, sync_runs.c.error,
                sync_runs.c.started_at, sync_runs.c.finished_at,
            )
            .where(sync_runs.c.provider == "discord", sync_runs.c.scope == scope)
            .order_by(sync_runs.c.started_at.desc(), sync_runs.c.id.desc())
            .limit(1)
        )
    ).first()  # fmt: skip
    return None if row is None else dict(row._mapping)


async def run_jobs(conn: AsyncConnection, run_id: int) -> list[dict[str, Any]]:
    j = channel_sync_jobs
    rows = await conn.execute(
        select(
            channels.c.discord_channel_id,
            channels.c.name,
            channels.c.type,
            j.c.status,
            j.c.messages_processed,
            j.c.messages_per_second,
            j.c.retry_count,
            j.c.rate_limited,
            j.c.waiting_until,
            j.c.error_type,
            j.c.error_message,
            j.c.worker_id,
        )
        .join(channels, channels.c.id == j.c.channel_id)
        .where(j.c.sync_run_id == run_id)
        .order_by(channels.c.position.nulls_last(), channels.c.discord_channel_id)
    )
    return [dict(r._mapping) for r in rows]


async def status(conn: AsyncConnection) -> dict[str, Any]:
    """Discord's part of `starter.py status`: tenants, channels, channels without access."""
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
    return {"discord": dict(discord._mapping)}
