"""PvP activities: resolve the season, import a leaderboard in bulk, process equipment batches.

Failures follow the one error path (``activities.errors.activity_errors``) and the retry
contract: Temporal retries without an attempt limit until the schedule-to-close deadline;
non-retryable is only what recurs on every attempt (404/403 of the leaderboard, bad
credentials, schema drift, an open breaker, a bracket or season that does not exist).

An equipment batch works per entry: what succeeded, the 404s and the payloads we cannot use
are stored in one transaction and never asked for again in the run; entries that failed
transiently (after the client's own retries) stay unprocessed and the step says how many are
left, so the workflow calls again. Only a call that made no progress at all raises (a retryable
error: Temporal backs off). A spent budget or a 429 returns ``resume_at``: a durable wait.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.clock import server_now, server_time
from activities.errors import activity_errors
from activities.heartbeat import heartbeating
from activities.types import (
    PvpBracketInput,
    PvpBracketResult,
    PvpEquipmentInput,
    PvpEquipmentResult,
    PvpImportResult,
    PvpPlan,
    PvpRangesInput,
    PvpSyncInput,
    PvpSyncResult,
)
from providers.battlenet import BattleNetClient
from providers.battlenet.pvp import equipment_hash, equipped_items, leaderboard_columns
from providers.errors import (
    BadPayload,
    BudgetExhausted,
    Forbidden,
    NotFound,
    ProviderError,
    RateLimited,
    Transient,
    UnexpectedStatus,
)
from providers.http import Fetched, count_requests
from storage import pvp as db
from storage import sync as syncdb
from storage.models import pvp_leaderboards

PROVIDER = "battlenet"
logger = logging.getLogger(__name__)
# A character found missing is skipped by this worker's later batches without a call (the
# database says the same once the batch committed; this covers batches that read it before).
RECENTLY_MISSING_SECONDS = 3600.0


# -- results (PvP's additions to activities.types; wire-compatible subclasses) ----------------


@dataclass
class PvpEquipmentCounts(PvpEquipmentResult):
    """Equipment totals: the base counts plus what the retry contract adds."""

    failed: int = 0  # given up: a payload we cannot use (recorded in sync_failures)
    deferred: int = 0  # left for a later call after a transient failure (summed over calls)
    requests: int = 0  # requests sent (the client's own retries included)
    calls: int = 0  # activity calls that returned
    budget_waits: int = 0  # calls that ended on a spent budget or a 429


@dataclass
class PvpEquipmentStep(PvpEquipmentCounts):
    """One call of ``pvp_process_equipment`` (a :class:`workflows.kernel.Step`)."""

    remaining: int = 0  # entries of the range still unprocessed
    resume_at: datetime | None = None  # the budget is spent until then: sleep durably
    failed_attempts: int = 0  # attempts of this call that failed before this one

    @property
    def done(self) -> bool:
        return self.remaining == 0

    @property
    def progressed(self) -> bool:
        return self.processed > 0


@dataclass
class PvpBracketOutcome(PvpBracketResult):
    equipment: PvpEquipmentCounts = field(default_factory=PvpEquipmentCounts)


@dataclass
class PvpSyncOutcome(PvpSyncResult):
    brackets: list[PvpBracketOutcome] = field(default_factory=list)  # type: ignore[assignment]


def add_counts(total: PvpEquipmentCounts, step: PvpEquipmentCounts) -> None:
    for name in PvpEquipmentCounts.__dataclass_fields__:
        setattr(total, name, getattr(total, name) + getattr(step, name))


# -- helpers ------------------------------------------------------------------------------


def _snapshot_time(last_modified: str | None) -> datetime:
    if last_modified:
        try:
            return parsedate_to_datetime(last_modified).astimezone(UTC)
        except (TypeError, ValueError):
            pass
    return server_now().replace(microsecond=0)


def _bad_input(message: str) -> ApplicationError:
    return ApplicationError(message, type="BadInput", non_retryable=True)


@dataclass
class _Sorted:
    """A batch's answers, sorted by what happens to each entry."""

    fresh: list[db.FreshEquipment] = field(default_factory=list)
    reused: list[tuple[int, int]] = field(default_factory=list)
    done: list[int] = field(default_factory=list)  # entry ids to mark processed
    missing: list[tuple[db.EntryToProcess, ProviderError]] = field(default_factory=list)
    unusable: list[tuple[db.EntryToProcess, ProviderError]] = field(default_factory=list)
    answered: int = 0  # 200 or 304
    transient: list[Transient] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)  # epoch seconds the budget frees up
    fatal: list[ProviderError] = field(default_factory=list)


@dataclass
class _Asked:
    answers: list[asyncio.Future[Fetched]] = field(default_factory=list)
    committed: bool = False


