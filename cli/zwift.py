"""ZwiftRacing on the command line: `track club`, `track event`, `add rider`, `sync zwift`,
`status --club` (the scope is a club: a ZwiftRacing club id, `--club`).

The public API lists no events and knows riders outside any club, so an event or a rider
added by hand belongs to a club's scheduler: `--club`, or the one club tracked when only one is.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from activities.zwift_types import ZwiftSyncInput, ZwiftSyncResult
from cli import CliError
from cli.budget_view import budget, window_text
from cli.commands import AddCommand, ProviderCommands, Scope, ScopeView, SyncCommand, TrackCommand
from cli.launch import Launch, Outcome
from providers.zwift.parse import id_of
from providers.zwift.spec import SPEC
from settings import Settings
from storage import zwift as db
from storage.status import rate_budgets
from workflows.visibility import search_attributes
from workflows.zwift import RESOURCES, sync_id

PROVIDER = "zwift"
SCOPE_KINDS = [k.name for k in SPEC.kinds if not k.entity]


def zwift_id(value: str) -> int:
    """argparse type of a club, rider or event id (a typo is exit 2 with this line)."""
    number = id_of(value.strip())
    if number is None:
        raise argparse.ArgumentTypeError(f"{value!r} is not a ZwiftRacing id (a positive number)")
    return number


async def tracked_club(conn: AsyncConnection, club: str) -> None:
    if int(club) not in await db.tracked_clubs(conn):
        raise CliError(
            f"club {club} is not tracked; run `python starter.py track club {club}` first"
        )


async def the_one_club(conn: AsyncConnection) -> str:
    """The scope of `track event` / `add rider` without --club: the one tracked club."""
    clubs = await db.tracked_clubs(conn)
    if len(clubs) == 1:
        return str(clubs[0])
    if not clubs:
        raise CliError("no club is tracked: run `python starter.py track club <id>` first")
    shown = ", ".join(str(c) for c in clubs[:5]) + (" …" if len(clubs) > 5 else "")
    raise CliError(f"{len(clubs)} clubs are tracked ({shown}): say which with --club <id>")


# --- track club / track event ---------------------------------------------------------------


async def _track_club(conn: AsyncConnection, club: str, args: argparse.Namespace) -> int:
    await db.track_club(conn, int(club))
    return int(club)


async def _track_event(conn: AsyncConnection, club: str, args: argparse.Namespace) -> int:
    await tracked_club(conn, club)
    await db.track_event(conn, args.event_id, int(club))
    return int(args.event_id)


def _event_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("event_id", type=zwift_id, metavar="EVENT_ID", help="the event's id")


# --- add rider --------------------------------------------------------------------------------


def _rider_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rider_id", type=zwift_id, metavar="RIDER_ID", help="the rider's id")


# --- sync zwift -------------------------------------------------------------------------------


def _sync_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kind", required=True, choices=SCOPE_KINDS, help="which part of the club to sync"
    )


def _sync_launch(args: argparse.Namespace, settings: Settings, club: str) -> Launch:
    kind = args.kind
    workflow_id = sync_id(club, kind)
    return Launch(
        workflow="ZwiftSync",
        arg=ZwiftSyncInput(club_id=int(club), kind=kind, priority=SPEC.priority(kind)),
        id=workflow_id,
        summary=f"ZwiftRacing club {club}: {kind} (one-off)",
        search_attributes=search_attributes(PROVIDER, club, kind),
        result_type=ZwiftSyncResult,
        already_running=f"a {kind} sync of club {club} is already running ({workflow_id}); "
        f"watch it with `python starter.py status --club {club} --watch`",
        finished=_sync_finished,
    )


def _sync_finished(workflow_id: str, result: ZwiftSyncResult) -> Outcome:
    data = asdict(result)
    head = (
        f"club {result.club_id} {result.kind}: {result.status} — {result.stored} stored in "
        f"{result.calls} calls, {result.rate_limited} rate-limited, "
        f"{result.budget_waits} budget waits"
    )
    if result.detail:
        head += f"; {result.detail}"
    return Outcome(
        result.status in ("completed", "more"), head, {"workflow_id": workflow_id, **data}
    )


# --- status --club ----------------------------------------------------------------------------

_LOG_HOUR = text(
    """
