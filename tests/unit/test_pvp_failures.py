"""PvP failure semantics (the retry contract): what an activity tells Temporal, per cause.

The activities run in ``ActivityEnvironment`` against a Battle.net client whose transport
answers as scripted (per character), and — where they read or write — the session's embedded
Postgres. End-to-end behaviour on the real server and sandbox is in tests/integration.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import socket
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.pvp import PvpActivities, PvpEquipmentCounts, PvpEquipmentStep, add_counts
from activities.types import (
    PvpBracketInput,
    PvpEquipmentInput,
    PvpEquipmentResult,
    PvpRangesInput,
    PvpSyncInput,
)
from providers.battlenet import BattleNetClient
from providers.battlenet.pvp import equipped_items, leaderboard_columns
from providers.errors import BadPayload
from providers.ratelimit import RateLimiter, Window
from storage import pvp as db
from storage.db import create_engine
from storage.models import characters, pvp_leaderboard_entries, sync_failures

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures/blizzard"
LADDER = json.loads((FIXTURES / "pvp_leaderboard_2v2_season27_first50.json").read_text())
GEAR = json.loads((FIXTURES / "character_equipment.json").read_text())
SNAPSHOT = datetime(2019, 12, 22, 9, 5, 19, tzinfo=UTC)
KEY = "eu/37/2v2"

Answer = Callable[[httpx.Request], httpx.Response]


def _json(status: int, body: Any, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


class Upstream:
    """A scripted Battle.net: PvP index and leaderboard, equipment per character name."""

    def __init__(self, ladder: dict[str, Any] | None = None, delay: float = 0.0) -> None:
        self.ladder = ladder if ladder is not None else LADDER
        self.delay = delay
        self.equipment: dict[str, Answer] = {}  # name (lower case) -> answer, default 200
        self.asked: Counter[str] = Counter()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/token":
            return _json(200, {"access_token": "t", "token_type": "bearer", "expires_in": 86399})
        if self.delay:
            await asyncio.sleep(self.delay)
        if path == "/data/wow/pvp-season/index":
            return _json(200, {"current_season": {"id": 37}})
        if path == "/data/wow/pvp-season/37/pvp-leaderboard/index":
            return _json(200, {"leaderboards": [{"name": "2v2"}, {"name": "3v3"}]})
        if path == "/data/wow/pvp-season/37/pvp-leaderboard/2v2":
            return _json(200, self.ladder, **{"Last-Modified": "Sun, 22 Dec 2019 09:05:19 GMT"})
        if path.endswith("/equipment"):
            name = path.split("/")[-2]
            self.asked[name] += 1
            answer = self.equipment.get(name)
            if answer is not None:
                return answer(request)
            return _json(200, GEAR, **{"Last-Modified": "Sun, 22 Dec 2019 09:05:19 GMT"})
        return _json(404, {"code": 404, "type": "BLZWEBAPI00000404", "detail": "Not Found"})


def _client(upstream: Upstream, limiter: RateLimiter | None = None) -> BattleNetClient:
    return BattleNetClient(
        client_id="id", client_secret="secret", api_base="http://bnet.test",
        oauth_url="http://bnet.test/token",
        limiter=limiter or RateLimiter("battlenet", [Window(1000, 1.0)]),
        transport=httpx.MockTransport(upstream),
    )  # fmt: skip


def _env(heartbeat_timeout: timedelta | None = None, attempt: int = 1) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        ActivityEnvironment.default_info(), heartbeat_timeout=heartbeat_timeout, attempt=attempt
    )
    return env


def _names(n: int) -> list[str]:
    return [e["character"]["name"].lower() for e in LADDER["entries"][:n]]


async def _board(database_url: str) -> tuple[Any, PvpEquipmentInput]:
    """The 50-entry fixture ladder imported; the input of its one equipment batch."""
    engine = create_engine(database_url, pool_size=2)
    columns = leaderboard_columns(LADDER, KEY)
    async with engine.begin() as conn:
        board = await db.import_leaderboard(conn, "eu", 37, "2v2", columns, {}, None, SNAPSHOT)
    async with engine.connect() as conn:
        ((lo, hi),) = await db.entry_id_ranges(conn, board.leaderboard_id, SNAPSHOT, 100)
    return engine, PvpEquipmentInput(board.leaderboard_id, SNAPSHOT, lo, hi)


async def _count(engine: Any, query: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


def _unprocessed() -> Any:
    return (
        select(func.count())
        .select_from(pvp_leaderboard_entries)
        .where(pvp_leaderboard_entries.c.equipment_processed_at.is_(None))
    )


# -- defect: an equipment batch was all-or-nothing ------------------------------------------


async def test_a_batch_stores_what_succeeded_and_its_404s_and_leaves_only_the_failed_entry(
    database_url,
):
    upstream = Upstream()
    gone, flaky = _names(2)
    upstream.equipment[gone] = lambda r: _json(404, {"code": 404})
    upstream.equipment[flaky] = lambda r: _json(503, {"code": 503})
    engine, inp = await _board(database_url)
    acts = PvpActivities(engine, _client(upstream), 3600)

    step = await _env().run(acts.pvp_process_equipment, inp)

    assert (step.processed, step.remaining, step.not_found, step.deferred) == (49, 1, 1, 1)
    assert step.fetched == 48 and not step.done and step.progressed and step.resume_at is None
    assert await _count(engine, _unprocessed()) == 1
    assert upstream.asked[flaky] == 3, "the client asked the 5xx again twice"
    # The next call asks only for the entry that is left; with no progress it raises a
    # retryable error, so Temporal backs off.
    with pytest.raises(ApplicationError) as err:
        await _env(attempt=2).run(acts.pvp_process_equipment, inp)
    assert err.value.type == "Transient" and not err.value.non_retryable
    assert "no entry of the batch made progress" in err.value.message
    assert upstream.asked[gone] == 1, "a 404 is asked once"
    assert sum(upstream.asked.values()) == 49 + 3 + 3
    # Once it answers, the batch is done; the 404 was recorded once.
    del upstream.equipment[flaky]
    last = await _env(attempt=3).run(acts.pvp_process_equipment, inp)
    assert (last.processed, last.remaining, last.failed_attempts, last.done) == (1, 0, 2, True)
    async with engine.connect() as conn:
        failures = (await conn.execute(select(sync_failures))).all()
        private = (
            await conn.execute(select(characters.c.name_slug).where(characters.c.is_private))
        ).all()
    await engine.dispose()
    assert [(f.reason, f.attempts) for f in failures] == [("not_found", 1)]
    assert [p.name_slug for p in private] == [gone]


async def test_a_payload_of_the_wrong_shape_is_given_up_for_that_entry_only(database_url):
    upstream = Upstream()
    drifted = _names(1)[0]
    broken = copy.deepcopy(GEAR)
    broken["equipped_items"][0]["slot"] = "HEAD"  # a string where an object belongs
    upstream.equipment[drifted] = lambda r: _json(200, broken)
    engine, inp = await _board(database_url)
    step = await _env().run(
        PvpActivities(engine, _client(upstream), 3600).pvp_process_equipment, inp
    )
    assert (step.processed, step.failed, step.remaining, step.done) == (50, 1, 0, True)
    async with engine.connect() as conn:
        failures = (await conn.execute(select(sync_failures))).all()
    await engine.dispose()
    assert [(f.reason, f.attempts) for f in failures] == [("bad_payload", 1)]
    assert "malformed item" in failures[0].last_error


async def test_a_spent_budget_or_a_429_returns_resume_at_instead_of_failing(database_url):
    upstream = Upstream()
    engine, inp = await _board(database_url)
    # 10 requests per second and a caller that waits at most 50 ms: most entries wait.
    tight = RateLimiter("battlenet", [Window(10, 1.0)], max_wait=0.05)
    step = await _env().run(
        PvpActivities(engine, _client(upstream, tight), 3600).pvp_process_equipment, inp
    )
    assert 0 < step.processed < 50 and step.remaining == 50 - step.processed
    assert step.resume_at is not None and step.resume_at > datetime.now(UTC) - timedelta(seconds=1)
    assert step.budget_waits == 1 and not step.done
    # A 429 pauses the bucket and is a budget wait too, never a failed attempt.
    upstream.equipment[_names(50)[-1]] = lambda r: _json(429, {"code": 429})
    again = await _env().run(
        PvpActivities(engine, _client(upstream), 3600).pvp_process_equipment, inp
    )
    await engine.dispose()
    assert again.remaining == 1 and again.resume_at is not None and again.progressed


# -- defect: PvP activities did not heartbeat -------------------------------------------------


async def test_an_equipment_batch_heartbeats_while_it_waits_for_answers(database_url):
    engine, inp = await _board(database_url)
    acts = PvpActivities(engine, _client(Upstream(delay=1.2)), 3600)
    env = _env(heartbeat_timeout=timedelta(seconds=1.5))
    beats: list[Any] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    step = await env.run(acts.pvp_process_equipment, inp)
    await engine.dispose()
    assert step.done
    assert len(beats) >= 2, "no heartbeat while the batch waited more than its timeout"


# -- defect: database connection errors were non-retryable ------------------------------------


def _dead_database_url() -> str:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"postgresql://nobody@127.0.0.1:{port}/gone"


async def test_an_unreachable_database_is_a_retryable_one_line_error_in_every_pvp_activity():
    engine = create_engine(_dead_database_url(), pool_size=1)
    acts = PvpActivities(engine, _client(Upstream()), 3600)
    calls: list[tuple[Callable[[Any], Any], Any]] = [
        (acts.pvp_process_equipment, PvpEquipmentInput(1, SNAPSHOT, 1, 100)),
        (acts.pvp_equipment_ranges, PvpRangesInput(1, SNAPSHOT, 100)),
        (acts.pvp_import_leaderboard, PvpBracketInput("eu", 37, "2v2")),
    ]
    for fn, arg in calls:
        with pytest.raises(ApplicationError) as err:
            await _env().run(fn, arg)
        assert not err.value.non_retryable, (fn.__name__, err.value)
        assert "\n" not in err.value.message and "SELECT" not in err.value.message
    await engine.dispose()


# -- wrong-typed fields: BadPayload naming the leaderboard ------------------------------------


def _drifted(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    ladder = copy.deepcopy(LADDER)
    change(ladder)
    return ladder


DRIFTS: dict[str, Callable[[dict[str, Any]], None]] = {
    "id is not a number": lambda b: b["entries"][3]["character"].update(id="abc"),
    "character is a string": lambda b: b["entries"][3].update(character="abc"),
    "realm is a string": lambda b: b["entries"][3]["character"].update(realm="stormrage"),
    "name is an object": lambda b: b["entries"][3]["character"].update(name={"en_GB": "x"}),
    "bracket is a string": lambda b: b.update(bracket="ARENA_2v2"),
    "statistics are a string": lambda b: b["entries"][3].update(season_match_statistics="x"),
    "played is not a number": lambda b: b["entries"][3]["season_match_statistics"].update(
        played="many"
    ),
    "faction is a string": lambda b: b["entries"][3].update(faction="HORDE"),
    "tier is a list": lambda b: b["entries"][3].update(tier=[1]),
    "an entry is a string": lambda b: b["entries"].__setitem__(3, "entry"),
}


@pytest.mark.parametrize("drift", sorted(DRIFTS))
def test_a_wrong_typed_leaderboard_field_is_bad_payload_naming_the_leaderboard(drift):
    with pytest.raises(BadPayload) as err:
        leaderboard_columns(_drifted(DRIFTS[drift]), KEY)
    assert KEY in str(err.value) and err.value.entity == KEY


@pytest.mark.parametrize(
    "drift", ["bracket is a string", "played is not a number", "id is not a number"]
)
async def test_an_import_of_a_drifted_leaderboard_fails_once_as_bad_payload(database_url, drift):
    engine = create_engine(database_url, pool_size=1)
    acts = PvpActivities(engine, _client(Upstream(_drifted(DRIFTS[drift]))), 3600)
    with pytest.raises(ApplicationError) as err:
        await _env().run(acts.pvp_import_leaderboard, PvpBracketInput("eu", 37, "2v2"))
    await engine.dispose()
    assert err.value.type == "BadPayload" and err.value.non_retryable
    assert f"leaderboard {KEY}" in err.value.message and "\n" not in err.value.message


def test_wrong_typed_equipment_fields_are_bad_payload():
    for change in (
        lambda g: g["equipped_items"][0].update(quality="EPIC"),
        lambda g: g["equipped_items"][0].update(name={"en_GB": "Casque"}),
        lambda g: g["equipped_items"][0]["item"].update(id="abc"),
        lambda g: g.update(equipped_items={"HEAD": {}}),
    ):
        gear = copy.deepcopy(GEAR)
        change(gear)
        with pytest.raises(BadPayload):
            equipped_items(gear, "character/eu/stormrage/sheday")
    assert len(equipped_items(GEAR, "character/eu/stormrage/sheday")) == len(GEAR["equipped_items"])


# -- unknown season or bracket: one-line BadInput ---------------------------------------------


async def test_an_unknown_season_or_bracket_is_a_one_line_bad_input():
    acts = PvpActivities(create_engine(_dead_database_url(), pool_size=1), _client(Upstream()), 1)
    for inp, text in (
        (PvpSyncInput("eu", season=99), "eu has no PvP season 99"),
        (PvpSyncInput("eu", brackets=["5v5"]), "season 37 has no bracket(s) 5v5; it has 2v2, 3v3"),
    ):
        with pytest.raises(ApplicationError) as err:
            await _env().run(acts.pvp_resolve, inp)
        assert (err.value.type, err.value.non_retryable, err.value.message) == (
            "BadInput",
            True,
            text,
        )
    plan = await _env().run(acts.pvp_resolve, PvpSyncInput("eu", brackets=["3v3"]))
    assert (plan.season, plan.brackets) == (37, ["3v3"])


# -- the step contract --------------------------------------------------------------------------


def test_a_step_recorded_before_the_loop_decodes_as_done_and_counts_add_up():
    """Histories recorded before the loop carry a plain PvpEquipmentResult: it must decode as a
    finished step, or an old workflow would call its batch again on replay."""
    old = PvpEquipmentResult(processed=100, fetched=90, private_skipped=10)
    payload = pydantic_data_converter.payload_converter.to_payloads([old])
    (step,) = pydantic_data_converter.payload_converter.from_payloads(payload, [PvpEquipmentStep])
    assert isinstance(step, PvpEquipmentStep) and step.done and step.processed == 100
    total = PvpEquipmentCounts()
    add_counts(total, step)
    add_counts(total, PvpEquipmentStep(processed=3, failed=1, remaining=5, calls=1))
    assert (total.processed, total.failed, total.calls, total.fetched) == (103, 1, 1, 90)
    assert not PvpEquipmentStep(remaining=1).done and not PvpEquipmentStep().progressed
