"""The ZwiftRacing sandbox: strict windows per family (time-scaled), the 429 of UPSTREAM §3.3,
the inclusive club cursor, the bulk POST's rules, payloads shaped like the real captures, events
placed relative to the start, faults and admin counters."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.__main__ import build_parser, config_from_args
from sandbox.server import cli_args
from sandbox.zwift import API_PREFIX, ZwiftSandbox, ZwiftSandboxConfig, create_zwift_app
from sandbox.zwift_limits import DEFAULT_LIMITS, FAMILIES
from sandbox.zwift_world import ZwiftWorld, ZwiftWorldConfig

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "zwiftracing"
KEY = "sandbox-zwift-key"
HEADERS = {"Authorization": KEY}
START = 1_764_000_000.0
SMALL = ZwiftWorldConfig(seed=3, club_sizes=(12, 2345), clubless=20, signups_max=40)


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


class Zwift:
    """An in-process client of one sandbox app on a hand-driven clock (``advance``)."""

    def __init__(self, app: Any, client: httpx.AsyncClient, clock: list[float]) -> None:
        self.app, self.client, self._clock = app, client, clock

    @property
    def sandbox(self) -> ZwiftSandbox:
        state: ZwiftSandbox = self.app.state.sandbox
        return state

    @property
    def world(self) -> ZwiftWorld:
        return self.sandbox.world

    def advance(self, seconds: float) -> None:
        self._clock[0] += seconds

    def club(self, big: bool = False) -> int:
        clubs = sorted(self.world.clubs.values(), key=lambda c: len(c.rider_ids))
        return clubs[-1 if big else 0].id

    def rider(self) -> int:
        return next(iter(self.world.riders))

    def event(self, kind: str) -> int:
        now = self.sandbox.wall()
        return next(
            e.id for e in self.world.events.values() if self.world.event_class(e, now) == kind
        )

    async def get(self, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        return await self.client.get(
            API_PREFIX + path, headers=HEADERS if headers is None else headers
        )

    async def post(
        self, path: str, body: Any, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return await self.client.post(
            API_PREFIX + path, content=content, headers=HEADERS if headers is None else headers
        )

    async def call(self, family: str) -> httpx.Response:
        """One request of ``family`` (a valid one: 200 unless limited)."""
        if family == "clubs":
            return await self.get(f"/public/clubs/{self.club()}")
        if family == "riders_post":
            return await self.post("/public/riders", [self.rider()])
        if family == "riders_get":
            return await self.get(f"/public/riders/{self.rider()}")
        path = {"events": "events", "event_signups": "event_signups", "results": "results"}[family]
        return await self.get(f"/public/{path}/{self.event('past')}")

    async def stats(self) -> dict[str, Any]:
        body: dict[str, Any] = (await self.client.get("/_admin/stats")).json()
        return body

    async def truth(self) -> dict[str, Any]:
        body: dict[str, Any] = (await self.client.get("/_admin/truth")).json()
        return body


@asynccontextmanager
async def open_zwift(world: ZwiftWorldConfig = SMALL, **config: Any) -> AsyncIterator[Zwift]:
    clock = [1000.0]
    app = create_zwift_app(
        ZwiftSandboxConfig(world=world, start=START, **config),
        clock=lambda: clock[0],
        wall=lambda: START + clock[0] - 1000.0,
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
        yield Zwift(app, client, clock)


@pytest.fixture
async def zwift() -> AsyncIterator[Zwift]:
    async with open_zwift(lifted=True) as opened:
        yield opened


# --- windows ---------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
async def test_each_family_admits_its_count_per_period_and_not_one_more(family: str) -> None:
    limit, period = DEFAULT_LIMITS[family]
    async with open_zwift() as zwift:
        first = [await zwift.call(family) for _ in range(limit)]
        assert [r.status_code for r in first] == [200] * limit
        assert (await zwift.call(family)).status_code == 429
        zwift.advance(period - 0.01)
        assert (await zwift.call(family)).status_code == 429
        zwift.advance(0.01)
        assert (await zwift.call(family)).status_code == 200
        seen = await zwift.stats()
        assert seen["max_in_window"][family] == limit
        assert seen["max_arrivals_in_window"][family] == limit + 2  # both 429s in it
        assert seen["throttled_by_family"][family] == 2 and seen["throttled"] == 2


async def test_the_time_scale_divides_every_window() -> None:
    async with open_zwift(time_scale=60) as zwift:
        limits = (await zwift.stats())["limits"]
        assert limits["effective_periods"] == {f: p / 60 for f, (_, p) in DEFAULT_LIMITS.items()}
        assert (await zwift.call("riders_post")).status_code == 200
        assert (await zwift.call("riders_post")).status_code == 429
        zwift.advance(14.99)  # 1/15 min is 1/15 s
        assert (await zwift.call("riders_post")).status_code == 429
        zwift.advance(0.01)
        assert (await zwift.call("riders_post")).status_code == 200
        assert (await zwift.call("clubs")).status_code == 200
        zwift.advance(59.9)  # 1/h is 1/min
        assert (await zwift.call("clubs")).status_code == 429
        zwift.advance(0.1)
        assert (await zwift.call("clubs")).status_code == 200


async def test_rejected_requests_do_not_push_the_window() -> None:
    async with open_zwift() as zwift:
        assert (await zwift.call("events")).status_code == 200
        for _ in range(5):
            zwift.advance(10)
            assert (await zwift.call("events")).status_code == 429
        zwift.advance(10)  # 60 s after the one admission
        assert (await zwift.call("events")).status_code == 200


async def test_families_are_independent_windows() -> None:
    async with open_zwift() as zwift:
        for family in FAMILIES:
            assert (await zwift.call(family)).status_code == 200, family
        assert (await zwift.call("results")).status_code == 429
        assert (await zwift.call("riders_get")).status_code == 200


async def test_club_pages_with_and_without_cursor_share_one_window() -> None:
    async with open_zwift() as zwift:
        assert (await zwift.get(f"/public/clubs/{zwift.club()}")).status_code == 200
        assert (await zwift.get(f"/public/clubs/{zwift.club(big=True)}/0")).status_code == 429


async def test_a_429_is_the_upstream_body_with_no_rate_limit_headers() -> None:
    async with open_zwift() as zwift:
        await zwift.call("riders_post")
        zwift.advance(100)
        limited = await zwift.call("riders_post")
        assert limited.status_code == 429
        body = limited.json()
        assert set(body) == {"message", "retryAfter"}
        assert body["message"] == "Too Many Requests" and body["retryAfter"] == 800
        assert limited.headers["retry-after"] == "800"
        assert not [h for h in limited.headers if "ratelimit" in h.lower()]
        assert limited.headers["content-type"].startswith("application/json")


async def test_retry_after_is_fractional_under_a_time_scale_and_the_header_can_go() -> None:
    async with open_zwift(time_scale=60, retry_after_header=False) as zwift:
        await zwift.call("results")
        zwift.advance(0.25)
        limited = await zwift.call("results")
        assert limited.status_code == 429 and limited.json()["retryAfter"] == 0.75
        assert "retry-after" not in limited.headers


async def test_successful_answers_carry_no_rate_limit_headers(zwift: Zwift) -> None:
    response = await zwift.call("riders_get")
    assert response.status_code == 200
    assert not [h for h in response.headers if "ratelimit" in h.lower()]


# --- auth and routes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": f"Bearer {KEY}"}, {"Authorization": "wrong"}, {"x-api-key": KEY}],
)
async def test_only_the_raw_key_in_authorization_is_accepted(headers: dict[str, str]) -> None:
    async with open_zwift() as zwift:
        response = await zwift.get(f"/public/riders/{zwift.rider()}", headers=headers)
        assert response.status_code == 401 and response.json() == {"message": "Unauthorized"}
        assert (await zwift.call("riders_get")).status_code == 200  # nothing spent
        assert (await zwift.stats())["unauthorized"] == 1


async def test_unknown_routes_and_entities_are_404_with_a_message(zwift: Zwift) -> None:
    for path in ("/public/nothing", "/public/zp/1/results", "/public/riders"):
        response = await zwift.get(path)
        assert response.status_code == 404 and "message" in response.json()
    for path in ("/public/clubs/1", "/public/riders/1", "/public/events/1", "/public/results/1"):
        response = await zwift.get(path)
        assert response.status_code == 404 and response.json()["message"].endswith("not found")
    assert (await zwift.get("/public/riders/abc")).status_code == 400


# --- club paging -----------------------------------------------------------------------------


async def test_club_pages_are_ascending_capped_and_the_cursor_is_inclusive(zwift: Zwift) -> None:
    club = zwift.club(big=True)
    truth = (await zwift.client.get(f"/_admin/truth/clubs/{club}")).json()["rider_ids"]
    assert len(truth) == 2345
    first = (await zwift.get(f"/public/clubs/{club}")).json()
    assert set(first) == {"clubId", "name", "riders"} and first["clubId"] == club
    ids = [r["riderId"] for r in first["riders"]]
    assert ids == truth[:1000]
    assert (await zwift.get(f"/public/clubs/{club}/0")).json() == first
    seen, cursor = list(ids), ids[-1]
    while True:
        page = [
            r["riderId"]
            for r in (await zwift.get(f"/public/clubs/{club}/{cursor}")).json()["riders"]
        ]
        assert page[0] == cursor  # inclusive: the cursor rider comes again
        assert page == sorted(page) and len(page) <= 1000
        seen.extend(page[1:])
        if len(page) < 1000:
            break
        cursor = page[-1]
    assert seen == truth
    between = truth[1500] + 1  # a cursor that is no member: the next one up
    page = (await zwift.get(f"/public/clubs/{club}/{between}")).json()["riders"]
    assert page[0]["riderId"] == truth[1501]


# --- bulk POST -------------------------------------------------------------------------------


async def test_bulk_post_keeps_the_order_sent_and_omits_unknown_ids(zwift: Zwift) -> None:
    ids = list(zwift.world.riders)
    asked = [ids[7], 1, ids[2], ids[7], ids[5]]
    response = await zwift.post("/public/riders", asked)
    assert response.status_code == 200
    assert [r["riderId"] for r in response.json()] == [ids[7], ids[2], ids[5]]
    full = await zwift.post("/public/riders", ids[:1000])
    assert [r["riderId"] for r in full.json()] == ids[:1000]


@pytest.mark.parametrize(
    "body",
    [
        list(range(1, 1002)),  # 1001 ids
        {"ids": [1, 2]},
        ["1", "2"],
        [True],
        b"not json",
        b"",
    ],
)
async def test_bulk_post_takes_only_a_bare_array_of_at_most_1000_ids(body: Any) -> None:
    async with open_zwift() as zwift:
        response = await zwift.post("/public/riders", body)
        assert response.status_code == 400 and "message" in response.json()
        assert (await zwift.stats())["max_in_window"]["riders_post"] == 1  # it took the slot


async def test_bulk_post_at_an_epoch_gives_the_race_of_then(zwift: Zwift) -> None:
    rider = next(r for r in zwift.world.riders.values() if r.history)
    before = int(rider.history[0][0]) - 1
    now = (await zwift.post("/public/riders", [rider.id])).json()[0]
    then = (await zwift.post(f"/public/riders/{before}", [rider.id])).json()[0]
    one = (await zwift.get(f"/public/riders/{rider.id}/{before}")).json()
    assert then == one
    assert then["race"]["current"]["rating"] == rider.base_rating
    assert {k: v for k, v in then.items() if k != "race"} == {
        k: v for k, v in now.items() if k != "race"
    }


# --- shapes ----------------------------------------------------------------------------------


def _types(value: Any) -> Any:
    """The shape of a payload: keys and JSON types (int and float are one number type)."""
    if isinstance(value, dict):
        return {key: _types(item) for key, item in value.items()}
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return type(value).__name__
    if isinstance(value, int | float):
        return "number"
    return "list"


async def test_riders_are_shaped_like_the_real_rider(zwift: Zwift) -> None:
    real = fixture("rider.json")
    clubbed = next(
        r for r in zwift.world.riders.values() if r.club_id and r.base_rating and not r.lapsed
    )
    assert clubbed.club_id is not None
    ours = (await zwift.get(f"/public/riders/{clubbed.id}")).json()
    assert list(ours) == list(real)
    assert _types(ours) == _types(real)
    assert ours["club"] == {"id": clubbed.club_id, "name": zwift.world.clubs[clubbed.club_id].name}
    listed = (await zwift.get(f"/public/clubs/{clubbed.club_id}")).json()["riders"]
    assert _types(next(r for r in listed if r["riderId"] == clubbed.id)) == _types(real)
    weights = {type(r["weight"]) for r in listed}
    assert weights == {int, float}  # both occur, as in the real club payload


async def test_some_riders_have_no_race_and_lapsed_ones_no_power(zwift: Zwift) -> None:
    riders = (await zwift.post("/public/riders", list(zwift.world.riders)[:1000])).json()
    assert any(r["race"] is None and r["power"] is not None for r in riders)
    lapsed = [r for r in riders if r["power"] is None]
    assert lapsed and all(r["race"] is None and r["phenotype"] is None for r in lapsed)


async def test_results_are_shaped_like_the_real_results(zwift: Zwift) -> None:
    real = fixture("results.json")
    ours = (await zwift.get(f"/public/results/{zwift.event('past')}")).json()
    assert list(ours) == list(real)
    assert {k: _types(v) for k, v in ours.items() if k != "results"} == {
        k: _types(v) for k, v in real.items() if k != "results"
    }
    ranked = [r for r in ours["results"] if "ratingDelta" in r]
    unranked = [r for r in ours["results"] if "ratingDelta" not in r]
    real_ranked = next(r for r in real["results"] if "ratingDelta" in r)
    real_unranked = next(r for r in real["results"] if "ratingDelta" not in r)
    assert ranked and all(list(r) == list(real_ranked) for r in ranked)
    assert all(list(r) == list(real_unranked) and r["gap"] is None for r in unranked)
    categories = [r["category"] for r in ours["results"]]
    assert categories == sorted(categories)
    for row in ranked:
        assert row["rating"] == pytest.approx(row["ratingBefore"] + row["ratingDelta"])


async def test_events_signups_and_their_counts_agree(zwift: Zwift) -> None:
    event_id = zwift.event("near")
    event = (await zwift.get(f"/public/events/{event_id}")).json()
    signups = (await zwift.get(f"/public/event_signups/{event_id}")).json()
    assert event["eventId"] == signups["eventId"] == str(event_id)
    assert isinstance(event["time"], int) and event["type"] == "Race"
    counts = [int(n) for n in event["signups"].split(",")]
    assert event["categories"] == "A,B,C,D,E"
    assert sum(counts) == len(signups["signups"])
    assert all(
        isinstance(s["riderId"], int) and s["category"] in "ABCDE" for s in signups["signups"]
    )


# --- time ------------------------------------------------------------------------------------


async def test_events_sit_relative_to_the_start_in_simulated_time() -> None:
    async with open_zwift(time_scale=60, lifted=True) as zwift:
        truth = await zwift.truth()
        classes = {e["class"] for e in truth["events"]}
        assert classes == {"past", "urgent", "near", "far"}
        for event in truth["events"]:
            ahead = (event["starts_at"] - START) * 60  # simulated seconds
            expected = {
                "past": ahead < -2 * 3600 + 60,
                "urgent": 0 < ahead < 15 * 60,
                "near": 15 * 60 <= ahead < 60 * 60,
                "far": ahead >= 60 * 60,
            }
            assert expected[event["class"]], event
            assert (event["results"] is None) == (event["class"] != "past")


async def test_an_event_that_finishes_has_results_and_moves_ratings() -> None:
    async with open_zwift(time_scale=60, lifted=True) as zwift:
        event_id = zwift.event("urgent")
        event = zwift.world.events[event_id]
        assert (await zwift.get(f"/public/results/{event_id}")).status_code == 404
        before = await zwift.truth()
        zwift.advance(event.finishes_at - START + 0.01)
        after = await zwift.truth()
        found = next(e for e in after["events"] if e["event_id"] == event_id)
        assert found["class"] == "past" and found["results"]
        results = (await zwift.get(f"/public/results/{event_id}")).json()["results"]
        ranked = next(r for r in results if "ratingDelta" in r)
        rider = str(ranked["riderId"])
        assert before["riders"][rider]["rating"] == pytest.approx(ranked["ratingBefore"])
        assert after["riders"][rider]["rating"] == pytest.approx(ranked["rating"])
        served = (await zwift.get(f"/public/riders/{rider}")).json()
        assert served["race"]["current"]["rating"] == pytest.approx(ranked["rating"])
        assert served["race"]["current"]["date"] == int(event.finishes_at)


async def test_signups_arrive_until_the_start() -> None:
    async with open_zwift(time_scale=60, lifted=True) as zwift:
        event_id = zwift.event("far")
        event = zwift.world.events[event_id]
        early = len((await zwift.get(f"/public/event_signups/{event_id}")).json()["signups"])
        zwift.advance(event.starts_at - START)
        late = len((await zwift.get(f"/public/event_signups/{event_id}")).json()["signups"])
        assert early <= late == len(event.signups)


async def test_admin_adds_an_event_relative_to_now() -> None:
    async with open_zwift(time_scale=60, lifted=True) as zwift:
        zwift.advance(30)
        added = (
            await zwift.client.post("/_admin/events", json={"starts_in": 600, "signups": 7})
        ).json()
        assert added["class"] == "urgent"
        assert added["starts_at"] == int(START + 30 + 10)
        event = await zwift.get(f"/public/events/{added['event_id']}")
        assert event.status_code == 200
        bad = await zwift.client.post("/_admin/events", json={"signups": 7})
        assert bad.status_code == 400
        past = await zwift.client.post("/_admin/events", json={"starts_in": -1})
        assert past.status_code == 400


# --- faults, counters, determinism -----------------------------------------------------------


async def test_faults_5xx_truncation_and_forced_429s() -> None:
    async with open_zwift(lifted=True) as zwift:
        await zwift.client.post("/_admin/faults", json={"force_5xx": 1, "error_status": 502})
        failed = await zwift.call("riders_get")
        assert failed.status_code == 502 and "message" in failed.json()
        await zwift.client.post("/_admin/faults", json={"truncate_rate": 1.0})
        cut = await zwift.call("riders_get")
        assert cut.status_code == 200
        with pytest.raises(ValueError):
            json.loads(cut.content)
        await zwift.client.post("/_admin/faults", json={"clear": True, "force_429": 1})
        forced = await zwift.call("riders_get")
        assert forced.status_code == 429 and set(forced.json()) == {"message", "retryAfter"}
        seen = await zwift.stats()
        assert seen["faults_injected"] == {"error": 1, "truncate": 1, "forced_429": 1}
        assert seen["by_status"] == {"200": 1, "429": 1, "502": 1}


async def test_admin_limits_change_a_family_and_reset_clears_the_windows() -> None:
    async with open_zwift() as zwift:
        changed = (await zwift.client.post("/_admin/limits", json={"events": [2, 10]})).json()
        assert changed["events"] == [2, 10]
        assert [(await zwift.call("events")).status_code for _ in range(3)] == [200, 200, 429]
        bad = await zwift.client.post("/_admin/limits", json={"nope": [1, 1]})
        assert bad.status_code == 400
        reset = (await zwift.client.post("/_admin/reset")).json()
        assert reset["requests"] == 0 and reset["max_arrivals_in_window"]["events"] == 0
        assert (await zwift.call("events")).status_code == 200


def test_the_world_is_deterministic_for_a_seed() -> None:
    one = ZwiftWorld(SMALL, start=START, time_scale=60).truth(START)
    two = ZwiftWorld(SMALL, start=START, time_scale=60).truth(START)
    other = ZwiftWorld(ZwiftWorldConfig(seed=4, club_sizes=(12, 2345)), start=START).truth(START)
    assert one == two
    assert one["clubs"] != other["clubs"]
    assert [len(c["rider_ids"]) for c in one["clubs"]] == [12, 2345]


def test_cli_options_reproduce_a_config() -> None:
    config = ZwiftSandboxConfig(
        world=SMALL, api_key="k", time_scale=60.0, start=START, riders_get=(10, 60.0),
        retry_after_header=False,
    )  # fmt: skip
    args = build_parser().parse_args(cli_args(config))
    assert config_from_args(args) == config
    with pytest.raises(ValueError):
        config_from_args(build_parser().parse_args(["--provider=zwift", "--events=1,2"]))


def test_served_for_real_a_reset_drops_the_connection() -> None:
    from sandbox.server import SandboxServer

    config = ZwiftSandboxConfig(world=SMALL, lifted=True)
    with SandboxServer(create_zwift_app(config)) as server:
        rider = next(iter(ZwiftWorld(SMALL, start=START).riders))
        url = f"{server.url}{API_PREFIX}/public/riders/{rider}"
        assert httpx.get(url, headers=HEADERS).status_code == 200
        httpx.post(f"{server.url}/_admin/faults", json={"reset_rate": 1.0})
        with pytest.raises(httpx.TransportError):
            httpx.get(url, headers=HEADERS)
        stats = httpx.get(f"{server.url}/_admin/stats").json()
        assert stats["faults_injected"] == {"reset": 1}


def test_the_sandbox_runs_as_a_process_from_its_cli_options() -> None:
    from sandbox.server import SandboxProcess

    config = ZwiftSandboxConfig(world=SMALL, time_scale=60.0, api_key="k")
    with SandboxProcess(config) as process:
        truth = httpx.get(f"{process.url}/_admin/truth", timeout=30).json()
        assert truth["time_scale"] == 60.0
        assert [len(c["rider_ids"]) for c in truth["clubs"]] == [12, 2345]
        answer = httpx.get(
            f"{process.url}{API_PREFIX}/public/clubs/{truth['clubs'][0]['club_id']}",
            headers={"Authorization": "k"},
        )
        assert answer.status_code == 200 and len(answer.json()["riders"]) == 12
