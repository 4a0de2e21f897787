"""Engine creation from a plain `postgresql://` URL; the async driver is chosen here."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


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
    keeps an integer beyond 64 bits exact (orjson would make it a float)."""
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        json_serializer=json_text,
    )


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
