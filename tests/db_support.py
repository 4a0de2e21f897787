"""Reading rows from a test's database in one call."""

from __future__ import annotations

from typing import Any

from storage.db import create_engine


async def fetch_rows(database_url: str, query: Any) -> list[dict[str, Any]]:
    """Every row ``query`` selects, as dicts (a short-lived engine of one connection)."""
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(query)]
    finally:
        await engine.dispose()
