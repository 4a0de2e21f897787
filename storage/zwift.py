"""ZwiftRacing storage (migration 0007): clubs, riders and their rating history, events,
signups, results and the sync log.

Every answer is stored by **one statement**: its raw JSON goes to Postgres as one parameter
(the bytes as received), Postgres extracts the columns and upserts the rows — a club page with
its club row and the riders' rating changes, a bulk answer's riders, an event, an event's
signup list (riders no longer signed up removed in the same statement), an event's results.
One round trip, atomic even on an autocommit connection, and a replayed answer is absorbed by
the upserts on the natural keys. The parsers (``providers.zwift.parse``) have checked the types
of everything extracted here, so the casts cannot fail.

**Rating history, compact.** ``zwift_rider_ratings`` gets a row only when a rider's rating
differs from the one stored before the statement (or the rider is new), keyed by the rating's
own date (``race.current.date``): re-reading an unchanged rider adds nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.db import count_rows

__all__ = [
    "EVENT_KINDS",
    "CallLog",
    "EventDue",
    "RidersStored",
    "bulk_rider_ids",
    "club_rider_ids",
    "db_now",
    "events_due",
    "finish_club_pass",
    "log_call",
    "log_calls",
    "results_not_ready",
    "signups_missing",
    "status",
    "store_club_page",
    "store_event",
    "store_results",
    "store_rider",
    "store_riders",
    "store_signups",
    "track_club",
    "track_event",
    "track_rider",
    "tracked_clubs",
    "untrack_event",
]

_DOC = "convert_from(CAST(:raw AS bytea), 'UTF8')::jsonb"


@dataclass(frozen=True)
class RidersStored:
    riders: int  # rows in the answer
    inserted: int  # riders new to the table
    rating_changes: int  # rows added to the rating history


@dataclass(frozen=True)
class CallLog:
    """One call's outcome for ``zwift_sync_log``: ``status`` the HTTP status (0: no answer),
    ``waited`` seconds spent waiting for the rate budget, ``priority`` its Priority."""

    endpoint: str
    status: int
    waited: float
    priority: int
    club_id: int | None = None
    kind: str | None = None
    entity: str | None = None
    at: datetime | None = None


def _riders_statement(source: str, club: str, listed: str, prelude: str = "") -> Any:
    """The one statement that upserts the riders of ``source`` (a jsonb array expression over
    ``doc.d``) and their rating changes; ``club`` and ``listed`` are column expressions."""
    return text(
        f"""
WITH doc AS (SELECT {_DOC} AS d),
{prelude}
page AS (SELECT r FROM doc, jsonb_array_elements({source}) AS r),
rows AS (
    SELECT (r->>'riderId')::bigint AS rider_id,
           {club} AS club_id,
           r->>'name' AS name,
           r->>'zpCategory' AS category,
           (r->'race'->'current'->>'rating')::float8 AS rating,
           to_timestamp((r->'race'->'current'->>'date')::float8) AS rated_at,
           r->'race'->'current'->'mixed'->>'category' AS mixed,
           r AS rider_json
    FROM page
), prev AS (
    SELECT z.rider_id, z.rating FROM zwift_riders z JOIN rows USING (rider_id)
), upserted AS (
    INSERT INTO zwift_riders (rider_id, club_id, name, category, rating, rated_at, rider_json,
                              listed_at, last_synced_at)
    SELECT rider_id, club_id, name, category, rating, rated_at, rider_json, {listed}, now()
    FROM rows
    ON CONFLICT (rider_id) DO UPDATE SET
        club_id = EXCLUDED.club_id,
        name = EXCLUDED.name,
        category = EXCLUDED.category,
        rating = EXCLUDED.rating,
        rated_at = EXCLUDED.rated_at,
        rider_json = EXCLUDED.rider_json,
        listed_at = coalesce(EXCLUDED.listed_at, zwift_riders.listed_at),
        last_synced_at = now(),
        updated_at = now()
    RETURNING (xmax = 0) AS inserted
), history AS (
    INSERT INTO zwift_rider_ratings (rider_id, rated_at, rating, category)
    SELECT rows.rider_id, coalesce(rows.rated_at, now()), rows.rating, rows.mixed
    FROM rows LEFT JOIN prev USING (rider_id)
    WHERE rows.rating IS NOT NULL
      AND (prev.rider_id IS NULL OR prev.rating IS DISTINCT FROM rows.rating)
    ON CONFLICT (rider_id, rated_at) DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM rows) AS riders,
       (SELECT count(*) FROM upserted WHERE inserted) AS inserted,
       (SELECT count(*) FROM history) AS rating_changes
