"""The one way a verb starts a workflow: start it, maybe wait for its result, and turn the
outcome into output and an exit code (0 done, 1 failed; a failure or timeout is one line).

A verb describes what to start as a :class:`Launch`; :func:`start_and_maybe_wait` does the rest.
Library callers (tests, benchmarks) use :func:`start` and :func:`outcome` directly.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from temporalio.api.enums.v1 import PendingWorkflowTaskState
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import Priority as TaskPriority
from temporalio.common import TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from cli import CliError
from cli.common import EXIT_FAILED, EXIT_OK, cause_message, emit
from cli.pollers import worker_polls
from cli.progress import DETAILS, Tracking, Watch, followed
from settings import Settings

if TYPE_CHECKING:
    from worker import WorkerParts

PICKUP_SECONDS = 5.0  # a polling worker takes a new workflow's first task well within this
NO_POLLER = " (no worker is polling yet: run `python worker.py`)"
RETRIED = (
    RPCStatusCode.RESOURCE_EXHAUSTED,
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.ABORTED,
    RPCStatusCode.FAILED_PRECONDITION,
)
MAX_NOT_READY = 5


@dataclass
class Outcome:
    """What a started (or finished) workflow means to the user."""

    ok: bool
    human: str
    data: dict[str, Any]


def started_line(handle: WorkflowHandle[Any, Any], polled: bool) -> Outcome:
    return Outcome(
        True, f"started {handle.id}{'' if polled else NO_POLLER}", {"workflow_id": handle.id}
    )


def finished_line(workflow_id: str, result: Any) -> Outcome:
    return Outcome(True, f"{workflow_id} finished", {"workflow_id": workflow_id})


@dataclass(frozen=True)
class Launch:
    """A workflow to start, and how to read its outcome."""

    workflow: str | Callable[..., Any]  # a workflow type name (as the plans use) or run method
    arg: Any
    id: str
    summary: str
    search_attributes: TypedSearchAttributes
    result_type: type | None = None  # decodes a result started by type name
    conflict: WorkflowIDConflictPolicy = WorkflowIDConflictPolicy.FAIL
    already_running: str = ""  # the one-line error when `conflict` is FAIL and it is running
    signal: tuple[str, Any] | None = None  # sent with the start (signal-with-start)
    update: tuple[Any, Any] | None = None  # (update method, arg): a wait waits for it instead
    # after the update answered (at once): wait for what it names, e.g. the child workflow
    follow: Callable[[Client, Any], Awaitable[Any]] | None = None
    timeout: float | None = None  # a wait longer than this fails (exit 1)
    waiting_for: str = ""  # what the timeout message says was awaited
    look: str = ""  # where to look after a timeout, e.g. a status command
    worker_if_unpolled: bool = True  # a wait with nobody polling runs a worker in this process
    started: Callable[[WorkflowHandle[Any, Any], bool], Outcome] = started_line
    finished: Callable[[str, Any], Outcome] = finished_line
    # how a --wait shows the run's live progress (default: what the workflow says it does)
    progress: Tracking = DETAILS
    priority: TaskPriority | None = None  # Temporal's task priority of the workflow (and what
    # it starts, unless that sets its own): None is the server's default


async def _picked_up(handle: WorkflowHandle[Any, Any], within: float = PICKUP_SECONDS) -> bool:
    """Whether a worker takes the workflow's first task: a worker seen polling in the last 90 s
    (cli.pollers) may have exited since (a previous `--wait`'s in-process one)."""
    deadline = time.monotonic() + within
    while True:
        described = (await handle.describe()).raw_description
        if (
            described.workflow_execution_info.history_length > 2  # the first task has started
            or described.pending_workflow_task.state
            == PendingWorkflowTaskState.PENDING_WORKFLOW_TASK_STATE_STARTED
        ):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.2)


def _options(launch: Launch, task_queue: str) -> dict[str, Any]:
    return {
        "id": launch.id,
        "task_queue": task_queue,
        "id_conflict_policy": launch.conflict,
        "result_type": launch.result_type,
        "static_summary": launch.summary,
        "search_attributes": launch.search_attributes,
        **({"priority": launch.priority} if launch.priority is not None else {}),
    }


async def start(client: Client, task_queue: str, launch: Launch) -> WorkflowHandle[Any, Any]:
    signal: dict[str, Any] = {}
    if launch.signal is not None:
        signal = {"start_signal": launch.signal[0], "start_signal_args": [launch.signal[1]]}
    try:
        return await client.start_workflow(
            launch.workflow, launch.arg, **_options(launch, task_queue), **signal
        )
    except WorkflowAlreadyStartedError:
        raise CliError(launch.already_running or f"{launch.id} is already running") from None


