"""Discord workflows: `DiscordTenantSync` (one Discord server) → one `ChannelSync` per channel.

The master keeps at most ``SYNC_MAX_CHANNEL_WORKERS`` channels running (a sliding window: a new
channel starts as soon as any finishes). A channel that keeps failing is parked in
``sync_failures`` by its own workflow and reported; it never fails the tenant. Only the
invalid-request circuit breaker (and bad credentials) stop the whole run: continuing would risk
Discord's ban.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
)
from temporalio.exceptions import (
    TimeoutError as TemporalTimeoutError,
)

with workflow.unsafe.imports_passed_through():
    from activities.discord import DiscordActivities
    from activities.discord_types import (
        BeginTenantInput,
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
    )
    from workflows.visibility import reporting, search_attributes

# Failures that mean "stop everything": retrying or moving on would only add invalid requests.
FATAL = ("CircuitOpen", "AuthFailed")
BOOKKEEPING_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=10)


def _root_cause(err: BaseException) -> BaseException:
    cause = err
    while isinstance(cause, ActivityError | ChildWorkflowError) and cause.cause is not None:
        cause = cause.cause
    return cause


def _cause_type(err: BaseException) -> str:
    """The failure's type name: an ApplicationError's type, "Timeout:HEARTBEAT" for a timeout,
    else the exception class (terminated, cancelled...)."""
    cause = _root_cause(err)
    if isinstance(cause, ApplicationError):
        return cause.type or ""
    if isinstance(cause, TemporalTimeoutError):
        return f"Timeout:{cause.type.name if cause.type is not None else 'UNKNOWN'}"
    return type(cause).__name__


def _cause_message(err: BaseException) -> str:
    cause = _root_cause(err)
    return str(cause.message if isinstance(cause, ApplicationError) else cause)


@workflow.defn
class ChannelSync:
    """Page one channel to its end, in activity calls of bounded length.

    The cursor lives in Postgres (committed with each page); this workflow carries only counts.
    A spent bucket (BudgetExhausted) makes it sleep on a durable timer, not in a worker slot.
    """

    @workflow.run
    async def run(self, inp: ChannelSyncInput) -> ChannelSyncResult:
        total = inp.carried or ChannelSyncResult(inp.channel_id, inp.discord_channel_id)
        while True:
            # Attempts are counted across calls: a call that failed, then returned to sleep on a
            # spent bucket, must not give a channel that keeps failing a fresh set of attempts.
            retry = RetryPolicy(
                initial_interval=timedelta(seconds=1),
                backoff_coefficient=2.0,
                maximum_interval=timedelta(seconds=60),
                maximum_attempts=max(1, inp.max_attempts - total.failures_without_progress),
                non_retryable_error_types=["AuthFailed", "CircuitOpen", "BadPayload"],
            )
            workflow.set_current_details(
                f"channel {inp.discord_channel_id}: {total.messages} messages so far"
            )
            try:
                step = await workflow.execute_activity_method(
                    DiscordActivities.discord_sync_channel_pages,
                    ChannelPagesInput(inp.run_id, inp.channel_id, inp.fetch_size, inp.priority),
                    start_to_close_timeout=timedelta(minutes=10),
                    heartbeat_timeout=timedelta(seconds=inp.heartbeat_timeout_seconds),
                    retry_policy=retry,
                )
            except ActivityError as err:
                if _cause_type(err) in FATAL:
                    raise ApplicationError(
                        _cause_message(err), type=_cause_type(err), non_retryable=True
                    ) from None
                return await self._park(inp, total, err)
            _add(total, step)
            if step.pages:
                total.failures_without_progress = 0
            else:
                total.failures_without_progress += step.failed_attempts
            if step.done:
                total.status = step.status
                total.error = step.detail
                workflow.set_current_details(
                    f"channel {inp.discord_channel_id}: {step.status}, {total.messages} messages"
                )
                return total
            if step.resume_at is not None:
                total.budget_waits += 1
                workflow.set_current_details(
                    f"channel {inp.discord_channel_id}: rate budget spent, waiting until "
                    f"{step.resume_at:%H:%M:%S} UTC"
                )
                await workflow.sleep(max(0.0, (step.resume_at - workflow.now()).total_seconds()))
            if workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(dataclasses.replace(inp, carried=total))

    async def _park(
        self, inp: ChannelSyncInput, total: ChannelSyncResult, err: ActivityError
    ) -> ChannelSyncResult:
        total.status, total.error = "failed", _cause_message(err)[:500]
        await workflow.execute_activity_method(
            DiscordActivities.discord_park_channel,
            ParkChannelInput(
                inp.run_id, inp.channel_id, inp.discord_channel_id, _cause_type(err), total.error
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=BOOKKEEPING_RETRY,
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

    @workflow.run
    async def run(self, inp: TenantSyncInput) -> TenantSyncResult:
        return await reporting(
            inp.report_to, self._run(inp), lambda r: "partial" if r.channels_failed else "completed"
        )

    async def _run(self, inp: TenantSyncInput) -> TenantSyncResult:
        state = inp.state or await self._begin(inp)
        gid = inp.discord_guild_id
        running: dict[int, asyncio.Task[ChannelSyncResult]] = {}  # by channel row id
        targets: dict[int, ChannelTarget] = {}
        stop_dispatch = False
        while state.pending or running:
            while state.pending and len(running) < state.max_workers and not stop_dispatch:
                channel = state.pending.pop(0)
                running[channel.channel_id] = asyncio.create_task(
                    self._channel(inp, state, channel)
                )
                targets[channel.channel_id] = channel
                state.max_concurrent = max(state.max_concurrent, len(running))
            self._details(gid, state, len(running))
            if not running:
                break
            await workflow.wait(running.values(), return_when=asyncio.FIRST_COMPLETED)
            for row_id, task in list(running.items()):
                if not task.done():
                    continue
                del running[row_id]
                try:
                    outcome = task.result()
                except ChildWorkflowError as err:
                    state.failed += 1
                    if _cause_type(err) not in FATAL:  # e.g. terminated by hand: park it
                        await self._park(state, targets.pop(row_id), err)
                        continue
                    if state.fatal is None:
                        state.fatal, state.fatal_type = _cause_message(err), _cause_type(err)
                    stop_dispatch = True  # the breaker is open: start nothing new
                    continue
                targets.pop(row_id, None)
                if outcome.status == "failed":
                    state.failed += 1
                elif outcome.status == "skipped":
                    state.skipped += 1
                else:
                    state.done += 1
            if workflow.info().is_continue_as_new_suggested() and not stop_dispatch:
                stop_dispatch = True  # drain the window, then continue with what is left
        if state.pending and state.fatal is None:
            self._details(gid, state, 0)
            workflow.continue_as_new(dataclasses.replace(inp, state=state))
        return await self._finish(inp, state)

    async def _park(
        self, state: TenantSyncState, channel: ChannelTarget, err: ChildWorkflowError
    ) -> None:
        await workflow.execute_activity_method(
            DiscordActivities.discord_park_channel,
            ParkChannelInput(
                state.run_id,
                channel.channel_id,
                channel.discord_channel_id,
                _cause_type(err),
                _cause_message(err)[:500],
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=BOOKKEEPING_RETRY,
        )

    async def _begin(self, inp: TenantSyncInput) -> TenantSyncState:
        workflow.set_current_details(f"listing the channels of guild {inp.discord_guild_id}")
        begun = await workflow.execute_activity_method(
            DiscordActivities.discord_begin_tenant_sync,
            BeginTenantInput(
                inp.discord_guild_id, inp.full, workflow.info().workflow_id, inp.priority
            ),
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=1),
                maximum_attempts=6,
                non_retryable_error_types=["AuthFailed", "CircuitOpen", "NotFound", "Forbidden"],
            ),
        )
        return TenantSyncState(
            run_id=begun.run_id,
            pending=list(begun.channels),
            max_workers=begun.max_workers,
            fetch_size=begun.fetch_size,
            max_attempts=begun.max_attempts,
            channels=len(begun.channels),
            skipped_before_start=begun.skipped,
            started_at=workflow.now(),
        )

    async def _channel(
        self, inp: TenantSyncInput, state: TenantSyncState, channel: ChannelTarget
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
        )

    def _details(self, gid: int, state: TenantSyncState, running: int) -> None:
        workflow.set_current_details(
            f"guild {gid}: {state.done + state.skipped + state.failed}/{state.channels} channels "
            f"finished, {running} running, {len(state.pending)} waiting; "
            f"{state.failed} parked"
        )

    async def _finish(self, inp: TenantSyncInput, state: TenantSyncState) -> TenantSyncResult:
        status = "failed" if state.fatal else ("partial" if state.failed else "done")
        totals = await workflow.execute_activity_method(
            DiscordActivities.discord_finish_tenant_sync,
            FinishTenantInput(state.run_id, status, state.fatal, state.max_concurrent),
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=BOOKKEEPING_RETRY,
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


WORKFLOWS = [DiscordTenantSync, ChannelSync]
