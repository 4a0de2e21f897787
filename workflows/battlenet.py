"""Battle.net workflows: the `BattleNetSync` master and its `GuildSync` and `CharacterBatchSync`
children.

The master selects outdated guilds (then characters, which guild rosters may have discovered)
in keyset pages, fans out children in a bounded sliding window and continues-as-new between
pages (one page of guilds per run, a few pages of characters), carrying only cursors and counts:
no activity result and no run's history grows with the number of guilds or characters.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ApplicationError,
    ChildWorkflowError,
    WorkflowAlreadyStartedError,
)

with workflow.unsafe.imports_passed_through():
    from activities.battlenet import BattleNetActivities
    from activities.types import (
        BattleNetSyncInput,
        CharacterAddInput,
        CharacterBatchInput,
        CharacterBatchResult,
        EntitySyncInput,
        EntitySyncResult,
        FinishRunInput,
        GuildSyncInput,
        GuildSyncResult,
        GuildTarget,
        PvpSyncInput,
        SelectCharactersInput,
        SelectGuildPageInput,
        SelectGuildsInput,
        StartRunInput,
        SyncCounts,
        TrackInput,
    )
    from providers.battlenet.spec import SPEC as BATTLENET
    from workflows.kernel import (
        CHECKPOINTED,
        WORK_DEADLINE,
        Attempts,
        SlidingWindow,
        cause_message,
        cause_type,
        db_call,
        heartbeat,
        run_until_done,
    )
    from workflows.plans import ChildPlan
    from workflows.scheduler_types import SyncRequest
    from workflows.visibility import region_sync_id, reporting, search_attributes

FINAL_PASS = "final-pass"  # histories recorded before it end without one
# The guild phase in keyset pages, one page per run (histories recorded before select every
# outdated guild in one activity and start them all in one run).
GUILD_PAGES = "guild-pages"
# One BattleNetSync per region at a time: the scheduler's sync child takes the region's one id,
# the id `sync battlenet` starts too, so either meets the other instead of doing its work twice.
ONE_SYNC_PER_REGION = "one-sync-per-region"
# A guild child makes two requests, and each child's start was one workflow task after the
# other's, so a region's guilds were fetched at ~15 requests/s against a limit of 100. Now up to
# GUILD_WINDOW guild children start in one workflow task (the activity slots and the limiter
# still bound the requests). Histories recorded before it start them one by one, 8 at a time.
WIDE_GUILD_WINDOW = "wide-guild-window"
GUILD_WINDOW = 40
# Character batches, too, start in the workflow task that has room for them (all of a run's
# first window at once), not one task after another's start (~0.1 s each, at every run's start
# after continue-as-new). Histories recorded before it start them one by one.
BATCHES_IN_TASK = "batches-in-task"


@workflow.defn
class GuildSync:
    """One guild: guild data + roster (members, ranks, discovered characters)."""

    @workflow.run
    async def run(self, inp: GuildSyncInput) -> GuildSyncResult:
        workflow.set_current_details("fetching guild and roster")
        result = await workflow.execute_activity_method(
            BattleNetActivities.bnet_sync_guild,
            inp,
            start_to_close_timeout=timedelta(minutes=5),
            schedule_to_close_timeout=WORK_DEADLINE,
            heartbeat_timeout=heartbeat(inp.heartbeat_timeout_seconds),
            retry_policy=CHECKPOINTED,
        )
        workflow.set_current_details(f"{result.status}: {result.members} members")
        return result


async def sync_character_batch(inp: CharacterBatchInput) -> CharacterBatchResult:
    """Run the batch activity until done, sleeping durably whenever the budget is exhausted."""
    total = CharacterBatchResult(position=inp.position)

    def call(retry: RetryPolicy) -> Awaitable[CharacterBatchResult]:
        return workflow.execute_activity_method(
            BattleNetActivities.bnet_sync_characters,
            replace(inp, position=total.position),
            start_to_close_timeout=timedelta(minutes=30),
            schedule_to_close_timeout=WORK_DEADLINE,
            heartbeat_timeout=heartbeat(inp.heartbeat_timeout_seconds),
            retry_policy=retry,
        )

    def on_step(step: CharacterBatchResult) -> None:
        _add_batch(total, step)
        total.position = step.position

    def describe() -> None:
        workflow.set_current_details(f"characters {total.position}/{len(inp.character_ids)} synced")

    def waiting(until: Any) -> None:
        workflow.set_current_details(f"rate budget exhausted; sleeping until {until}")

    await run_until_done(
        call, Attempts(), on_step=on_step, describe=describe, waiting=waiting,
        min_sleep=timedelta(seconds=1),
    )  # fmt: skip
    return total


@workflow.defn
class CharacterBatchSync:
    """A batch of characters; sleeps on a durable timer when the rate budget is exhausted."""

    @workflow.run
    async def run(self, inp: CharacterBatchInput) -> CharacterBatchResult:
        return await sync_character_batch(inp)


# Manual character adds register and sync in one activity (histories recorded before take the
# two-activity path on replay).
ONE_STEP_CHARACTER_ADD = "one-step-character-add"


# Not sandboxed: a manual add is a new workflow whose first task would otherwise build a fresh
# sandbox (tens of ms on a loaded 2-core worker) — the largest part of its latency under a
# backlog. The code is small and only calls workflow APIs; the replay tests guard determinism.
@workflow.defn(sandboxed=False)
class BattleNetEntitySync:
    """A manual add: register one guild or character and sync it now, at its priority.

    It runs beside any running master; the rate limiter serves its requests first.
    """

    @workflow.run
    async def run(self, inp: EntitySyncInput) -> EntitySyncResult:
        return await reporting(
            inp.report_to, self._sync(inp), lambda r: r.status, lambda: "manual sync"
        )

    async def _sync(self, inp: EntitySyncInput) -> EntitySyncResult:
        if inp.kind == "character" and workflow.patched(ONE_STEP_CHARACTER_ADD):
            return await self._add_character(inp)
        cutoff = workflow.now()  # characters synced since then are done (a retry resumes)
        entity_id = await workflow.execute_activity_method(
            BattleNetActivities.bnet_track_entity,
            TrackInput(inp.region, inp.kind, inp.realm, inp.name),
            **db_call(),
        )
        result = EntitySyncResult(status="completed", entity_id=entity_id)
        ids = [entity_id]
        if inp.kind == "guild":
            workflow.set_current_details("fetching guild and roster")
            guild = await workflow.execute_activity_method(
                BattleNetActivities.bnet_sync_guild,
                GuildSyncInput(entity_id, inp.priority, inp.heartbeat_timeout_seconds),
                start_to_close_timeout=timedelta(minutes=5),
                schedule_to_close_timeout=WORK_DEADLINE,
                heartbeat_timeout=heartbeat(inp.heartbeat_timeout_seconds),
                retry_policy=CHECKPOINTED,
            )
            result.requests += guild.requests
            if guild.status == "not_found":
                result.status = "not_found"
                return result
            ids = await workflow.execute_activity_method(
                BattleNetActivities.bnet_guild_character_ids, entity_id, **db_call()
            )
        key = f"{workflow.info().workflow_id}/characters"
        for offset in range(0, len(ids), 50):
            batch = await sync_character_batch(
                CharacterBatchInput(
                    f"{key}/{offset}", ids[offset : offset + 50], inp.priority, 0,
                    inp.heartbeat_timeout_seconds, cutoff,
                )
            )  # fmt: skip
            result.characters += batch.synced + batch.not_modified + batch.recovered
            result.not_found += batch.not_found
            result.requests += batch.requests
        if inp.kind == "character" and result.not_found:
            result.status = "not_found"
        workflow.set_current_details(f"{result.status}: {result.characters} characters")
        return result

    async def _add_character(self, inp: EntitySyncInput) -> EntitySyncResult:
        """Register and sync in one activity; a spent budget continues as a batch (sleeping
        durably), from where the activity stopped."""
        key = f"{workflow.info().workflow_id}/characters/0"
        added = await workflow.execute_activity_method(
            BattleNetActivities.bnet_add_character,
            CharacterAddInput(
                inp.region, inp.realm, inp.name, key, inp.priority, inp.heartbeat_timeout_seconds
            ),
            start_to_close_timeout=timedelta(minutes=30),
            schedule_to_close_timeout=WORK_DEADLINE,
            heartbeat_timeout=heartbeat(inp.heartbeat_timeout_seconds),
            retry_policy=CHECKPOINTED,
        )
        batch = added.batch
        if batch.resume_at is not None:
            rest = await sync_character_batch(
                CharacterBatchInput(
                    key, [added.entity_id], inp.priority, batch.position,
                    inp.heartbeat_timeout_seconds,
                )
            )  # fmt: skip
            _add_batch(rest, batch)
            batch = rest
        result = EntitySyncResult(
            status="not_found" if batch.not_found else "completed",
            entity_id=added.entity_id,
            characters=batch.synced + batch.not_modified + batch.recovered,
            not_found=batch.not_found,
            requests=batch.requests,
        )
        workflow.set_current_details(f"{result.status}: {result.characters} characters")
        return result


def _add_batch(total: CharacterBatchResult, step: CharacterBatchResult) -> None:
    total.synced += step.synced
    total.not_modified += step.not_modified
    total.not_found += step.not_found
    total.failed += step.failed
    total.requests += step.requests
    total.recovered += step.recovered
    total.deferred = step.deferred  # what the last call left: the earlier ones were retried
    if step.retry_at is not None:
        total.retry_at = max(total.retry_at or step.retry_at, step.retry_at)


@workflow.defn
class BattleNetSync:
    """Master: all outdated guilds and characters of one region."""

    def __init__(self) -> None:
        self._state: BattleNetSyncInput | None = None
        self._window: SlidingWindow | None = None
        self._fatal: str | None = None  # bad credentials: stop fanning out, fail the run

    @workflow.query
    def progress(self) -> dict[str, Any]:
        state = self._state
        if state is None:
            return {}
        running = self._window.running if self._window is not None else 0
        # the run's sync_runs row and cutoff let a `--wait` count what is left in Postgres
        cutoff = None if state.cutoff is None else state.cutoff.isoformat()
        return {
            "phase": state.phase, "running": running, "run_id": state.run_id,
            "cutoff": cutoff, "final_pass": state.final_pass, **state.counts.as_dict(),
        }  # fmt: skip

    @workflow.run
    async def run(self, inp: BattleNetSyncInput) -> SyncCounts:
        return await reporting(
            inp.report_to, self._run(inp), detail=lambda: f"{inp.counts.characters} characters"
        )

    async def _run(self, inp: BattleNetSyncInput) -> SyncCounts:
        self._state = inp
        window = self._window = SlidingWindow(inp.window)
        if workflow.patched(BATCHES_IN_TASK):
            window.reshape(inp.window, start_in_task=True)
        wid = workflow.info().workflow_id
        if inp.run_id is None:
            inp.run_id = await workflow.execute_activity_method(
                BattleNetActivities.bnet_start_run,
                StartRunInput("battlenet", inp.region, "full" if inp.full else "outdated", wid),
                **db_call(),
            )
            staleness = timedelta(seconds=0 if inp.full else inp.staleness_seconds)
            inp.cutoff = workflow.now() - staleness
        assert inp.cutoff is not None
        if inp.phase == "guilds":
            if not workflow.patched(GUILD_PAGES):
                await self._sync_guilds(inp)
            elif await self._sync_guild_page(inp):
                # More guilds lie past this page: the next run takes it (the window is drained).
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(inp)
            inp.phase = "characters"
        while inp.phase == "characters" and self._fatal is None:
            if not await self._sync_character_page(inp, wid):
                await window.drain()
                if not await self._final_pass(inp):
                    inp.phase = "done"
            elif workflow.info().is_continue_as_new_suggested() or inp.pages % 5 == 0:
                # Pages overlap (the keyset cursor makes that safe); drain before handing over.
                await window.drain()
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(inp)
        await window.drain()
        assert inp.run_id is not None
        await workflow.execute_activity_method(
            BattleNetActivities.bnet_finish_run,
            FinishRunInput(
                inp.run_id, "failed" if self._fatal else "completed", inp.counts.as_dict(),
                inp.counts.failed + inp.counts.children_failed, self._fatal,
            ),
            **db_call(),
        )  # fmt: skip
        if self._fatal is not None:
            raise ApplicationError(self._fatal, type="AuthFailed", non_retryable=True)
        workflow.set_current_details(f"done: {inp.counts.as_dict()}")
        return inp.counts

    async def _final_pass(self, inp: BattleNetSyncInput) -> bool:
        """Characters deferred by transient faults get one more pass, once they are due;
        True when it starts (the character loop runs again from the first page)."""
        if inp.final_pass or not inp.counts.deferred or not workflow.patched(FINAL_PASS):
            return False
        inp.final_pass = True
        inp.counts.deferred = 0  # what this pass defers again is what is left
        inp.after_synced = inp.after_id = None
        if inp.retry_at is not None and inp.retry_at > workflow.now():
            workflow.set_current_details(f"final pass at {inp.retry_at:%H:%M:%S} UTC")
            await workflow.sleep(inp.retry_at - workflow.now(), summary="deferred characters due")
        return True

    async def _sync_guild_page(self, inp: BattleNetSyncInput) -> bool:
        """Sync one keyset page of outdated guilds; True when more follow (and no child
        failed on bad credentials)."""
        assert inp.cutoff is not None and self._window is not None
        page = await workflow.execute_activity_method(
            BattleNetActivities.bnet_select_guild_page,
            SelectGuildPageInput(
                inp.region, inp.cutoff, inp.guild_page_size, inp.guild_after_synced,
                inp.guild_after_id,
            ),
            **db_call(),
        )  # fmt: skip
        if page.targets:
            inp.guild_pages += 1
            inp.guild_after_synced, inp.guild_after_id = page.last_synced, page.last_id
        workflow.set_current_details(
            f"guild page {inp.guild_pages}: {len(page.targets)} guilds; "
            f"{inp.counts.guilds} synced so far"
        )
        await self._start_guilds(inp, page.targets)
        return page.more and self._fatal is None

    async def _sync_guilds(self, inp: BattleNetSyncInput) -> None:
        """Every outdated guild in this run (histories recorded before GUILD_PAGES)."""
        assert inp.cutoff is not None and self._window is not None
        targets: list[GuildTarget] = await workflow.execute_activity_method(
            BattleNetActivities.bnet_select_guilds,
            SelectGuildsInput(inp.region, inp.cutoff),
            **db_call(),
        )
        workflow.set_current_details(f"syncing {len(targets)} guilds")
        await self._start_guilds(inp, targets)

    async def _start_guilds(self, inp: BattleNetSyncInput, targets: list[GuildTarget]) -> None:
        """A GuildSync child per target in the window; returns when all have ended."""
        assert self._window is not None
        shape = None
        if targets and workflow.patched(WIDE_GUILD_WINDOW):
            shape = self._window.reshape(max(self._window.size, GUILD_WINDOW), True)
        for target in targets:
            child_id = f"guild/{target.region}/{target.realm}/{target.name_slug}"
            child_input = GuildSyncInput(target.id, inp.priority, inp.heartbeat_timeout_seconds)
            start = _starter(
                GuildSync.run, child_input, child_id, f"Guild {child_id}", inp.region, "guild"
            )
            await self._submit(start, self._count_guild)
        await self._window.drain()
        if shape is not None:
            self._window.reshape(*shape)

    async def _sync_character_page(self, inp: BattleNetSyncInput, wid: str) -> bool:
        assert inp.cutoff is not None
        page = await workflow.execute_activity_method(
            BattleNetActivities.bnet_select_characters,
            SelectCharactersInput(
                inp.region, inp.cutoff, inp.page_size, inp.after_synced, inp.after_id
            ),
            **db_call(),
        )
        if not page.ids:
            return False
        inp.pages += 1
        inp.after_synced, inp.after_id = page.last_synced, page.last_id
        workflow.set_current_details(
            f"character page {inp.pages}: {len(page.ids)} characters; "
            f"{inp.counts.characters} synced so far"
        )
        for n, offset in enumerate(range(0, len(page.ids), inp.batch_size)):
            ids = page.ids[offset : offset + inp.batch_size]
            child_id = f"{wid}/characters/{inp.pages}-{n}"
            child_input = CharacterBatchInput(
                child_id, ids, inp.priority, 0, inp.heartbeat_timeout_seconds, inp.cutoff
            )
            summary = f"{len(ids)} characters (page {inp.pages}, batch {n})"
            start = _starter(
                CharacterBatchSync.run, child_input, child_id, summary, inp.region, "characters"
            )
            await self._submit(start, self._count_batch)
        return True

    async def _submit(
        self, start: Callable[[], Awaitable[Any]], count: Callable[[Any], None]
    ) -> None:
        """Start a child in the window; its result is counted when it ends. A child that
        another run is syncing right now is skipped (WorkflowAlreadyStarted)."""
        assert self._window is not None

        async def finish(handle: Any) -> None:
            try:
                count(await handle)
            except ChildWorkflowError as err:
                assert self._state is not None
                self._state.counts.children_failed += 1
                if cause_type(err) == "AuthFailed":
                    self._fatal = cause_message(err)
                    if self._window is not None:
                        self._window.close()
                workflow.logger.warning("child failed: %s", cause_message(err))

        await self._window.submit(
            start, finish, refused=lambda e: isinstance(e, WorkflowAlreadyStartedError)
        )

    def _count_guild(self, result: GuildSyncResult) -> None:
        assert self._state is not None
        counts = self._state.counts
        if result.status == "not_found":
            counts.guilds_not_found += 1
        else:
            counts.guilds += 1
        counts.members += result.members
        counts.discovered += result.discovered
        counts.left += result.left
        counts.requests += result.requests
        counts.rejected += result.rejected

    def _count_batch(self, result: CharacterBatchResult) -> None:
        assert self._state is not None
        state = self._state
        counts = state.counts
        counts.characters += result.synced + result.not_modified + result.recovered
        counts.characters_not_modified += result.not_modified
        counts.characters_not_found += result.not_found
        counts.failed += result.failed
        counts.requests += result.requests
        counts.deferred += result.deferred
        if result.retry_at is not None:
            state.retry_at = max(state.retry_at or result.retry_at, result.retry_at)


def _starter(
    run: Any, arg: Any, child_id: str, summary: str, region: str, kind: str
) -> Callable[[], Awaitable[Any]]:
    def start() -> Awaitable[Any]:
        return workflow.start_child_workflow(
            run,
            arg,
            id=child_id,
            static_summary=summary,
            parent_close_policy=workflow.ParentClosePolicy.TERMINATE,
            search_attributes=search_attributes("battlenet", region, kind),
        )

    return start


class BattleNetPlan:
    """Scope = region. Kinds: `sync` (outdated, incremental), `full` (everything, bulk),
    `pvp` (leaderboards of the current season, bulk), `character` / `guild` (one entity,
    key `realm/name`: manual adds).

    A key splits one way only: the realm is a slug (letters, digits, `-`, `'`) and the name has
    no `/`, so `realm/with` + `slash` is refused rather than read as realm `realm`."""

    REGIONS = ("us", "eu", "kr", "tw", "cn")
    SCOPE_KINDS = ("sync", "full", "pvp")
    ENTITY_KINDS = ("character", "guild")
    MAX_PART = 64  # realm slug, entity name (WoW names are far shorter)

    def default_priority(self, kind: str) -> int:
        return BATTLENET.priority(kind)

    def check(self, scope: str, request: SyncRequest) -> None:
        if scope not in self.REGIONS:
            raise ValueError(
                f"battlenet scope {scope[:20]!r} is no region ({', '.join(self.REGIONS)})"
            )
        if request.kind in self.SCOPE_KINDS:
            if request.key:
                raise ValueError(f"a battlenet {request.kind} request has no key")
            return
        if request.kind not in self.ENTITY_KINDS:
            known = ", ".join(self.SCOPE_KINDS + self.ENTITY_KINDS)
            raise ValueError(f"battlenet has no sync kind {request.kind[:40]!r} ({known})")
        self.split_key(request.kind, request.key)

    @classmethod
    def split_key(cls, kind: str, key: str) -> tuple[str, str]:
        """``realm-slug/Name`` → (realm, name); ValueError (one line) unless unambiguous."""
        realm, slash, name = key.partition("/")
        if not slash or not realm or not name.strip():
            raise ValueError(f"a {kind} key is 'realm-slug/name', not {key[:60]!r}")
        if "/" in name:
            raise ValueError(
                f"a {kind} key has one '/': realm slug and name carry none ({key[:60]!r})"
            )
        if len(realm) > cls.MAX_PART or not all(c.isalnum() or c in "-'" for c in realm):
            raise ValueError(f"realm slug {realm[:40]!r} is letters, digits, '-' and \"'\" only")
        if len(name) > cls.MAX_PART or not name.isprintable() or set(name) <= {"."}:
            raise ValueError(f"a {kind} name is at most {cls.MAX_PART} printable characters")
        return realm, name

    def child(
        self, provider: str, scope: str, request: SyncRequest, seq: int, now: datetime
    ) -> ChildPlan:
        if request.kind in ("sync", "full"):
            full = request.kind == "full"
            stamp = now.strftime("%Y%m%dT%H%M%SZ")
            # (a validator or query may plan too, only to check: it may not patch, nor need to)
            one = (
                workflow.in_workflow()
                and not workflow.unsafe.is_read_only()
                and workflow.patched(ONE_SYNC_PER_REGION)
            )
            return ChildPlan(
                workflow="BattleNetSync",
                id=region_sync_id(scope)
                if one
                else f"battlenet-sync/{scope}/{stamp}-{request.request_id}",
                summary=f"Battle.net {'full' if full else 'outdated'} sync of {scope}",
                build_arg=lambda report_to: BattleNetSyncInput(
                    region=scope, full=full, priority=request.priority, report_to=report_to
                ),
            )
        if request.kind == "pvp":
            return ChildPlan(
                workflow="PvpSync",
                id=f"pvp-sync/{scope}/{now.strftime('%Y%m%dT%H%M%SZ')}-{request.request_id}",
                summary=f"PvP leaderboards of {scope}",
                build_arg=lambda report_to: PvpSyncInput(
                    region=scope, priority=request.priority, report_to=report_to
                ),
            )
        if request.kind in ("character", "guild"):
            realm, name = self.split_key(request.kind, request.key)
            return ChildPlan(
                workflow="BattleNetEntitySync",
                id=f"{request.kind}/{scope}/{realm}/{name.lower()}/{request.request_id}",
                summary=f"{request.kind} {scope}/{realm}/{name} ({request.reason or 'manual'})",
                build_arg=lambda report_to: EntitySyncInput(
                    region=scope,
                    kind=request.kind,
                    realm=realm,
                    name=name,
                    priority=request.priority,
                    report_to=report_to,
                ),
            )
        raise ValueError(f"battlenet has no sync kind {request.kind[:40]!r}")


WORKFLOWS = [BattleNetSync, GuildSync, CharacterBatchSync, BattleNetEntitySync]
