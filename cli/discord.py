"""Discord on the command line: `track tenant`, `sync discord`, `status --tenant`,
`reset discord` (the scope is a tenant: a Discord guild id, `--tenant`)."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from activities.discord_types import TenantSyncInput, TenantSyncResult
from cli import CliError, discord_progress
from cli.commands import (
    ProviderCommands,
    ResetCommand,
    Scope,
    ScopeView,
    SyncCommand,
    TrackCommand,
)
from cli.launch import Launch, Outcome
from cli.progress import Tracking
from settings import Settings
from storage import discord as db
from workflows.visibility import search_attributes

PROVIDER = "discord"
SNOWFLAKE_HINT = "a Discord id is 17 to 20 digits, e.g. 1168516062791340136"


def snowflake_arg(value: str) -> int:
    """argparse type for Discord ids (a typo fails with exit 2 and this hint)."""
    text = value.strip()
    ascii_digits = text.isascii() and text.isdigit()  # "١٢٣".isdigit() is True too
    if not ascii_digits or not 17 <= len(text) <= 20 or int(text) >= 2**63:
        raise argparse.ArgumentTypeError(f"{value!r} is not a Discord id ({SNOWFLAKE_HINT})")
    return int(text)


def sync_workflow_id(tenant: str) -> str:
    """One sync per tenant at a time: two would advance the same cursors."""
    return f"discord-sync/{tenant}"


async def tracked(conn: AsyncConnection, tenant: str) -> int:
    found = await db.tenant_id(conn, int(tenant))
    if found is None:
        raise CliError(
            f"tenant {tenant} is not tracked; run `python starter.py track tenant {tenant}` first"
        )
    return found


async def _require_tracked(conn: AsyncConnection, tenant: str) -> None:
    await tracked(conn, tenant)


# --- track tenant ---------------------------------------------------------------------------


async def _track(conn: AsyncConnection, tenant: str, args: argparse.Namespace) -> int:
    return await db.track_tenant(conn, int(tenant))


def _label(tenant: str, args: argparse.Namespace) -> str:
    return f"tenant {tenant}"


# --- sync discord ---------------------------------------------------------------------------


def _sync_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--full", action="store_true", help="re-read every channel from the start")


def _sync_launch(args: argparse.Namespace, settings: Settings, tenant: str) -> Launch:
    workflow_id = sync_workflow_id(tenant)
    mode = "full" if args.full else "sync"
    return Launch(
        workflow="DiscordTenantSync",
        arg=TenantSyncInput(discord_guild_id=int(tenant), full=args.full),
        id=workflow_id,
        summary=f"Discord {'full' if args.full else 'incremental'} sync of guild {tenant}",
        search_attributes=search_attributes(PROVIDER, tenant, mode),
        result_type=TenantSyncResult,
        already_running=f"a sync of tenant {tenant} is already running ({workflow_id}); "
        f"watch it with `python starter.py status --tenant {tenant} --watch`",
        finished=_sync_finished,
        progress=Tracking(
            discord_progress.sync_probe(tenant),
            PROVIDER,
            settings.DISCORD_GLOBAL_RATE_PER_SECOND,
            budget=discord_bucket(settings),
        ),
    )


def discord_bucket(settings: Settings) -> str:
    """The configured bot's shared global budget (its rate in a worker-elsewhere progress)."""
    from activities.discord_build import discord_bucket as bucket

    return bucket(settings)


def _sync_finished(workflow_id: str, result: TenantSyncResult) -> Outcome:
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
    return Outcome(
        result.status in ("completed", "done"),
        f"{head}\n  {parts}",
        {"workflow_id": workflow_id, **data},
    )


# --- status --tenant -------------------------------------------------------------------------

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


