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
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from activities.pvp import (
        PvpActivities,
        PvpBracketOutcome,
        PvpEquipmentStep,
        PvpSyncOutcome,
        add_counts,
    )
    from activities.types import (
        PvpBracketInput,
        PvpEquipmentInput,
        PvpImportResult,
        PvpRangesInput,
        PvpSyncInput,
    )
    from workflows import kernel
    from workflows.visibility import reporting, search_attributes

HEARTBEAT = kernel.heartbeat(kernel.HEARTBEAT_SECONDS)
RESOLVE_TIMEOUT = timedelta(minutes=1)
IMPORT_TIMEOUT = timedelta(minutes=5)
EQUIPMENT_TIMEOUT = timedelta(minutes=10)
PROVIDER_DEADLINE = timedelta(hours=1)  # schedule-to-close of resolve and import


@workflow.defn
class PvpBracketSync:
    """Import one leaderboard snapshot, then process its entries' equipment in batches."""

    @workflow.run
    async def run(self, inp: PvpBracketInput) -> PvpBracketOutcome:
        result = PvpBracketOutcome(bracket=inp.bracket)
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
            workflow.set_current_details(f"{inp.bracket}: not modified")
            return result
        ranges = await workflow.execute_activity_method(
            PvpActivities.pvp_equipment_ranges,
            PvpRangesInput(imported.leaderboard_id, imported.snapshot_at, inp.equipment_batch_size),
            task_queue=inp.sync_queue,
            **kernel.db_call(),
        )
        detail = f"{inp.bracket}: {imported.entries} entries, equipment in {len(ranges)} batches"
        workflow.set_current_details(detail)
        await asyncio.gather(
            *(self._equipment(inp, imported, lo, hi, result, detail) for lo, hi in ranges)
        )
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


@workflow.defn
class PvpSync:
    """Master: one region and season (current by default), one child per bracket."""

    @workflow.run
    async def run(self, inp: PvpSyncInput) -> PvpSyncOutcome:
        return await reporting(
            inp.report_to,
            self._run(inp),
            lambda r: "partial" if r.failed_brackets else "completed",
        )

    async def _run(self, inp: PvpSyncInput) -> PvpSyncOutcome:
        plan = await workflow.execute_activity_method(
            PvpActivities.pvp_resolve,
            inp,
            task_queue=inp.sync_queue,
            start_to_close_timeout=RESOLVE_TIMEOUT,
            schedule_to_close_timeout=PROVIDER_DEADLINE,
            heartbeat_timeout=HEARTBEAT,
            retry_policy=kernel.CHECKPOINTED,
        )
        result = PvpSyncOutcome(season=plan.season)
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
