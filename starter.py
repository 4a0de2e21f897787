"""ratesync command line: `python starter.py <verb> …` (every verb has --help).

Exit codes: 0 done; 1 the operation failed (server unreachable, sync failed, timeout);
2 bad usage or a bad setting (the message names the fix).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from cli import CliError
from settings import Settings, SettingsError, load_settings

REGIONS = ["us", "eu", "kr", "tw", "cn"]
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def emit(args: argparse.Namespace, human: str, data: Any) -> None:
    if getattr(args, "json", False):
        print(json.dumps(data, default=str, ensure_ascii=False))
    else:
        print(human)


@dataclass
class Services:
    settings: Settings
    database_url: str
    temporal_address: str
    temporal_ui: str | None


@asynccontextmanager
async def services(settings: Settings, temporal: bool) -> AsyncIterator[Services]:
    """Resolve (or start) Postgres and Temporal; migrate an embedded database."""
    from runtime import embedded_services
    from storage.migrate import upgrade

    with embedded_services(need_temporal=temporal) as ep:
        if ep.embedded_database:
            await asyncio.to_thread(upgrade, ep.database_url)
        yield Services(settings, ep.database_url, ep.temporal_address, ep.temporal_ui)


# --- db ----------------------------------------------------------------------------------


async def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from runtime import embedded_services
    from storage.db import redact
    from storage.migrate import current_head, upgrade

    with embedded_services(need_temporal=False) as ep:
        await asyncio.to_thread(upgrade, ep.database_url)
        emit(
            args,
            f"database {redact(ep.database_url)} is at revision {current_head()}",
            {"revision": current_head()},
        )
    return EXIT_OK


# --- track -------------------------------------------------------------------------------


async def cmd_track(args: argparse.Namespace, settings: Settings) -> int:
    from storage import battlenet as db
    from storage import discord as discord_db
    from storage.db import create_engine

    async with services(settings, temporal=False) as svc:
        engine = create_engine(svc.database_url, pool_size=1)
        try:
            async with engine.begin() as conn:
                if args.entity == "tenant":
                    row_id = await discord_db.track_tenant(conn, args.discord_guild_id)
                elif args.entity == "guild":
                    row_id = await db.track_guild(conn, args.region, args.realm, args.name)
                else:
                    row_id = await db.track_character(conn, args.region, args.realm, args.name)
        finally:
            await engine.dispose()
    key = (
        f"tenant {args.discord_guild_id}"
        if args.entity == "tenant"
        else f"{args.entity} {args.region}/{args.realm}/{args.name}"
    )
    emit(args, f"tracking {key} (id {row_id})", {"entity": args.entity, "id": row_id})
    return EXIT_OK


# --- sync --------------------------------------------------------------------------------


async def _has_pollers(client: Any, task_queue: str) -> bool:
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    return bool(response.pollers)


async def cmd_sync(args: argparse.Namespace, settings: Settings) -> int:
    from activities.types import BattleNetSyncInput
    from runtime import connect
    from worker import build_worker
    from workflows.battlenet import BattleNetSync
    from workflows.visibility import search_attributes

    region = args.region or settings.BNET_REGION
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    workflow_id = f"battlenet-sync/{region}/{stamp}"
    inp = BattleNetSyncInput(
        region=region,
        full=args.full,
        staleness_seconds=settings.BNET_STALENESS_SECONDS,
        batch_size=settings.BNET_CHARACTER_BATCH_SIZE,
    )
    async with services(settings, temporal=True) as svc:
        client = await connect(svc.temporal_address, settings.TEMPORAL_NAMESPACE)
        handle = await client.start_workflow(
            BattleNetSync.run,
            inp,
            id=workflow_id,
            task_queue=settings.TEMPORAL_TASK_QUEUE,
            static_summary=f"Battle.net sync of region {region}",
            search_attributes=search_attributes(
                "battlenet", region, "full" if args.full else "sync"
            ),
        )
        polled = await _has_pollers(client, settings.TEMPORAL_TASK_QUEUE)
        if not args.wait:
            note = "" if polled else " (no worker is polling yet: run `python worker.py`)"
            emit(args, f"started {workflow_id}{note}", {"workflow_id": workflow_id})
            return EXIT_OK
        if polled:
            counts = await handle.result()
        else:  # nobody is working the queue: run a worker in this process until it is done
            async with build_worker(client, settings, svc.database_url) as parts:
                async with parts.worker:
                    counts = await handle.result()
    data = {"workflow_id": workflow_id, **counts.as_dict()}
    human = f"{workflow_id} finished: " + ", ".join(f"{k}={v}" for k, v in data.items() if v)
    if counts.guilds_not_found:
        human += (
            f"\n{counts.guilds_not_found} guild(s) answered 404: check region, realm and name "
            "(`python starter.py status` lists them)"
        )
    emit(args, human, data)
    return EXIT_OK


async def cmd_sync_pvp(args: argparse.Namespace, settings: Settings) -> int:
    from activities.battlenet_build import pvp_queues
    from activities.types import PvpSyncInput
    from runtime import connect
    from worker import build_worker
    from workflows.pvp import PvpSync
    from workflows.visibility import search_attributes

    region = args.region or settings.BNET_REGION
    brackets = [b.strip() for b in args.brackets.split(",") if b.strip()] if args.brackets else None
    sync_queue, processing_queue = pvp_queues(settings, None)
    inp = PvpSyncInput(
        region=region, season=args.season, brackets=brackets,
        sync_queue=sync_queue, processing_queue=processing_queue,
    )  # fmt: skip
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    workflow_id = f"pvp-sync/{region}/{stamp}"
    async with services(settings, temporal=True) as svc:
        client = await connect(svc.temporal_address, settings.TEMPORAL_NAMESPACE)
        handle = await client.start_workflow(
            PvpSync.run, inp, id=workflow_id, task_queue=settings.TEMPORAL_TASK_QUEUE,
            static_summary=f"PvP leaderboards of {region}",
            search_attributes=search_attributes("battlenet", region, "pvp"),
        )  # fmt: skip
        if not args.wait:
            emit(args, f"started {workflow_id}", {"workflow_id": workflow_id})
            return EXIT_OK
        if await _has_pollers(client, settings.TEMPORAL_TASK_QUEUE):
            result = await handle.result()
        else:
            async with build_worker(client, settings, svc.database_url) as parts:
                async with parts.worker:
                    result = await handle.result()
    data = {"workflow_id": workflow_id, "season": result.season,
            "brackets": [asdict(b) for b in result.brackets],
            "failed_brackets": result.failed_brackets}  # fmt: skip
    lines = [f"{workflow_id}: season {result.season}"] + [
        f"  {b.bracket}: {b.import_result.entries} entries ({b.import_result.inserted} new), "
        f"equipment processed {b.equipment.processed} (private skipped "
        f"{b.equipment.private_skipped}, reused {b.equipment.reused})"
        for b in result.brackets
    ]
    emit(args, "\n".join(lines), data)
    return EXIT_FAILED if result.failed_brackets else EXIT_OK


async def cmd_sync_discord(args: argparse.Namespace, settings: Settings) -> int:
    from cli.discord import start_sync, summary_lines, tracked
    from runtime import connect
    from storage.db import create_engine
    from worker import build_worker

    async with services(settings, temporal=True) as svc:
        engine = create_engine(svc.database_url, pool_size=1)
        try:
            async with engine.connect() as conn:
                await tracked(conn, args.tenant)
        finally:
            await engine.dispose()
        client = await connect(svc.temporal_address, settings.TEMPORAL_NAMESPACE)
        handle = await start_sync(client, settings, args.tenant, args.full)
        polled = await _has_pollers(client, settings.TEMPORAL_TASK_QUEUE)
        if not args.wait:
            note = "" if polled else " (no worker is polling yet: run `python worker.py`)"
            emit(args, f"started {handle.id}{note}", {"workflow_id": handle.id})
            return EXIT_OK
        try:
            if polled:
                result = await handle.result()
            else:
                async with build_worker(client, settings, svc.database_url) as parts:
                    async with parts.worker:
                        result = await handle.result()
        except Exception as exc:  # WorkflowFailureError: say why in one line
            cause = getattr(getattr(exc, "cause", None), "message", None) or str(exc)
            raise CliError(f"{handle.id} failed: {cause}") from None
    emit(args, summary_lines(result), {"workflow_id": handle.id, **asdict(result)})
    return EXIT_FAILED if result.status != "done" else EXIT_OK


# --- status ------------------------------------------------------------------------------


async def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from storage.db import create_engine
    from storage.status import database_status

    async with services(settings, temporal=False) as svc:
        engine = create_engine(svc.database_url, pool_size=1)
        try:
            if args.tenant is not None:
                from cli.discord import watch_status

                await watch_status(engine, args)
                return EXIT_OK
            while True:
                data = await database_status(engine)
                data["schedulers"] = await _schedulers_if_reachable(settings)
                if args.watch:
                    print(f"\x1b[2J\x1b[H{datetime.now(UTC):%H:%M:%S} (Ctrl-C to stop)")
                _print_status(data, args.json)
                if not args.watch:
                    return EXIT_OK
                await asyncio.sleep(args.watch)
        finally:
            await engine.dispose()


def _print_status(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(data, default=str), flush=True)
        return
    for section, values in data.items():
        if isinstance(values, dict):
            print(f"{section}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
        else:
            print(f"{section}:")
            for row in values:
                print("  " + "  ".join(f"{k}={v}" for k, v in row.items()))
    sys.stdout.flush()


async def _schedulers_if_reachable(settings: Settings) -> list[dict[str, Any]]:
    """Running schedulers, when a Temporal server is already up (status never starts one)."""
    from cli.scheduler import running_schedulers
    from runtime import connect, port_in_use

    address = settings.TEMPORAL_ADDRESS
    if not address:
        if not port_in_use(settings.EMBEDDED_TEMPORAL_PORT):
            return []
        address = f"127.0.0.1:{settings.EMBEDDED_TEMPORAL_PORT}"
    try:
        client = await asyncio.wait_for(connect(address, settings.TEMPORAL_NAMESPACE), 5)
        return await running_schedulers(client)
    except Exception as exc:  # status must work without Temporal
        return [{"error": f"Temporal at {address} not reachable: {exc}"}]


async def cmd_reset(args: argparse.Namespace, settings: Settings) -> int:
    from cli.discord import refuse_while_syncing, refuse_without_yes, reset
    from storage.db import create_engine

    refused = refuse_without_yes(args)
    if refused is not None:
        return refused
    await refuse_while_syncing(settings, args.tenant)
    async with services(settings, temporal=False) as svc:
        engine = create_engine(svc.database_url, pool_size=1)
        try:
            data = await reset(engine, args)
        finally:
            await engine.dispose()
    emit(
        args,
        f"reset {data['channels_reset']} channel(s) of tenant {args.tenant}: cursors cleared, "
        f"{data['progress_rows_removed']} progress row(s) removed; messages kept",
        data,
    )
    return EXIT_OK


@asynccontextmanager
async def temporal_client(settings: Settings) -> AsyncIterator[Any]:
    from runtime import connect

    async with services(settings, temporal=True) as svc:
        yield await connect(svc.temporal_address, settings.TEMPORAL_NAMESPACE)


async def cmd_scheduler(args: argparse.Namespace, settings: Settings) -> int:
    from cli.scheduler import control, print_human

    async with temporal_client(settings) as client:
        data = await control(client, args, settings)
    print(json.dumps(data, default=str)) if args.json else print_human(data)
    return EXIT_OK


async def cmd_add(args: argparse.Namespace, settings: Settings) -> int:
    from cli.scheduler import add, print_human

    async with temporal_client(settings) as client:
        data = await add(client, args, settings)
    print(json.dumps(data, default=str)) if args.json else print_human(data)
    if args.wait and data.get("status") not in ("completed", None):
        return EXIT_FAILED
    return EXIT_OK


async def cmd_temporal_setup(args: argparse.Namespace, settings: Settings) -> int:
    from cli.scheduler import setup_search_attributes

    async with temporal_client(settings) as client:
        added = await setup_search_attributes(client)
    emit(args, f"search attributes added: {', '.join(added) or 'none (already there)'}",
         {"added": added})  # fmt: skip
    return EXIT_OK


# --- sandbox / demo ------------------------------------------------------------------------


def cmd_sandbox(args: argparse.Namespace, settings: Settings) -> int:
    from sandbox.__main__ import main as sandbox_main

    return int(sandbox_main(args.sandbox_args) or 0)


async def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from demo import run_demo

    return await run_demo(args, settings)


# --- parser ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python starter.py",
        description="ratesync: mirror rate-limited APIs into PostgreSQL with Temporal.",
        epilog="Example: python starter.py track guild eu stormrage avalerion && "
        "python starter.py sync battlenet --region eu --wait",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, help_text: str, func: Callable[..., Any]) -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(func=func)
        sub.add_argument("--json", action="store_true", help="machine-readable output")
        return sub

    db = verbs.add_parser("db", help="database schema", description="Database schema commands.")
    db_verbs = db.add_subparsers(dest="db_verb", required=True, metavar="ACTION")
    up = db_verbs.add_parser("upgrade", help="apply alembic migrations (DATABASE_URL or embedded)")
    up.set_defaults(func=cmd_db_upgrade)
    up.add_argument("--json", action="store_true", help="machine-readable output")

    track = verbs.add_parser("track", help="register a guild or character to keep in sync")
    track_kinds = track.add_subparsers(dest="entity", required=True, metavar="ENTITY")
    for entity in ("guild", "character"):
        sub = track_kinds.add_parser(
            entity,
            help=f"track a {entity}",
            description=f"Track a WoW {entity}. Example: python starter.py track {entity} "
            f"eu stormrage {'avalerion' if entity == 'guild' else 'sheday'}",
        )
        sub.add_argument("region", choices=REGIONS, help="Battle.net region")
        sub.add_argument("realm", help="realm name or slug, e.g. stormrage or 'Area 52'")
        sub.add_argument("name", help=f"{entity} name")
        sub.add_argument("--json", action="store_true", help="machine-readable output")
        sub.set_defaults(func=cmd_track)
    from cli.discord import snowflake_arg

    tenant = track_kinds.add_parser(
        "tenant",
        help="track a Discord server (its channels and messages)",
        description="Track a Discord server (guild) by id; the bot must be a member. "
        "Example: python starter.py track tenant 1168516062791340136",
    )
    tenant.add_argument("discord_guild_id", type=snowflake_arg, help="Discord guild (server) id")
    tenant.add_argument("--json", action="store_true", help="machine-readable output")
    tenant.set_defaults(func=cmd_track)

    sync = verbs.add_parser("sync", help="run a sync now", description="Run a sync now.")
    providers = sync.add_subparsers(dest="provider", required=True, metavar="PROVIDER")
    bnet = providers.add_parser(
        "battlenet",
        help="sync outdated guilds and characters",
        description="Start a BattleNetSync for every outdated guild and character of a region. "
        "Example: python starter.py sync battlenet --region eu --wait",
    )
    bnet.add_argument("--region", choices=REGIONS, help="default: BNET_REGION")
    bnet.add_argument("--full", action="store_true", help="sync everything, not only outdated")
    bnet.add_argument("--wait", action="store_true", help="wait for the result")
    bnet.add_argument("--json", action="store_true", help="machine-readable output")
    bnet.set_defaults(func=cmd_sync)
    pvp = providers.add_parser(
        "pvp",
        help="import PvP leaderboards and their equipment",
        description="Start a PvpSync: every bracket of a season (current by default) imported "
        "in bulk, then each entry's equipment. Example: python starter.py sync pvp --region eu "
        "--brackets 2v2,3v3 --wait",
    )
    pvp.add_argument("--region", choices=REGIONS, help="default: BNET_REGION")
    pvp.add_argument("--season", type=int, help="season id (default: the current season)")
    pvp.add_argument("--brackets", help="comma list, e.g. 2v2,3v3,rbg (default: all)")
    pvp.add_argument("--wait", action="store_true", help="wait for the result")
    pvp.add_argument("--json", action="store_true", help="machine-readable output")
    pvp.set_defaults(func=cmd_sync_pvp)
    discord = providers.add_parser(
        "discord",
        help="mirror a tenant's channels and messages",
        description="Start a DiscordTenantSync: list the tenant's channels and threads, then page "
        "each channel's new messages (all of them with --full), SYNC_MAX_CHANNEL_WORKERS at a "
        "time. Example: python starter.py sync discord --tenant 1168516062791340136 --wait",
    )
    discord.add_argument("--tenant", type=snowflake_arg, required=True, help="Discord guild id")
    discord.add_argument("--full", action="store_true", help="re-read every channel from the start")
    discord.add_argument("--wait", action="store_true", help="wait for the result")
    discord.add_argument("--json", action="store_true", help="machine-readable output")
    discord.set_defaults(func=cmd_sync_discord)

    status = verb(
        "status", "what is stored, what failed, the last sync runs, running schedulers", cmd_status
    )
    status.add_argument(
        "--watch", type=float, nargs="?", const=2.0, default=None, metavar="SECONDS",
        help="refresh every SECONDS (default 2) until Ctrl-C",
    )  # fmt: skip
    status.add_argument(
        "--tenant", type=snowflake_arg, metavar="DISCORD_GUILD_ID",
        help="live table of a Discord tenant's latest sync: channel, status, messages, msgs/s, "
        "retries, waiting-until",
    )  # fmt: skip
    reset = verbs.add_parser(
        "reset",
        help="clear sync cursors and progress (stored rows are kept)",
        description="Clear sync cursors and progress so the next sync starts from the beginning.",
    )
    reset_providers = reset.add_subparsers(dest="provider", required=True, metavar="PROVIDER")
    reset_discord = reset_providers.add_parser(
        "discord",
        help="clear a tenant's (or one channel's) cursors and progress",
        description="Clear the cursors and progress of a Discord tenant, or of one of its "
        "channels; messages stay stored. Refuses without --yes. Example: python starter.py "
        "reset discord --tenant 1168516062791340136 --yes",
    )
    reset_discord.add_argument("--tenant", type=snowflake_arg, required=True)
    reset_discord.add_argument("--channel", type=snowflake_arg, help="only this channel")
    reset_discord.add_argument("--yes", action="store_true", help="confirm")
    reset_discord.add_argument("--json", action="store_true", help="machine-readable output")
    reset_discord.set_defaults(func=cmd_reset)
    _scheduler_verbs(verbs)

    sandbox = verbs.add_parser(
        "sandbox",
        help="serve the Battle.net sandbox API on 127.0.0.1 (see `sandbox --help`)",
        add_help=False,
    )
    sandbox.add_argument("sandbox_args", nargs=argparse.REMAINDER)
    sandbox.set_defaults(func=cmd_sandbox)

    demo = verb(
        "demo",
        "embedded Temporal + Postgres + sandbox + worker: track guilds, sync, print a summary",
        cmd_demo,
    )
    demo.add_argument("--guilds", type=int, default=4, help="sandbox guilds to track")
    demo.add_argument("--roster-max", type=int, default=120, help="largest roster")
    demo.add_argument("--keep", action="store_true", help="keep running for the Web UI")
    return parser


def _scheduler_verbs(verbs: Any) -> None:
    from cli.scheduler import PROVIDERS
    from workflows.scheduler_types import PRIORITIES

    sched = verbs.add_parser(
        "scheduler",
        help="the running schedule per provider scope",
        description="Control the long-running Scheduler workflow scheduler/<provider>/<scope>.",
    )
    sched.add_argument("action", choices=["start", "stop", "pause", "resume", "status"])
    sched.add_argument("provider", choices=PROVIDERS)
    sched.add_argument("--region", choices=REGIONS, help="battlenet scope; default: BNET_REGION")
    from cli.discord import snowflake_arg

    sched.add_argument("--tenant", type=snowflake_arg, help="discord scope: the Discord guild id")
    sched.add_argument("--every", help="sync cadence for `start`, e.g. 15m (default: setting)")
    sched.add_argument("--json", action="store_true", help="machine-readable output")
    sched.set_defaults(func=cmd_scheduler)

    add = verbs.add_parser("add", help="manual add: sync an entity now, ahead of any backlog")
    kinds = add.add_subparsers(dest="entity", required=True, metavar="ENTITY")
    for entity in ("character", "guild"):
        sub = kinds.add_parser(
            entity,
            help=f"add a {entity} and sync it at once",
            description=f"Register a {entity} and signal the running scheduler to sync it ahead "
            f"of the backlog. Example: python starter.py add {entity} eu draenor "
            f"{'Foo' if entity == 'character' else 'avalerion'} --wait",
        )
        sub.add_argument("region", choices=REGIONS)
        sub.add_argument("realm")
        sub.add_argument("name")
        sub.add_argument("--priority", choices=list(PRIORITIES), default="manual")
        sub.add_argument("--wait", action="store_true", help="wait until its rows are stored")
        sub.add_argument("--timeout", type=float, default=300.0, help="seconds (default 300)")
        sub.add_argument("--json", action="store_true", help="machine-readable output")
        sub.set_defaults(func=cmd_add)

    temporal = verbs.add_parser("temporal", help="Temporal server set-up")
    actions = temporal.add_subparsers(dest="temporal_verb", required=True, metavar="ACTION")
    setup = actions.add_parser(
        "setup", help="register the search attributes Provider, Scope, SyncKind (idempotent)"
    )
    setup.add_argument("--json", action="store_true", help="machine-readable output")
    setup.set_defaults(func=cmd_temporal_setup)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from runtime import RuntimeStartError

    func: Callable[..., Any] = args.func
    try:
        result = func(args, settings)
        if isinstance(result, Coroutine):
            return int(asyncio.run(result))
        return int(result)
    except (CliError, RuntimeStartError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED
    except Exception as exc:  # a clear line instead of a traceback; details with LOG_LEVEL=DEBUG
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        if settings.LOG_LEVEL == "DEBUG":
            raise
        return EXIT_FAILED


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip interpreter teardown: temporalio can abort there (sdk-python#300)
