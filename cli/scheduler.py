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
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError

from cli import CliError
from cli.commands import AddCommand, add_scope_option, commands, each, scope_dest, scope_of
from cli.common import EXIT_OK, PROG, Verbs, add_verb, emit, key_values, temporal
from cli.launch import Launch, Outcome, outcome, start_and_maybe_wait
from cli.launch import start as start_launch
from providers import registry
from providers.ratelimit import Priority
from providers.spec import ProviderSpec
from settings import Settings
from workflows.scheduler import Scheduler, scheduler_id
from workflows.scheduler_types import (
    RequestOutcome,
    SchedulerInput,
    SyncRequest,
    parse_cadence,
)
from workflows.visibility import search_attributes

ACTIONS = ("start", "stop", "pause", "resume", "status")


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
        if parse_cadence(value) is not None:
            found[kind.name] = value
    return found


def scheduler_input(
    spec: ProviderSpec, scope: str, settings: Settings, every: str | None
) -> SchedulerInput:
    return SchedulerInput(
        provider=spec.name,
        scope=scope,
        cadences=cadences(spec, settings, every),
        max_concurrent=settings.SCHEDULER_MAX_CONCURRENT,
        ageing_seconds=settings.SCHEDULER_AGEING_SECONDS,
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


def manual_add(args: argparse.Namespace, settings: Settings) -> Launch:
    """Signal-with-start the scope's Scheduler with the request; with --wait, update-with-start
    it and wait (up to --timeout) until the entity's rows are stored."""
    spec, command = entity_command(args.entity)
    scope = str(getattr(args, scope_dest(spec)))
    request = SyncRequest(
        kind=args.entity,
        key=command.key(args),
        priority=Priority[args.priority.upper()],
        reason="manual add",
    )
    return replace(
        scheduler_launch(spec, scope, settings),
        signal=("enqueue", request),
        update=(Scheduler.enqueue_and_wait, request),
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


def scope_or_fail(spec: ProviderSpec, args: argparse.Namespace, settings: Settings) -> str:
    scope = scope_of(spec, args, settings)
    if scope is None:
        noun = commands(spec).scope.noun
        raise CliError(f"a {spec.title} scheduler needs {spec.scope_option} <{noun}>")
    return scope


async def control(client: Client, spec: ProviderSpec, scope: str, action: str) -> dict[str, Any]:
    """stop | pause | resume | status of a running scheduler."""
    wid = scheduler_id(spec.name, scope)
    handle = client.get_workflow_handle(wid)
    try:
        if action == "stop":
            await handle.cancel()
        elif action in ("pause", "resume"):
            await handle.signal(action)
        else:
            return {"scheduler": wid, **asdict(await handle.query(Scheduler.status))}
    except RPCError as exc:
        raise CliError(
            f"{wid} is not running ({exc.message}); start it with "
            f"`{PROG} scheduler start {spec.name} {spec.scope_option} {scope}`"
        ) from None
    return {"scheduler": wid, "action": action, "ok": True}


async def running_schedulers(client: Client) -> list[dict[str, Any]]:
    out = []
    query = 'WorkflowType = "Scheduler" AND ExecutionStatus = "Running"'
    async for wf in client.list_workflows(query, limit=20):
        try:
            status = await client.get_workflow_handle(wf.id).query(Scheduler.status)
            out.append({"scheduler": wf.id, **asdict(status)})
        except RPCError as exc:
            out.append({"scheduler": wf.id, "error": exc.message})
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
    scope = scope_or_fail(spec, args, settings)
    async with temporal(settings) as (_, client):
        if args.action == "start":
            launch = scheduler_launch(spec, scope, settings, args.every)
            return await start_and_maybe_wait(args, client, settings, launch)
        data = await control(client, spec, scope, args.action)
    emit(args, key_values(data), data)
    return EXIT_OK
