"""Discord workflows: `DiscordTenantSync` (one Discord server) → one `ChannelSync` per channel.

The master keeps at most ``SYNC_MAX_CHANNEL_WORKERS`` channels running (a sliding window: a new
channel starts as soon as any finishes). The listing of channels goes to Postgres (the run's
jobs); the master reads it back in keyset pages of channel ids and continues-as-new between
pages, so neither an activity result nor a run's history grows with the number of channels.
A channel that keeps failing is parked in ``sync_failures`` by its own workflow and reported;
it never fails the tenant. Only the invalid-request circuit breaker (and bad credentials) stop
the whole run: continuing would risk Discord's ban.

Several tenants share a worker's activity slots. So that a small tenant's few tasks do not queue
behind a big tenant's backlog of channel tasks in Temporal's task queue, a tenant's children and
listing carry its fairness key (the guild; honoured where the server enables
``matching.enableFairness``), and the short database-only activities (a page of the listing,
parking, the run's end) go one Temporal priority level ahead of the channel paging.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Awaitable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import Priority as TaskPriority
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from activities.discord import DiscordActivities
    from activities.discord_types import (
        BeginTenantInput,
        ChannelPageInput,
        ChannelPagesInput,
        ChannelPagesResult,
        ChannelSyncInput,
        ChannelSyncResult,
        ChannelTarget,
        FinishTenantInput,
        ParkChannelInput,
        TenantSyncInput,
        TenantSyncResult,
        TenantSyncState,
        channel_queue,
    )
    from providers.discord.spec import SPEC as DISCORD
    from workflows.kernel import (
        CHECKPOINTED,
        SlidingWindow,
        cause_message,
        cause_type,
        db_call,
        heartbeat,
        run_until_done,
    )
    from workflows.plans import ChildPlan
    from workflows.scheduler_types import SyncRequest
    from workflows.visibility import reporting, search_attributes

# Failures that mean "stop everything": retrying or moving on would only add invalid requests.
FATAL = ("CircuitOpen", "AuthFailed")
LISTING_DEADLINE = timedelta(minutes=30)
# The channel listing stays in Postgres and the master reads it in keyset pages, one page per
# run (histories recorded before got every channel from the first activity and carried them).
CHANNEL_PAGES = "channel-pages"
# Tenants' tasks carry a fairness key; database-only activities go one priority level ahead.
TENANT_FAIRNESS = "tenant-fairness"
DEFAULT_TASK_PRIORITY = 3  # the server's default priority key (1 = first ... 5)


def _bookkeeping() -> dict[str, TaskPriority]:
    """Options for a database-only activity: one Temporal priority level ahead of this
    workflow's own, so that it never waits behind a backlog of channel paging for a slot."""
    if not workflow.patched(TENANT_FAIRNESS):
        return {}
    key = workflow.info().priority.priority_key or DEFAULT_TASK_PRIORITY
    return {"priority": TaskPriority(priority_key=max(1, key - 1))}


# A tenant's listing goes one level ahead of its channels, its first HEAD_CHANNELS running
# channels at the workflow's level and the rest one behind: a new tenant's first tasks overtake
# a big tenant's backlog of channel tasks, which the worker's slots cannot all hold at once.
TENANT_HEADS = "tenant-head-channels"
HEAD_CHANNELS = 4
# Since FIRST_CHANNEL, three tiers: a tenant's leading running channel at the workflow's level,
# its next HEAD_CHANNELS - 1 one behind, the rest two behind. With 4 heads at one level, 4 big
# tenants' 16 heads outnumbered a worker's 10 channel slots and a 1-channel tenant's channel
# queued behind them (bench/discord_fairness.py --big-tenants 4: 6.8x its time alone); one
# leader per tenant keeps that level short whatever the number of tenants.
FIRST_CHANNEL = "tenant-first-channel"
# Channel paging runs on a task queue of its own (activities.discord_types.channel_queue), whose
# slots only channel calls take: a backlog of deep channels held every activity slot of a worker
# with calls of up to 60 s, and a new tenant's listing and bookkeeping, and every other
# provider's activities, queued behind them. A call gives its slot up early when a task of a
# better priority waits for one (activities/backlog.py): priority orders the waiting tasks but
# frees no slot. (Calls of at most 10 s instead cost a crash ~2 s more: a call ending within
# 10 s of its worker's death sends its workflow task to the dead worker's sticky queue.)
CHANNEL_QUEUE = "discord-channel-queue"
LOWEST_TASK_PRIORITY = 5  # the dev server's matching.priorityLevels


