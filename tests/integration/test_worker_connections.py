"""A worker opens its first database connections before it polls, not in its first sync."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from storage.db import create_engine
from tests.sandbox_helpers import sandbox_settings
from worker import WARM_CONNECTIONS, build_worker

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


async def _connections(database_url: str) -> int:
    """Connections to this test's database, besides the one asking."""
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            query = (
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return int((await conn.execute(text(query))).scalar_one())
    finally:
        await engine.dispose()


async def test_a_built_worker_holds_open_connections_before_its_first_task(
    client, database_url, task_queue
):
    """Failed before: the pool opened lazily, so a fresh worker's first full sync opened a
    connection per concurrent guild while its requests waited (the bench's first seconds)."""
    assert await _connections(database_url) == 0
    settings = sandbox_settings("http://127.0.0.1:9")  # nothing is requested
    async with build_worker(client, settings, database_url, task_queue):
        assert await _connections(database_url) >= WARM_CONNECTIONS
    assert await _connections(database_url) == 0  # closed with the worker


async def test_an_unreachable_database_does_not_stop_the_worker_being_built(client, task_queue):
    settings = sandbox_settings("http://127.0.0.1:9")
    async with build_worker(client, settings, "postgresql://u@127.0.0.1:9/none", task_queue):
        pass
