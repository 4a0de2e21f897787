"""Engine creation from a plain `postgresql://` URL; the async driver is chosen here."""

from __future__ import annotations

import asyncio
import contextlib
import re

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def async_url(url: str) -> str:
    """`postgresql://u@h:5432/db` (as users write it) → the asyncpg dialect URL."""
    return re.sub(r"^postgres(?:ql)?(?:\+\w+)?://", "postgresql+asyncpg://", url)


def sync_url(url: str) -> str:
    return re.sub(r"^postgres(?:ql)?(?:\+\w+)?://", "postgresql://", url)


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def create_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
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
