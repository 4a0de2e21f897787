"""ZwiftRacing activities: one step of a club's sync, straight from the answer to Postgres.

``zwift_step`` makes at most one call per endpoint family it needs — a club page or a bulk POST
(riders), an event and its signup list (urgent, near, far), an event's results (results), one
rider (a manual add) — stores what came back in one statement each, and returns the workflow's
checkpoint, counts and, when a budget is spent for longer than ``max_wait_seconds``, the time
to sleep until (the workflow sleeps on a durable timer; no worker slot is held and no attempt is
spent). A 429 pauses the family for every process (the shared budget) and is a budget wait too.

Which events a pass reads is decided in Postgres from how soon they start and when they were
last read (``storage.zwift.events_due``), so a pass cut short by a crash or a budget wait goes on
where it stopped and never reads an event twice. Every call's outcome goes to
``zwift_sync_log`` (endpoint family, status, seconds waited for the budget, priority).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.clock import server_after, server_time
from activities.errors import activity_errors
from activities.heartbeat import heartbeating
from activities.runs import close_run, open_run
from activities.types import FinishRunInput, StartRunInput
from activities.zwift_types import ZwiftStep, ZwiftStepInput
from providers.errors import AuthFailed, BudgetExhausted, NotFound, RateLimited
from providers.zwift import PAGE_SIZE, CallRecord, ZwiftClient, check_id, recording_calls
from storage import sync as syncdb
from storage import zwift as db

PROVIDER = "zwift"
EVENT_PASSES = ("urgent", "near", "far")
KINDS = (*EVENT_PASSES, "riders", "results", "rider")
RECHECK = timedelta(hours=24)  # a 404 event is looked at again after a day (if re-tracked)


class ZwiftActivities:
    def __init__(
        self,
        engine: AsyncEngine,
        client: Callable[[], ZwiftClient],
        *,
        urgent_seconds: float,
        near_seconds: float,
        fresh_seconds: dict[str, float],
        far_per_run: int,
    ) -> None:
        self.engine = engine
        self._client = client
        self.urgent_seconds = urgent_seconds
        self.near_seconds = near_seconds
        self.fresh_seconds = fresh_seconds  # kind → a read older than this is due again
        self.far_per_run = far_per_run

    @property
    def client(self) -> ZwiftClient:
        try:
            return self._client()
        except AuthFailed as exc:
            raise ApplicationError(str(exc), type="AuthFailed", non_retryable=True) from None

    def all(self) -> list[Any]:
        return [self.zwift_step, self.zwift_start_run, self.zwift_finish_run]

    # -- the run's sync_runs row (as every provider's sync has one) --------------------------

    @activity.defn
    async def zwift_start_run(self, inp: StartRunInput) -> int:
        with activity_errors("zwift start run"):
            return await open_run(self.engine, inp)

    @activity.defn
    async def zwift_finish_run(self, inp: FinishRunInput) -> None:
        with activity_errors("zwift finish run"):
            await close_run(self.engine, inp)

    @activity.defn
    async def zwift_step(self, inp: ZwiftStepInput) -> ZwiftStep:
        """One step of a ``kind`` sync of club ``club_id`` (see the module)."""
        club = check_club(inp.club_id)
        step = ZwiftStep(
            checkpoint=replace(inp.checkpoint), failed_attempts=activity.info().attempt - 1
        )
        what = f"zwift: club {club} {inp.kind}" + (f" {inp.key}" if inp.key else "")
        with activity_errors(what), heartbeating(lambda: None), recording_calls() as calls:
            try:
                if inp.kind == "riders":
                    await self._riders(inp, club, step)
                elif inp.kind in EVENT_PASSES:
                    await self._event_pass(inp, club, step)
                elif inp.kind == "results":
                    await self._results(inp, club, step)
                elif inp.kind == "rider":
                    await self._rider(inp, club, step)
                else:
                    raise ApplicationError(
                        f"zwift has no sync kind {inp.kind[:40]!r} (one of {', '.join(KINDS)})",
                        type="BadInput",
                        non_retryable=True,
                    )
            except BudgetExhausted as exc:
                step.resume_at = server_time(exc.resume_at)
            except RateLimited as exc:
                step.rate_limited += 1
                step.resume_at = server_after(max(exc.retry_after, 0.001))
            finally:
                step.calls = len(calls)
                await self._log(calls, inp, club)
        if step.progressed:
            activity.logger.info(
                "zwift step stored",
                extra={"club": club, "kind": inp.kind, "phase": step.checkpoint.phase,
                       "stored": step.stored},
            )  # fmt: skip
        return step

    # -- riders: the club's pages, then the bulk refresh -------------------------------------

    async def _riders(self, inp: ZwiftStepInput, club: int, step: ZwiftStep) -> None:
        cp = step.checkpoint
        client = self.client
        if cp.phase == "":
            page = await client.club_page(
                club, cp.cursor, priority=inp.priority, max_wait=inp.max_wait_seconds
            )
            async with self.engine.begin() as conn:
                if cp.started_at is None:
                    cp.started_at = await db.db_now(conn)  # this transaction's, as listed_at
                await db.store_club_page(conn, club, page.raw)
                following = page.next_cursor
                if following is None or following <= cp.seen_up_to:
                    await db.finish_club_pass(conn, club, cp.started_at)
                    cp.phase = "bulk"
            step.progressed = True
            step.stored = len([i for i in page.rider_ids if i > cp.seen_up_to])
            if cp.phase == "" and following is not None:
                cp.seen_up_to = cp.cursor = following
            return
        async with self.engine.connect() as conn:
            ids = await db.bulk_rider_ids(conn, club, cp.after, PAGE_SIZE)
        if not ids:
            step.done = True
            return
        answer = await client.riders(ids, priority=inp.priority, max_wait=inp.max_wait_seconds)
        async with self.engine.begin() as conn:
            stored = await db.store_riders(conn, answer.raw)
        cp.after = ids[-1]
        step.progressed, step.stored = True, stored.riders
        step.done = len(ids) < PAGE_SIZE

    # -- events: urgent, near, far -------------------------------------------------------------

    async def _event_pass(self, inp: ZwiftStepInput, club: int, step: ZwiftStep) -> None:
        cp = step.checkpoint
        async with self.engine.connect() as conn:
            due, total = await self._due(conn, club, inp.kind)
        if not due:
            step.done = True
            return
        if inp.kind == "far" and cp.events >= self.far_per_run:
            step.done = step.more = True  # a slice per run: nearer events go in between
            step.left = total
            return
        event = due[0]
        client = self.client
        wait = inp.max_wait_seconds
        if event.needs_event:
            try:
                answer = await client.event(event.event_id, priority=inp.priority, max_wait=wait)
            except NotFound as exc:
                async with self.engine.begin() as conn:
                    await db.untrack_event(conn, event.event_id)
                    await syncdb.record_failure(
                        conn, PROVIDER, f"event/{event.event_id}", "not_found", str(exc),
                        server_after(RECHECK.total_seconds()),
                    )  # fmt: skip
                step.progressed, step.left = True, total - 1
                step.detail = f"event {event.event_id} not found: no longer tracked"
                return
            async with self.engine.begin() as conn:
                await db.store_event(conn, answer.raw)
            step.progressed = True
        if event.needs_signups:
            try:
                signups = await client.event_signups(
                    event.event_id, priority=inp.priority, max_wait=wait
                )
            except NotFound:
                async with self.engine.begin() as conn:
                    await db.signups_missing(conn, event.event_id)
            else:
                async with self.engine.begin() as conn:
                    await db.store_signups(conn, event.event_id, signups.raw)
            step.progressed = True
        cp.events += 1
        step.stored += 1
        step.left = total - 1

    async def _due(self, conn: Any, club: int, kind: str) -> tuple[list[db.EventDue], int]:
        return await db.events_due(
            conn, club, kind, fresh_seconds=self.fresh_seconds[kind],
            urgent_seconds=self.urgent_seconds, near_seconds=self.near_seconds,
        )  # fmt: skip

    # -- results -------------------------------------------------------------------------------

    async def _results(self, inp: ZwiftStepInput, club: int, step: ZwiftStep) -> None:
        async with self.engine.connect() as conn:
            due, total = await self._due(conn, club, "results")
        if not due:
            step.done = True
            return
        event_id = due[0].event_id
        try:
            answer = await self.client.results(
                event_id, priority=inp.priority, max_wait=inp.max_wait_seconds
            )
        except NotFound:  # not finished yet: asked again on a later pass
            async with self.engine.begin() as conn:
                await db.results_not_ready(conn, event_id)
        else:
            async with self.engine.begin() as conn:
                await db.store_results(conn, event_id, answer.raw)
            step.stored += 1
        step.progressed, step.left = True, total - 1

    # -- a manual rider add ----------------------------------------------------------------------

    async def _rider(self, inp: ZwiftStepInput, club: int, step: ZwiftStep) -> None:
        try:
            rider_id = check_id(int(inp.key), "rider id")
        except (ValueError, TypeError):
            raise ApplicationError(
                f"zwift: {inp.key[:40]!r} is no rider id (a positive number)",
                type="BadInput",
                non_retryable=True,
            ) from None
        try:
            answer = await self.client.rider(
                rider_id, priority=inp.priority, max_wait=inp.max_wait_seconds
            )
        except NotFound:
            raise ApplicationError(
                f"zwift: rider {rider_id} not found on ZwiftRacing; check the id",
                type="NotFound",
                non_retryable=True,
            ) from None
        async with self.engine.begin() as conn:
            await db.store_rider(conn, answer.raw, tracked=True, for_club=club)
        step.progressed = step.done = True
        step.stored = 1

    # -- the sync log ------------------------------------------------------------------------

    async def _log(self, calls: list[CallRecord], inp: ZwiftStepInput, club: int) -> None:
        if not calls:
            return
        rows = [
            db.CallLog(
                endpoint=c.family,
                status=c.status,
                waited=c.waited,
                priority=c.priority,
                club_id=club,
                kind=inp.kind,
                entity=c.entity[:200],
            )
            for c in calls
        ]
        try:
            async with self.engine.begin() as conn:
                await db.log_calls(conn, rows)
        except Exception as exc:  # the log is bookkeeping: a lost row must not fail the step
            activity.logger.warning("zwift sync log not written: %s", type(exc).__name__)


def check_club(value: Any) -> int:
    try:
        return check_id(value, "club id")
    except Exception:
        raise ApplicationError(
            f"zwift: {str(value)[:40]!r} is no club id (a positive number)",
            type="BadInput",
            non_retryable=True,
        ) from None
