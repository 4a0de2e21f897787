"""Discord storage on the real Postgres: one-statement page upserts, cursor, counters, reset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from storage import discord as db
from storage import sync as syncdb
from storage.db import create_engine
from storage.models import channel_sync_jobs, channels, messages

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "discord"


def _message(mid: int, channel: int, **extra) -> dict:
    ms = (mid >> 22) + 1420070400000
    from datetime import UTC, datetime

    stamp = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="microseconds")
    return {
        "id": str(mid),
        "channel_id": str(channel),
        "author": {"id": "80351110224678912", "username": "nelly"},
        "content": f"message {mid}",
        "timestamp": stamp,
        "edited_timestamp": None,
        "type": 0,
        "attachments": [],
        **extra,
    }


@pytest.fixture
async def engine(database_url):
    engine = create_engine(database_url, pool_size=2)
    yield engine
    await engine.dispose()


async def _setup(engine, mode: str = "incremental") -> tuple[int, int]:
    async with engine.begin() as conn:
        tenant = await db.track_tenant(conn, 1168516062791340136)
        listed = json.loads((FIXTURES / "guild_channels_n8n.json").read_text())
        row_ids = await db.store_channels(conn, tenant, listed)
        run = await syncdb.start_run(conn, "discord", "1168516062791340136", mode, "wf-1")
        await db.begin_run(conn, run, tenant, "wf-1", mode, row_ids)
    return run, row_ids[0]


async def test_page_upsert_moves_cursor_and_counters_in_one_statement(engine):
    run, channel = await _setup(engine)
    base = 1168784010269433998
    page = [
        _message(base + 3, 1, reactions=[{"count": 2, "emoji": {"id": None, "name": "x"}}]),
        _message(base + 2, 1, attachments=[{"id": "1"}, {"id": "2"}]),
        _message(base + 1, 1, type=19, message_reference={"type": 0, "message_id": str(base)}),
    ]
    raw = json.dumps(page).encode()
    async with engine.begin() as conn:
        stored = await db.store_page(conn, run, channel, raw, base + 3)
    assert (stored.inserted, stored.reactions, stored.attachments) == (3, 2, 2)
    async with engine.connect() as conn:
        rows = (await conn.execute(select(messages).order_by(messages.c.discord_message_id))).all()
        cursor = (
            await conn.execute(select(channels.c.last_message_id).where(channels.c.id == channel))
        ).scalar()
        job = (
            await conn.execute(
                select(channel_sync_jobs).where(channel_sync_jobs.c.channel_id == channel)
            )
        ).one()
    assert [r.discord_message_id for r in rows] == [base + 1, base + 2, base + 3]
    assert rows[0].reply_to_message_id == base and rows[0].type == 19
    assert rows[1].attachment_count == 2 and rows[2].reaction_count == 2
    assert rows[2].author_id == 80351110224678912
    assert rows[0].created_at.year == 2023
    assert cursor == base + 3
    assert (job.messages_processed, job.pages, job.api_calls, job.reactions) == (3, 1, 1, 2)

    # The same page again (a retry after a crash before the cursor was seen): no duplicates.
    async with engine.begin() as conn:
        again = await db.store_page(conn, run, channel, raw, base + 3)
    assert again.inserted == 0
    async with engine.connect() as conn:
        count = (await conn.execute(select(func.count()).select_from(messages))).scalar()
    assert count == 3


async def test_full_run_clears_cursors_once_and_reset_keeps_messages(engine):
    run, channel = await _setup(engine)
    base = 1168784010269433998
    async with engine.begin() as conn:
        await db.store_page(conn, run, channel, json.dumps([_message(base, 1)]).encode(), base)
        tenant = await db.tenant_id(conn, 1168516062791340136)
        assert tenant is not None
        full_run = await syncdb.start_run(conn, "discord", "x", "full", "wf-2")
        await db.begin_run(conn, full_run, tenant, "wf-2", "full", [channel])
        cursor = (
            await conn.execute(select(channels.c.last_message_id).where(channels.c.id == channel))
        ).scalar()
        assert cursor is None
        await db.store_page(conn, full_run, channel, json.dumps([_message(base, 1)]).encode(), base)
        # begin_run again for the same run (a retried activity) changes nothing
        await db.begin_run(conn, full_run, tenant, "wf-2", "full", [channel])
        cursor = (
            await conn.execute(select(channels.c.last_message_id).where(channels.c.id == channel))
        ).scalar()
        assert cursor == base
        reset, removed = await db.reset_cursors(conn, 1168516062791340136)
        assert reset == 6 and removed >= 2
        with pytest.raises(LookupError):
            await db.reset_cursors(conn, 42)
        count = (await conn.execute(select(func.count()).select_from(messages))).scalar()
    assert count == 1


async def test_a_page_that_drifted_from_the_schema_is_refused_whole(engine):
    from sqlalchemy.exc import DBAPIError

    run, channel = await _setup(engine)
    base = 1168784010269433998
    good, drifted = _message(base + 1, 1), _message(base, 1)
    del drifted["timestamp"]  # NOT NULL created_at: the activity reports BadPayload
    with pytest.raises(DBAPIError):
        async with engine.begin() as conn:
            await db.store_page(conn, run, channel, json.dumps([good, drifted]).encode(), base + 1)
    async with engine.connect() as conn:
        count = (await conn.execute(select(func.count()).select_from(messages))).scalar()
        cursor = (
            await conn.execute(select(channels.c.last_message_id).where(channels.c.id == channel))
        ).scalar()
    assert count == 0 and cursor is None  # nothing of the page, and the cursor did not move


async def test_pages_committed_without_waiting_for_the_flush_leave_the_connection_durable(engine):
    """Inside `unflushed_commits` a page's commit does not wait for the WAL flush; after it, the
    connection (pooled, shared) commits durably again, also when the block failed."""
    run, channel = await _setup(engine)
    base = 1168784010269433998
    show = text("SELECT current_setting('synchronous_commit')")
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    async with autocommit.connect() as conn:  # as the activity stores pages
        async with db.unflushed_commits(conn, run, channel):
            raw = json.dumps([_message(base + 1, 1)]).encode()
            assert (await db.store_page(conn, run, channel, raw, base + 1)).inserted == 1
            assert (await conn.execute(show)).scalar() == "off"
        assert (await conn.execute(show)).scalar() == "on"
        with pytest.raises(RuntimeError):
            async with db.unflushed_commits(conn, run, channel):
                raise RuntimeError("the upstream went away")
        assert (await conn.execute(show)).scalar() == "on"
    async with engine.connect() as conn:
        cursor = (
            await conn.execute(select(channels.c.last_message_id).where(channels.c.id == channel))
        ).scalar()
    assert cursor == base + 1
