"""Battle.net (WoW guilds, rosters, characters and PvP leaderboards): the declaration."""

from __future__ import annotations

from providers.ratelimit import Priority, Window
from providers.spec import Bucket, ProviderSpec, SyncKind

SPEC = ProviderSpec(
    name="battlenet",
    title="Battle.net",
    scope="region",
    scope_option="--region",
    default_scope="BNET_REGION",
    kinds=(
        SyncKind("sync", Priority.INCREMENTAL, cadence_setting="SCHEDULER_BATTLENET_SYNC_EVERY"),
        SyncKind("full", Priority.BULK),
        SyncKind("pvp", Priority.BULK, cadence_setting="SCHEDULER_PVP_EVERY"),
        SyncKind("character", Priority.MANUAL, entity=True),
        SyncKind("guild", Priority.MANUAL, entity=True),
    ),
    buckets=(
        Bucket(
            "client id",
            (Window(100, 1.0), Window(36_000, 3600.0)),
            note="BNET_RATE_PER_SECOND / BNET_RATE_PER_HOUR; every endpoint, PvP included",
        ),
    ),
    workflows=("workflows.battlenet:WORKFLOWS", "workflows.pvp:WORKFLOWS"),
    activities="activities.battlenet_build:build",
    plan="workflows.battlenet:BattleNetPlan",
    status="storage.battlenet:status",
    db_connections=lambda settings: max(5, settings.BNET_MAX_CONCURRENT // 2),
    cli="cli.battlenet:COMMANDS",
)