"""
    )


_CLUB_CTE = """
club AS (
    INSERT INTO zwift_clubs (club_id, name, club_json)
    SELECT :club_id, d->>'name', d - 'riders' FROM doc
    ON CONFLICT (club_id) DO UPDATE SET
        name = EXCLUDED.name, club_json = EXCLUDED.club_json, updated_at = now()
    RETURNING club_id
),"""
_STORE_CLUB_PAGE = _riders_statement(
    "d->'riders'", "CAST(:club_id AS bigint)", "now()", prelude=_CLUB_CTE
)
_STORE_RIDERS = _riders_statement(
    "CASE jsonb_typeof(d) WHEN 'array' THEN d ELSE jsonb_build_array(d) END",
    "(r->'club'->>'id')::bigint",
    "NULL::timestamptz",
)


def _stored(conn: AsyncConnection, row: Any) -> RidersStored:
    stored = RidersStored(int(row.riders), int(row.inserted), int(row.rating_changes))
    count_rows(
        conn, "zwift_riders", inserted=stored.inserted, updated=stored.riders - stored.inserted
    )
    count_rows(conn, "zwift_rider_ratings", inserted=stored.rating_changes)
    return stored


# --- clubs and riders ----------------------------------------------------------------------


async def track_club(conn: AsyncConnection, club_id: int) -> None:
    """Register a club (idempotent)."""
    await conn.execute(
        text(
            "INSERT INTO zwift_clubs (club_id, tracked) VALUES (:club_id, true) "
            "ON CONFLICT (club_id) DO UPDATE SET tracked = true, updated_at = now()"
        ),
        {"club_id": club_id},
    )


async def store_club_page(conn: AsyncConnection, club_id: int, raw_page: bytes) -> RidersStored:
    """One club page (``{"clubId", "name", "riders"}`` as received): the club row, its riders
    (club and ``listed_at`` set) and their rating changes, in one statement."""
    row = (await conn.execute(_STORE_CLUB_PAGE, {"raw": raw_page, "club_id": club_id})).one()
    count_rows(conn, "zwift_clubs", upserted=1)
    return _stored(conn, row)


async def finish_club_pass(conn: AsyncConnection, club_id: int, started_at: datetime) -> int:
    """A complete listing of the club ended: riders of the club not listed since
    ``started_at`` have left it (their club is cleared); the club's member count and sync time
    are set. Returns the member count."""
    row = (
        await conn.execute(
            text(
                """
WITH left_club AS (
    UPDATE zwift_riders SET club_id = NULL, updated_at = now()
    WHERE club_id = :club_id AND (listed_at IS NULL OR listed_at < :started_at)
    RETURNING rider_id
)
UPDATE zwift_clubs SET
    member_count = (SELECT count(*) FROM zwift_riders
                    WHERE club_id = :club_id AND listed_at >= :started_at),
    last_synced_at = now(), updated_at = now()
