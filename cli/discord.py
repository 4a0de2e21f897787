"""CLI verbs for Discord: `track tenant`, `sync discord`, `status --tenant`, `reset discord`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from cli import CliError
from settings import Settings

SNOWFLAKE_HINT = "a Discord id is 17 to 20 digits, e.g. 1168516062791340136"


def snowflake_arg(value: str) -> int:
    """argparse type for Discord ids (a typo fails with exit 2 and this hint)."""
    text = value.strip()
    if not text.isdigit() or not 17 <= len(text) <= 20 or int(text) >= 2**63:
        raise argparse.ArgumentTypeError(f"{value!r} is not a Discord id ({SNOWFLAKE_HINT})")
    return int(text)


def sync_workflow_id(discord_guild_id: int) -> str:
    """One sync per tenant at a time: two would advance the same cursors."""
    return f"discord-sync/{discord_guild_id}"


async def tracked(conn: Any, discord_guild_id: int) -> int:
    from storage import discord as db

    tenant = await db.tenant_id(conn, discord_guild_id)
    if tenant is None:
        raise CliError(
            f"tenant {discord_guild_id} is not tracked; run "
            f"`python starter.py track tenant {discord_guild_id}` first"
        )
    return tenant


async def start_sync(client: Any, settings: Settings, discord_guild_id: int, full: bool) -> Any:
    from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
    from temporalio.exceptions import WorkflowAlreadyStartedError

    from activities.discord_types import TenantSyncInput
    from workflows.discord import DiscordTenantSync
    from workflows.visibility import search_attributes

    workflow_id = sync_workflow_id(discord_guild_id)
    try:
        return await client.start_workflow(
            DiscordTenantSync.run,
            TenantSyncInput(discord_guild_id=discord_guild_id, full=full),
            id=workflow_id,
            task_queue=settings.TEMPORAL_TASK_QUEUE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            static_summary=f"Discord {'full' if full else 'incremental'} sync of guild "
            f"{discord_guild_id}",
            search_attributes=search_attributes(
                "discord", str(discord_guild_id), "full" if full else "sync"
            ),
        )
    except WorkflowAlreadyStartedError:
        raise CliError(
            f"a sync of tenant {discord_guild_id} is already running ({workflow_id}); "
            f"watch it with `python starter.py status --tenant {discord_guild_id} --watch`"
        ) from None


def summary_lines(result: Any) -> str:
    data = asdict(result)
    head = (
        f"tenant {result.discord_guild_id}: {result.status} in {result.seconds:.1f}s — "
        f"{result.messages} messages, {result.reactions} reactions, "
        f"{result.attachments} attachments"
    )
    parts = ", ".join(
        f"{k}={v}"
        for k, v in data.items()
        if k not in ("discord_guild_id", "status", "messages", "reactions", "attachments")
        and v not in (None, "")
    )
    return f"{head}\n  {parts}"


# --- status --tenant -----------------------------------------------------------------------

_COLUMNS = (
    ("channel", 20),
    ("name", 18),
    ("status", 8),
    ("messages", 9),
    ("msgs/s", 8),
    ("retries", 7),
    ("429s", 5),
    ("waiting until", 13),
)


async def tenant_status(engine: Any, discord_guild_id: int) -> dict[str, Any]:
    from storage import discord as db

    async with engine.connect() as conn:
        await tracked(conn, discord_guild_id)
        run = await db.latest_run(conn, discord_guild_id)
        jobs = [] if run is None else await db.run_jobs(conn, int(run["sync_run_id"]))
    return {"tenant": discord_guild_id, "run": run, "channels": jobs}


def _cell(job: dict[str, Any], name: str) -> str:
    if name == "channel":
        return str(job["discord_channel_id"])
    if name == "name":
        return str(job["name"] or "")[:18]
    if name == "msgs/s":
        rate = job["messages_per_second"]
        return "" if rate is None else f"{rate:.0f}"
    if name == "waiting until":
        until = job["waiting_until"]
        return "" if until is None or job["status"] != "waiting" else f"{until:%H:%M:%S}"
    key = {"messages": "messages_processed", "retries": "retry_count", "429s": "rate_limited"}
    return str(job[key.get(name, name)])


def render_status(data: dict[str, Any]) -> str:
    run = data["run"]
    if run is None:
        return f"tenant {data['tenant']}: tracked, never synced"
    head = (
        f"tenant {data['tenant']} — run {run['sync_run_id']} ({run['mode']}, "
        f"{run['run_status']}), started {run['started_at']:%Y-%m-%d %H:%M:%S}"
    )
    jobs = data["channels"]
    by_status: dict[str, int] = {}
    for job in jobs:
        by_status[job["status"]] = by_status.get(job["status"], 0) + 1
    total = sum(j["messages_processed"] for j in jobs)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(by_status.items()))
    lines = [head, f"{len(jobs)} channels: {counts or 'none'}; {total} messages"]
    lines.append("  ".join(name.ljust(width) for name, width in _COLUMNS))
    for job in jobs:
        cells = [_cell(job, name).ljust(width) for name, width in _COLUMNS]
        line = "  ".join(cells).rstrip()
        if job["status"] in ("failed", "skipped") and job["error_message"]:
            line += f"  {job['error_message'][:80]}"
        lines.append(line)
    return "\n".join(lines)


async def watch_status(engine: Any, args: argparse.Namespace) -> None:
    while True:
        data = await tenant_status(engine, args.tenant)
        if args.json:
            print(json.dumps(data, default=str), flush=True)
        else:
            if args.watch:
                print(f"\x1b[2J\x1b[H{datetime.now(UTC):%H:%M:%S} (Ctrl-C to stop)")
            print(render_status(data), flush=True)
        if not args.watch:
            return
        await asyncio.sleep(args.watch)


# --- reset -----------------------------------------------------------------------------------


async def reset(engine: Any, args: argparse.Namespace) -> dict[str, Any]:
    from storage import discord as db

    async with engine.begin() as conn:
        try:
            channels, removed = await db.reset_cursors(conn, args.tenant, args.channel)
        except LookupError as exc:
            raise CliError(f"{exc}; `python starter.py status --tenant <id>` lists them") from None
    return {"tenant": args.tenant, "channel": args.channel, "channels_reset": channels,
            "progress_rows_removed": removed}  # fmt: skip


async def refuse_while_syncing(settings: Settings, discord_guild_id: int) -> None:
    """A running sync would write its cursors straight back after a reset: refuse instead.

    Asks Temporal when it is up (the embedded server counts only if it is already running:
    without it nothing can be syncing)."""
    from temporalio.client import WorkflowExecutionStatus
    from temporalio.service import RPCError

    from runtime import connect, port_in_use

    address = settings.TEMPORAL_ADDRESS
    if not address:
        if not port_in_use(settings.EMBEDDED_TEMPORAL_PORT):
            return
        address = f"127.0.0.1:{settings.EMBEDDED_TEMPORAL_PORT}"
    workflow_id = sync_workflow_id(discord_guild_id)
    try:
        client = await asyncio.wait_for(connect(address, settings.TEMPORAL_NAMESPACE), 5)
        described = await client.get_workflow_handle(workflow_id).describe()
    except RPCError:
        return  # never started, or gone
    except (OSError, RuntimeError, TimeoutError) as exc:
        raise CliError(
            f"cannot check whether {workflow_id} is running (Temporal at {address}: {exc}); "
            "reset needs to know: start Temporal or fix TEMPORAL_ADDRESS"
        ) from None
    if described.status == WorkflowExecutionStatus.RUNNING:
        raise CliError(
            f"{workflow_id} is running and would write its cursors back; wait for it or stop it "
            f"(`temporal workflow terminate -w {workflow_id}`), then reset"
        )


def refuse_without_yes(args: argparse.Namespace) -> int | None:
    if args.yes:
        return None
    what = f"channel {args.channel} of tenant {args.tenant}" if args.channel else (
        f"every channel of tenant {args.tenant}")  # fmt: skip
    print(
        f"error: this clears the sync cursors and progress of {what} (stored messages are "
        "kept; the next sync re-reads from the beginning); add --yes to confirm",
        file=sys.stderr,
    )
    return 2
