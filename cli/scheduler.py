"""The running schedule of every provider: `scheduler start|stop|pause|resume|status
<provider>`, and the manual add it serves (`add …`, cli/add.py).

Nothing here names a provider. Cadences come from the spec's kinds (a ``cadence_setting`` whose
value is "off" is not scheduled; `--every` overrides the first cadenced kind), the scope from
``spec.scope_option`` and ``spec.default_scope``. Each action has a plain `temporal` CLI
equivalent (README, "The running schedule"): the Temporal CLI and Web UI are clients of the
same workflow, not a back door.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.common import Priority as TaskPriority
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from cli import CliError
from cli.commands import AddCommand, add_scope_option, commands, each, scope_dest, scope_of
from cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    Verbs,
    add_verb,
    cause_message,
    emit,
    key_values,
    temporal,
)
from cli.launch import Launch, Outcome, outcome, start_and_maybe_wait
from cli.launch import start as start_launch
from cli.pollers import no_worker, worker_polls
from providers import registry
from providers.ratelimit import Priority
from providers.spec import ProviderSpec
from settings import Settings
from workflows.plans import plan_for, plan_problem
from workflows.scheduler import SCHEDULER_TASKS, Scheduler, scheduler_id
from workflows.scheduler_types import (
    RequestOutcome,
    SchedulerInput,
    Submitted,
    SyncRequest,
    parse_cadence,
)
from workflows.visibility import search_attributes

ACTIONS = ("start", "stop", "pause", "resume", "status")
QUERY_TIMEOUT = timedelta(seconds=10)


def cadence_arg(value: str) -> str:
    """argparse type of --every: a cadence like 15m, or off (a typo is exit 2)."""
    try:
        parse_cadence(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def cadences(spec: ProviderSpec, settings: Settings, every: str | None) -> dict[str, str]:
    """Kind → cadence from the spec's settings; `every` overrides its first cadenced kind."""
    found: dict[str, str] = {}
    cadenced = [kind for kind in spec.kinds if kind.cadence_setting]
    for n, kind in enumerate(cadenced):
        value = str(getattr(settings, str(kind.cadence_setting)))
        if n == 0 and every:
            value = every
        seconds = parse_cadence(value)
        if seconds is not None:
            scale = spec.time_scale(settings)
            found[kind.name] = value if scale == 1 else f"{max(1, round(seconds / scale))}s"
    return found


def scheduler_input(
    spec: ProviderSpec, scope: str, settings: Settings, every: str | None
) -> SchedulerInput:
    return SchedulerInput(
        provider=spec.name,
        scope=scope,
        cadences=cadences(spec, settings, every),
        max_concurrent=settings.SCHEDULER_MAX_CONCURRENT,
        ageing_seconds=settings.SCHEDULER_AGEING_SECONDS / spec.time_scale(settings),
    )


def _started(handle: WorkflowHandle[Any, Any], polled: bool) -> Outcome:
    data = {"scheduler": handle.id, "run_id": handle.result_run_id, "started": True}
    return Outcome(True, key_values(data), data)


def scheduler_launch(
    spec: ProviderSpec, scope: str, settings: Settings, every: str | None = None
) -> Launch:
    """The scope's Scheduler; starting it when it runs already is a no-op (idempotent)."""
    return Launch(
        workflow=Scheduler.run,
        arg=scheduler_input(spec, scope, settings, every),
        id=scheduler_id(spec.name, scope),
        summary=f"Running schedule of {spec.name} {scope}",
        search_attributes=search_attributes(spec.name, scope, "scheduler"),
        conflict=WorkflowIDConflictPolicy.USE_EXISTING,
        started=_started,
        priority=TaskPriority(priority_key=SCHEDULER_TASKS),
    )


async def start(
    client: Client, provider: str, scope: str, settings: Settings, every: str | None = None
) -> WorkflowHandle[Any, Any]:
    """Start (or find) the Scheduler of ``provider`` ``scope``."""
    launch = scheduler_launch(registry.spec(provider), scope, settings, every)
    return await start_launch(client, settings.TEMPORAL_TASK_QUEUE, launch)


# --- manual add ----------------------------------------------------------------------------