WHERE club_id = :club_id
RETURNING member_count
"""
            ),
            {"club_id": club_id, "started_at": started_at},
        )
    ).first()
    return 0 if row is None else int(row.member_count)


async def store_riders(conn: AsyncConnection, raw: bytes) -> RidersStored:
    """A bulk answer (a bare array of riders) or one rider object, as received: the riders
    (club from ``rider.club.id``) and their rating changes, in one statement."""
    return _stored(conn, (await conn.execute(_STORE_RIDERS, {"raw": raw})).one())


async def store_rider(
    conn: AsyncConnection, raw: bytes, *, tracked: bool = False, for_club: int | None = None
) -> RidersStored:
    """One rider (``GET /public/riders/{id}``); ``tracked`` marks a manual add, ``for_club``
    the club whose bulk refreshes keep it fresh from then on."""
    stored = await store_riders(conn, raw)
    if tracked:
        await conn.execute(
            text(
                "UPDATE zwift_riders SET tracked = true, "
                "added_for_club = coalesce(CAST(:club AS bigint), added_for_club) "
                f"WHERE rider_id = ({_DOC}->>'riderId')::bigint"
            ),
            {"raw": raw, "club": for_club},
        )
    return stored


async def track_rider(conn: AsyncConnection, rider_id: int) -> bool:
    """Mark a stored rider as manually added; False when it is not stored yet."""
    result = await conn.execute(
        text("UPDATE zwift_riders SET tracked = true, updated_at = now() WHERE rider_id = :r"),
        {"r": rider_id},
    )
    return bool(getattr(result, "rowcount", 0))


async def club_rider_ids(conn: AsyncConnection, club_id: int) -> list[int]:
    """The club's riders as stored, ascending (the next bulk refresh's ids)."""
    rows = await conn.execute(
        text("SELECT rider_id FROM zwift_riders WHERE club_id = :c ORDER BY rider_id"),
        {"c": club_id},
    )
    return [int(r) for r in rows.scalars()]


async def bulk_rider_ids(
    conn: AsyncConnection, club_id: int, after: int = 0, limit: int = 1000
) -> list[int]:
    """The next ids of a club's bulk refresh, ascending after ``after``: its members as stored
    and the riders added by hand for it."""
    rows = await conn.execute(
        text(
            "SELECT rider_id FROM zwift_riders WHERE (club_id = :c OR added_for_club = :c) "
            "AND rider_id > :after ORDER BY rider_id LIMIT :limit"
        ),
        {"c": club_id, "after": after, "limit": limit},
    )
    return [int(r) for r in rows.scalars()]


async def tracked_clubs(conn: AsyncConnection) -> list[int]:
    rows = await conn.execute(
        text("SELECT club_id FROM zwift_clubs WHERE tracked ORDER BY club_id")
    )
    return [int(r) for r in rows.scalars()]


# --- events ----------------------------------------------------------------------------------


async def track_event(conn: AsyncConnection, event_id: int, club_id: int | None = None) -> None:
    """Register an event (idempotent); ``club_id``: the club whose scheduler keeps it fresh
    (kept when None)."""
    await conn.execute(
        text(
            "INSERT INTO zwift_events (event_id, tracked, club_id) VALUES (:e, true, :c) "
            "ON CONFLICT (event_id) DO UPDATE SET tracked = true, "
            "club_id = coalesce(EXCLUDED.club_id, zwift_events.club_id), updated_at = now()"
        ),
        {"e": event_id, "c": club_id},
    )


# What a pass of each event kind selects for one club, on the database's clock: urgent events
# start within ``:urgent`` seconds, near ones within ``:near`` (and events whose start is not
# known yet: a tracked id never read), far ones later. An event needs the pass when its event or
# its signups were last read more than ``:fresh`` seconds ago (so a pass cut short, retried or
# continued by the next run goes on where it stopped, and nothing is read twice in one pass);
# results are asked once an event has started and until they are stored, at most once per
# ``:fresh`` seconds while the API says there are none yet.
_NOW = "now()"
_FRESH = "now() - make_interval(secs => :fresh)"
_EVENT_CLASS = {
    "urgent": f"e.starts_at > {_NOW} AND e.starts_at <= {_NOW} + make_interval(secs => :urgent)",
    "near": f"(e.starts_at IS NULL OR (e.starts_at > {_NOW} "
    f"AND e.starts_at <= {_NOW} + make_interval(secs => :near)))",
    "far": f"e.starts_at > {_NOW} + make_interval(secs => :near)",
}
_EVENT_STALE = (
    f"(e.last_synced_at IS NULL OR e.last_synced_at < {_FRESH} "
    f"OR e.signups_synced_at IS NULL OR e.signups_synced_at < {_FRESH})"
)
_RESULTS_DUE = (
    f"e.starts_at <= {_NOW} AND e.results_synced_at IS NULL "
    f"AND (e.results_checked_at IS NULL OR e.results_checked_at < {_FRESH})"
)
EVENT_KINDS = ("urgent", "near", "far", "results")


@dataclass(frozen=True)
class EventDue:
    event_id: int
    needs_event: bool  # the event object is older than the pass
    needs_signups: bool


def _due_sql(kind: str, select: str) -> str:
    where = _RESULTS_DUE if kind == "results" else f"{_EVENT_CLASS[kind]} AND {_EVENT_STALE}"
    return f"SELECT {select} FROM zwift_events e WHERE e.tracked AND e.club_id = :club AND {where}"


async def events_due(
    conn: AsyncConnection,
    club_id: int,
    kind: str,
    *,
    fresh_seconds: float,
    urgent_seconds: float,
    near_seconds: float,
    limit: int = 1,
) -> tuple[list[EventDue], int]:
    """The club's events a ``kind`` pass (urgent, near, far, results) still has to read, soonest
    start first (unknown starts first), at most ``limit``; and how many there are in all."""
    if kind not in EVENT_KINDS:
        raise ValueError(f"no event pass of kind {kind!r}")
    if limit < 1:  # no row would carry the total
        raise ValueError(f"limit must be at least 1, not {limit}")
    params = {
        "club": club_id, "fresh": float(fresh_seconds), "urgent": float(urgent_seconds),
        "near": float(near_seconds), "limit": limit,
    }  # fmt: skip
    select = (
        f"e.event_id, (e.last_synced_at IS NULL OR e.last_synced_at < {_FRESH}) AS needs_event, "
        f"(e.signups_synced_at IS NULL OR e.signups_synced_at < {_FRESH}) AS needs_signups, "
        "count(*) OVER () AS total"  # before LIMIT: every due event; one statement, not two
    )
    rows = (
        await conn.execute(
            text(
                _due_sql(kind, select)
                + " ORDER BY e.starts_at NULLS FIRST, e.event_id LIMIT :limit"
            ),
            params,
        )
    ).all()
    due = [EventDue(int(r.event_id), bool(r.needs_event), bool(r.needs_signups)) for r in rows]
    return due, int(rows[0].total) if rows else 0


async def signups_missing(conn: AsyncConnection, event_id: int) -> None:
    """The API has no signup list for the event (404): read again on the next pass, rows kept."""
    await conn.execute(
        text("UPDATE zwift_events SET signups_synced_at = now(), updated_at = now() "
             "WHERE event_id = :e"),
        {"e": event_id},
    )  # fmt: skip


async def db_now(conn: AsyncConnection) -> datetime:
    """The database's clock (what every stored time is compared with)."""
    found: datetime = (await conn.execute(text("SELECT now()"))).scalar_one()
    return found


