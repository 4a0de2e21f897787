"""Inputs and outputs of the workflows and activities: ids, counts and cursors only.

Raw payloads never travel through these (they go from the activity straight to Postgres), and
neither do credentials. One dataclass per call, so fields can be added without breaking histories.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class StartRunInput:
    provider: str
    scope: str
    kind: str
    workflow_id: str


@dataclass
class FinishRunInput:
    run_id: int
    status: str
    counts: dict[str, int]
    errors: int
    error: str | None = None


@dataclass
class GuildTarget:
    id: int
    region: str
    realm: str
    name_slug: str


@dataclass
class SelectGuildsInput:
    region: str
    cutoff: datetime


@dataclass
class SelectCharactersInput:
    region: str
    cutoff: datetime
    limit: int
    after_synced: datetime | None = None
    after_id: int | None = None


@dataclass
class CharacterPage:
    ids: list[int]
    last_synced: datetime | None
    last_id: int | None


@dataclass
class GuildSyncInput:
    guild_id: int
    priority: int = 10
    heartbeat_timeout_seconds: int = 30


@dataclass
class GuildSyncResult:
    status: str  # synced | not_modified | not_found | failed
    members: int = 0
    discovered: int = 0
    left: int = 0
    requests: int = 0


@dataclass
class CharacterBatchInput:
    batch_key: str
    character_ids: list[int]
    priority: int = 10
    position: int = 0
    heartbeat_timeout_seconds: int = 30
    cutoff: datetime | None = None  # characters synced since then are done (resume after crash)


@dataclass
class CharacterBatchResult:
    position: int = 0
    synced: int = 0
    not_modified: int = 0
    not_found: int = 0
    failed: int = 0
    requests: int = 0
    resume_at: datetime | None = None  # budget exhausted: sleep durably until then


@dataclass
class SyncCounts:
    guilds: int = 0
    guilds_not_found: int = 0
    members: int = 0
    discovered: int = 0
    left: int = 0
    characters: int = 0
    characters_not_modified: int = 0
    characters_not_found: int = 0
    failed: int = 0
    requests: int = 0
    children_failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class BattleNetSyncInput:
    region: str
    full: bool = False
    staleness_seconds: int = 6 * 3600
    batch_size: int = 50
    page_size: int = 2000
    window: int = 8
    priority: int = 10
    heartbeat_timeout_seconds: int = 30
    # carried across continue-as-new
    run_id: int | None = None
    cutoff: datetime | None = None
    phase: str = "guilds"
    after_synced: datetime | None = None
    after_id: int | None = None
    pages: int = 0
    counts: SyncCounts = field(default_factory=SyncCounts)
    report_to: str | None = None  # the scheduler to tell when this run ends


@dataclass
class TrackInput:
    region: str
    kind: str  # character | guild
    realm: str
    name: str


@dataclass
class EntitySyncInput:
    """One entity synced now (a manual add): register it, then sync it at its priority."""

    region: str
    kind: str  # character | guild
    realm: str
    name: str
    priority: int = 40
    report_to: str | None = None
    heartbeat_timeout_seconds: int = 30


@dataclass
class EntitySyncResult:
    status: str
    entity_id: int = 0
    characters: int = 0
    not_found: int = 0
    requests: int = 0