SELECT endpoint, count(*) AS calls, count(*) FILTER (WHERE status = 429) AS rate_limited,
       coalesce(avg(waited), 0) AS avg_wait, coalesce(max(waited), 0) AS max_wait,
       max(at) AS last_at
FROM zwift_sync_log WHERE club_id = :club AND at > now() - interval '1 hour'
GROUP BY endpoint ORDER BY endpoint
"""
)
_LAST_ANY = text(
    "SELECT endpoint, max(at) AS last_at FROM zwift_sync_log "
    "WHERE at > now() - interval '1 day' GROUP BY endpoint"
)
_COUNTS = text(
    """
SELECT (SELECT name FROM zwift_clubs WHERE club_id = :club) AS name,
       (SELECT member_count FROM zwift_clubs WHERE club_id = :club) AS members,
       (SELECT last_synced_at FROM zwift_clubs WHERE club_id = :club) AS listed_at,
       (SELECT count(*) FROM zwift_riders WHERE club_id = :club OR added_for_club = :club)
           AS riders,
       (SELECT count(*) FROM zwift_events WHERE club_id = :club AND tracked) AS events,
       (SELECT count(*) FROM zwift_events WHERE club_id = :club AND tracked
            AND starts_at > now()) AS upcoming,
       (SELECT count(*) FROM zwift_event_signups s JOIN zwift_events e USING (event_id)
            WHERE e.club_id = :club) AS signups,
       (SELECT count(*) FROM zwift_event_results r JOIN zwift_events e USING (event_id)
            WHERE e.club_id = :club) AS results,
       (SELECT count(*) FROM zwift_sync_log WHERE club_id = :club AND status = 429)
           AS rate_limited_total
