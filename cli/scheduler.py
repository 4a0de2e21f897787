"""CLI verbs around the running schedule: `scheduler …`, `add …`, `temporal setup`.

Each has a plain `temporal` CLI equivalent (README): the Temporal CLI and Web UI are clients of
the same workflow, not a back door.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import asdict
from typing import Any

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowHandle,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError

from cli import CliError
from settings import Settings
from workflows.scheduler import Scheduler, scheduler_id
from workflows.scheduler_types import PRIORITIES, SchedulerInput, SyncRequest
from workflows.visibility import search_attributes

PROVIDERS = ["battlenet", "discord"]


def scheduler_input(provider: str, scope: str, settings: Settings, every: str | None) -> Any:
    if provider == "discord":
        cadences = {"sync": every or settings.SCHEDULER_DISCORD_SYNC_EVERY}
    else:
        cadences = {"sync": every or settings.SCHEDULER_BATTLENET_SYNC_EVERY}
        if settings.SCHEDULER_PVP_EVERY != "off":
            cadences["pvp"] = settings.SCHEDULER_PVP_EVERY
    return SchedulerInput(
        provider=provider,
        scope=scope,
        cadences=cadences,
        max_concurrent=settings.SCHEDULER_MAX_CONCURRENT,
        ageing_seconds=settings.SCHEDULER_AGEING_SECONDS,
    )


def _start_options(provider: str, scope: str, settings: Settings) -> dict[str, Any]:
    return {
        "id": scheduler_id(provider, scope),
        "task_queue": settings.TEMPORAL_TASK_QUEUE,
        "id_conflict_policy": WorkflowIDConflictPolicy.USE_EXISTING,
        "static_summary": f"Running schedule of {provider} {scope}",
        "search_attributes": search_attributes(provider, scope, "scheduler"),
    }


async def start(
    client: Client, provider: str, scope: str, settings: Settings, every: str | None = None
) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow(
        Scheduler.run,
        scheduler_input(provider, scope, settings, every),
        **_start_options(provider, scope, settings),
    )


def scheduler_scope(args: argparse.Namespace, settings: Settings) -> str:
    """Battle.net schedules are per region, Discord ones per tenant."""
    if args.provider == "discord":
        if args.tenant is None:
            raise CliError("a Discord scheduler needs --tenant <discord guild id>")
        return str(args.tenant)
    return str(args.region or settings.BNET_REGION)


async def control(client: Client, args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """start | stop | pause | resume | status of one scheduler."""
    scope = scheduler_scope(args, settings)
    wid = scheduler_id(args.provider, scope)
    if args.action == "start":
        handle = await start(client, args.provider, scope, settings, args.every)
        return {"scheduler": wid, "run_id": handle.result_run_id, "started": True}
    handle = client.get_workflow_handle(wid)
    try:
        if args.action == "stop":
            await handle.cancel()
        elif args.action in ("pause", "resume"):
            await handle.signal(args.action)
        else:
            return {"scheduler": wid, **asdict(await handle.query(Scheduler.status))}
    except RPCError as exc:
        raise CliError(
            f"{wid} is not running ({exc.message}); start it with "
            f"`python starter.py scheduler start {args.provider} "
            f"{'--tenant' if args.provider == 'discord' else '--region'} {scope}`"
        ) from None
    return {"scheduler": wid, "action": args.action, "ok": True}


async def add(client: Client, args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Manual add: signal-with-start (or update-with-start with --wait) the running scheduler."""
    scope = args.region
    request = SyncRequest(
        kind=args.entity,
        key=f"{args.realm.strip().lower().replace(' ', '-')}/{args.name.strip()}",
        priority=PRIORITIES[args.priority],
        reason="manual add",
    )
    options = _start_options("battlenet", scope, settings)
    initial = scheduler_input("battlenet", scope, settings, None)
    if not args.wait:
        handle = await client.start_workflow(
            Scheduler.run, initial, start_signal="enqueue", start_signal_args=[request], **options
        )
        return {"scheduler": handle.id, "queued": asdict(request)}
    operation = WithStartWorkflowOperation(Scheduler.run, initial, **options)
    try:
        outcome = await asyncio.wait_for(
            client.execute_update_with_start_workflow(
                Scheduler.enqueue_and_wait, request, start_workflow_operation=operation
            ),
            timeout=args.timeout,
        )
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        raise CliError(
            f"timed out after {args.timeout:g}s waiting for {args.entity} {scope}/{request.key}; "
            f"it is still queued or running in {options['id']} "
            "(see `python starter.py scheduler status battlenet`)"
        ) from None
    return {"scheduler": options["id"], **asdict(outcome)}


async def setup_search_attributes(client: Client) -> list[str]:
    """Register Provider, Scope, SyncKind (Keyword) on this namespace; return what was added."""
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest

    from worker import missing_search_attributes

    missing = await missing_search_attributes(client)
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=client.namespace,
                search_attributes={n: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for n in missing},
            )
        )
    return missing


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


def print_human(data: dict[str, Any]) -> None:
    for key, value in data.items():
        if isinstance(value, dict | list):
            value = json.dumps(value, default=str)
        print(f"{key}: {value}")
