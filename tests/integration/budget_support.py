"""Helpers for the shared-budget tests (tests/integration/test_shared_budget.py) and
bench/multiworker.py: the environment of a `python worker.py --processes N` against a Battle.net
sandbox, and reads of the shared limiter's tables (migration 0005)."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import text

from storage.db import create_engine


def worker_env(
    *,
    database_url: str,
    temporal_address: str,
    queue: str,
    sandbox_url: str,
    per_second: int,
    **extra: str,
) -> dict[str, str]:
    """The environment of workers that sync Battle.net from the sandbox at ``sandbox_url`` with
    BNET_RATE_PER_SECOND = ``per_second`` (``extra``: more variables, e.g. BNET_RATE_PER_HOUR)."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "TEMPORAL_ADDRESS": temporal_address,
        "TEMPORAL_TASK_QUEUE": queue,
        "PVP_SYNC_TASK_QUEUE": f"{queue}.pvp-sync",
        "PVP_PROCESSING_TASK_QUEUE": f"{queue}.pvp-processing",
        "LOG_LEVEL": "WARNING",
        "BNET_CLIENT_ID": "sandbox-client",
        "BNET_CLIENT_SECRET": "sandbox-secret",
        "BNET_API_BASE_URL": sandbox_url,
        "BNET_OAUTH_URL": f"{sandbox_url}/token",
        "BNET_RATE_PER_SECOND": str(per_second),
        **extra,
    }


class LimiterTables:
    """Reads of rate_limit_* through one pooled connection (``await tables.aclose()``)."""

    def __init__(self, database_url: str) -> None:
        self.engine = create_engine(database_url, pool_size=1)

    async def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            result = await conn.execute(text(sql), params)
            return [dict(r._mapping) for r in result]

    async def db_now(self) -> float:
        """The database's clock (the limiter's), epoch seconds."""
        rows = await self.rows("SELECT extract(epoch FROM clock_timestamp())::float8 AS now")
        return float(rows[0]["now"])

    async def leases(self, pid: int | None = None) -> list[dict[str, Any]]:
        """Lease rows (of the client whose id names ``pid``: "<host>:<pid>:<hex>")."""
        rows = await self.rows(
            "SELECT client, win, period, places, expires_at FROM rate_limit_leases ORDER BY win"
        )
        if pid is None:
            return rows
        return [r for r in rows if r["client"].split(":")[-2] == str(pid)]

    async def cooling(self, win: int) -> list[dict[str, Any]]:
        return await self.rows(
            "SELECT free_at, places FROM rate_limit_cooling WHERE win = :win ORDER BY free_at",
            win=win,
        )

    async def aclose(self) -> None:
        await self.engine.dispose()