def entity_command(entity: str) -> tuple[ProviderSpec, AddCommand]:
    """The provider that declares `add <entity>`, and its command."""
    for spec, declared in each():
        for command in declared.add:
            if command.name == entity:
                return spec, command
    raise CliError(f"no provider adds {entity!r}")


def _queued(request: SyncRequest) -> Callable[[WorkflowHandle[Any, Any], bool], Outcome]:
    def started(handle: WorkflowHandle[Any, Any], polled: bool) -> Outcome:
        data = {"scheduler": handle.id, "queued": asdict(request)}
        return Outcome(True, key_values(data), data)

    return started


def _added(scheduler: str, done: RequestOutcome) -> Outcome:
    data = {"scheduler": scheduler, **asdict(done)}
    return Outcome(done.status == "completed", key_values(data), data)


class BadRequest(ValueError):
    """A manual add its scheduler would refuse (exit 2, one line): nothing was sent."""


def checked_request(spec: ProviderSpec, scope: str, request: SyncRequest) -> SyncRequest:
    """``request`` if the scope's scheduler would accept it (the same checks as its handlers and
    update validator: kind, key, lengths, the plan's rules); else BadRequest naming why."""
    problem = plan_problem(
        plan_for(spec.name), spec.name, scope, request, datetime.now(UTC), 0,
        scheduler_id(spec.name, scope),
    )  # fmt: skip
    if problem:
        raise BadRequest(f"add {request.kind}: {problem}")
    return request


def _follow(
    scheduler: str, request: SyncRequest
) -> Callable[[Client, Submitted], Awaitable[RequestOutcome]]:
    """After `submit` answered: wait for the child that serves the request (it exists once the
    scheduler dispatched it), then for its end, which is the outcome. Waiting is the client's:
    no update stays open, so any number of adds may wait at once and the scheduler
    continues-as-new as it needs."""

    async def follow(client: Client, submitted: Submitted) -> RequestOutcome:
        handle = client.get_workflow_handle(scheduler)
        rid, child_id = submitted.request_id, submitted.child_id
        # the scheduler is asked only when its child does not show (a query is one of its
        # workflow tasks, queued behind a backlog's): after 2 s, or 0.5 s with no child id
        began = asked = time.monotonic()
        submitted_at = time.time()
        while True:  # until the child exists (or the request ended without one)
            if child_id and await _exists(client, child_id):
                break
            if time.monotonic() - asked >= (2.0 if child_id else 0.5):
                asked = time.monotonic()
                state = await handle.query(Scheduler.request, rid)
                if state.state == "done" and state.outcome is not None:
                    return state.outcome
                child_id = child_id or state.child_id
            # A manual add's child starts within a scheduler workflow task (tens of ms, more
            # under a backlog): look every 50 ms for its first 2 s, then back off to 1 s.
            await asyncio.sleep(_follow_pause(time.monotonic() - began))
        return await _served(client, rid, request, child_id, submitted_at)

    return follow


async def _served(
    client: Client, rid: str, request: SyncRequest, child_id: str, submitted_at: float
) -> RequestOutcome:
    """The request's outcome from its child: its end (its result's ``status`` when it has one,
    as the scheduler records it), how long it ran and how long the request waited for it. Not
    asked of the scheduler: that is two more of its workflow tasks (the child's report, then
    the query) queued behind a backlog's before the add could return."""
    child = client.get_workflow_handle(child_id)
    status, detail = "completed", ""
    try:
        result = await child.result()
        if isinstance(result, dict) and isinstance(result.get("status"), str):
            status = result["status"]
    except WorkflowFailureError as exc:
        status, detail = "failed", cause_message(exc)[:200]
    described = await child.describe()
    began, ended = described.start_time, described.close_time
    return RequestOutcome(
        rid, request.kind, request.key, status,
        waited_seconds=round(max(0.0, began.timestamp() - submitted_at), 3) if began else 0.0,
        ran_seconds=round((ended - began).total_seconds(), 3) if began and ended else 0.0,
        detail=detail, child_id=child_id,
    )  # fmt: skip


def _follow_pause(elapsed: float) -> float:
    """How long to wait before looking again for a request's child, ``elapsed`` s after submit."""
    return 0.05 if elapsed < 2.0 else min(1.0, elapsed / 10)