async def outcome(
    client: Client,
    settings: Settings,
    launch: Launch,
    wait: bool,
    database_url: str | None = None,
    progress_to: TextIO | None = None,
) -> Outcome:
    """Start ``launch``; with ``wait``, read its result (or its update's). A failure or a
    timeout is a :class:`CliError` with one line. ``database_url``: when no worker takes the
    workflow, one runs in this process until the result is in (and the progress probe may read
    the database). ``progress_to``: where a wait shows live progress (None: nowhere)."""
    queue = settings.TEMPORAL_TASK_QUEUE
    if wait and launch.update is not None:
        answer = await _update_with_start(client, queue, launch, progress_to)
        return launch.finished(launch.id, answer)
    handle = await start(client, queue, launch)
    polled = await worker_polls(client, queue)
    if not wait:
        return launch.started(handle, polled)
    in_process = (
        launch.worker_if_unpolled
        and database_url is not None
        and not (polled and await _picked_up(handle))
    )
    try:
        async with _worker(client, settings, database_url if in_process else None) as parts:
            counters = _counters(parts, launch.progress)
            watch = Watch(client, handle.id, database_url, handle.result_run_id, counters)
            waited = followed(handle.result(), launch.progress, watch, progress_to)
            result = await asyncio.wait_for(waited, launch.timeout)
    except TimeoutError:
        raise CliError(_timed_out(launch)) from None
    except WorkflowFailureError as exc:
        raise CliError(f"{handle.id} failed: {_one_line(exc)}") from None
    return launch.finished(handle.id, result)


async def start_and_maybe_wait(
    args: argparse.Namespace,
    client: Client,
    settings: Settings,
    launch: Launch,
    database_url: str | None = None,
) -> int:
    """What a verb that starts a workflow returns: its output printed, 0 if it went well.
    A wait's progress goes to stdout, or to stderr with --json (stdout: one JSON document)."""
    json_out = bool(getattr(args, "json", False))
    progress_to = sys.stderr if json_out else sys.stdout
    wait = bool(getattr(args, "wait", False))
    done = await outcome(client, settings, launch, wait, database_url, progress_to)
    emit(args, done.human, done.data)
    return EXIT_OK if done.ok else EXIT_FAILED


async def _update_with_start(
    client: Client, task_queue: str, launch: Launch, progress_to: TextIO | None = None
) -> Any:
    """Update-with-start, then ``launch.follow`` (both within ``launch.timeout``). An update
    that answers at once still meets the server's 10 in-flight updates per workflow when many
    callers arrive together: that refusal is retried until the timeout, never shown."""
    assert launch.update is not None
    update, arg = launch.update
    options = _options(launch, task_queue)
    del options["result_type"]

    async def send() -> Any:
        pause, not_ready = 0.05, 0
        while True:
            operation = WithStartWorkflowOperation(launch.workflow, launch.arg, **options)
            try:
                return await client.execute_update_with_start_workflow(
                    update, arg, start_workflow_operation=operation
                )
            except RPCError as exc:
                # Not applied, so sent again: too many updates in flight, the workflow
                # continued-as-new before it took this one ("workflow update was aborted"), or
                # the task that carried it was refused ("... unexpected workflow task failure",
                # FAILED_PRECONDITION: a few times only, it may mean something else).
                not_ready += exc.status == RPCStatusCode.FAILED_PRECONDITION
                if exc.status not in RETRIED or not_ready > MAX_NOT_READY:
                    raise
            await asyncio.sleep(pause * (0.5 + random.random()))
            pause = min(pause * 2, 1.0)

    async def send_and_follow() -> Any:
        answer = await send()
        if launch.follow is None:
            return answer
        # the progress of what is followed: the child the answer names (a scheduler's
        # `submit` names the child that serves the request), else the workflow itself
        watch = Watch(client, getattr(answer, "child_id", None) or launch.id)
        return await followed(launch.follow(client, answer), launch.progress, watch, progress_to)

    try:
        return await asyncio.wait_for(send_and_follow(), timeout=launch.timeout)
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        raise CliError(_timed_out(launch)) from None
    except WorkflowUpdateFailedError as exc:
        raise CliError(f"{launch.id} refused it: {_one_line(exc)}") from None
    except WorkflowFailureError as exc:  # what ``launch.follow`` waited on failed
        raise CliError(f"{launch.id} failed: {_one_line(exc)}") from None


@asynccontextmanager
async def _worker(
    client: Client, settings: Settings, database_url: str | None
) -> AsyncIterator[WorkerParts | None]:
    """A worker in this process when ``database_url`` is given (its parts), else nothing."""
    if database_url is None:
        yield None
        return
    # Lazy: worker.py imports every provider's activities and HTTP clients (about a second),
    # which only a --wait with nobody polling needs; --help and every other path skip it.
    from worker import build_worker

    async with build_worker(client, settings, database_url) as parts, parts.worker:
        yield parts


def _counters(parts: WorkerParts | None, tracking: Tracking) -> Any:
    """The in-process worker's HTTP client of the tracked provider: it counts every request
    and 429 (a worker elsewhere keeps its counts to itself)."""
    if parts is None or tracking.provider not in parts.providers:
        return None
    return parts.providers[tracking.provider].resources.get("client")


def _timed_out(launch: Launch) -> str:
    look = f" (see `{launch.look}`)" if launch.look else ""
    return (
        f"timed out after {launch.timeout:g}s waiting for {launch.waiting_for or launch.id}; "
        f"it is still queued or running in {launch.id}{look}"
    )


def _one_line(exc: BaseException) -> str:
    return cause_message(exc)
