"""Inputs and outputs of the workflows and activities: ids, counts and cursors only.

Raw payloads never travel through these (they go from the activity straight to Postgres), and
neither do credentials. One dataclass per call, so fields can be added without breaking histories.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from providers.ratelimit import Priority

HEARTBEAT_SECONDS = 3  # the most a looping activity gets: a killed worker costs seconds
# The most guilds one page (one activity result, one master run) holds: a run starts at most
# this many GuildSync children, so its history stays far below Temporal's limits.
GUILD_PAGE_MAX = 500
CHARACTER_PAGE_MAX = 2000  # likewise for one page of character ids (the default page size)


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
class SelectGuildPageInput:
    """A keyset page of outdated guilds, after ``(after_synced, after_id)``."""

    region: str
    cutoff: datetime
    limit: int = GUILD_PAGE_MAX  # the activity never returns more than GUILD_PAGE_MAX
    after_synced: datetime | None = None
    after_id: int | None = None


@dataclass
class GuildPage:
    targets: list[GuildTarget] = field(default_factory=list)
    last_synced: datetime | None = None  # the cursor of the next page
    last_id: int | None = None
    more: bool = False  # outdated guilds lie past this page


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
    priority: int = Priority.BULK
    heartbeat_timeout_seconds: int = HEARTBEAT_SECONDS


@dataclass
class GuildSyncResult:
    status: str  # synced | not_modified | not_found | failed
    members: int = 0
    discovered: int = 0
    left: int = 0
    requests: int = 0
    rejected: int = 0  # roster members skipped: a name or realm slug no request can be made of


@dataclass
class CharacterBatchInput:
    batch_key: str
    character_ids: list[int]
    priority: int = Priority.BULK
    position: int = 0
    heartbeat_timeout_seconds: int = HEARTBEAT_SECONDS
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
    # Characters that failed transiently on every try of this call: not synced, not fresh,
    # due again at `retry_at` (the master's final pass picks them up).
    deferred: int = 0
    retry_at: datetime | None = None
    failed_attempts: int = 0  # attempts of this call that failed before it returned
    recovered: int = 0  # stored by an attempt of this call that died (a killed worker)

    @property
    def done(self) -> bool:
        return self.resume_at is None

    @property
    def progressed(self) -> bool:
        return self.synced + self.not_modified + self.not_found + self.failed + self.recovered > 0


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
    deferred: int = 0  # characters left to the final pass (transient failures)
    rejected: int = 0  # roster members skipped: a name or realm no request can be made of

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class BattleNetSyncInput:
    region: str
    full: bool = False
    staleness_seconds: int = 6 * 3600
    batch_size: int = 50
    page_size: int = CHARACTER_PAGE_MAX
    window: int = 8
    priority: int = Priority.BULK
    heartbeat_timeout_seconds: int = HEARTBEAT_SECONDS
    # carried across continue-as-new
    run_id: int | None = None
    cutoff: datetime | None = None
    phase: str = "guilds"
    after_synced: datetime | None = None
    after_id: int | None = None
    pages: int = 0
    counts: SyncCounts = field(default_factory=SyncCounts)
    report_to: str | None = None  # the scheduler to tell when this run ends
    # the final pass over what is still outdated (characters deferred by transient faults)
    retry_at: datetime | None = None
    final_pass: bool = False
    # the guild phase in keyset pages, one page per run (continue-as-new between pages)
    guild_page_size: int = GUILD_PAGE_MAX
    guild_after_synced: datetime | None = None
    guild_after_id: int | None = None
    guild_pages: int = 0


@dataclass
class TrackInput:
    region: str
    kind: str  # character | guild
    realm: str
    name: str


@dataclass
class CharacterAddInput:
    """A manual character add in one activity: register it and sync it."""

    region: str
    realm: str
    name: str
    batch_key: str
    priority: int = Priority.MANUAL
    heartbeat_timeout_seconds: int = HEARTBEAT_SECONDS


@dataclass
class CharacterAddResult:
    entity_id: int
    batch: CharacterBatchResult


@dataclass
class EntitySyncInput:
    """One entity synced now (a manual add): register it, then sync it at its priority."""

    region: str
    kind: str  # character | guild
    realm: str
    name: str
    priority: int = Priority.MANUAL
    report_to: str | None = None
    heartbeat_timeout_seconds: int = HEARTBEAT_SECONDS


@dataclass
class EntitySyncResult:
    status: str
    entity_id: int = 0
    characters: int = 0
    not_found: int = 0
    requests: int = 0


# --- PvP ----------------------------------------------------------------------------------


@dataclass
class PvpSyncInput:
    region: str
    season: int | None = None  # None: the current season
    brackets: list[str] | None = None  # None: every bracket of the season
    priority: int = 10
    equipment_batch_size: int = 100
    sync_queue: str = "pvp-sync"
    processing_queue: str = "pvp-processing"
    report_to: str | None = None


@dataclass
class PvpPlan:
    season: int
    brackets: list[str]


@dataclass
class PvpBracketInput:
    region: str
    season: int
    bracket: str
    priority: int = 10
    equipment_batch_size: int = 100
    sync_queue: str = "pvp-sync"
    processing_queue: str = "pvp-processing"


@dataclass
class PvpImportResult:
    leaderboard_id: int = 0
    snapshot_at: datetime | None = None
    entries: int = 0
    inserted: int = 0
    new_characters: int = 0
    not_modified: bool = False
    rejected: int = 0  # entries left out: a name, realm or number that cannot be stored


@dataclass
class PvpEquipmentInput:
    leaderboard_id: int
    snapshot_at: datetime
    lo: int
    hi: int
    priority: int = 10


@dataclass
class PvpRangesInput:
    leaderboard_id: int
    snapshot_at: datetime
    batch_size: int = 100


@dataclass
class PvpEquipmentResult:
    processed: int = 0
    private_skipped: int = 0
    fetched: int = 0
    reused: int = 0
    not_found: int = 0


@dataclass
class PvpBracketResult:
    bracket: str
    import_result: PvpImportResult = field(default_factory=PvpImportResult)
    equipment: PvpEquipmentResult = field(default_factory=PvpEquipmentResult)


@dataclass
class PvpSyncResult:
    season: int = 0
    brackets: list[PvpBracketResult] = field(default_factory=list)
    failed_brackets: list[str] = field(default_factory=list)