async def _exists(client: Client, workflow_id: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


def manual_add(args: argparse.Namespace, settings: Settings) -> Launch:
    """Signal-with-start the scope's Scheduler with the request; with --wait, update-with-start
    it (`submit`, answered at once) and wait (up to --timeout) on the child workflow that syncs
    the entity until its rows are stored. A request the scheduler would refuse is BadRequest."""
    spec, command = entity_command(args.entity)
    scope = str(getattr(args, scope_dest(spec)))
    request = checked_request(
        spec,
        scope,
        SyncRequest(
            kind=args.entity,
            key=command.key(args),
            priority=Priority[args.priority.upper()],
            reason="manual add",
            request_id=f"add-{uuid.uuid4().hex[:16]}",  # a retried send is harmless
        ),
    )
    sid = scheduler_id(spec.name, scope)
    return replace(
        scheduler_launch(spec, scope, settings),
        signal=("enqueue", request),
        update=(Scheduler.submit, request),
        follow=_follow(sid, request),
        timeout=args.timeout,
        waiting_for=f"{args.entity} {scope}/{request.key}",
        look=f"{PROG} scheduler status {spec.name} {spec.scope_option} {scope}",
        worker_if_unpolled=False,  # a scheduler runs for ever: never inside this process
        started=_queued(request),
        finished=_added,
    )


async def add(client: Client, args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """A manual add (`add …`) as data: what was queued, or with ``args.wait`` its outcome."""
    return (await outcome(client, settings, manual_add(args, settings), args.wait)).data


# --- control -------------------------------------------------------------------------------


class BadScope(ValueError):
    """A scheduler's scope option missing, or another provider's given (exit 2, one line)."""


def scope_or_fail(spec: ProviderSpec, args: argparse.Namespace, settings: Settings) -> str:
    """The scope of ``spec``'s scheduler; BadScope when it is missing or when an option of
    another provider's scope was given (it would be silently ignored)."""
    for other, _ in each():
        option = other.scope_option
        if option != spec.scope_option and getattr(args, scope_dest(other), None) is not None:
            raise BadScope(
                f"{spec.name} takes no {option} (that is {other.name}'s scope); "
                f"its scope is {spec.scope_option}"
            )
    scope = scope_of(spec, args, settings)
    if scope is None:
        noun = commands(spec).scope.noun
        raise BadScope(f"a {spec.title} scheduler needs {spec.scope_option} <{noun}>")
    return scope


async def scheduler_state(client: Client, workflow_id: str) -> dict[str, Any]:
    """Where a scheduler is, asked of Temporal itself: ``state`` is running, or how it ended
    (completed, canceled, terminated, …), or "not started"; a running one's status comes from
    its query only while a worker polls its queue (else ``worker`` says none does: a query with
    no worker waits for its whole timeout and then blames the scheduler)."""
    handle = client.get_workflow_handle(workflow_id)
    try:
        described = await handle.describe()
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        return {"scheduler": workflow_id, "state": "not started"}
    status = described.status
    state: dict[str, Any] = {
        "scheduler": workflow_id,
        "state": status.name.lower() if status is not None else "unknown",
    }
    if status != WorkflowExecutionStatus.RUNNING:
        state["closed_at"] = described.close_time
        return state
    queue = described.task_queue
    if not await worker_polls(client, queue):
        state["worker"] = no_worker(queue)
        return state
    try:
        answer = await handle.query(Scheduler.status, rpc_timeout=QUERY_TIMEOUT)
    except RPCError as exc:
        state["worker"] = f"did not answer ({exc.message})"
        return state
    return {**state, **asdict(answer)}


def _start_hint(spec: ProviderSpec, scope: str) -> str:
    return f"start it with `{PROG} scheduler start {spec.name} {spec.scope_option} {scope}`"


def _ended(state: dict[str, Any]) -> str:
    closed = state.get("closed_at")
    return state["state"] + (f" at {closed:%Y-%m-%d %H:%M:%S} UTC" if closed else "")


async def control(client: Client, spec: ProviderSpec, scope: str, action: str) -> dict[str, Any]:
    """stop | pause | resume | status of a scheduler; a scheduler that is not running is a
    CliError naming how it ended and how to start it (stop says it is stopped already)."""
    wid = scheduler_id(spec.name, scope)
    state = await scheduler_state(client, wid)
    running = state["state"] == "running"
    if action == "stop" and not running:
        return {"scheduler": wid, "action": "stop", "state": _ended(state), "stopped": True}
    if not running:
        raise CliError(f"{wid} is not running ({_ended(state)}); {_start_hint(spec, scope)}")
    if action == "status":
        return state
    handle = client.get_workflow_handle(wid)
    if action == "stop":
        await handle.cancel()
        data: dict[str, Any] = {"scheduler": wid, "action": "stop"}
        if "worker" in state:  # nobody runs the cancellation: it ends once a worker does
            return {**data, "state": "stop requested", "stopped": False, "worker": state["worker"]}
        ended = await _wait_closed(client, wid)
        return {**data, "state": ended or "stop requested", "stopped": ended is not None}
    await handle.signal(action)
    return {"scheduler": wid, "action": action, "ok": True, **_worker_note(state)}


def _worker_note(state: dict[str, Any]) -> dict[str, Any]:
    return {"worker": state["worker"]} if "worker" in state else {}


async def _wait_closed(client: Client, workflow_id: str, within: float = 15.0) -> str | None:
    """How the scheduler ended, once it did (within ``within`` s), else None."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        state = await scheduler_state(client, workflow_id)
        if state["state"] != "running":
            return _ended(state)
        await asyncio.sleep(0.2)
    return None


async def running_schedulers(client: Client) -> list[dict[str, Any]]:
    """Every running scheduler (from Temporal's visibility: a worker need not run), each with its
    query's status when a worker polls, else why not."""
    out = []
    query = 'WorkflowType = "Scheduler" AND ExecutionStatus = "Running"'
    async for wf in client.list_workflows(query, limit=20):
        out.append(await scheduler_state(client, wf.id))
    return out


async def setup_search_attributes(client: Client) -> list[str]:
    """Register Provider, Scope, SyncKind (Keyword) on this namespace; return what was added."""
    # Lazy: worker.py imports every provider's activities (about a second); only
    # `temporal setup` asks it which attributes are missing.
    from runtime import missing_search_attributes

    missing = await missing_search_attributes(client)
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=client.namespace,
                search_attributes={n: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for n in missing},
            )
        )
    return missing


# --- the verb ------------------------------------------------------------------------------


def register(verbs: Verbs) -> None:
    parser = add_verb(
        verbs,
        "scheduler",
        "the running schedule per provider scope",
        run,
        description="Control the long-running Scheduler workflow scheduler/<provider>/<scope>.",
    )
    parser.add_argument("action", choices=ACTIONS)
    parser.add_argument("provider", choices=registry.names())
    options: set[str] = set()
    for spec, _ in each():
        if spec.scope_option not in options:  # providers may share a scope option
            options.add(spec.scope_option)
            add_scope_option(
                parser,
                spec,
                f"{spec.name} scope: {commands(spec).scope.help}",
                required=False,
            )
    parser.add_argument(
        "--every",
        type=cadence_arg,
        help="cadence of the first scheduled kind for `start`, e.g. 15m or off "
        "(default: its setting)",
    )


async def run(args: argparse.Namespace, settings: Settings) -> int:
    spec = registry.spec(args.provider)
    try:
        scope = scope_or_fail(spec, args, settings)
    except BadScope as exc:
        print(f"error: {exc} (see `{PROG} scheduler --help`)", file=sys.stderr)
        return EXIT_USAGE
    async with temporal(settings) as (_, client):
        if args.action == "start":
            state = await scheduler_state(client, scheduler_id(spec.name, scope))
            if state["state"] != "running":
                launch = scheduler_launch(spec, scope, settings, args.every)
                return await start_and_maybe_wait(args, client, settings, launch)
            data = {"scheduler": state["scheduler"], "started": False, "already_running": True}
            data |= _worker_note(state)
        else:
            data = await control(client, spec, scope, args.action)
    emit(args, _human(data), data)
    return EXIT_OK


def _human(data: dict[str, Any]) -> str:
    """One line for what an action did; a status as ``key: value`` lines."""
    wid, worker = data["scheduler"], data.get("worker")
    note = f"; {worker}" if worker else ""
    if data.get("already_running"):
        return f"{wid} is already running (nothing started){note}"
    if data.get("action") == "stop":
        return f"{wid}: {data['state']}{note}"
    if data.get("action") in ("pause", "resume"):
        return f"{wid}: {data['action']}d{note}"
    return key_values(data)
