"""Discord activities: list a tenant's channels, page a channel's messages into Postgres.

Pages go from the HTTP response straight to Postgres (one statement per page that also moves
the channel's cursor), so no message ever enters a workflow history; workflows get counts.
Constructed once per worker (``DiscordActivities(engine, client_factory, ...)``).
Every request names its tenant (the guild id), so that servers on one bot token share its
global limit fairly (``providers.discord.limiter``).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.backlog import BacklogWatch
from activities.clock import server_now, server_time
from activities.discord_types import (
    CHANNEL_PAGE_MAX,
    BeginTenantInput,
    BeginTenantResult,
    ChannelPage,
    ChannelPageInput,
    ChannelPagesInput,
    ChannelPagesResult,
    ChannelTarget,
    FinishTenantInput,
    ParkChannelInput,
)
from activities.errors import activity_errors
from activities.heartbeat import heartbeating
from providers.discord import DiscordClient
from providers.discord.client import ACTIVE_THREADS, GUILD, GUILD_CHANNELS
from providers.errors import (
    BudgetExhausted,
    Forbidden,
    NotFound,
    ProviderError,
    RateLimited,
)
from providers.http import count_requests
from storage import discord as db
from storage import sync as syncdb
from storage.models import tenants

PROVIDER = "discord"
# Forums and media channels hold threads; text and announcement channels may have archived ones.
THREAD_PARENT_TYPES = frozenset({0, 5, 15, 16})
HEARTBEAT_EVERY = 0.5  # seconds: a page is stored every few ms; its cursor is in Postgres
WAITING_SHOWN_AFTER = 1.0  # seconds: shorter bucket waits are not worth a progress write
# A channel call that has paged this long ends at its next stored page when a task of a better
# Temporal priority waits for a slot (a new tenant's leading channel: activities/backlog.py).
YIELD_AFTER = 1.0


class DiscordNotConfigured(RuntimeError):
    pass


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _entity(channel: int) -> str:
    return f"channel/{channel}"


T = TypeVar("T")
LISTING_429_RETRIES = 3  # a listing request answered 429 is asked again (the bucket paused)


async def _patiently(call: Callable[[], Awaitable[T]]) -> T:
    """A listing request that met a 429 is asked again once its bucket's pause is over (the
    limiter waits, or raises BudgetExhausted beyond its max wait): a 429 is a budget wait,
    not a failed attempt. The invalid-request breaker bounds how often this can happen."""
    for _ in range(LISTING_429_RETRIES):
        try:
            return await call()
        except RateLimited:
            continue
    return await call()


class DiscordActivities:
    def __init__(
        self,
        engine: AsyncEngine,
        client: Callable[[], DiscordClient],
        *,
        max_workers: int,
        fetch_size: int,
        recheck_seconds: int,
        max_attempts: int = 5,
    ) -> None:
        self.engine = engine
        self.autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._client = client  # built on first use: a worker without a bot token still runs
        self.max_workers = max_workers
        self.fetch_size = fetch_size
        self.max_attempts = max_attempts
        self.recheck = timedelta(seconds=recheck_seconds)
        self._guilds: dict[int, int] = {}  # tenants.id -> guild id (a tenant's never changes)
        self.backlog = BacklogWatch()

    async def _guild_of(self, conn: AsyncConnection, tenant_id: int) -> int:
        gid = self._guilds.get(tenant_id)
        if gid is None:
            query = select(tenants.c.discord_guild_id).where(tenants.c.id == tenant_id)
            gid = self._guilds[tenant_id] = int((await conn.execute(query)).scalar_one())
        return gid

    @property
    def client(self) -> DiscordClient:
        try:
            return self._client()
        except DiscordNotConfigured as exc:
            raise ApplicationError(str(exc), type="AuthFailed", non_retryable=True) from None

    def all(self) -> list[Any]:
        """Every activity of the main task queue. Channel paging is on it too, for ChannelSync
        runs recorded before it got its own queue (``paging()``)."""
        return [
            self.discord_track_tenant,
            self.discord_begin_tenant_sync,
            self.discord_channel_page,
            self.discord_sync_channel_pages,
            self.discord_park_channel,
            self.discord_finish_tenant_sync,
        ]

    def paging(self) -> list[Any]:
        """The activities of the channel-paging queue (workflows.discord.channel_queue)."""
        return [self.discord_sync_channel_pages]

    @activity.defn
    async def discord_track_tenant(self, discord_guild_id: int) -> int:
        with activity_errors(f"discord: track guild {discord_guild_id}"):
            async with self.engine.begin() as conn:
                return await db.track_tenant(conn, discord_guild_id)

    # -- the tenant ------------------------------------------------------------------------

    @activity.defn
    async def discord_begin_tenant_sync(self, inp: BeginTenantInput) -> BeginTenantResult:
        """List the guild's channels and threads, store them, open the run and its jobs.

        ``paged``: the listing stays in Postgres (the run's jobs; the workflow reads them with
        ``discord_channel_page``) and only counts come back. Runs that scheduled this before
        the tenant sync paged get every channel in ``channels``."""
        gid = inp.discord_guild_id
        with activity_errors(f"discord: guild {gid}"), heartbeating(lambda: None):
            client = self.client
            async with self.engine.connect() as conn:
                parked = await db.parked_channels(conn, gid)  # asking again would be a 403 each
            try:
                guild, listed = await self._list_guild(client, gid, parked, inp.priority)
            except NotFound as exc:
                raise ApplicationError(
                    f"discord: guild {gid} not found ({exc}); check the id and that the bot was "
                    "added to that server",
                    type="NotFound",
                    non_retryable=True,
                ) from None
            async with self.engine.begin() as conn:
                tenant = await db.track_tenant(conn, gid)
                await db.store_guild(conn, tenant, guild)
                row_ids = await db.store_channels(conn, tenant, listed)
                wanted = [
                    r
                    for r in await db.load_channels(conn, row_ids)
                    if r.type in db.MESSAGE_CHANNEL_TYPES and r.discord_channel_id not in parked
                ]
                kind = "full" if inp.full else "incremental"
                # The workflow id is the same for every sync of a tenant; its run id tells this
                # sync from an earlier one that was terminated before it could close its row.
                run_key = f"{inp.workflow_id}#{activity.info().workflow_run_id}"
                await db.abandon_stale_runs(conn, str(gid), run_key)
                run_id = await syncdb.start_run(conn, PROVIDER, str(gid), kind, run_key)
                await db.begin_run(conn, run_id, tenant, run_key, kind, [r.id for r in wanted])
        targets = [ChannelTarget(r.id, r.discord_channel_id) for r in wanted]
        return BeginTenantResult(
            run_id=run_id,
            channels=[] if inp.paged else targets,
            channels_wanted=len(wanted),
            channels_listed=len(listed),
            skipped=len(listed) - len(wanted),
            max_workers=self.max_workers,
            fetch_size=self.fetch_size,
            max_attempts=self.max_attempts,
        )

    @activity.defn
    async def discord_channel_page(self, inp: ChannelPageInput) -> ChannelPage:
        """One keyset page of a run's channels, never more than CHANNEL_PAGE_MAX whatever the
        input asks; ``more`` says whether another page follows (one row is read past it)."""
        limit = max(1, min(inp.limit, CHANNEL_PAGE_MAX))
        with activity_errors(f"discord: channels of run {inp.run_id}"):
            async with self.engine.connect() as conn:
                rows = await db.run_channel_page(conn, inp.run_id, inp.after_channel_id, limit + 1)
        more, rows = len(rows) > limit, rows[:limit]
        return ChannelPage(
            channels=[ChannelTarget(row_id, discord_id) for row_id, discord_id in rows],
            last_channel_id=rows[-1][0] if rows else inp.after_channel_id,
            more=more,
        )

    async def _list_guild(
        self, client: DiscordClient, gid: int, parked: set[int], priority: int
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The guild object and every channel and thread of it (validated by the client)."""
        tenant = str(gid)
        guild = await _patiently(
            partial(client.fetch, GUILD, gid, priority=priority, tenant=tenant)
        )
        listed = await _patiently(
            partial(client.fetch, GUILD_CHANNELS, gid, priority=priority, tenant=tenant)
        )
        listed += await _patiently(
            partial(client.fetch, ACTIVE_THREADS, gid, priority=priority, tenant=tenant)
        )
        known = {c["id"] for c in listed}
        parents = [
            int(c["id"])
            for c in listed
            if c.get("type") in THREAD_PARENT_TYPES and int(c["id"]) not in parked
        ]
        for parent in parents:
            try:
                archived = await _patiently(
                    partial(client.archived_threads, parent, priority=priority, tenant=tenant)
                )
            except (Forbidden, NotFound):
                continue  # no access to that channel's threads: its messages say the rest
            listed += [t for t in archived if t["id"] not in known]
            known.update(t["id"] for t in archived)
        return guild, listed

    @activity.defn
    async def discord_finish_tenant_sync(self, inp: FinishTenantInput) -> dict[str, Any]:
        # A run's states are storage.sync.RUN_STATES; a workflow of before that said "done".
        status = "completed" if inp.status == "done" else inp.status
        with activity_errors(f"discord: finish run {inp.run_id}"):
            async with self.engine.begin() as conn:
                totals = await db.finish_run_progress(conn, inp.run_id, status)
                counts = {**totals, "max_concurrent_channels": inp.max_concurrent}
                await syncdb.finish_run(
                    conn, inp.run_id, status, counts, totals["failed"], inp.error
                )
        return counts

    # -- one channel -----------------------------------------------------------------------

    @activity.defn
    async def discord_sync_channel_pages(self, inp: ChannelPagesInput) -> ChannelPagesResult:
        """Page forward from the stored cursor for up to ``time_budget_seconds``.

        Each page is stored with the cursor in one transaction, then heartbeated; a retry or a
        restarted worker reads the cursor back from Postgres, so nothing is fetched into a gap
        or stored twice. Returns ``done`` at the channel's end, ``resume_at`` when the bucket
        is spent (a 429 or a long wait: the workflow sleeps, no attempt is spent), and what it
        stored when a transient failure cut the call short after progress.
        """
        with activity_errors(f"discord: channel row {inp.channel_id}"):
            client = self.client
            async with self.engine.begin() as conn:
                ref = await db.load_channel(conn, inp.channel_id)
                if ref is None:
                    raise ApplicationError(
                        f"channel row {inp.channel_id} is gone", type="NotFound", non_retryable=True
                    )
                attempt = activity.info().attempt
                await db.job_started(conn, inp.run_id, ref.id, worker_id(), attempt - 1)
                gid = await self._guild_of(conn, ref.tenant_id)
        result = ChannelPagesResult(failed_attempts=attempt - 1)
        with activity_errors(f"discord: channel {ref.discord_channel_id}"):
            await self._page_channel(client, inp, ref, result, str(gid))
        return result

    async def _page_channel(
        self,
        client: DiscordClient,
        inp: ChannelPagesInput,
        ref: db.ChannelRef,
        result: ChannelPagesResult,
        tenant: str,
    ) -> None:
        cursor = ref.last_message_id or 0
        deadline = time.monotonic() + inp.time_budget_seconds
        may_yield_at = time.monotonic() + YIELD_AFTER
        beat_at = 0.0
        with count_requests() as sent, heartbeating(lambda: cursor):
            try:
                # One connection for the whole call (no checkout + ping per page); each page
                # is one statement, hence one transaction, on this autocommit connection. Pages
                # commit without waiting for the WAL flush; the flush as this block ends makes
                # them durable before Temporal hears how far it got (db.unflushed_commits).
                async with (
                    self.autocommit.connect() as conn,
                    db.unflushed_commits(conn, inp.run_id, ref.id),
                ):
                    while True:
                        wait = client.messages_wait(ref.discord_channel_id)
                        if wait >= WAITING_SHOWN_AFTER:  # visible as "waiting" in status --tenant
                            until = server_now() + timedelta(seconds=wait)
                            await self._waiting(inp, ref, until, 0, 0)
                        page = await client.messages_page(
                            ref.discord_channel_id,
                            after=cursor,
                            limit=inp.fetch_size,
                            priority=inp.priority,
                            tenant=tenant,
                        )
                        if page.count and page.newest_id is not None:
                            await db.store_page(conn, inp.run_id, ref.id, page.raw, page.newest_id)
                            cursor = page.newest_id
                            activity.logger.info(
                                "messages page stored",
                                extra={"channel": ref.discord_channel_id,
                                       "messages": page.count, "cursor": cursor},
                            )  # fmt: skip
                            if time.monotonic() - beat_at >= HEARTBEAT_EVERY:
                                activity.heartbeat(cursor)  # Postgres holds it already
                                beat_at = time.monotonic()
                            result.pages += 1
                            result.messages += page.count
                        if page.is_last:
                            await self._finish_channel(inp, ref, cursor, result, sent[0])
                            return
                        if time.monotonic() >= deadline:
                            return
                        if time.monotonic() >= may_yield_at and await self.backlog.better_waiting():
                            result.detail = "gave its slot to a task of a better priority"
                            return
            except (Forbidden, NotFound) as exc:
                await self._skip_channel(inp, ref, exc, sent[0] - result.pages)
                result.done, result.status, result.detail = True, "skipped", str(exc)
            except BudgetExhausted as exc:
                resume = server_time(exc.resume_at)
                await self._waiting(inp, ref, resume, 0, sent[0] - result.pages)
                result.resume_at = resume
            except RateLimited as exc:
                # A budget wait, not a failure: the bucket is paused; the workflow sleeps on a
                # durable timer until then and calls again, no attempt spent.
                until = server_now() + timedelta(seconds=exc.retry_after)
                await self._waiting(inp, ref, until, 1, sent[0] - result.pages)
                result.resume_at = until
            except ProviderError as exc:
                async with self.engine.begin() as conn:
                    await db.count_api_calls(conn, inp.run_id, ref.id, sent[0] - result.pages)
                if not (exc.retryable and result.pages):
                    raise  # activity_errors tells Temporal (retryable by the error's class)
                # Progress was made and stored: return it, so that a channel moving forward
                # through intermittent 5xx, resets or cut bodies is not counted as failing;
                # the workflow calls again at once from the stored cursor.
                result.detail = str(exc)
            finally:
                result.api_calls = sent[0]

    async def _finish_channel(
        self,
        inp: ChannelPagesInput,
        ref: db.ChannelRef,
        cursor: int,
        result: ChannelPagesResult,
        calls: int,
    ) -> None:
        # Discord answers 200 [] when the bot lacks READ_MESSAGE_HISTORY: an "empty" channel
        # that Discord says has messages is marked, so the site can tell the two apart.
        no_history = cursor == 0 and ref.channel_last_message_id is not None
        async with self.engine.begin() as conn:
            await db.count_api_calls(conn, inp.run_id, ref.id, calls - result.pages)
            await db.job_finished(conn, inp.run_id, ref.id, "done")
            if no_history:
                await db.set_channel_access(conn, ref.id, "no_history")
            await syncdb.clear_failures(conn, PROVIDER, [_entity(ref.discord_channel_id)])
        result.done, result.status = True, "done"
        if no_history:
            result.detail = "no READ_MESSAGE_HISTORY permission (Discord answered [])"

    async def _skip_channel(
        self, inp: ChannelPagesInput, ref: db.ChannelRef, exc: ProviderError, calls: int
    ) -> None:
        """403 Missing Access / 404 Unknown Channel: recorded, re-checked on a slow cadence."""
        reason = "forbidden" if isinstance(exc, Forbidden) else "not_found"
        recheck = server_now() + self.recheck
        async with self.engine.begin() as conn:
            await db.count_api_calls(conn, inp.run_id, ref.id, calls)
            await db.set_channel_access(conn, ref.id, reason, recheck)
            await db.job_finished(conn, inp.run_id, ref.id, "skipped", type(exc).__name__, str(exc))
            await syncdb.record_failure(
                conn, PROVIDER, _entity(ref.discord_channel_id), reason, str(exc), recheck
            )
        activity.logger.info("channel skipped", extra={"channel": ref.discord_channel_id})

    async def _waiting(
        self,
        inp: ChannelPagesInput,
        ref: db.ChannelRef,
        until: datetime,
        rate_limited: int,
        calls: int,
    ) -> None:
        async with self.engine.begin() as conn:
            await db.count_api_calls(conn, inp.run_id, ref.id, calls)
            await db.job_waiting(conn, inp.run_id, ref.id, until, rate_limited)

    @activity.defn
    async def discord_park_channel(self, inp: ParkChannelInput) -> None:
        """A channel that kept failing: dead-letter it; the tenant sync goes on."""
        with activity_errors(f"discord: park channel {inp.discord_channel_id}"):
            async with self.engine.begin() as conn:
                await db.job_finished(
                    conn, inp.run_id, inp.channel_id, "failed", inp.error_type, inp.error
                )
                await syncdb.record_failure(
                    conn,
                    PROVIDER,
                    _entity(inp.discord_channel_id),
                    inp.error_type or "failed",
                    inp.error,
                    server_now() + timedelta(hours=1),
                )
