"""Battle.net activities: every one fetches and stores in one step, so no payload enters history.

Constructed once per worker with its database engine, API client and settings
(``BattleNetActivities(...)``; register ``acts.all()``).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from activities.clock import server_now, server_time
from activities.errors import activity_errors, one_error_path
from activities.heartbeat import heartbeating
from activities.runs import close_run, open_run
from activities.types import (
    CHARACTER_PAGE_MAX,
    GUILD_PAGE_MAX,
    CharacterAddInput,
    CharacterAddResult,
    CharacterBatchInput,
    CharacterBatchResult,
    CharacterPage,
    FinishRunInput,
    GuildPage,
    GuildSyncInput,
    GuildSyncResult,
    GuildTarget,
    SelectCharactersInput,
    SelectGuildPageInput,
    SelectGuildsInput,
    StartRunInput,
    TrackInput,
)
from providers.battlenet import (
    CHARACTER_ENDPOINTS,
    BattleNetClient,
    character_columns,
    guild_columns,
    mythic_rating,
    roster_members,
)
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
from storage import battlenet as db
from storage import sync as syncdb

PROVIDER = "battlenet"
CHUNK = 10  # characters fetched concurrently and committed together with their checkpoint
TRANSIENT_RECHECK = timedelta(seconds=5)  # a deferred character is due again this soon
DEFER_AFTER_ATTEMPTS = 4  # a call without any progress is retried (backoff) this many times
CONTINUATION_MAX_WAIT = 120.0  # seconds a started character may wait for its remaining requests


class _Missing:
    """A character not synced: 404/403 or an unusable payload (recorded, re-checked slowly), or
    a transient fault that outlasted the client's retries (``transient``: deferred)."""

    def __init__(self, ref: db.CharacterRef, reason: str, detail: str) -> None:
        self.ref, self.reason, self.detail = ref, reason, detail

    @property
    def transient(self) -> bool:
        return self.reason == "transient"


def _synced_since(ref: db.CharacterRef, cutoff: datetime | None) -> bool:
    return cutoff is not None and ref.last_synced_at is not None and ref.last_synced_at >= cutoff


