"""`status [--watch [SECONDS]]`: what is stored (each provider's counts), the failures, the
latest runs, the running schedulers and the shared rate budgets (``cli.budget_view``); with a
provider's scope option (its ``ProviderCommands.view``), that scope's latest sync as a table
instead."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.service import RPCError, RPCStatusCode

from cli import budget_view
from cli.commands import ScopeView, add_scope_option, each, scope_dest
from cli.common import (
    EXIT_OK,
    Verbs,
    add_verb,
    cause_message,
    connect_quickly,
    database,
    running_temporal,
    services,
)
from cli.scheduler import running_schedulers, scheduler_state
from providers.spec import ProviderSpec
from settings import Settings
from storage import sync as syncdb
from storage.status import database_status
from workflows.scheduler import scheduler_id


def register(verbs: Verbs) -> None:
    parser = add_verb(
        verbs, "status", "what is stored, what failed, the last sync runs, running schedulers", run
    )
    parser.add_argument(
        "--watch", type=float, nargs="?", const=2.0, default=None, metavar="SECONDS",
        help="refresh every SECONDS (default 2) until Ctrl-C",
    )  # fmt: skip
    options: set[str] = set()
    for spec, commands in each():
        if commands.view is not None and spec.scope_option not in options:
            options.add(spec.scope_option)
            add_scope_option(parser, spec, commands.view.help, required=False)


def _chosen_view(args: argparse.Namespace) -> tuple[ScopeView, str, ProviderSpec] | None:
    for spec, commands in each():
        value = getattr(args, scope_dest(spec), None)
        if commands.view is not None and value is not None:
            return commands.view, str(value), spec
    return None


async def _scope_scheduler(
    spec: ProviderSpec, scope: str, settings: Settings, clients: dict[str, Client]
) -> dict[str, Any]:
    """The scope's scheduler as Temporal says (its queue and waits from its status query), or
    why that is not known."""
    address = running_temporal(settings)
    if address is None:
        return {"state": "unknown", "worker": "Temporal is not running"}
    try:
        client = clients.get(address) or await connect_quickly(address, settings)
        clients[address] = client
        return await scheduler_state(client, scheduler_id(spec.name, scope))
    except Exception as exc:  # status must work without Temporal
        clients.pop(address, None)
        return {"state": "unknown", "worker": f"Temporal at {address}: {cause_message(exc)}"}


async def run(args: argparse.Namespace, settings: Settings) -> int:
    view = _chosen_view(args)
    clients: dict[str, Client] = {}  # a --watch connects to Temporal once, not every refresh
    async with services(settings, temporal=False) as svc, database(svc) as engine:
        while True:
            if view is None:
                data = await _overall(engine, settings, clients)
                human = _render(data)
            else:
                async with engine.connect() as conn:
                    data = await view[0].fetch(conn, view[1])
                data["scheduler"] = await _scope_scheduler(view[2], view[1], settings, clients)
                human = view[0].render(data)
            if args.watch and not args.json:
                print(f"\x1b[2J\x1b[H{datetime.now(UTC):%H:%M:%S} (Ctrl-C to stop)")
            print(json.dumps(data, default=str) if args.json else human, flush=True)
            if not args.watch:
                return EXIT_OK
            await asyncio.sleep(args.watch)


async def _overall(
    engine: AsyncEngine, settings: Settings, clients: dict[str, Client]
) -> dict[str, Any]:
    """The stored counts and runs, the runs first checked against Temporal when it is up (a run
    whose workflow ended without closing its row is closed as Temporal says it ended), the
    running schedulers and the rate budgets."""
    address = running_temporal(settings)
    client: Client | None = None
    note: str | None = None
    orphaned: dict[int, str] = {}
    if address is None:
        note = "Temporal is not running: runs as stored, schedulers unknown"
    else:
        try:
            client = clients.get(address) or await connect_quickly(address, settings)
            clients[address] = client
            orphaned = await reconcile_runs(engine, client)
        except Exception as exc:  # status must work without Temporal
            clients.pop(address, None)
            client, note = None, f"Temporal at {address} not reachable: {cause_message(exc)}"
    data = await database_status(engine)
    for run in data["runs"]:
        if run.pop("id") in orphaned:
            run["status"], run["error"] = "orphaned", orphaned_reason(address)
    data["schedulers"] = [] if client is None else await running_schedulers(client)
    data["rate_budgets"] = await budget_view.fetch(engine, settings.RATE_LIMIT_BACKEND)
    if note:
        data["temporal"] = note
    return data


def orphaned_reason(address: str | None) -> str:
    return f"the Temporal server at {address} has no such workflow (another server ran it?)"


async def reconcile_runs(engine: AsyncEngine, client: Client) -> dict[int, str]:
    """Close each run row left ``running`` whose workflow ended (failed, terminated, canceled,
    timed out: the workflow could not close its row) with how and why it ended. Rows whose
    workflow Temporal does not know are returned (row id → workflow id), not changed: the
    same database may be shown with another Temporal server."""
    async with engine.connect() as conn:
        rows = await syncdb.open_runs(conn)
    unknown: dict[int, str] = {}
    for run_id, recorded in rows:
        workflow_id, _, temporal_run = recorded.partition("#")  # some record "<id>#<run id>"
        ended = await _how_it_ended(client, workflow_id, temporal_run or None)
        if ended is None:
            unknown[run_id] = workflow_id
        elif ended[0] != "running":
            async with engine.begin() as conn:
                await syncdb.close_open_run(conn, run_id, *ended)
    return unknown


async def _how_it_ended(
    client: Client, workflow_id: str, run_id: str | None
) -> tuple[str, str | None, datetime | None] | None:
    """(state, reason, when) of the workflow's run; its latest run's once it continued-as-new;
    None when Temporal has no such workflow."""
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    try:
        described = await handle.describe()
        if described.status == WorkflowExecutionStatus.CONTINUED_AS_NEW:
            handle = client.get_workflow_handle(workflow_id)
            described = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    state = described.status.name.lower() if described.status else "running"  # Temporal's word
    if state not in syncdb.ENDED:  # running (or a status this server version adds)
        state = "running"
    if state in ("running", "completed"):
        return state, None, described.close_time
    try:
        await handle.result(follow_runs=False)
        reason = None
    except WorkflowFailureError as exc:
        reason = cause_message(exc)[:500]
    return state, reason, described.close_time


def _render(data: dict[str, Any]) -> str:
    lines = []
    for section, values in data.items():
        if section == "runs":
            lines.append("runs (newest first):" if values else "runs: none yet")
            lines += ["  " + _run_line(run) for run in values]
        elif section == "schedulers":
            lines.append("schedulers:" if values else "schedulers: none running")
            lines += ["  " + _scheduler_line(s) for s in values]
        elif section == "rate_budgets":
            lines += budget_view.render(values)
        elif isinstance(values, dict):
            lines.append(f"{section}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
        elif isinstance(values, list):
            lines.append(f"{section}:")
            lines += ["  " + "  ".join(f"{k}={v}" for k, v in row.items()) for row in values]
        else:
            lines.append(f"{section}: {values}")
    return "\n".join(lines)


def _when(moment: datetime | None) -> str:
    return "" if moment is None else f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S}"


def _run_line(run: dict[str, Any]) -> str:
    """One run: what, its state, when, and for a run that did not complete, why."""
    span = _when(run["started_at"]) + (
        f" → {_when(run['finished_at'])}" if run["finished_at"] else ""
    )
    line = (
        f"{run['workflow_id'].partition('#')[0]}  {run['provider']} {run['scope']} {run['kind']}"
        f"  {run['status']}  {span}  errors={run['errors']}"
    )
    return line + (f"  {run['error']}" if run.get("error") else "")


def _scheduler_line(state: dict[str, Any]) -> str:
    head = f"{state['scheduler']}  {state.get('state', 'unknown')}"
    if "worker" in state:
        return f"{head}: {state['worker']}"
    if "paused" not in state:
        return head
    queued = sum(state["queue_depth"].values())
    return (
        f"{head}{' (paused)' if state['paused'] else ''}: {queued} queued, "
        f"{len(state['running'])} running, {state['dispatched_total']} dispatched, "
        f"{state['rejected_total']} rejected"
    )
