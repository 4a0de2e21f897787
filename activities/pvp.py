"""PvP activities: resolve the season, import a leaderboard in bulk, process equipment batches.

Failure semantics from the brief, in Temporal terms: Battle.net client errors are retried by the
retry policy (3 attempts, exponential); a 404 is recorded and the entity discarded; a deadlock
is retried; anything else fails the activity without retry.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import budget_error, to_application_error
from activities.types import (
    PvpBracketInput,
    PvpEquipmentInput,
    PvpEquipmentResult,
    PvpImportResult,
    PvpPlan,
    PvpRangesInput,
    PvpSyncInput,
)
from providers.battlenet import BattleNetClient
from providers.battlenet.pvp import equipment_hash, equipped_items, leaderboard_columns
from providers.errors import NotFound, ProviderError
from providers.http import Fetched
from providers.ratelimit import BudgetExhausted
from storage import battlenet as bnetdb
from storage import pvp as db
from storage import sync as syncdb
from storage.models import pvp_leaderboards

PROVIDER = "battlenet"


def _snapshot_time(last_modified: str | None) -> datetime:
    if last_modified:
        try:
            return parsedate_to_datetime(last_modified).astimezone(UTC)
        except (TypeError, ValueError):
            pass
    return datetime.now(UTC).replace(microsecond=0)


def _classify(exc: BaseException) -> BaseException:
    """Map an activity failure onto the brief's retry semantics."""
    if isinstance(exc, ProviderError):
        return to_application_error(exc)
    if isinstance(exc, BudgetExhausted):
        return budget_error(exc)
    if isinstance(exc, DBAPIError) and "deadlock" in str(exc.orig).lower():
        return ApplicationError("deadlock detected; retrying", type="Deadlock")
    if isinstance(exc, ApplicationError | asyncio.CancelledError):
        return exc
    return ApplicationError(f"{type(exc).__name__}: {exc}", type=type(exc).__name__,
                            non_retryable=True)  # fmt: skip


