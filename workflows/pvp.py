"""PvP workflows: `PvpSync` (one region + season) → one `PvpBracketSync` per bracket.

Leaderboard imports run on the `pvp-sync` task queue and equipment batches on `pvp-processing`;
the worker's concurrency on each queue comes from PVP_SYNC_THREADS / PVP_PROCESSING_THREADS,
and both queues share the one Battle.net rate budget of the worker.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from activities.pvp import PvpActivities
    from activities.types import (
        PvpBracketInput,
        PvpBracketResult,
        PvpEquipmentInput,
        PvpEquipmentResult,
        PvpRangesInput,
        PvpSyncInput,
        PvpSyncResult,
    )
    from workflows.visibility import reporting, search_attributes

# The brief: client errors retried with exponential backoff, 3 attempts; 404s are discarded by
# the activity itself; non-retryable failures are marked so by the activity.
PVP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_attempts=3
)


@workflow.defn
class PvpBracketSync:
    """Import one leaderboard snapshot, then process its entries' equipment in batches."""

    @workflow.run
    async def run(self, inp: PvpBracketInput) -> PvpBracketResult:
        result = PvpBracketResult(bracket=inp.bracket)
        workflow.set_current_details(f"importing {inp.bracket}")
        imported = await workflow.execute_activity_method(
            PvpActivities.pvp_import_leaderboard,
            inp,
            task_queue=inp.sync_queue,
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=PVP_RETRY,
        )
        result.import_result = imported
        if imported.not_modified or imported.snapshot_at is None:
            workflow.set_current_details(f"{inp.bracket}: not modified")
            return result
        ranges = await workflow.execute_activity_method(
            PvpActivities.pvp_equipment_ranges,
            PvpRangesInput(imported.leaderboard_id, imported.snapshot_at, inp.equipment_batch_size),
            task_queue=inp.sync_queue,
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=PVP_RETRY,
        )
        workflow.set_current_details(
            f"{inp.bracket}: {imported.entries} entries, equipment in {len(ranges)} batches"
        )
        batches = [
            workflow.execute_activity_method(
                PvpActivities.pvp_process_equipment,
                PvpEquipmentInput(
                    imported.leaderboard_id, imported.snapshot_at, lo, hi, inp.priority
                ),
                task_queue=inp.processing_queue,
                start_to_close_timeout=timedelta(minutes=10),
                retry_policy=PVP_RETRY,
            )
            for lo, hi in ranges
        ]
        for done in await asyncio.gather(*batches):
            _add(result.equipment, done)
        workflow.set_current_details(
            f"{inp.bracket}: {imported.entries} entries; equipment {result.equipment}"
        )
        return result


def _add(total: PvpEquipmentResult, step: PvpEquipmentResult) -> None:
    total.processed += step.processed
    total.private_skipped += step.private_skipped
    total.fetched += step.fetched
    total.reused += step.reused
    total.not_found += step.not_found


@workflow.defn
class PvpSync:
    """Master: one region and season (current by default), one child per bracket."""

    @workflow.run
    async def run(self, inp: PvpSyncInput) -> PvpSyncResult:
        return await reporting(
            inp.report_to,
            self._run(inp),
            lambda r: "partial" if r.failed_brackets else "completed",
        )

    async def _run(self, inp: PvpSyncInput) -> PvpSyncResult:
        plan = await workflow.execute_activity_method(
            PvpActivities.pvp_resolve,
            inp,
            task_queue=inp.sync_queue,
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=PVP_RETRY,
        )
        result = PvpSyncResult(season=plan.season)
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
                        id=f"pvp/{inp.region}/{plan.season}/{name}",
                        static_summary=f"PvP {name} leaderboard, season {plan.season}",
                        search_attributes=search_attributes("battlenet", inp.region, "pvp"),
                    )
                )
            except ChildWorkflowError as err:
                workflow.logger.warning("bracket %s failed: %s", name, err.cause)
                result.failed_brackets.append(name)

        await asyncio.gather(*(bracket(b) for b in plan.brackets))
        result.brackets.sort(key=lambda r: r.bracket)
        return result


WORKFLOWS = [PvpSync, PvpBracketSync]