"""
)


async def club_status(conn: AsyncConnection, club: str) -> dict[str, Any]:
    """A club's view: what is stored, each endpoint family's budget (used / free of its window,
    paused until, waiting per lane) with the club's calls of the last hour (calls, 429s, average
    and longest budget wait), and — added by `status` when Temporal runs — its scheduler's
    queue (pending, average and max wait, conflicts avoided)."""
    await tracked_club(conn, club)
    counts = dict((await conn.execute(_COUNTS, {"club": int(club)})).one()._mapping)
    calls = {
        r.endpoint: dict(r._mapping) for r in await conn.execute(_LOG_HOUR, {"club": int(club)})
    }
    last_any = {r.endpoint: r.last_at for r in await conn.execute(_LAST_ANY)}  # any club, one key
    budgets = {
        b["budget"]: b for b in (budget(row) for row in await rate_budgets(conn))
        if b["provider"] == PROVIDER
    }  # fmt: skip
    endpoints = []
    for family in sorted({f for fams in RESOURCES.values() for f in fams}):
        found = budgets.get(family)
        window = found["windows"][0] if found and found["windows"] else None
        endpoints.append(
            {
                "endpoint": family,
                "limit": None if window is None else window["limit"],
                "period": None if window is None else window["period"],
                "used": None if window is None else window["used"],
                "available": None if window is None else window["free"],
                "paused_until": None if found is None else found["paused_until"],
                "waiting": None if found is None else found["waiting"],
                "calls_last_hour": int(calls.get(family, {}).get("calls", 0)),
                "rate_limited_last_hour": int(calls.get(family, {}).get("rate_limited", 0)),
                "avg_wait_seconds": round(float(calls.get(family, {}).get("avg_wait", 0)), 3),
                "max_wait_seconds": round(float(calls.get(family, {}).get("max_wait", 0)), 3),
                "last_call_at": calls.get(family, {}).get("last_at"),
                # when a spent window has a place again: a place is held until one period
                # after its answer (the last call of any club on the key, as logged)
                "reset_at": (
                    last_any[family] + timedelta(seconds=window["period"])
                    if window is not None and window["free"] == 0 and family in last_any
                    else None
                ),
                "window": None if window is None else window_text(window),
            }
        )
    return {"club": int(club), **counts, "endpoints": endpoints}


def render_status(data: dict[str, Any]) -> str:
    lines = [
        f"club {data['club']} {data.get('name') or ''}".rstrip()
        + f": {data['members']} members listed, {data['riders']} riders stored; "
        f"{data['events']} events tracked ({data['upcoming']} upcoming), {data['signups']} "
        f"signups, {data['results']} results; {data['rate_limited_total']} 429s received"
    ]
    sched = data.get("scheduler")
    if sched:
        if "queue_depth" in sched:
            pending = sum(sched["queue_depth"].values())
            lines.append(
                f"scheduler {sched['state']}: {pending} pending, {len(sched['running'])} "
                f"running; wait avg {sched['avg_wait_seconds_last_hour']:.1f}s, max "
                f"{sched['max_wait_seconds_last_hour']:.1f}s (last hour); "
                f"{sched.get('conflicts_avoided', 0)} conflicts avoided"
            )
        else:
            lines.append(f"scheduler {sched.get('state')}: {sched.get('worker', '')}".rstrip(": "))
    lines.append("endpoint       calls/h  429s/h  wait avg/max  window")
    for e in data["endpoints"]:
        lines.append(
            f"{e['endpoint']:<14} {e['calls_last_hour']:>7} {e['rate_limited_last_hour']:>7}  "
            + f"{e['avg_wait_seconds']:.1f}/{e['max_wait_seconds']:.1f}s".ljust(14)
            + f"{e['window'] or 'no budget yet'}"
            + (f" · next place {e['reset_at']:%H:%M:%S}" if e["reset_at"] else "")
            + (f" · paused until {e['paused_until']:%H:%M:%S}" if e["paused_until"] else "")
        )
    return "\n".join(lines)


COMMANDS = ProviderCommands(
    scope=Scope("club id", "the ZwiftRacing club id", type=zwift_id),
    sync=(
        SyncCommand(
            name="zwift",
            help="sync one kind of a ZwiftRacing club now",
            description="Start one ZwiftSync of a tracked club: riders (members page by page, "
            "then bulk rider stats), urgent / near / far (tracked events by how soon they "
            "start, with their signups) or results (of events that have started). It shares "
            "each endpoint's budget with the club's scheduler: nothing is spent twice. "
            "Example: python starter.py sync zwift --club 20650 --kind riders --wait",
            launch=_sync_launch,
            arguments=_sync_arguments,
            check=tracked_club,
        ),
    ),
    track=(
        TrackCommand(
            name="club",
            help="track a ZwiftRacing club (its riders, and the events you track for it)",
            description="Track a ZwiftRacing club by id; its scheduler (`scheduler start zwift "
            "--club <id>`) keeps riders and events fresh. Example: python starter.py track "
            "club 20650",
            register=_track_club,
            label=lambda club, args: f"club {club}",
        ),
        TrackCommand(
            name="event",
            help="track a ZwiftRacing event for a club (the API lists no events)",
            description="Track an event by id for a club (--club, or the one tracked club): "
            "its start, signups and, once it has started, results are kept fresh by the club's "
            "scheduler. Example: python starter.py track event 5123456",
            register=_track_event,
            label=lambda club, args: f"event {args.event_id} for club {club}",
            arguments=_event_arguments,
            scope_as_option=True,
        ),
    ),
    add=(
        AddCommand(
            name="rider",
            help="manual add: read one rider now (the single-rider endpoint)",
            description="Read one rider now from the single-rider endpoint (5 per minute, a "
            "place kept for manual adds), ahead of every other kind of the club's scheduler "
            "(--club, or the one tracked club); later bulk refreshes keep it fresh. "
            "Example: python starter.py add rider 5574 --wait",
            key=lambda args: str(args.rider_id),
            arguments=_rider_arguments,
            scope_as_option=True,
        ),
    ),
    view=ScopeView(
        help="a ZwiftRacing club: stored counts, each endpoint's budget and calls, its scheduler",
        fetch=club_status,
        render=render_status,
    ),
    default_scope=the_one_club,
)