def _tenant_tasks(guild_id: int, shift: int | None = None) -> TaskPriority:
    """A tenant's children's and listing's Temporal priority: this workflow's priority key
    (``shift`` levels later, where the head-channels patch applies) and the tenant's fairness
    key (Temporal's default where the fairness patch does not apply)."""
    if not workflow.patched(TENANT_FAIRNESS):
        return TaskPriority.default
    key = workflow.info().priority.priority_key
    if shift is not None and workflow.patched(TENANT_HEADS):
        key = min(LOWEST_TASK_PRIORITY, max(1, (key or DEFAULT_TASK_PRIORITY) + shift))
    return TaskPriority(priority_key=key, fairness_key=f"discord-{guild_id}")


@workflow.defn
class ChannelSync:
    """Page one channel to its end, in activity calls of bounded length.

    The cursor lives in Postgres (committed with each page); this workflow carries only counts.
    A spent bucket or a 429 makes it sleep on a durable timer, not in a worker slot; attempts
    that stored nothing are counted across calls, and after ``max_attempts`` of them the
    channel is parked.
    """

    @workflow.run
    async def run(self, inp: ChannelSyncInput) -> ChannelSyncResult:
        total = inp.carried or ChannelSyncResult(inp.channel_id, inp.discord_channel_id)
        cid = inp.discord_channel_id

        def call(retry: RetryPolicy) -> Awaitable[ChannelPagesResult]:
            queue = None  # the workflow's own, where the patch does not apply
            if workflow.patched(CHANNEL_QUEUE):
                queue = channel_queue(workflow.info().task_queue)
            return workflow.execute_activity_method(
                DiscordActivities.discord_sync_channel_pages,
                ChannelPagesInput(inp.run_id, inp.channel_id, inp.fetch_size, inp.priority),
                start_to_close_timeout=timedelta(minutes=10),
                heartbeat_timeout=heartbeat(inp.heartbeat_timeout_seconds),
                retry_policy=retry,
                task_queue=queue,
            )

        def describe() -> None:
            workflow.set_current_details(f"channel {cid}: {total.messages} messages so far")

        def waiting(until: datetime) -> None:
            workflow.set_current_details(
                f"channel {cid}: rate budget spent, waiting until {until:%H:%M:%S} UTC"
            )

        def carry_on() -> None:
            workflow.continue_as_new(dataclasses.replace(inp, carried=total))

        try:
            step = await run_until_done(
                call, total, on_step=lambda step: _add(total, step), max_failures=inp.max_attempts,
                describe=describe, waiting=waiting, continue_as_new=carry_on,
            )  # fmt: skip
        except ActivityError as err:
            if cause_type(err) in FATAL:
                raise ApplicationError(
                    cause_message(err), type=cause_type(err), non_retryable=True
                ) from None
            return await self._park(inp, total, err)
        total.status = step.status
        total.error = step.detail
        workflow.set_current_details(f"channel {cid}: {step.status}, {total.messages} messages")
        return total

    async def _park(
        self, inp: ChannelSyncInput, total: ChannelSyncResult, err: ActivityError
    ) -> ChannelSyncResult:
        total.status, total.error = "failed", cause_message(err)[:500]
        await workflow.execute_activity_method(
            DiscordActivities.discord_park_channel,
            ParkChannelInput(
                inp.run_id, inp.channel_id, inp.discord_channel_id, cause_type(err), total.error
            ),
            **db_call(**_bookkeeping()),
        )
        workflow.set_current_details(f"channel {inp.discord_channel_id}: parked ({total.error})")
        return total


def _add(total: ChannelSyncResult, step: ChannelPagesResult) -> None:
    total.messages += step.messages
    total.pages += step.pages
    total.api_calls += step.api_calls
    total.activity_calls += 1


