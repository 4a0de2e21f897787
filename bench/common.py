"""Shared set-up for benchmarks: throwaway Postgres + Temporal dev server, sandbox in a process."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

import runtime
from storage.migrate import upgrade


@dataclass
class Stack:
    database_url: str
    client: Client


@asynccontextmanager
async def throwaway_stack() -> AsyncIterator[Stack]:
    data_dir = Path(tempfile.mkdtemp(prefix="ratesync-bench-"))
    pg = runtime.start_postgres(data_dir, runtime.free_port())
    try:
        await asyncio.to_thread(upgrade, pg.url())
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=runtime.temporal_binary(),
            data_converter=pydantic_data_converter,
            dev_server_log_level="error",
        )
        async with env:
            yield Stack(pg.url(), env.client)
    finally:
        pg.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