class PvpActivities:
    def __init__(self, engine: AsyncEngine, client: BattleNetClient, recheck_seconds: int) -> None:
        self.engine = engine
        self.client = client
        self.recheck = timedelta(seconds=recheck_seconds)
        # Requests in flight (or answered but not yet committed), shared by every batch of this
        # worker: a character on two ladders is asked once when both batches want it at once.
        self._asking: dict[tuple[int, str | None], asyncio.Task[Fetched]] = {}
        self._missing: dict[int, float] = {}  # character id -> monotonic expiry

    def sync_queue(self) -> list[Any]:
        return [self.pvp_resolve, self.pvp_import_leaderboard, self.pvp_equipment_ranges]

    def processing_queue(self) -> list[Any]:
        return [self.pvp_process_equipment]

    async def _dynamic(self, region: str, path: str, entity: str, **kw: Any) -> Fetched:
        return await self.client.get(region, path, entity=entity, namespace="dynamic", **kw)

    # -- season and leaderboard ---------------------------------------------------------------

    @activity.defn
    async def pvp_resolve(self, inp: PvpSyncInput) -> PvpPlan:
        with activity_errors(f"pvp index of {inp.region}"), heartbeating(lambda: None):
            season = inp.season
            if season is None:
                index = await self._dynamic(inp.region, "/data/wow/pvp-season/index", "pvp seasons")
                season = int(index.data["current_season"]["id"])
            try:
                boards = await self._dynamic(
                    inp.region, f"/data/wow/pvp-season/{season}/pvp-leaderboard/index",
                    f"pvp leaderboards of season {season}",
                )  # fmt: skip
            except NotFound:
                raise _bad_input(f"{inp.region} has no PvP season {season}") from None
            names = [str(b["name"]) for b in boards.data.get("leaderboards", [])]
        if inp.brackets:
            unknown = sorted(set(inp.brackets) - set(names))
            if unknown:
                raise _bad_input(
                    f"season {season} has no bracket(s) {', '.join(unknown)}; "
                    f"it has {', '.join(names)}"
                )
            names = [n for n in names if n in inp.brackets]
        return PvpPlan(season, names)

    @activity.defn
    async def pvp_import_leaderboard(self, inp: PvpBracketInput) -> PvpImportResult:
        """Fetch one leaderboard and store it: one read for the validator, then 3 statements."""
        key = f"{inp.region}/{inp.season}/{inp.bracket}"
        with activity_errors(f"leaderboard {key}"), heartbeating(lambda: None):
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
        activity.logger.info(
            "leaderboard stored",
            extra={"leaderboard": key, "entries": result.entries, "inserted": result.inserted},
        )
        return PvpImportResult(
            result.leaderboard_id, snapshot, result.entries, result.inserted,
            result.new_characters, rejected=columns.rejected,
        )  # fmt: skip

    @activity.defn
    async def pvp_equipment_ranges(self, inp: PvpRangesInput) -> list[tuple[int, int]]:
        with activity_errors(f"equipment ranges of leaderboard {inp.leaderboard_id}"):
            async with self.engine.connect() as conn:
                return await db.entry_id_ranges(
                    conn, inp.leaderboard_id, inp.snapshot_at, max(1, inp.batch_size)
                )

    # -- equipment ----------------------------------------------------------------------------

    @activity.defn
    async def pvp_process_equipment(self, inp: PvpEquipmentInput) -> PvpEquipmentStep:
        """Equipment of one batch, per entry: private characters skipped before any call;
        unchanged gear (304, or the same content hash) reuses the last processed snapshot's
        items; see the module docstring for what a failed entry does."""
        step = PvpEquipmentStep(failed_attempts=activity.info().attempt - 1, calls=1)
        what = f"equipment of leaderboard {inp.leaderboard_id} entries {inp.lo}-{inp.hi}"
        with activity_errors(what), heartbeating(lambda: step.processed):
            with count_requests() as sent:
                try:
                    await self.process(inp, step)
                finally:
                    step.requests = sent[0]
        return step

    async def process(self, inp: PvpEquipmentInput, step: PvpEquipmentStep) -> None:
        async with self.engine.connect() as conn:
            batch = await db.entries_to_process(
                conn, inp.leaderboard_id, inp.snapshot_at, inp.lo, inp.hi
            )
        now = time.monotonic()  # private, or found missing by this worker a moment ago
        known = [e.is_private or self._missing.get(e.character_id, 0) > now for e in batch]
        skipped = [e for e, k in zip(batch, known, strict=True) if k]
        visible = [e for e, k in zip(batch, known, strict=True) if not k]
        step.private_skipped = len(skipped)
        with self._asking_for(visible, inp.priority) as asked:
            sorted_ = self._sort(
                visible, await asyncio.gather(*asked.answers, return_exceptions=True)
            )
            sorted_.done += [e.entry_id for e in skipped]
            await self._store(sorted_, step)
            asked.committed = True
        step.remaining = len(batch) - len(sorted_.done)
        step.deferred = len(sorted_.transient)
        if sorted_.waits and step.remaining:
            step.resume_at = server_time(max(sorted_.waits))
            step.budget_waits = 1
        if sorted_.fatal:
            raise sorted_.fatal[0]  # after the progress is stored
        if step.remaining and not step.processed and step.resume_at is None:
            first = sorted_.transient[0] if sorted_.transient else None
            raise Transient(
                f"no entry of the batch made progress ({step.remaining} left; first: {first})",
                entity=first.entity if first is not None else None,
            )

    @contextmanager
    def _asking_for(self, entries: list[db.EntryToProcess], priority: int) -> Iterator[_Asked]:
        """One equipment request per entry, shared with any batch of this worker that asks for
        the same character (and validator) at the same time. The answers this batch asked for
        stay shared until its transaction ended, so a batch that read its entries before that
        commit does not ask again; once committed, its 404s are remembered for a while."""
        mine: list[tuple[int, str | None]] = []
        asked = _Asked()
        for entry in entries:
            since = entry.equipment_last_modified if entry.previous_entry_id else None
            key = (entry.character_id, since)
            task = self._asking.get(key)
            if task is None:
                ask = self.client.character(
                    entry.region, entry.realm, entry.name_slug, "equipment",
                    if_modified_since=since, priority=priority,
                )  # fmt: skip
                task = self._asking[key] = asyncio.ensure_future(ask)
                mine.append(key)
            asked.answers.append(asyncio.shield(task))
        try:
            yield asked
        finally:
            expiry = time.monotonic() + RECENTLY_MISSING_SECONDS
            for key in mine:
                task = self._asking.pop(key)
                if not task.done():
                    task.cancel()  # this batch was cancelled or failed: stop asking
                elif asked.committed and not task.cancelled():
                    if isinstance(task.exception(), NotFound):
                        self._missing[key[0]] = expiry
            if len(self._missing) > 100_000:  # forget the expired ones now and then
                now = time.monotonic()
                self._missing = {k: t for k, t in self._missing.items() if t > now}

    def _sort(self, entries: list[db.EntryToProcess], answers: list[Any]) -> _Sorted:
        out = _Sorted()
        for entry, answer in zip(entries, answers, strict=True):
            if isinstance(answer, asyncio.CancelledError):
                # A request this batch shared with another was cancelled by that batch's
                # end (our own cancellation ends the gather instead): ask again later.
                out.transient.append(Transient(f"request for {entry.key} was cancelled"))
                continue
            if isinstance(answer, BaseException) and not isinstance(answer, Exception):
                raise answer
            try:
                if isinstance(answer, Exception):
                    raise answer
                self._sort_answer(entry, answer, out)
            except (NotFound, Forbidden) as exc:
                out.missing.append((entry, exc))
                out.done.append(entry.entry_id)
            except (BadPayload, UnexpectedStatus) as exc:  # the same on every attempt
                out.unusable.append((entry, exc))
                out.done.append(entry.entry_id)
            except BudgetExhausted as exc:
                out.waits.append(exc.resume_at)
            except RateLimited as exc:
                out.waits.append(time.time() + exc.retry_after)
            except Transient as exc:
                out.transient.append(exc)
            except ProviderError as exc:  # bad credentials, an open breaker: the run stops
                out.fatal.append(exc)
        return out

    def _sort_answer(self, entry: db.EntryToProcess, answer: Fetched, out: _Sorted) -> None:
        out.answered += 1
        if answer.not_modified and entry.previous_entry_id:
            out.reused.append((entry.entry_id, entry.previous_entry_id))
        elif answer.data is not None:
            digest = equipment_hash(answer.raw)
            if digest == entry.equipment_hash and entry.previous_entry_id:
                out.reused.append((entry.entry_id, entry.previous_entry_id))
            else:
                items = equipped_items(answer.data, entry.key)
                out.fresh.append(db.FreshEquipment(entry, items, answer.last_modified, digest))
        # else a 304 without an earlier processed entry: nothing to copy
        out.done.append(entry.entry_id)

    async def _store(self, out: _Sorted, step: PvpEquipmentStep) -> None:
        """Everything the batch finished, in one transaction."""
        recheck = server_now() + self.recheck
        async with self.engine.begin() as conn:
            step.processed = await db.store_equipment(conn, out.fresh, out.reused, out.done)
            flagged = await db.mark_missing(
                conn, sorted({e.character_id for e, _ in out.missing}), recheck
            )
            for entry, exc in out.missing:
                if entry.character_id in flagged:
                    flagged.discard(entry.character_id)  # one record per character
                    reason = "not_found" if isinstance(exc, NotFound) else "forbidden"
                    await syncdb.record_failure(
                        conn, PROVIDER, entry.key, reason, str(exc), recheck
                    )
            await db.forget_equipment_validators(conn, [e.character_id for e, _ in out.unusable])
            for entry, exc in out.unusable:
                await syncdb.record_failure(
                    conn, PROVIDER, entry.key, "bad_payload", str(exc), recheck
                )
        step.fetched = out.answered
        step.reused = len(out.reused)
        step.not_found = len(out.missing)
        step.failed = len(out.unusable)
        activity.logger.info(
            "equipment batch stored",
            extra={"processed": step.processed, "fetched": step.fetched, "reused": step.reused,
                   "not_found": step.not_found},
        )  # fmt: skip
        if out.unusable:
            logger.warning(
                "equipment given up",
                extra={"entries": len(out.unusable), "first": str(out.unusable[0][1])},
            )