class BattleNetActivities:
    def __init__(
        self, engine: AsyncEngine, client: BattleNetClient, not_found_recheck_seconds: int
    ) -> None:
        self.engine = engine
        self.client = client
        self.recheck = timedelta(seconds=not_found_recheck_seconds)

    def all(self) -> list[Any]:
        return [
            self.bnet_start_run,
            self.bnet_finish_run,
            self.bnet_select_guilds,
            self.bnet_select_guild_page,
            self.bnet_select_characters,
            self.bnet_sync_guild,
            self.bnet_sync_characters,
            self.bnet_track_entity,
            self.bnet_add_character,
            self.bnet_guild_character_ids,
        ]

    # -- bookkeeping ----------------------------------------------------------------------

    @activity.defn
    @one_error_path("battlenet start run")
    async def bnet_start_run(self, inp: StartRunInput) -> int:
        return await open_run(self.engine, inp)

    @activity.defn
    @one_error_path("battlenet finish run")
    async def bnet_finish_run(self, inp: FinishRunInput) -> None:
        await close_run(self.engine, inp)

    @activity.defn
    @one_error_path("battlenet select guilds")
    async def bnet_select_guilds(self, inp: SelectGuildsInput) -> list[GuildTarget]:
        """Every outdated guild at once: only for runs that scheduled it before the guild
        phase paged (``bnet_select_guild_page``); kept registered so they can finish."""
        async with self.engine.connect() as conn:
            ids = await db.outdated_guilds(conn, inp.region, inp.cutoff, server_now())
            refs = [await db.load_guild(conn, i) for i in ids]
        return [GuildTarget(r.id, r.region, r.realm, r.name_slug) for r in refs if r]

    @activity.defn
    @one_error_path("battlenet select guild page")
    async def bnet_select_guild_page(self, inp: SelectGuildPageInput) -> GuildPage:
        """One keyset page of outdated guilds, never more than GUILD_PAGE_MAX whatever the
        input asks; ``more`` says whether another page follows (one row is read past it)."""
        limit = max(1, min(inp.limit, GUILD_PAGE_MAX))
        after = None
        if inp.after_synced is not None and inp.after_id is not None:
            after = (inp.after_synced, inp.after_id)
        async with self.engine.connect() as conn:
            rows = await db.outdated_guild_page(
                conn, inp.region, inp.cutoff, server_now(), after, limit + 1
            )
        more, rows = len(rows) > limit, rows[:limit]
        if not rows:
            return GuildPage()
        return GuildPage(
            [GuildTarget(r.id, r.region, r.realm, r.name_slug) for r in rows],
            rows[-1].synced,
            rows[-1].id,
            more,
        )

    @activity.defn
    @one_error_path("battlenet select characters")
    async def bnet_select_characters(self, inp: SelectCharactersInput) -> CharacterPage:
        """One keyset page of outdated characters, never more than CHARACTER_PAGE_MAX ids."""
        limit = max(1, min(inp.limit, CHARACTER_PAGE_MAX))
        after = None
        if inp.after_synced is not None and inp.after_id is not None:
            after = (inp.after_synced, inp.after_id)
        async with self.engine.connect() as conn:
            rows = await db.outdated_characters(
                conn, inp.region, inp.cutoff, server_now(), after, limit
            )
        if not rows:
            return CharacterPage([], None, None)
        return CharacterPage([r[0] for r in rows], rows[-1][1], rows[-1][0])

    @activity.defn
    @one_error_path("battlenet track entity")
    async def bnet_track_entity(self, inp: TrackInput) -> int:
        """Register a guild or character (idempotent); return its row id."""
        async with self.engine.begin() as conn:
            if inp.kind == "guild":
                return await db.track_guild(conn, inp.region, inp.realm, inp.name)
            return await db.track_character(conn, inp.region, inp.realm, inp.name)

    @activity.defn
    @one_error_path("battlenet add character")
    async def bnet_add_character(self, inp: CharacterAddInput) -> CharacterAddResult:
        """A manual add: register the character and sync it in one step (one activity round
        trip less than track-then-sync, which is most of a manual add under load)."""
        async with self.engine.begin() as conn:
            entity_id = await db.track_character(conn, inp.region, inp.realm, inp.name)
        batch = await self.bnet_sync_characters(
            CharacterBatchInput(
                inp.batch_key, [entity_id], inp.priority, 0, inp.heartbeat_timeout_seconds
            )
        )
        return CharacterAddResult(entity_id, batch)

    @activity.defn
    @one_error_path("battlenet guild character ids")
    async def bnet_guild_character_ids(self, guild_id: int) -> list[int]:
        async with self.engine.connect() as conn:
            return await db.guild_character_ids(conn, guild_id)

    # -- guilds ---------------------------------------------------------------------------

    @activity.defn
    async def bnet_sync_guild(self, inp: GuildSyncInput) -> GuildSyncResult:
        async with self.engine.connect() as conn:
            guild = await db.load_guild(conn, inp.guild_id)
        if guild is None:
            return GuildSyncResult(status="failed")
        with count_requests() as sent, heartbeating(lambda: guild.key):
            with activity_errors(f"battlenet {guild.key}"):
                return await self._sync_guild(guild, inp, sent)

    async def _sync_guild(
        self, guild: db.GuildRef, inp: GuildSyncInput, sent: list[int]
    ) -> GuildSyncResult:
        try:
            data = await self.client.guild(
                guild.region, guild.realm, guild.name_slug,
                if_modified_since=guild.guild_last_modified, priority=inp.priority,
            )  # fmt: skip
            roster = await self.client.roster(
                guild.region, guild.realm, guild.name_slug,
                if_modified_since=guild.roster_last_modified, priority=inp.priority,
            )  # fmt: skip
            columns = None if data.not_modified else guild_columns(data.data, guild.key)
            members = None if roster.not_modified else roster_members(roster.data, guild.key)
        except (NotFound, Forbidden) as exc:
            await self._guild_missing(guild, exc)
            return GuildSyncResult(status="not_found", requests=sent[0])
        async with self.engine.begin() as conn:
            await db.store_guild(
                conn,
                guild,
                columns,
                data.data,
                data.last_modified,
                roster.data,
                roster.last_modified,
            )
            counts = {"members": 0, "discovered": 0, "left": 0}
            if members is not None:
                counts = await db.store_roster(conn, guild, members)
            await syncdb.clear_failures(conn, PROVIDER, [guild.key])
        status = "not_modified" if data.not_modified and roster.not_modified else "synced"
        rejected = members.rejected if members is not None else 0
        activity.logger.info("guild stored", extra={"guild": guild.key, "status": status, **counts})
        if rejected:  # skipped by the parser, never stored (providers.battlenet.valid_slug)
            activity.logger.warning(
                "roster members rejected", extra={"guild": guild.key, "rejected": rejected}
            )
        return GuildSyncResult(status=status, requests=sent[0], rejected=rejected, **counts)

    async def _guild_missing(self, guild: db.GuildRef, exc: ProviderError) -> None:
        recheck = server_now() + self.recheck
        async with self.engine.begin() as conn:
            await db.mark_guild_missing(conn, guild.id, recheck)
            reason = "not_found" if isinstance(exc, NotFound) else "forbidden"
            await syncdb.record_failure(conn, PROVIDER, guild.key, reason, str(exc), recheck)
        activity.logger.warning("guild missing", extra={"guild": guild.key})

    # -- characters -----------------------------------------------------------------------

    @activity.defn
    async def bnet_sync_characters(self, inp: CharacterBatchInput) -> CharacterBatchResult:
        """Sync a batch, CHUNK characters at a time.

        Every finished character is committed together with the batch position, also when a
        sibling in its chunk failed. A retry, or another worker after a crash, skips characters
        already synced since the run's cutoff: nothing is fetched twice, nothing is skipped.

        A character whose requests still fail transiently after the client's retries is
        *deferred*: not synced, not marked fresh, due again in TRANSIENT_RECHECK (the master's
        final pass takes it). A call in which nothing at all made progress raises instead, so
        Temporal backs off — until attempt DEFER_AFTER_ATTEMPTS, which defers what is left.
        """
        attempt = activity.info().attempt
        async with self.engine.connect() as conn:
            refs = await db.load_characters(conn, inp.character_ids)
        pending = [r for r in refs if not _synced_since(r, inp.cutoff)]
        done_before = len(refs) - len(pending)
        result = CharacterBatchResult(
            position=done_before,
            failed_attempts=attempt - 1,
            # what earlier calls of this batch did is in `inp.position`; the rest was stored by
            # an attempt of this call that died before it could report it
            recovered=max(0, done_before - inp.position),
        )
        activity.heartbeat(result.position)
        deferred: list[_Missing] = []
        with count_requests() as sent, heartbeating(lambda: result.position):
            try:
                with activity_errors(f"battlenet characters {inp.batch_key}"):
                    for start in range(0, len(pending), CHUNK):
                        outcomes, stop = await self._fetch_chunk(
                            pending[start : start + CHUNK], inp.priority
                        )
                        deferred += await self._store_chunk(inp.batch_key, result, outcomes)
                        activity.heartbeat(result.position)
                        if stop is not None:
                            result.resume_at = stop
                            break
                    if deferred and not result.progressed and attempt < DEFER_AFTER_ATTEMPTS:
                        raise Transient(deferred[0].detail, entity=deferred[0].ref.key)
                    if deferred:
                        result.deferred = len(deferred)
                        result.retry_at = await self._defer(deferred)
            finally:
                result.requests = sent[0]
        if result.resume_at is None:
            async with self.engine.begin() as conn:
                await syncdb.delete_checkpoint(conn, inp.batch_key)
        return result

    async def _fetch_chunk(
        self, chunk: list[db.CharacterRef], priority: int
    ) -> tuple[list[db.CharacterResult | _Missing], datetime | None]:
        """Fetch a chunk concurrently; return what finished and, when the budget is spent (or
        a 429 paused the bucket), when to resume. Other errors are raised (bad credentials)."""
        answers = await asyncio.gather(
            *(self._fetch_character(ref, priority) for ref in chunk), return_exceptions=True
        )
        done = [a for a in answers if isinstance(a, db.CharacterResult | _Missing)]
        resume: datetime | None = None
        for error in answers:
            if isinstance(error, BudgetExhausted):
                at = server_time(error.resume_at)
            elif isinstance(error, RateLimited):  # the bucket is paused: a budget wait
                at = server_now() + timedelta(seconds=max(1.0, error.retry_after))
            elif isinstance(error, BaseException):
                raise error
            else:
                continue
            resume = at if resume is None else max(resume, at)
        return done, resume

    async def _fetch_character(
        self, ref: db.CharacterRef, priority: int
    ) -> db.CharacterResult | _Missing:
        lm = ref.http_last_modified
        fetch = self.client.character
        try:
            profile = await fetch(
                ref.region, ref.realm, ref.name_slug, "profile",
                if_modified_since=lm.get("profile"), priority=priority,
            )  # fmt: skip
            columns = None
            if not profile.not_modified:
                columns = character_columns(profile.data, ref.key)
            others = [e for e in CHARACTER_ENDPOINTS if e != "profile"]
            # A started character finishes first: its other requests outrank new profiles and
            # may wait longer, so a tight budget cannot starve half-done characters (livelock).
            answers = await asyncio.gather(
                *(self._optional(ref, e, lm.get(e), priority + 1) for e in others)
            )
        except NotFound as exc:
            return _Missing(ref, "not_found", str(exc))
        except Forbidden as exc:
            return _Missing(ref, "forbidden", str(exc))
        except Transient as exc:  # still failing after the client's retries: defer, not drop
            return _Missing(ref, "transient", str(exc))
        except (BadPayload, UnexpectedStatus) as exc:  # the same on every attempt
            return _Missing(ref, "bad_payload", str(exc))
        fetched: dict[str, Fetched | None] = {
            "profile": profile,
            **dict(zip(others, answers, strict=True)),
        }
        payloads = {e: (f.data if f else None) for e, f in fetched.items()}
        last_modified = dict(lm)
        for endpoint, got in fetched.items():
            if got is not None and got.last_modified:
                last_modified[endpoint] = got.last_modified
        if columns is not None:
            columns["mythic_rating"] = mythic_rating(payloads.get("mythic"))
        return db.CharacterResult(ref, columns, payloads, last_modified)

    async def _optional(
        self, ref: db.CharacterRef, endpoint: str, since: str | None, priority: int
    ) -> Fetched | None:
        """Equipment, keystones, professions: a 404 here means "none", not a missing character."""
        try:
            return await self.client.character(
                ref.region, ref.realm, ref.name_slug, endpoint,
                if_modified_since=since, priority=priority, max_wait=CONTINUATION_MAX_WAIT,
            )  # fmt: skip
        except NotFound:
            return None

    async def _store_chunk(
        self,
        batch_key: str,
        result: CharacterBatchResult,
        outcomes: list[db.CharacterResult | _Missing],
    ) -> list[_Missing]:
        """Commit a chunk's rows, its permanent failures and the batch position in one
        transaction; return the characters that failed transiently (stored nowhere yet)."""
        found = [o for o in outcomes if isinstance(o, db.CharacterResult)]
        missing = [o for o in outcomes if isinstance(o, _Missing) and not o.transient]
        transient = [o for o in outcomes if isinstance(o, _Missing) and o.transient]
        recheck = server_now() + self.recheck
        async with self.engine.begin() as conn:
            await db.store_characters(conn, found)
            for miss in missing:
                await syncdb.record_failure(
                    conn, PROVIDER, miss.ref.key, miss.reason, miss.detail, recheck
                )
                if miss.reason == "bad_payload":
                    await db.mark_character_due_at(conn, [miss.ref.id], recheck)
                else:
                    await db.mark_character_missing(conn, miss.ref.id, recheck)
            await syncdb.clear_failures(conn, PROVIDER, [r.ref.key for r in found])
            done = len(found) + len(missing)
            await syncdb.set_checkpoint(conn, batch_key, result.position + done)
        result.position += done
        activity.logger.info(
            "characters stored",
            extra={"batch": batch_key, "stored": len(found), "missing": len(missing),
                   "position": result.position},
        )  # fmt: skip
        for r in found:
            modified = r.columns is not None or any(v is not None for v in r.payloads.values())
            if modified:
                result.synced += 1
            else:
                result.not_modified += 1
        result.not_found += sum(1 for m in missing if m.reason != "bad_payload")
        result.failed += sum(1 for m in missing if m.reason == "bad_payload")
        return transient

    async def _defer(self, deferred: list[_Missing]) -> datetime:
        """Characters that kept failing transiently: due again soon, never marked fresh and
        never dead-lettered (a fault is not a fact about the character)."""
        retry_at = server_now() + TRANSIENT_RECHECK
        async with self.engine.begin() as conn:
            await db.mark_character_due_at(conn, [m.ref.id for m in deferred], retry_at)
        activity.logger.info(
            "characters deferred", extra={"count": len(deferred), "first": deferred[0].ref.key}
        )
        return retry_at
