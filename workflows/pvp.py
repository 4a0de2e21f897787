"""PvP workflows: `PvpSync` (one region + season) → one `PvpBracketSync` per bracket.

Leaderboard imports run on the `pvp-sync` task queue and equipment batches on `pvp-processing`;
the worker's concurrency on each queue comes from PVP_SYNC_THREADS / PVP_PROCESSING_THREADS,
and both queues share the one Battle.net rate budget of the worker.

Retries follow the kernel's contract: no attempt limit, backoff capped at 60 s, bounded by each
activity's schedule-to-close; each equipment batch is called until none of its entries is left
(`run_until_done`), sleeping on a durable timer whenever the rate budget is spent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from activities.battlenet import BattleNetActivities
    from activities.pvp import (
        PvpActivities,
        PvpBracketOutcome,
        PvpEquipmentStep,
        PvpSyncOutcome,
        add_counts,
    )
    from activities.types import (
        FinishRunInput,
        PvpBracketInput,
        PvpEquipmentInput,
        PvpImportResult,
        PvpRangesInput,
        PvpSyncInput,
        StartRunInput,
    )
    from workflows import kernel
    from workflows.visibility import reporting, search_attributes

HEARTBEAT = kernel.heartbeat(kernel.HEARTBEAT_SECONDS)
RESOLVE_TIMEOUT = timedelta(minutes=1)
IMPORT_TIMEOUT = timedelta(minutes=5)
EQUIPMENT_TIMEOUT = timedelta(minutes=10)
PROVIDER_DEADLINE = timedelta(hours=1)  # schedule-to-close of resolve and import
SYNC_RUNS = "pvp-sync-runs"  # a PvP run has a sync_runs row, as every provider's run has


@workflow.defn
class PvpBracketSync:
    """Import one leaderboard snapshot, then process its entries' equipment in batches."""

    def __init__(self) -> None:
        # what the `progress` query reads; set as the run goes, never read by the run itself
        self._phase = "starting"
        self._result: PvpBracketOutcome | None = None
        self._batches = self._batches_done = 0

    @workflow.query
    def progress(self) -> dict[str, Any]:
        """Where this bracket is, for a live `--wait` (the CLI asks every few seconds):
        entries imported, equipment batches done, and the equipment counts so far (requests
        and budget waits included: the rate a user sees is made of them)."""
        result = self._result
        return {
            "phase": self._phase,
            "entries": 0 if result is None else result.import_result.entries,
            "batches": self._batches,
            "batches_done": self._batches_done,
            "equipment": {} if result is None else asdict(result.equipment),
        }

    @workflow.run
    async def run(self, inp: PvpBracketInput) -> PvpBracketOutcome:
        result = self._result = PvpBracketOutcome(bracket=inp.bracket)
        self._phase = "importing"
        workflow.set_current_details(f"importing {inp.bracket}")
        imported = await workflow.execute_activity_method(
            PvpActivities.pvp_import_leaderboard,
            inp,
            task_queue=inp.sync_queue,
            start_to_close_timeout=IMPORT_TIMEOUT,
            schedule_to_close_timeout=PROVIDER_DEADLINE,
            heartbeat_timeout=HEARTBEAT,
            retry_policy=kernel.CHECKPOINTED,
        )
        result.import_result = imported
        if imported.not_modified or imported.snapshot_at is None:
            self._phase = "not modified"
            workflow.set_current_details(f"{inp.bracket}: not modified")
            return result
        ranges = await workflow.execute_activity_method(
            PvpActivities.pvp_equipment_ranges,
            PvpRangesInput(imported.leaderboard_id, imported.snapshot_at, inp.equipment_batch_size),
            task_queue=inp.sync_queue,
            **kernel.db_call(),
        )
        detail = f"{inp.bracket}: {imported.entries} entries, equipment in {len(ranges)} batches"
        self._phase, self._batches = "equipment", len(ranges)
        workflow.set_current_details(detail)
        await asyncio.gather(
            *(self._equipment(inp, imported, lo, hi, result, detail) for lo, hi in ranges)
        )
        self._phase = "done"
        workflow.set_current_details(
            f"{inp.bracket}: {imported.entries} entries; equipment {result.equipment}"
        )
        return result

    async def _equipment(
        self,
        inp: PvpBracketInput,
        imported: PvpImportResult,
        lo: int,
        hi: int,
        result: PvpBracketOutcome,
        detail: str,
    ) -> None:
        """One batch, called until none of its entries is left."""
        assert imported.snapshot_at is not None
        batch = PvpEquipmentInput(
            imported.leaderboard_id, imported.snapshot_at, lo, hi, inp.priority
        )

        def call(retry: RetryPolicy) -> Awaitable[PvpEquipmentStep]:
            return workflow.execute_activity_method(
                PvpActivities.pvp_process_equipment,
                batch,
                task_queue=inp.processing_queue,
                start_to_close_timeout=EQUIPMENT_TIMEOUT,
                schedule_to_close_timeout=kernel.WORK_DEADLINE,
                heartbeat_timeout=HEARTBEAT,
                retry_policy=retry,
            )

        def waiting(until: datetime) -> None:
            workflow.set_current_details(
                f"{detail}; rate budget spent, batch {lo}-{hi} waits until {until:%H:%M:%S} UTC"
            )

        await kernel.run_until_done(
            call,
            kernel.Attempts(),
            on_step=lambda step: add_counts(result.equipment, step),
            waiting=waiting,
            min_sleep=timedelta(seconds=1),
        )
        self._batches_done += 1