async def results_not_ready(conn: AsyncConnection, event_id: int) -> None:
    """The API has no results for the event yet (404 until it finished): asked again later."""
    await conn.execute(
        text("UPDATE zwift_events SET results_checked_at = now(), updated_at = now() "
             "WHERE event_id = :e"),
        {"e": event_id},
    )  # fmt: skip


async def untrack_event(conn: AsyncConnection, event_id: int) -> None:
    """The API does not know the event (404): no pass asks for it again; its rows stay."""
    await conn.execute(
        text("UPDATE zwift_events SET tracked = false, updated_at = now() WHERE event_id = :e"),
        {"e": event_id},
    )


_STORE_EVENT = text(
    f"""
WITH doc AS (SELECT {_DOC} AS d)
INSERT INTO zwift_events (event_id, starts_at, title, event_json, last_synced_at)
SELECT (d->>'eventId')::bigint, to_timestamp((d->>'time')::float8), d->>'title', d, now()
FROM doc
ON CONFLICT (event_id) DO UPDATE SET
    starts_at = EXCLUDED.starts_at, title = EXCLUDED.title, event_json = EXCLUDED.event_json,
    last_synced_at = now(), updated_at = now()
RETURNING (xmax = 0) AS inserted
"""
)


async def store_event(conn: AsyncConnection, raw: bytes) -> bool:
    """An event object as received; True when the event was new."""
    new = bool((await conn.execute(_STORE_EVENT, {"raw": raw})).scalar_one())
    count_rows(conn, "zwift_events", inserted=int(new), updated=int(not new))
    return new