class PvpActivities:
    def __init__(self, engine: AsyncEngine, client: BattleNetClient, recheck_seconds: int) -> None:
        self.engine = engine
        self.client = client
        self.recheck = timedelta(seconds=recheck_seconds)

    def sync_queue(self) -> list[Any]:
        return [self.pvp_resolve, self.pvp_import_leaderboard, self.pvp_equipment_ranges]

    def processing_queue(self) -> list[Any]:
        return [self.pvp_process_equipment]

    async def _dynamic(self, region: str, path: str, entity: str, **kw: Any) -> Fetched:
        return await self.client.get(region, path, entity=entity, namespace="dynamic", **kw)

    @activity.defn
    async def pvp_resolve(self, inp: PvpSyncInput) -> PvpPlan:
        try:
            season = inp.season
            if season is None:
                index = await self._dynamic(inp.region, "/data/wow/pvp-season/index", "pvp seasons")
                season = int(index.data["current_season"]["id"])
            boards = await self._dynamic(
                inp.region, f"/data/wow/pvp-season/{season}/pvp-leaderboard/index",
                f"pvp leaderboards of season {season}",
            )  # fmt: skip
            names = [str(b["name"]) for b in boards.data.get("leaderboards", [])]
        except (KeyError, TypeError) as exc:
            raise ApplicationError(f"malformed pvp index: {exc}", type="BadPayload",
                                   non_retryable=True) from None  # fmt: skip
        except Exception as exc:
            raise _classify(exc) from None
        if inp.brackets:
            unknown = sorted(set(inp.brackets) - set(names))
            if unknown:
                raise ApplicationError(
                    f"season {season} has no bracket(s) {', '.join(unknown)}; "
                    f"it has {', '.join(names)}", type="BadInput", non_retryable=True,
                )  # fmt: skip
            names = [n for n in names if n in inp.brackets]
        return PvpPlan(season, names)

    @activity.defn
    async def pvp_import_leaderboard(self, inp: PvpBracketInput) -> PvpImportResult:
        """Fetch one leaderboard and store it: one read for the validator, then 3 statements."""
        key = f"{inp.region}/{inp.season}/{inp.bracket}"
        try:
            async with self.engine.connect() as conn:
                stored = (
                    await conn.execute(
                        pvp_leaderboards.select()
                        .with_only_columns(pvp_leaderboards.c.last_modified)
                        .where(
                            pvp_leaderboards.c.region == inp.region,
                            pvp_leaderboards.c.season_id == inp.season,
                            pvp_leaderboards.c.bracket == inp.bracket,
                        )
                    )
                ).scalar()
            path = f"/data/wow/pvp-season/{inp.season}/pvp-leaderboard/{inp.bracket}"
            fetched = await self._dynamic(
                inp.region, path, f"leaderboard {key}", if_modified_since=stored,
                priority=inp.priority,
            )  # fmt: skip
            if fetched.not_modified:
                return PvpImportResult(not_modified=True)
            columns = leaderboard_columns(fetched.data, key)
            meta = {k: v for k, v in fetched.data.items() if k != "entries"}
            snapshot = _snapshot_time(fetched.last_modified)
            async with self.engine.begin() as conn:
                result = await db.import_leaderboard(
                    conn, inp.region, inp.season, inp.bracket, columns, meta,
                    fetched.last_modified, snapshot,
                )  # fmt: skip
        except Exception as exc:
            raise _classify(exc) from None
        return PvpImportResult(
            result.leaderboard_id, snapshot, result.entries, result.inserted,
            result.new_characters,
        )  # fmt: skip

    @activity.defn
    async def pvp_equipment_ranges(self, inp: PvpRangesInput) -> list[tuple[int, int]]:
        async with self.engine.connect() as conn:
            return await db.entry_id_ranges(
                conn, inp.leaderboard_id, inp.snapshot_at, max(1, inp.batch_size)
            )

    @activity.defn
    async def pvp_process_equipment(self, inp: PvpEquipmentInput) -> PvpEquipmentResult:
        """Equipment of one batch: private characters skipped before any call; unchanged gear
        (304, or the same content hash) reuses the last processed snapshot's items."""
        try:
            return await self._process(inp)
        except Exception as exc:
            raise _classify(exc) from None

    async def _process(self, inp: PvpEquipmentInput) -> PvpEquipmentResult:
        async with self.engine.connect() as conn:
            batch = await db.entries_to_process(
                conn, inp.leaderboard_id, inp.snapshot_at, inp.lo, inp.hi
            )
        result = PvpEquipmentResult()
        visible = [e for e in batch if not e.is_private]
        result.private_skipped = len(batch) - len(visible)
        answers = await asyncio.gather(
            *(self._equipment(e, inp.priority) for e in visible), return_exceptions=True
        )
        fresh: list[db.FreshEquipment] = []
        reused: list[tuple[int, int]] = []
        missing: list[db.EntryToProcess] = []
        for entry, answer in zip(visible, answers, strict=True):
            if isinstance(answer, NotFound):
                missing.append(entry)
            elif isinstance(answer, BaseException):
                raise answer
            elif answer.not_modified and entry.previous_entry_id:
                reused.append((entry.entry_id, entry.previous_entry_id))
            else:
                self._sort_fresh(entry, answer, fresh, reused)
        recheck = datetime.now(UTC) + self.recheck
        async with self.engine.begin() as conn:
            await db.store_equipment(conn, fresh, reused, [e.entry_id for e in batch])
            for entry in missing:
                await bnetdb.mark_character_missing(conn, entry.character_id, recheck)
                await syncdb.record_failure(
                    conn, PROVIDER, entry.key, "not_found", "equipment 404", recheck
                )
        result.processed = len(batch)
        result.fetched = len(visible) - len(missing)
        result.reused = len(reused)
        result.not_found = len(missing)
        return result

    def _sort_fresh(
        self,
        entry: db.EntryToProcess,
        answer: Fetched,
        fresh: list[db.FreshEquipment],
        reused: list[tuple[int, int]],
    ) -> None:
        if answer.data is None:  # 304 without an earlier processed entry: nothing to copy
            return
        digest = equipment_hash(answer.raw)
        if digest == entry.equipment_hash and entry.previous_entry_id:
            reused.append((entry.entry_id, entry.previous_entry_id))
            return
        items = equipped_items(answer.data, entry.key)
        fresh.append(db.FreshEquipment(entry, items, answer.last_modified, digest))

    async def _equipment(self, entry: db.EntryToProcess, priority: int) -> Fetched:
        since = entry.equipment_last_modified if entry.previous_entry_id else None
        return await self.client.character(
            entry.region, entry.realm, entry.name_slug, "equipment",
            if_modified_since=since, priority=priority,
        )  # fmt: skip
