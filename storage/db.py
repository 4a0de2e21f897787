"""Engine creation from a plain `postgresql://` URL; the async driver is chosen here."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
from typing import Any

import orjson
from sqlalchemy import Connection, event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from observability import metrics


def async_url(url: str) -> str:
    """`postgresql://u@h:5432/db` (as users write it) → the asyncpg dialect URL."""
    return re.sub(r"^postgres(?:ql)?(?:\+\w+)?://", "postgresql+asyncpg://", url)


def sync_url(url: str) -> str:
    return re.sub(r"^postgres(?:ql)?(?:\+\w+)?://", "postgresql://", url)


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def json_text(value: Any) -> str:
    """Compact JSON text for a JSONB parameter: orjson (~10x json.dumps, and a batch carries
    1,600 item documents), json for what orjson refuses (integers beyond 64 bits). A NaN or an
    infinity, which Postgres refuses in JSON, is written as null by either."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(_finite(value), ensure_ascii=False, separators=(",", ":"))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def create_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    """JSON and JSONB parameters are written by orjson (json.dumps of a character's documents
    was the worker's largest serialisation cost); a NaN or an infinity in a payload (stdlib json
    parses them, Postgres refuses them) is stored as null. They are read by stdlib json, which
    keeps an integer beyond 64 bits exact (orjson would make it a float). Rows counted with
    :func:`count_rows` reach the metric when their transaction commits."""
    engine = create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        json_serializer=json_text,
    )
    # rows counted by a store step reach the metric when its transaction commits (count_rows)
    event.listen(engine.sync_engine, "commit", _committed)
    event.listen(engine.sync_engine, "rollback", _rolled_back)
    event.listen(engine.sync_engine.pool, "checkin", _checked_in)  # ended either way
    return engine


async def open_connections(engine: AsyncEngine, count: int) -> None:
    """Open ``count`` pooled connections now, best effort: a fresh worker's first sync otherwise
    opens one per concurrent activity while its requests wait (a full sync's first guilds all
    store at once). A database that cannot be reached is reported by the first real use."""
    held = 0
    all_open = asyncio.Event()

    async def hold() -> None:
        nonlocal held
        async with engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")
            held += 1
            if held == count:
                all_open.set()
            await asyncio.wait_for(all_open.wait(), 10)

    with contextlib.suppress(Exception):
        await asyncio.gather(*(hold() for _ in range(count)))


_PENDING_ROWS = "ratesync_rows_pending"


def count_rows(conn: AsyncConnection, table: str, **outcomes: int) -> None:
    """Rows one store statement wrote (``count_rows(conn, "messages", inserted=3)``), counted in
    ``ratesync_rows_upserted_total`` when ``conn``'s transaction commits and never for one
    rolled back; at once on an autocommit connection (each statement commits by itself)."""
    sync = conn.sync_connection
    if sync is None or sync.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        metrics.rows(table, **outcomes)
        return
    sync.info.setdefault(_PENDING_ROWS, []).append((table, outcomes))


def _committed(conn: Connection) -> None:
    for table, outcomes in conn.info.pop(_PENDING_ROWS, ()):
        metrics.rows(table, **outcomes)


def _rolled_back(conn: Connection) -> None:
    conn.info.pop(_PENDING_ROWS, None)


def _checked_in(_dbapi_connection: Any, record: Any) -> None:
    record.info.pop(_PENDING_ROWS, None)