_STORE_SIGNUPS = text(
    f"""
WITH doc AS (SELECT {_DOC} AS d),
rows AS (
    SELECT (s->>'riderId')::bigint AS rider_id, s->>'category' AS category, s AS signup_json
    FROM doc, jsonb_array_elements(
        CASE jsonb_typeof(d) WHEN 'array' THEN d ELSE d->'signups' END) AS s
), event AS (
    INSERT INTO zwift_events (event_id, signups_synced_at) VALUES (:event_id, now())
    ON CONFLICT (event_id) DO UPDATE SET signups_synced_at = now(), updated_at = now()
    RETURNING event_id
), upserted AS (
    INSERT INTO zwift_event_signups (event_id, rider_id, category, signup_json)
    SELECT :event_id, rider_id, category, signup_json FROM rows
    ON CONFLICT (event_id, rider_id) DO UPDATE SET
        category = EXCLUDED.category, signup_json = EXCLUDED.signup_json, last_seen_at = now()
    RETURNING (xmax = 0) AS inserted
), gone AS (
    DELETE FROM zwift_event_signups
    WHERE event_id = :event_id AND rider_id NOT IN (SELECT rider_id FROM rows)
    RETURNING 1
)
SELECT (SELECT count(*) FROM rows) AS signups,
       (SELECT count(*) FROM upserted WHERE inserted) AS added,
       (SELECT count(*) FROM gone) AS removed,
       (SELECT count(*) FROM event) AS events
"""
)


async def store_signups(conn: AsyncConnection, event_id: int, raw: bytes) -> dict[str, int]:
    """An event's signup list as received (the whole list): upserted, and riders no longer on
    it removed, in one statement. ``{"signups", "added", "removed"}``."""
    row = (await conn.execute(_STORE_SIGNUPS, {"raw": raw, "event_id": event_id})).one()
    _listed(conn, "zwift_event_signups", int(row.signups), int(row.added), int(row.removed))
    return {"signups": int(row.signups), "added": int(row.added), "removed": int(row.removed)}


_STORE_RESULTS = text(
    f"""
WITH doc AS (SELECT {_DOC} AS d),
rows AS (
    SELECT (r->>'riderId')::bigint AS rider_id,
           (r->>'position')::int AS given_position,
           (r->>'positionInCategory')::int AS position_in_category,
           r->>'category' AS category,
           (r->>'time')::float8 AS time_seconds,
           (r->>'ratingBefore')::float8 AS rating_before,
           (r->>'rating')::float8 AS rating_after,
           (r->>'ratingDelta')::float8 AS rating_delta,
           r AS result_json
    FROM doc, jsonb_array_elements(d->'results') AS r
), ranked AS (
    SELECT *, rank() OVER (PARTITION BY given_position IS NULL
                           ORDER BY time_seconds NULLS LAST)::int AS by_time
    FROM rows
), event AS (
    INSERT INTO zwift_events (event_id, starts_at, title, event_json, results_synced_at)
    SELECT :event_id, to_timestamp((d->>'time')::float8), d->>'title', d - 'results', now()
    FROM doc
    ON CONFLICT (event_id) DO UPDATE SET
        starts_at = coalesce(zwift_events.starts_at, EXCLUDED.starts_at),
        title = coalesce(zwift_events.title, EXCLUDED.title),
        event_json = coalesce(zwift_events.event_json, EXCLUDED.event_json),
        results_synced_at = now(), updated_at = now()
    RETURNING event_id
), upserted AS (
    INSERT INTO zwift_event_results (event_id, rider_id, position, position_in_category,
        category, time_seconds, rating_before, rating_after, rating_delta, result_json)
    SELECT :event_id, rider_id, coalesce(given_position, by_time), position_in_category,
           category, time_seconds, rating_before, rating_after, rating_delta, result_json
    FROM ranked
    ON CONFLICT (event_id, rider_id) DO UPDATE SET
        position = EXCLUDED.position,
        position_in_category = EXCLUDED.position_in_category,
        category = EXCLUDED.category,
        time_seconds = EXCLUDED.time_seconds,
        rating_before = EXCLUDED.rating_before,
        rating_after = EXCLUDED.rating_after,
        rating_delta = EXCLUDED.rating_delta,
        result_json = EXCLUDED.result_json
    RETURNING (xmax = 0) AS inserted
), gone AS (
    DELETE FROM zwift_event_results
    WHERE event_id = :event_id AND rider_id NOT IN (SELECT rider_id FROM rows)
    RETURNING 1
)
SELECT (SELECT count(*) FROM rows) AS results,
       (SELECT count(*) FROM upserted WHERE inserted) AS added,
       (SELECT count(*) FROM gone) AS removed,
       (SELECT count(*) FROM event) AS events
"""
)


