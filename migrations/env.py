"""Alembic environment: runs migrations over asyncpg, URL from the caller or from settings."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from storage.db import create_engine


def _url() -> str:
    url = context.config.attributes.get("database_url")
    if url:
        return str(url)
    from settings import get_settings

    configured = get_settings().DATABASE_URL
    if not configured:
        raise SystemExit("DATABASE_URL is not set; run `python starter.py db upgrade` instead")
    return configured


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=None, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


async def _main() -> None:
    engine = create_engine(_url(), pool_size=1)
    async with engine.connect() as conn:
        await conn.run_sync(_run)
        await conn.commit()
    await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) mode is not supported; run against a database")
asyncio.run(_main())
