"""ZwiftRacing storage on the real Postgres: migration 0007 applies; one-statement upserts that
are idempotent; a compact rating history; signup and result lists replaced; the sync log."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from storage import zwift as db
from storage.db import create_engine
from storage.migrate import current_head

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "zwiftracing"
TABLES = {
    "zwift_clubs",
    "zwift_riders",
    "zwift_rider_ratings",
    "zwift_events",
    "zwift_event_signups",
    "zwift_event_results",
    "zwift_sync_log",
}


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def data(name: str) -> Any:
    return json.loads(raw(name))


@pytest.fixture
async def engine(database_url):
    engine = create_engine(database_url, pool_size=2)
    yield engine
    await engine.dispose()


async def rows(engine, sql: str, **params: Any) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(sql), params)).all())


async def test_the_migration_applies_with_the_natural_keys(engine):
    assert current_head() == "0009"
    version = await rows(engine, "SELECT version_num FROM alembic_version")
    assert version[0][0] == "0009"
    found = await rows(
        engine,
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 'zwift%'",
    )
    assert {r[0] for r in found} == TABLES
    keys = await rows(
        engine,
        "SELECT tc.table_name, string_agg(kcu.column_name, ',' ORDER BY kcu.ordinal_position) "
        "FROM information_schema.table_constraints tc JOIN information_schema.key_column_usage kcu "
        "USING (constraint_name, table_name) WHERE tc.constraint_type = 'PRIMARY KEY' "
        "AND tc.table_name LIKE 'zwift%' GROUP BY tc.table_name",
    )
    assert dict(keys) == {
        "zwift_clubs": "club_id",
        "zwift_riders": "rider_id",
        "zwift_rider_ratings": "rider_id,rated_at",
        "zwift_events": "event_id",
        "zwift_event_signups": "event_id,rider_id",
        "zwift_event_results": "event_id,rider_id",
        "zwift_sync_log": "id",
    }


async def test_a_club_page_upsert_is_one_idempotent_statement(engine):
    async with engine.begin() as conn:
        await db.track_club(conn, 20650)
        first = await db.store_club_page(conn, 20650, raw("club.json"))
    assert first == db.RidersStored(riders=39, inserted=39, rating_changes=37)  # 2 never raced
    async with engine.begin() as conn:
        again = await db.store_club_page(conn, 20650, raw("club.json"))
        cursor = await db.store_club_page(conn, 20650, raw("club_from.json"))
    assert again == db.RidersStored(riders=39, inserted=0, rating_changes=0)
    assert cursor.inserted == 0 and cursor.rating_changes == 0  # a subset, unchanged
    club = (await rows(engine, "SELECT name, club_json, tracked FROM zwift_clubs"))[0]
    assert club.name == "Tea & Scone" and club.club_json == {"clubId": 20650, "name": "Tea & Scone"}
    assert club.tracked
    rider = (await rows(engine, "SELECT * FROM zwift_riders WHERE rider_id = 4598636"))[0]
    assert rider.club_id == 20650 and rider.name == "Rob Griffin [T&S]" and rider.category == "B"
    assert rider.rating == pytest.approx(1803.825984748603)
    assert rider.rated_at == datetime.fromtimestamp(1764788400, UTC)
    assert rider.rider_json == next(
        r for r in data("club.json")["riders"] if r["riderId"] == 4598636
    )
    assert rider.listed_at is not None
    unraced = await rows(engine, "SELECT rider_id FROM zwift_riders WHERE rating IS NULL")
    assert {r[0] for r in unraced} == {719512, 5859202}
    async with engine.connect() as conn:
        assert len(await db.club_rider_ids(conn, 20650)) == 39


async def test_the_rating_history_keeps_changes_only(engine):
    async with engine.begin() as conn:
        await db.store_rider(conn, raw("rider_epoch.json"))  # the rating as of 2024-11
        await db.store_rider(conn, raw("rider.json"))  # the current one
        await db.store_rider(conn, raw("rider.json"))
        await db.store_riders(conn, raw("riders.json"))  # the same rider again, and 5574
    history = await rows(
        engine, "SELECT rated_at, rating, category FROM zwift_rider_ratings "
        "WHERE rider_id = 4598636 ORDER BY rated_at",
    )  # fmt: skip
    assert [(h.rated_at, round(h.rating, 3)) for h in history] == [
        (datetime.fromtimestamp(1732820400, UTC), 1782.586),
        (datetime.fromtimestamp(1764788400, UTC), 1803.826),
    ]
    assert history[-1].category == "Emerald"
    changed = copy.deepcopy(data("rider.json"))
    changed["race"]["current"].update(rating=1810.5, date=1764800000)
    changed["name"] = "Rob Griffin"
    async with engine.begin() as conn:
        stored = await db.store_riders(conn, json.dumps([changed]).encode())
        same = await db.store_riders(conn, json.dumps([changed]).encode())
    assert (stored.rating_changes, same.rating_changes) == (1, 0)
    rider = (await rows(engine, "SELECT name, rating FROM zwift_riders WHERE rider_id = 4598636"))[
        0
    ]
    assert (rider.name, rider.rating) == ("Rob Griffin", 1810.5)
    counts = await rows(
        engine, "SELECT rider_id, count(*) FROM zwift_rider_ratings GROUP BY 1 ORDER BY 1"
    )
    assert [tuple(c) for c in counts] == [(5574, 1), (4598636, 3)]


async def test_a_manual_add_is_tracked_and_a_club_pass_clears_leavers(engine):
    async with engine.begin() as conn:
        await db.store_rider(conn, raw("rider.json"), tracked=True)
        assert await db.track_rider(conn, 4598636) and not await db.track_rider(conn, 1)
    tracked = await rows(engine, "SELECT tracked, club_id FROM zwift_riders")
    assert [tuple(t) for t in tracked] == [(True, 20650)]
    async with engine.begin() as conn:
        started = (await conn.execute(text("SELECT now()"))).scalar_one() + timedelta(seconds=-1)
    async with engine.begin() as conn:
        await db.store_club_page(conn, 20650, raw("club_from.json"))  # 18 of the club's riders
        members = await db.finish_club_pass(conn, 20650, started)
    assert members == 18
    left = await rows(engine, "SELECT count(*) FROM zwift_riders WHERE club_id IS NULL")
    assert left[0][0] == 0  # 4598636 is listed in club_from.json
    async with engine.begin() as conn:
        later = (await conn.execute(text("SELECT now()"))).scalar_one() + timedelta(seconds=1)
        assert await db.finish_club_pass(conn, 20650, later) == 0
    assert (await rows(engine, "SELECT count(*) FROM zwift_riders WHERE club_id IS NULL"))[0][
        0
    ] == 18


def _event(signups: str = "20,29") -> dict[str, Any]:
    header = {k: v for k, v in data("results.json").items() if k != "results"}
    return {**header, "numLaps": "4", "categories": "A,B", "signups": signups}


async def test_events_and_signup_lists_are_replaced_in_one_statement(engine):
    async with engine.begin() as conn:
        await db.track_event(conn, 5188741)
        assert not await db.store_event(conn, json.dumps(_event()).encode())
        first = await db.store_signups(
            conn, 5188741,
            json.dumps({"eventId": "5188741", "signups": [
                {"riderId": 1, "category": "A"}, {"riderId": 2, "category": "B"},
            ]}).encode(),
        )  # fmt: skip
        again = await db.store_signups(
            conn, 5188741,
            json.dumps({"eventId": "5188741", "signups": [
                {"riderId": 2, "category": "A"}, {"riderId": 3, "category": "C"},
            ]}).encode(),
        )  # fmt: skip
        other = await db.store_signups(conn, 42, json.dumps([{"riderId": 9}]).encode())
    assert first == {"signups": 2, "added": 2, "removed": 0}
    assert again == {"signups": 2, "added": 1, "removed": 1}
    assert other == {"signups": 1, "added": 1, "removed": 0}  # an event row made for it
    signed = await rows(
        engine, "SELECT event_id, rider_id, category FROM zwift_event_signups ORDER BY 1, 2"
    )
    assert [tuple(s) for s in signed] == [(42, 9, None), (5188741, 2, "A"), (5188741, 3, "C")]
    event = (await rows(engine, "SELECT * FROM zwift_events WHERE event_id = 5188741"))[0]
    assert event.starts_at == datetime.fromtimestamp(1762974000, UTC)
    assert event.title == "CTT Winter Series on Zwift" and event.event_json["signups"] == "20,29"
    assert event.signups_synced_at is not None and event.tracked
    async with engine.begin() as conn:
        await db.store_event(conn, json.dumps(_event("21,29")).encode())
    refreshed = await rows(engine, "SELECT event_json FROM zwift_events WHERE event_id = 5188741")
    assert refreshed[0][0]["signups"] == "21,29"


async def test_results_upsert_idempotently_with_positions_and_rating_changes(engine):
    async with engine.begin() as conn:
        first = await db.store_results(conn, 5188741, raw("results.json"))
        again = await db.store_results(conn, 5188741, raw("results.json"))
    assert first == {"results": 548, "added": 548, "removed": 0}
    assert again == {"results": 548, "added": 0, "removed": 0}
    winner = (await rows(engine, "SELECT * FROM zwift_event_results WHERE rider_id = 4204538"))[0]
    assert (winner.position, winner.position_in_category, winner.category) == (1, 1, "A")
    assert winner.time_seconds == pytest.approx(1506.486)
    assert winner.rating_delta == pytest.approx(26.693337408374713)
    assert winner.rating_after - winner.rating_before == pytest.approx(winner.rating_delta)
    unranked = (await rows(engine, "SELECT * FROM zwift_event_results WHERE rider_id = 4467058"))[0]
    assert unranked.position == 478 and unranked.rating_delta is None
    assert (await rows(engine, "SELECT count(DISTINCT position) FROM zwift_event_results"))[0][
        0
    ] > 500
    event = (await rows(engine, "SELECT * FROM zwift_events"))[0]
    assert event.title == "CTT Winter Series on Zwift" and "results" not in event.event_json
    assert event.results_synced_at is not None
    fewer = data("results.json")
    fewer["results"] = fewer["results"][:10]
    async with engine.begin() as conn:
        cut = await db.store_results(conn, 5188741, json.dumps(fewer).encode())
    assert cut == {"results": 10, "added": 0, "removed": 538}


async def test_the_sync_log_and_status(engine):
    async with engine.begin() as conn:
        await db.track_club(conn, 20650)
        await db.store_club_page(conn, 20650, raw("club.json"))
        await db.store_results(conn, 5188741, raw("results.json"))
        await db.log_calls(
            conn,
            [
                db.CallLog(
                    "clubs", 200, 0.0, 10, club_id=20650, kind="riders", entity="club 20650"
                ),
                db.CallLog("riders_post", 429, 12.5, 10, club_id=20650, kind="riders"),
            ],
        )
        await db.log_call(conn, db.CallLog("riders_get", 200, 0.4, 40, kind="manual"))
        await db.log_calls(conn, [])
        seen = await db.status(conn)
    assert seen == {
        "zwift": {
            "clubs": 1,
            "riders": 39,
            "rating_changes": 37,
            "events": 1,
            "upcoming": 0,
            "signups": 0,
            "results": 548,
            "calls": 3,
            "rate_limited": 1,
        }
    }
    log = await rows(
        engine,
        "SELECT endpoint, status, waited, priority, kind, club_id, at "
        "FROM zwift_sync_log ORDER BY id",
    )
    assert [(r.endpoint, r.status, r.waited, r.priority) for r in log] == [
        ("clubs", 200, 0.0, 10),
        ("riders_post", 429, 12.5, 10),
        ("riders_get", 200, 0.4, 40),
    ]
    assert log[2].kind == "manual" and log[2].club_id is None and log[2].at is not None


async def test_a_sandbox_club_and_its_events_are_stored_as_the_truth(engine):
    """Client → parsers → storage over a club of more than 1000 riders equals the sandbox."""
    import httpx

    from providers.ratelimit import Window
    from providers.zwift import FAMILIES, ZwiftClient, chunks, family_limiters
    from sandbox.zwift import ZwiftSandboxConfig, create_zwift_app
    from sandbox.zwift_world import ZwiftWorldConfig

    world = ZwiftWorldConfig(seed=11, club_sizes=(1500,), clubless=5, signups_max=30)
    app = create_zwift_app(ZwiftSandboxConfig(world=world, lifted=True))
    sandbox = app.state.sandbox
    client = ZwiftClient(
        api_key="sandbox-zwift-key", base_url="http://zwift.test/api",
        limiters=family_limiters({f: Window(1000, 1.0) for f in FAMILIES}),  # lifted sandbox
        transport=httpx.ASGITransport(app=app),
    )  # fmt: skip
    club = next(iter(sandbox.world.clubs.values()))
    try:
        async with engine.begin() as conn:
            started = (await conn.execute(text("SELECT now()"))).scalar_one()
            await db.track_club(conn, club.id)
            async for page in client.club_pages(club.id):
                await db.store_club_page(conn, club.id, page.raw)
            assert await db.finish_club_pass(conn, club.id, started) == 1500
            for ids in chunks(await db.club_rider_ids(conn, club.id)):
                await db.store_riders(conn, (await client.riders(ids)).raw)
            for event_id in sandbox.world.events:
                await db.store_event(conn, (await client.event(event_id)).raw)
                await db.store_signups(conn, event_id, (await client.event_signups(event_id)).raw)
                event = sandbox.world.events[event_id]
                if sandbox.wall() >= event.finishes_at:
                    await db.store_results(conn, event_id, (await client.results(event_id)).raw)
    finally:
        await client.aclose()
    truth = sandbox.world.truth(sandbox.wall())
    stored = {r.rider_id: r for r in await rows(engine, "SELECT * FROM zwift_riders")}
    assert sorted(stored) == truth["clubs"][0]["rider_ids"]
    for rider_id, rider in stored.items():
        expected = truth["riders"][str(rider_id)]
        assert (rider.club_id, rider.name, rider.category) == (
            expected["club_id"], expected["name"], expected["category"],
        )  # fmt: skip
        assert rider.rating == expected["rating"]
    signups = await rows(engine, "SELECT event_id, rider_id FROM zwift_event_signups")
    results = await rows(engine, "SELECT event_id, rider_id FROM zwift_event_results")
    for event in truth["events"]:
        mine = sorted(r.rider_id for r in signups if r.event_id == event["event_id"])
        assert mine == sorted(event["signups"])
        got = sorted(r.rider_id for r in results if r.event_id == event["event_id"])
        assert got == sorted(event["results"] or [])
    assert sandbox.stats()["throttled"] == 0


async def test_events_due_names_the_soonest_and_counts_every_due_event(engine):
    club = 7_000_000 + datetime.now(UTC).microsecond  # a club of this test alone
    async with engine.begin() as conn:
        for n, minutes in enumerate([30, 5, 20, 90]):  # 90: past the urgent window
            await conn.execute(
                text(
                    "INSERT INTO zwift_events (event_id, club_id, tracked, starts_at)"
                    " VALUES (:e, :c, true, now() + make_interval(mins => :m))"
                ),
                {"e": club * 10 + n, "c": club, "m": minutes},
            )
    windows: dict[str, Any] = {
        "fresh_seconds": 60.0,
        "urgent_seconds": 3600.0,
        "near_seconds": 7200.0,
    }
    async with engine.connect() as conn:
        due, total = await db.events_due(conn, club, "urgent", **windows)
        two, same = await db.events_due(conn, club, "urgent", limit=2, **windows)
        none, zero = await db.events_due(conn, club, "results", **windows)
        with pytest.raises(ValueError, match="at least 1"):
            await db.events_due(conn, club, "urgent", limit=0, **windows)
    assert [d.event_id for d in due] == [club * 10 + 1] and total == 3
    assert [d.event_id for d in two] == [club * 10 + 1, club * 10 + 2] and same == 3
    assert due[0].needs_event and due[0].needs_signups
    assert none == [] and zero == 0  # none has started