@workflow.defn
class DiscordTenantSync:
    """Master of one tenant run: list channels, then a sliding window of ChannelSync children."""

    def __init__(self) -> None:
        self._heads = 0  # channels running at the tenant's own level (the window drains
        # before a continue-as-new, so this never needs carrying)
        self._lead = False  # the tenant's leading channel is running (FIRST_CHANNEL)

    @workflow.run
    async def run(self, inp: TenantSyncInput) -> TenantSyncResult:
        return await reporting(
            inp.report_to, self._run(inp), lambda r: "partial" if r.channels_failed else "completed"
        )

    async def _run(self, inp: TenantSyncInput) -> TenantSyncResult:
        state = inp.state or await self._begin(inp)
        gid = inp.discord_guild_id
        # Children start inside their tasks: a window of them starts in one workflow task.
        window = SlidingWindow(state.max_workers, start_in_task=True)
        listed = False  # a page was read in this run
        while state.pending or _unlisted(state):
            if not state.pending:
                if listed or state.fatal is not None:
                    break  # one page per run: drain the window, then continue with the next
                await self._next_page(state)
                listed = True
                continue
            if not await window.wait_for_room():
                break  # the breaker is open (or bad credentials): start nothing new
            if workflow.info().is_continue_as_new_suggested():
                break  # drain the window, then continue with what is left
            channel = state.pending.pop(0)
            await window.submit(
                functools.partial(self._channel, inp, state, channel, window), _nothing
            )
            state.max_concurrent = max(state.max_concurrent, window.running)
            self._details(gid, state, window.running)
        await window.drain()
        if (state.pending or _unlisted(state)) and state.fatal is None:
            self._details(gid, state, 0)
            workflow.continue_as_new(dataclasses.replace(inp, state=state))
        return await self._finish(inp, state)

    async def _channel(
        self,
        inp: TenantSyncInput,
        state: TenantSyncState,
        channel: ChannelTarget,
        window: SlidingWindow,
    ) -> None:
        """One channel's child, and its outcome counted; a child that failed is parked unless
        the failure means stop everything."""
        head = self._heads < HEAD_CHANNELS  # one of the tenant's first running channels
        tiers = workflow.patched(FIRST_CHANNEL)
        lead = tiers and not self._lead  # the tenant's leading channel
        if tiers:
            shift = 0 if lead else 1 if head else 2
        else:
            shift = 0 if head else 1
        self._heads += head
        self._lead |= lead
        try:
            outcome = await self._start_channel(inp, state, channel, shift)
        except ChildWorkflowError as err:
            state.failed += 1
            if cause_type(err) not in FATAL:  # e.g. terminated by hand: park it
                await self._park(state, channel, err)
            else:
                if state.fatal is None:
                    state.fatal, state.fatal_type = cause_message(err), cause_type(err)
                window.close()
            return
        finally:
            self._heads -= head
            if lead:
                self._lead = False
        if outcome.status == "failed":
            state.failed += 1
        elif outcome.status == "skipped":
            state.skipped += 1
        else:
            state.done += 1
        self._details(inp.discord_guild_id, state, window.running - 1)

    async def _park(
        self, state: TenantSyncState, channel: ChannelTarget, err: ChildWorkflowError
    ) -> None:
        await workflow.execute_activity_method(
            DiscordActivities.discord_park_channel,
            ParkChannelInput(
                state.run_id,
                channel.channel_id,
                channel.discord_channel_id,
                cause_type(err),
                cause_message(err)[:500],
            ),
            **db_call(**_bookkeeping()),
        )

    async def _next_page(self, state: TenantSyncState) -> None:
        """The next keyset page of the run's channels becomes ``pending``."""
        page = await workflow.execute_activity_method(
            DiscordActivities.discord_channel_page,
            ChannelPageInput(state.run_id, state.after_channel_id, state.page_size),
            **db_call(**_bookkeeping()),
        )
        state.pending = list(page.channels)
        state.after_channel_id = page.last_channel_id
        state.listing_done = not page.more
        state.channel_pages += 1

    async def _begin(self, inp: TenantSyncInput) -> TenantSyncState:
        workflow.set_current_details(f"listing the channels of guild {inp.discord_guild_id}")
        paged = workflow.patched(CHANNEL_PAGES)
        begun = await workflow.execute_activity_method(
            DiscordActivities.discord_begin_tenant_sync,
            BeginTenantInput(
                inp.discord_guild_id, inp.full, workflow.info().workflow_id, inp.priority, paged
            ),
            start_to_close_timeout=timedelta(minutes=5),
            schedule_to_close_timeout=LISTING_DEADLINE,
            # a worker killed while listing: retried in seconds, not after 5 minutes
            heartbeat_timeout=heartbeat(inp.heartbeat_timeout_seconds),
            retry_policy=CHECKPOINTED,
            priority=_tenant_tasks(inp.discord_guild_id, shift=-1),
        )
        return TenantSyncState(
            run_id=begun.run_id,
            pending=list(begun.channels),
            max_workers=begun.max_workers,
            fetch_size=begun.fetch_size,
            max_attempts=begun.max_attempts,
            channels=begun.channels_wanted if paged else len(begun.channels),
            skipped_before_start=begun.skipped,
            started_at=workflow.now(),
            paged=paged,
            page_size=inp.channel_page_size,
        )

    async def _start_channel(
        self, inp: TenantSyncInput, state: TenantSyncState, channel: ChannelTarget, shift: int
    ) -> ChannelSyncResult:
        cid = channel.discord_channel_id
        return await workflow.execute_child_workflow(
            ChannelSync.run,
            ChannelSyncInput(
                run_id=state.run_id,
                channel_id=channel.channel_id,
                discord_channel_id=cid,
                fetch_size=state.fetch_size,
                priority=inp.priority,
                max_attempts=state.max_attempts,
                heartbeat_timeout_seconds=inp.heartbeat_timeout_seconds,
            ),
            id=f"discord-channel/{inp.discord_guild_id}/{cid}/run-{state.run_id}",
            static_summary=f"Discord channel {cid} of guild {inp.discord_guild_id}",
            search_attributes=search_attributes("discord", str(inp.discord_guild_id), "channel"),
            priority=_tenant_tasks(inp.discord_guild_id, shift),
        )

    def _details(self, gid: int, state: TenantSyncState, running: int) -> None:
        finished = state.done + state.skipped + state.failed
        waiting = len(state.pending)
        if state.paged:  # the channels of later pages are waiting too
            waiting = max(0, state.channels - finished - running)
        workflow.set_current_details(
            f"guild {gid}: {finished}/{state.channels} channels "
            f"finished, {running} running, {waiting} waiting; "
            f"{state.failed} parked"
        )

    async def _finish(self, inp: TenantSyncInput, state: TenantSyncState) -> TenantSyncResult:
        status = "failed" if state.fatal else ("partial" if state.failed else "completed")
        totals = await workflow.execute_activity_method(
            DiscordActivities.discord_finish_tenant_sync,
            FinishTenantInput(state.run_id, status, state.fatal, state.max_concurrent),
            **db_call(**_bookkeeping()),
        )
        started = state.started_at or workflow.now()
        result = TenantSyncResult(
            discord_guild_id=inp.discord_guild_id,
            run_id=state.run_id,
            status=status,
            channels=state.channels,
            channels_done=state.done,
            channels_skipped=state.skipped,
            channels_failed=state.failed,
            messages=int(totals.get("messages", 0)),
            reactions=int(totals.get("reactions", 0)),
            attachments=int(totals.get("attachments", 0)),
            errors=state.failed,
            max_concurrent_channels=state.max_concurrent,
            avg_channel_seconds=round(float(totals.get("avg_channel_seconds") or 0.0), 3),
            api_calls=int(totals.get("api_calls", 0)),
            rate_limit_encounters=int(totals.get("rate_limited", 0)),
            retries=int(totals.get("retries", 0)),
            seconds=round((workflow.now() - started).total_seconds(), 3),
            error=state.fatal,
        )
        workflow.set_current_details(
            f"guild {inp.discord_guild_id}: {status}; {result.messages} messages in "
            f"{result.channels} channels"
        )
        if state.fatal:
            raise ApplicationError(state.fatal, type=state.fatal_type, non_retryable=True)
        return result