async def store_results(conn: AsyncConnection, event_id: int, raw: bytes) -> dict[str, int]:
    """An event's results (``results.json``'s shape, as received): the event row (created
    from the header if new), every result (position: the answer's, else the rank by time among
    the results that carry none: the unranked ones carry theirs) and
    the removal of results no longer listed, in one statement."""
    row = (await conn.execute(_STORE_RESULTS, {"raw": raw, "event_id": event_id})).one()
    _listed(conn, "zwift_event_results", int(row.results), int(row.added), int(row.removed))
    return {"results": int(row.results), "added": int(row.added), "removed": int(row.removed)}


def _listed(conn: AsyncConnection, table: str, listed: int, added: int, removed: int) -> None:
    """An event's whole list stored: rows added, the rest of the list rewritten, the rest gone."""
    count_rows(conn, table, inserted=added, updated=listed - added, deleted=removed)


# --- the sync log ----------------------------------------------------------------------------

_LOG = text(
    """
INSERT INTO zwift_sync_log (club_id, kind, endpoint, entity, status, waited, priority, at)
SELECT (c->>'club_id')::bigint, c->>'kind', c->>'endpoint', c->>'entity',
       (c->>'status')::int, (c->>'waited')::float8, (c->>'priority')::int,
       coalesce((c->>'at')::timestamptz, now())
FROM jsonb_array_elements(:calls) AS c
"""
).bindparams(bindparam("calls", type_=JSONB))


async def log_calls(conn: AsyncConnection, calls: Sequence[CallLog]) -> None:
    """Append call outcomes to ``zwift_sync_log`` (one statement for all of them)."""
    if not calls:
        return
    rows = [
        {
            "club_id": c.club_id,
            "kind": c.kind,
            "endpoint": c.endpoint,
            "entity": c.entity,
            "status": int(c.status),
            "waited": max(0.0, float(c.waited)),
            "priority": int(c.priority),
            "at": None if c.at is None else c.at.isoformat(),
        }
        for c in calls
    ]
    await conn.execute(_LOG, {"calls": rows})


async def log_call(conn: AsyncConnection, call: CallLog) -> None:
    await log_calls(conn, [call])


# --- status ----------------------------------------------------------------------------------


async def status(conn: AsyncConnection) -> dict[str, Any]:
    """ZwiftRacing's part of `starter.py status`: clubs, riders, rating changes, events,
    signups, results, and the calls logged with how many were answered 429."""
    row = (
        await conn.execute(
            text(
                "SELECT (SELECT count(*) FROM zwift_clubs WHERE tracked) AS clubs, "
                "(SELECT count(*) FROM zwift_riders) AS riders, "
                "(SELECT count(*) FROM zwift_rider_ratings) AS rating_changes, "
                "(SELECT count(*) FROM zwift_events) AS events, "
                "(SELECT count(*) FROM zwift_events WHERE starts_at > now()) AS upcoming, "
                "(SELECT count(*) FROM zwift_event_signups) AS signups, "
                "(SELECT count(*) FROM zwift_event_results) AS results, "
                "(SELECT count(*) FROM zwift_sync_log) AS calls, "
                "(SELECT count(*) FROM zwift_sync_log WHERE status = 429) AS rate_limited"
            )
        )
    ).one()
    return {"zwift": {key: int(value) for key, value in row._mapping.items()}}
