"""Discord (a bot's servers: channels, threads, messages): the declaration."""

from __future__ import annotations

from providers.ratelimit import Priority, Window
from providers.spec import Bucket, ProviderSpec, SyncKind

SPEC = ProviderSpec(
    name="discord",
    title="Discord",
    scope="tenant",
    scope_option="--tenant",
    kinds=(
        SyncKind("sync", Priority.INCREMENTAL, cadence_setting="SCHEDULER_DISCORD_SYNC_EVERY"),
        SyncKind("full", Priority.BULK),
    ),
    buckets=(
        Bucket("global", (Window(50, 1.0),), note="DISCORD_GLOBAL_RATE_PER_SECOND"),
        Bucket("per route", learned=True, note="X-RateLimit-Bucket, per major parameter"),
    ),
    workflows=("workflows.discord:WORKFLOWS",),
    activities="activities.discord_build:build",
    plan="workflows.discord:DiscordPlan",
    status="storage.discord:status",
    # a channel's page activity holds one connection for its whole call
    db_connections=lambda settings: settings.SYNC_MAX_CHANNEL_WORKERS + 2,
    cli="cli.discord:COMMANDS",
)