class DiscordPlan:
    """Scope = tenant (Discord guild id). Kinds: `sync` (new messages of every channel,
    incremental) and `full` (every channel re-read from its start, bulk). One sync per tenant
    at a time: the child id is the tenant's, so an overlapping request is refused by Temporal
    rather than run twice over the same cursors."""

    def default_priority(self, kind: str) -> int:
        return DISCORD.priority(kind)

    def check(self, scope: str, request: SyncRequest) -> None:
        if not (scope.isascii() and scope.isdigit() and len(scope) <= 20 and int(scope) < 2**63):
            raise ValueError(f"discord scope {scope[:30]!r} is no guild id (a number)")
        if DISCORD.kind(request.kind) is None:
            raise ValueError(f"discord has no sync kind {request.kind[:40]!r}")
        if request.key:
            raise ValueError(f"a discord {request.kind} request has no key")

    def child(
        self, provider: str, scope: str, request: SyncRequest, seq: int, now: datetime
    ) -> ChildPlan:
        self.check(scope, request)
        full = request.kind == "full"
        return ChildPlan(
            workflow="DiscordTenantSync",
            id=f"discord-sync/{scope}",
            summary=f"Discord {'full' if full else 'incremental'} sync of guild {scope}",
            build_arg=lambda report_to: TenantSyncInput(
                discord_guild_id=int(scope),
                full=full,
                priority=request.priority,
                report_to=report_to,
            ),
        )


WORKFLOWS = [DiscordTenantSync, ChannelSync]


def _unlisted(state: TenantSyncState) -> bool:
    """Channels of the run's listing not read into the workflow yet (paged runs only)."""
    return state.paged and not state.listing_done


async def _nothing(_: object) -> None:
    """A channel's task accounts for itself (`DiscordTenantSync._channel`)."""