async def tenant_status(conn: AsyncConnection, tenant: str) -> dict[str, Any]:
    await tracked(conn, tenant)
    run = await db.latest_run(conn, int(tenant))
    jobs = [] if run is None else await db.run_jobs(conn, int(run["sync_run_id"]))
    return {
        "tenant": int(tenant),
        "run": run,
        "channels": jobs,
        "stored": await db.tenant_stored(conn, int(tenant)),
        "last_run": await db.last_sync_run(conn, tenant),
    }


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
    run, stored, last = data["run"], data.get("stored") or {}, data.get("last_run")
    kept = f"{stored.get('messages', 0)} messages in {stored.get('channels', 0)} channels stored"
    ended = ""
    if last is not None and last["status"] not in ("running", "completed"):
        ended = f"\nlast run {last['workflow_id'].partition('#')[0]} {last['status']}"
        ended += f": {last['error']}" if last["error"] else ""
    if run is None:
        synced = "never synced" if last is None else "no channel progress recorded"
        return f"tenant {data['tenant']}: tracked, {synced}; {kept}{ended}"
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
    lines = [head + ended, f"{len(jobs)} channels: {counts or 'none'}; {total} messages; {kept}"]
    lines.append("  ".join(name.ljust(width) for name, width in _COLUMNS))
    for job in jobs:
        cells = [_cell(job, name).ljust(width) for name, width in _COLUMNS]
        line = "  ".join(cells).rstrip()
        if job["status"] in ("failed", "skipped") and job["error_message"]:
            line += f"  {job['error_message'][:80]}"
        lines.append(line)
    return "\n".join(lines)


# --- reset discord ---------------------------------------------------------------------------


def _reset_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--channel", type=snowflake_arg, help="only this channel")


def _reset_what(tenant: str, args: argparse.Namespace) -> str:
    if args.channel:
        return f"channel {args.channel} of tenant {tenant}"
    return f"every channel of tenant {tenant}"


async def _reset(conn: AsyncConnection, tenant: str, args: argparse.Namespace) -> dict[str, Any]:
    try:
        channels, removed = await db.reset_cursors(conn, int(tenant), args.channel)
    except LookupError as exc:
        raise CliError(f"{exc}; `python starter.py status --tenant <id>` lists them") from None
    return {"tenant": int(tenant), "channel": args.channel, "channels_reset": channels,
            "progress_rows_removed": removed}  # fmt: skip


def _reset_summary(data: dict[str, Any]) -> str:
    return (
        f"reset {data['channels_reset']} channel(s) of tenant {data['tenant']}: cursors "
        f"cleared, {data['progress_rows_removed']} progress row(s) removed; messages kept"
    )


COMMANDS = ProviderCommands(
    scope=Scope("discord guild id", "the Discord guild (server) id", type=snowflake_arg),
    sync=(
        SyncCommand(
            name="discord",
            help="mirror a tenant's channels and messages",
            description="Start a DiscordTenantSync: list the tenant's channels and threads, "
            "then page each channel's new messages (all of them with --full), "
            "SYNC_MAX_CHANNEL_WORKERS at a time. "
            "Example: python starter.py sync discord --tenant 1168516062791340136 --wait",
            launch=_sync_launch,
            arguments=_sync_arguments,
            check=_require_tracked,
        ),
    ),
    track=(
        TrackCommand(
            name="tenant",
            help="track a Discord server (its channels and messages)",
            description="Track a Discord server (guild) by id; the bot must be a member. "
            "Example: python starter.py track tenant 1168516062791340136",
            register=_track,
            label=_label,
        ),
    ),
    reset=ResetCommand(
        help="clear a tenant's (or one channel's) cursors and progress",
        description="Clear the cursors and progress of a Discord tenant, or of one of its "
        "channels; messages stay stored. Refuses without --yes. Example: python starter.py "
        "reset discord --tenant 1168516062791340136 --yes",
        what=_reset_what,
        kept="stored messages are kept",
        reset=_reset,
        summary=_reset_summary,
        running=sync_workflow_id,
        arguments=_reset_arguments,
    ),
    view=ScopeView(
        help="live table of a Discord tenant's latest sync: channel, status, messages, msgs/s, "
        "retries, waiting-until",
        fetch=tenant_status,
        render=render_status,
    ),
)