@workflow.defn
class PvpSync:
    """Master: one region and season (current by default), one child per bracket."""

    def __init__(self) -> None:
        self._season: int | None = None  # None until the season and brackets are resolved
        self._children: dict[str, str] = {}  # bracket -> its PvpBracketSync's workflow id
        self._result: PvpSyncOutcome | None = None

    @workflow.query
    def progress(self) -> dict[str, Any]:
        """The season, its brackets with each one's child id (query those for their own
        progress), and which brackets have ended or failed."""
        result = self._result
        return {
            "season": self._season,
            "brackets": dict(self._children),
            "finished": [] if result is None else [b.bracket for b in result.brackets],
            "failed": [] if result is None else list(result.failed_brackets),
        }

    @workflow.run
    async def run(self, inp: PvpSyncInput) -> PvpSyncOutcome:
        return await reporting(
            inp.report_to,
            self._run(inp),
            lambda r: "partial" if r.failed_brackets else "completed",
        )

    async def _run(self, inp: PvpSyncInput) -> PvpSyncOutcome:
        """The run, recorded in sync_runs (from before it resolves the season, so that a
        refused season or bracket is a failed run with its reason in `status`)."""
        if not workflow.patched(SYNC_RUNS):
            return await self._sync(inp)
        wid = workflow.info().workflow_id
        run_id = await workflow.execute_activity_method(
            BattleNetActivities.bnet_start_run,
            StartRunInput("battlenet", inp.region, "pvp", wid),
            **kernel.db_call(),
        )
        try:
            result = await self._sync(inp)
        except Exception as err:
            await self._finish(run_id, "failed", None, kernel.cause_message(err)[:500])
            raise
        await self._finish(run_id, "partial" if result.failed_brackets else "completed", result)
        return result

    async def _finish(
        self, run_id: int, status: str, result: PvpSyncOutcome | None, error: str | None = None
    ) -> None:
        counts: dict[str, int] = {}
        if result is not None:
            counts = {
                "season": result.season,
                "brackets": len(result.brackets),
                "failed_brackets": len(result.failed_brackets),
                "entries": sum(b.import_result.entries for b in result.brackets),
                "rejected": sum(b.import_result.rejected for b in result.brackets),
                "equipment_processed": sum(b.equipment.processed for b in result.brackets),
            }
        errors = counts.get("failed_brackets", 0) + (error is not None)
        await workflow.execute_activity_method(
            BattleNetActivities.bnet_finish_run,
            FinishRunInput(run_id, status, counts, errors, error),
            **kernel.db_call(),
        )

    async def _sync(self, inp: PvpSyncInput) -> PvpSyncOutcome:
        plan = await workflow.execute_activity_method(
            PvpActivities.pvp_resolve,
            inp,
            task_queue=inp.sync_queue,
            start_to_close_timeout=RESOLVE_TIMEOUT,
            schedule_to_close_timeout=PROVIDER_DEADLINE,
            heartbeat_timeout=HEARTBEAT,
            retry_policy=kernel.CHECKPOINTED,
        )
        result = self._result = PvpSyncOutcome(season=plan.season)
        self._season = plan.season
        self._children = {b: f"pvp/{inp.region}/{plan.season}/{b}" for b in plan.brackets}
        workflow.set_current_details(f"season {plan.season}: {', '.join(plan.brackets)}")

        async def bracket(name: str) -> None:
            child = PvpBracketInput(
                inp.region, plan.season, name, inp.priority, inp.equipment_batch_size,
                inp.sync_queue, inp.processing_queue,
            )  # fmt: skip
            try:
                result.brackets.append(
                    await workflow.execute_child_workflow(
                        PvpBracketSync.run,
                        child,
                        id=self._children[name],
                        static_summary=f"PvP {name} leaderboard, season {plan.season}",
                        search_attributes=search_attributes("battlenet", inp.region, "pvp"),
                    )
                )
            except ChildWorkflowError as err:
                workflow.logger.warning(
                    "bracket %s failed: %s: %s",
                    name,
                    kernel.cause_type(err),
                    kernel.cause_message(err),
                )
                result.failed_brackets.append(name)

        await asyncio.gather(*(bracket(b) for b in plan.brackets))
        result.brackets.sort(key=lambda r: r.bracket)
        return result


WORKFLOWS = [PvpSync, PvpBracketSync]
