"""Battle.net on the command line: `track guild|character`, `add character|guild`,
`sync battlenet`, `sync pvp` (the scope is a region: `--region`, default BNET_REGION)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import get_args

from sqlalchemy.ext.asyncio import AsyncConnection

from activities.types import BattleNetSyncInput, PvpSyncInput, PvpSyncResult, SyncCounts
from cli import battlenet_progress
from cli.commands import AddCommand, ProviderCommands, Scope, ScopeView, SyncCommand, TrackCommand
from cli.launch import Launch, Outcome
from cli.progress import Tracking
from providers.battlenet.names import character_slug, slugify, valid_slug
from settings import Settings
from storage import battlenet as db
from workflows.visibility import region_sync_id, search_attributes

PROVIDER = "battlenet"
REGIONS: tuple[str, ...] = get_args(Settings.model_fields["BNET_REGION"].annotation)
EXAMPLE = {"guild": "eu stormrage avalerion", "character": "eu draenor sheday"}


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def _checked(what: str, to_slug: Callable[[str], str]) -> Callable[[str], str]:
    """argparse type: the value as typed, if its slug can be a path segment (``../x``, ``a/b``
    and ``two words`` are usage errors: exit 2, one line)."""

    def check(value: str) -> str:
        if not valid_slug(to_slug(value)):
            raise argparse.ArgumentTypeError(
                f"{value[:40]!r} is not a valid {what} (letters, digits, spaces and hyphens; "
                f"no '/', '.', '%', '?' or '#')"
            )
        return value

    check.__name__ = what  # argparse names the type in its own messages
    return check


def _realm_and_name(entity: str) -> Callable[[argparse.ArgumentParser], None]:
    name_slug = character_slug if entity == "character" else slugify

    def arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "realm", type=_checked("realm", slugify),
            help="realm name or slug, e.g. stormrage or 'Area 52'",
        )  # fmt: skip
        parser.add_argument("name", type=_checked(f"{entity} name", name_slug),
                            help=f"{entity} name")  # fmt: skip

    return arguments


# --- track / add ---------------------------------------------------------------------------


async def _track(conn: AsyncConnection, region: str, args: argparse.Namespace) -> int:
    register = db.track_guild if args.entity == "guild" else db.track_character
    return await register(conn, region, args.realm, args.name)


def _label(region: str, args: argparse.Namespace) -> str:
    return f"{args.entity} {region}/{args.realm}/{args.name}"


def entity_key(args: argparse.Namespace) -> str:
    """A scheduler request's key: ``realm-slug/Name`` (neither part can hold a ``/``)."""
    return f"{slugify(args.realm)}/{args.name.strip()}"


def _track_command(entity: str) -> TrackCommand:
    return TrackCommand(
        name=entity,
        help=f"track a {entity}",
        description=f"Track a WoW {entity}. "
        f"Example: python starter.py track {entity} {EXAMPLE[entity]}",
        register=_track,
        label=_label,
        arguments=_realm_and_name(entity),
    )


def _add_command(entity: str) -> AddCommand:
    name = "Foo" if entity == "character" else "avalerion"
    return AddCommand(
        name=entity,
        help=f"add a {entity} and sync it at once",
        description=f"Register a {entity} and signal the running scheduler to sync it ahead "
        f"of the backlog. Example: python starter.py add {entity} eu draenor {name} --wait",
        key=entity_key,
        arguments=_realm_and_name(entity),
    )


# --- sync battlenet ------------------------------------------------------------------------


def _sync_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--full", action="store_true", help="sync everything, not only outdated")


def sync_workflow_id(region: str) -> str:
    """One sync per region at a time, the scheduler's included: a second start meets this id
    and is refused."""
    return region_sync_id(region)


def _sync_launch(args: argparse.Namespace, settings: Settings, region: str) -> Launch:
    return Launch(
        workflow="BattleNetSync",
        arg=BattleNetSyncInput(
            region=region,
            full=args.full,
            staleness_seconds=settings.BNET_STALENESS_SECONDS,
            batch_size=settings.BNET_CHARACTER_BATCH_SIZE,
        ),
        id=sync_workflow_id(region),
        summary=f"Battle.net sync of region {region}",
        already_running=f"a Battle.net sync of region {region} is already running "
        f"({sync_workflow_id(region)}); watch it with `python starter.py status --watch`",
        search_attributes=search_attributes(PROVIDER, region, "full" if args.full else "sync"),
        result_type=SyncCounts,
        finished=_sync_finished,
        progress=Tracking(
            battlenet_progress.sync_probe(region),
            PROVIDER,
            settings.BNET_RATE_PER_SECOND,
            budget=bnet_bucket(settings),
        ),
    )


