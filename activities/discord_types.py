"""Inputs and results of the Discord workflows and activities (ids, counts, cursors only).

Every field has a default so fields can be added without breaking recorded histories.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from activities.types import HEARTBEAT_SECONDS
from providers.ratelimit import Priority

# The most channels one page (one activity result, one master run) holds.
CHANNEL_PAGE_MAX = 500


@dataclass
class TenantSyncInput:
    """Start of a tenant sync. ``state`` is set only when the master continues-as-new."""

    discord_guild_id: int = 0
    full: bool = False
    priority: int = Priority.INCREMENTAL
    report_to: str | None = None
    state: TenantSyncState | None = None
    heartbeat_timeout_seconds: float = HEARTBEAT_SECONDS
    channel_page_size: int = CHANNEL_PAGE_MAX  # channels per page (and per run)


@dataclass
class ChannelTarget:
    channel_id: int = 0  # channels.id
    discord_channel_id: int = 0


@dataclass
class TenantSyncState:
    run_id: int = 0
    pending: list[ChannelTarget] = field(default_factory=list)  # channels not started yet
    max_workers: int = 10
    fetch_size: int = 100
    max_attempts: int = 5
    channels: int = 0
    skipped_before_start: int = 0
    max_concurrent: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    fatal: str | None = None
    fatal_type: str = ""
    started_at: datetime | None = None
    # Paged runs (histories recorded before carry the whole listing in ``pending``): the
    # channels to sync are the run's jobs in Postgres, read in keyset pages of ``page_size``;
    # ``pending`` holds at most one page.
    paged: bool = False
    page_size: int = CHANNEL_PAGE_MAX
    after_channel_id: int = 0  # channels.id of the last channel listed so far
    listing_done: bool = False
    channel_pages: int = 0


@dataclass
class BeginTenantInput:
    discord_guild_id: int = 0
    full: bool = False
    workflow_id: str = ""
    priority: int = Priority.INCREMENTAL
    paged: bool = False  # the channels stay in Postgres: ``channels`` comes back empty


@dataclass
class BeginTenantResult:
    run_id: int = 0
    channels: list[ChannelTarget] = field(default_factory=list)  # empty when paged
    channels_wanted: int = 0  # channels this run syncs (the run's jobs)
    channels_listed: int = 0
    skipped: int = 0  # channels not synced this run (no messages of their own, no access)
    max_workers: int = 10
    fetch_size: int = 100
    max_attempts: int = 5


@dataclass
class ChannelPageInput:
    """A keyset page of a run's channels (its jobs), after ``channels.id`` ``after_channel_id``."""

    run_id: int = 0
    after_channel_id: int = 0
    limit: int = CHANNEL_PAGE_MAX  # the activity never returns more than CHANNEL_PAGE_MAX


@dataclass
class ChannelPage:
    channels: list[ChannelTarget] = field(default_factory=list)
    last_channel_id: int = 0  # the cursor of the next page
    more: bool = False  # channels lie past this page


@dataclass
class ChannelSyncInput:
    run_id: int = 0
    channel_id: int = 0  # channels.id
    discord_channel_id: int = 0
    fetch_size: int = 100
    priority: int = Priority.INCREMENTAL
    max_attempts: int = 5
    carried: ChannelSyncResult | None = None  # totals so far, across continue-as-new
    heartbeat_timeout_seconds: float = HEARTBEAT_SECONDS


CHANNEL_QUEUE_SUFFIX = ".discord-channels"
MAIN_SLOTS = 4  # Discord's slots on the main queue: the listing and bookkeeping, never paging


def channel_queue(task_queue: str) -> str:
    """The task queue channel paging runs on, beside the workflows' ``task_queue``: only channel
    calls take its slots (SYNC_MAX_CHANNEL_WORKERS per worker process)."""
    return task_queue + CHANNEL_QUEUE_SUFFIX


@dataclass
class ChannelPagesInput:
    run_id: int = 0
    channel_id: int = 0
    fetch_size: int = 100
    priority: int = Priority.INCREMENTAL
    time_budget_seconds: float = 60.0


@dataclass
class ChannelPagesResult:
    done: bool = False
    status: str = "running"  # running | done | skipped
    messages: int = 0
    pages: int = 0
    api_calls: int = 0
    resume_at: datetime | None = None  # the bucket is spent until then: sleep durably
    detail: str = ""
    failed_attempts: int = 0  # attempts of this call that failed before it returned

    @property
    def progressed(self) -> bool:
        return self.pages > 0


@dataclass
class ParkChannelInput:
    run_id: int = 0
    channel_id: int = 0
    discord_channel_id: int = 0
    error_type: str = ""
    error: str = ""


@dataclass
class ChannelSyncResult:
    channel_id: int = 0
    discord_channel_id: int = 0
    status: str = "done"  # done | skipped | failed
    messages: int = 0
    pages: int = 0
    api_calls: int = 0
    activity_calls: int = 0
    budget_waits: int = 0
    error: str = ""
    failures_without_progress: int = 0  # failed attempts since the last stored page


@dataclass
class FinishTenantInput:
    run_id: int = 0
    status: str = "done"
    error: str | None = None
    max_concurrent: int = 0


@dataclass
class TenantSyncResult:
    """The brief's SyncJobResult: what one tenant sync did."""

    discord_guild_id: int = 0
    run_id: int = 0
    status: str = "completed"  # completed | partial (some channels parked) | failed
    channels: int = 0
    channels_done: int = 0
    channels_skipped: int = 0
    channels_failed: int = 0
    messages: int = 0
    reactions: int = 0
    attachments: int = 0
    errors: int = 0
    max_concurrent_channels: int = 0
    avg_channel_seconds: float = 0.0
    api_calls: int = 0
    rate_limit_encounters: int = 0
    retries: int = 0
    seconds: float = 0.0
    error: str | None = None