def bnet_bucket(settings: Settings) -> str:
    """The configured client id's shared budget (its rate in a worker-elsewhere progress)."""
    from activities.battlenet_build import bnet_bucket as bucket

    return bucket(settings)


def _sync_finished(workflow_id: str, counts: SyncCounts) -> Outcome:
    data = {"workflow_id": workflow_id, **counts.as_dict()}
    human = f"{workflow_id} finished: " + ", ".join(f"{k}={v}" for k, v in data.items() if v)
    if counts.guilds_not_found:
        human += (
            f"\n{counts.guilds_not_found} guild(s) answered 404: check region, realm and name "
            "(`python starter.py status` lists them)"
        )
    return Outcome(True, human, data)


# --- sync pvp ------------------------------------------------------------------------------


def _pvp_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--season", type=int, help="season id (default: the current season)")
    parser.add_argument("--brackets", help="comma list, e.g. 2v2,3v3,rbg (default: all)")


def _pvp_launch(args: argparse.Namespace, settings: Settings, region: str) -> Launch:
    # Lazy: activities.battlenet_build imports the Battle.net HTTP client and activities; only
    # `sync pvp` needs its queue rule, and --help should not pay for it.
    from activities.battlenet_build import pvp_queues

    brackets = [b.strip() for b in args.brackets.split(",") if b.strip()] if args.brackets else None
    sync_queue, processing_queue = pvp_queues(settings, None)
    return Launch(
        workflow="PvpSync",
        arg=PvpSyncInput(
            region=region,
            season=args.season,
            brackets=brackets,
            sync_queue=sync_queue,
            processing_queue=processing_queue,
        ),
        id=f"pvp-sync/{region}/{_stamp()}",
        summary=f"PvP leaderboards of {region}",
        search_attributes=search_attributes(PROVIDER, region, "pvp"),
        result_type=PvpSyncResult,
        finished=_pvp_finished,
        progress=Tracking(
            battlenet_progress.pvp_probe(),
            PROVIDER,
            settings.BNET_RATE_PER_SECOND,
            budget=bnet_bucket(settings),
        ),
    )


def _pvp_finished(workflow_id: str, result: PvpSyncResult) -> Outcome:
    data = {
        "workflow_id": workflow_id,
        "season": result.season,
        "brackets": [asdict(b) for b in result.brackets],
        "failed_brackets": result.failed_brackets,
    }
    lines = [f"{workflow_id}: season {result.season}"] + [
        f"  {b.bracket}: {b.import_result.entries} entries ({b.import_result.inserted} new), "
        f"equipment processed {b.equipment.processed} (private skipped "
        f"{b.equipment.private_skipped}, reused {b.equipment.reused})"
        for b in result.brackets
    ]
    return Outcome(not result.failed_brackets, "\n".join(lines), data)


COMMANDS = ProviderCommands(
    scope=Scope("region", "Battle.net region", choices=REGIONS),
    sync=(
        SyncCommand(
            name="battlenet",
            help="sync outdated guilds and characters",
            description="Start a BattleNetSync for every outdated guild and character of a "
            "region. Example: python starter.py sync battlenet --region eu --wait",
            launch=_sync_launch,
            arguments=_sync_arguments,
        ),
        SyncCommand(
            name="pvp",
            help="import PvP leaderboards and their equipment",
            description="Start a PvpSync: every bracket of a season (current by default) "
            "imported in bulk, then each entry's equipment. Example: python starter.py sync pvp "
            "--region eu --brackets 2v2,3v3 --wait",
            launch=_pvp_launch,
            arguments=_pvp_arguments,
        ),
    ),
    track=(_track_command("guild"), _track_command("character")),
    add=(_add_command("character"), _add_command("guild")),
    view=ScopeView(
        help="the region's latest Battle.net and PvP runs: phase, done/total, rate, errors, "
        "PvP per bracket (live with --watch)",
        fetch=battlenet_progress.region_status,
        render=battlenet_progress.render_region,
    ),
)
