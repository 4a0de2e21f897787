"""The Battle.net sandbox imitates the real API strictly: auth, namespaces, errors, 304s, limits."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette

from sandbox.battlenet import BattleNetSandbox, BattleNetSandboxConfig, create_battlenet_app
from sandbox.limits import MultiWindowLimiter, SlidingWindow
from sandbox.server import PortInUseError, SandboxProcess, SandboxServer, serve_forever
from sandbox.world import BattleNetWorld, BattleNetWorldConfig, CharacterInfo

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "blizzard"
WORLD = BattleNetWorldConfig(
    seed=7,
    guilds_per_region=2,
    roster_min=15,
    roster_max=30,
    guildless_characters=3,
    hidden_ratio=0.1,
)
ERR_401 = {"code": 401, "type": "BLZWEBAPI00000401", "detail": "Unauthorized"}
ERR_403 = {"code": 403, "type": "BLZWEBAPI00000403", "detail": "Forbidden"}
ERR_404 = {"code": 404, "type": "BLZWEBAPI00000404", "detail": "Not Found"}
ERR_429 = {"code": 429, "type": "BLZWEBAPI00000429", "detail": "Too Many Requests"}
ERR_503 = {"code": 503, "type": "BLZWEBAPI00000503", "detail": "Service Unavailable"}
NS = {"namespace": "profile-eu", "locale": "en_GB"}
CHAR_SUFFIXES = {
    "profile": "",
    "equipment": "/equipment",
    "mythic_keystone_profile": "/mythic-keystone-profile",
    "professions": "/professions",
    "status": "/status",
}


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def config(**overrides: Any) -> BattleNetSandboxConfig:
    return BattleNetSandboxConfig(world=WORLD, **overrides)


def sandbox_of(app: Starlette) -> BattleNetSandbox:
    state: BattleNetSandbox = app.state.sandbox
    return state


class Api:
    """An in-process client holding a valid token."""

    def __init__(self, app: Starlette, client: httpx.AsyncClient, token: str) -> None:
        self.app, self.client, self.token = app, client, token

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def get(
        self, path: str, headers: dict[str, str] | None = None, **params: str
    ) -> httpx.Response:
        query = {**NS, **params}
        return await self.client.get(path, params=query, headers={**self.auth, **(headers or {})})

    def character_path(self, c: CharacterInfo, suffix: str = "") -> str:
        return f"/profile/wow/character/{c.realm_slug}/{quote(c.name_slug)}{suffix}"

    def characters(self, region: str = "eu") -> list[CharacterInfo]:
        return sandbox_of(self.app).world.characters(region)

    def visible(self) -> list[CharacterInfo]:
        return [c for c in self.characters() if not c.hidden and c.guild_id is not None]

    async def stats(self) -> dict[str, Any]:
        response = await self.client.get("/_admin/stats")
        stats: dict[str, Any] = response.json()
        return stats


async def get_token(client: httpx.AsyncClient) -> str:
    response = await client.post(
        "/token",
        data={"grant_type": "client_credentials"},
        auth=("sandbox-client", "sandbox-secret"),
    )
    assert response.status_code == 200
    token: str = response.json()["access_token"]
    return token


def asgi_client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sandbox")


@asynccontextmanager
async def open_api(**overrides: Any) -> AsyncIterator[Api]:
    app = create_battlenet_app(config(**overrides))
    async with asgi_client(app) as client:
        yield Api(app, client, await get_token(client))


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with open_api() as opened:
        yield opened


def shape(value: Any) -> Any:
    """Keys and nesting of a JSON value (lists by their first element; int and float alike)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if isinstance(value, bool):
        return "bool"
    return "number" if isinstance(value, int | float) else type(value).__name__


# --- OAuth and request checks ---------------------------------------------------------------


async def test_token_issued_for_basic_auth_and_form_credentials() -> None:
    app = create_battlenet_app(config(per_second=1))
    async with asgi_client(app) as client:
        basic = await client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=("sandbox-client", "sandbox-secret"),
        )
        form = await client.post(
            "/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "sandbox-client",
                "client_secret": "sandbox-secret",
            },
        )
        for response in (basic, form):
            body = response.json()
            assert response.status_code == 200
            assert body["token_type"] == "bearer" and body["expires_in"] == 86399
            assert body["sub"] == "sandbox-client" and len(body["access_token"]) == 34
        assert basic.json()["access_token"] != form.json()["access_token"]
        for _ in range(3):  # token requests are never rate limited nor counted as API requests
            assert (
                await client.post(
                    "/token",
                    data=dict(grant_type="client_credentials"),
                    auth=("sandbox-client", "sandbox-secret"),
                )
            ).status_code == 200
        stats = (await client.get("/_admin/stats")).json()
        assert stats["token_requests"] == 5 and stats["requests"] == 0


async def test_token_refused_for_bad_credentials() -> None:
    async with asgi_client(create_battlenet_app(config())) as client:
        response = await client.post(
            "/token", data={"grant_type": "client_credentials"}, auth=("sandbox-client", "wrong")
        )
        assert response.status_code == 401
        assert response.json() == {
            "error": "invalid_client",
            "error_description": "Invalid client credentials",
        }
        assert (
            await client.post("/token", data={"grant_type": "client_credentials"})
        ).status_code == 401


async def test_missing_or_revoked_token_is_401(api: Api) -> None:
    c = api.visible()[0]
    missing = await api.client.get(api.character_path(c), params=NS)
    assert missing.status_code == 401 and missing.json() == ERR_401
    assert missing.headers["content-type"] == "application/json;charset=UTF-8"
    assert missing.headers["battlenet-namespace"] == "profile-eu"
    assert (await api.get(api.character_path(c))).status_code == 200
    assert (await api.client.post("/_admin/tokens/revoke")).json() == {"revoked": 1}
    revoked = await api.get(api.character_path(c))
    assert revoked.status_code == 401 and revoked.json() == ERR_401


async def test_expired_token_is_401() -> None:
    now = [1000.0]
    app = create_battlenet_app(config(token_ttl=60), clock=lambda: now[0])
    async with asgi_client(app) as client:
        api = Api(app, client, await get_token(client))
        c = api.visible()[0]
        assert (await api.get(api.character_path(c))).status_code == 200
        now[0] += 61
        assert (await api.get(api.character_path(c))).json() == ERR_401


async def test_namespace_is_required_and_may_come_from_the_header(api: Api) -> None:
    c = api.visible()[0]
    path = api.character_path(c)
    missing = await api.client.get(path, headers=api.auth)
    assert missing.status_code == 403 and missing.json() == ERR_403
    for namespace in ("profile-kr", "static-eu", "dynamic-eu"):
        wrong = await api.client.get(path, params={"namespace": namespace}, headers=api.auth)
        assert wrong.status_code == 403 and wrong.json() == ERR_403
    header = await api.client.get(path, headers={**api.auth, "Battlenet-Namespace": "profile-eu"})
    assert header.status_code == 200 and header.headers["battlenet-namespace"] == "profile-eu"


async def test_unknown_and_hidden_characters_and_unknown_guilds_are_404(api: Api) -> None:
    hidden = [c for c in api.characters() if c.hidden]
    assert hidden, "the test world should contain hidden characters"
    paths = [
        f"/profile/wow/character/stormrage/nobody{suffix}" for suffix in CHAR_SUFFIXES.values()
    ]
    paths += [api.character_path(hidden[0], suffix) for suffix in CHAR_SUFFIXES.values()]
    paths += [
        "/data/wow/guild/stormrage/no-such-guild",
        "/data/wow/guild/stormrage/no-such-guild/roster",
    ]
    paths += ["/profile/wow/character/stormrage/x/achievements"]
    for path in paths:
        response = await api.get(path)
        assert response.status_code == 404, path
        assert response.json() == ERR_404
        assert response.headers["content-type"] == "application/json;charset=UTF-8"
        assert response.headers["battlenet-namespace"] == "profile-eu"
    us_character = next(c for c in api.characters("us") if not c.hidden)
    assert (await api.get(api.character_path(us_character))).status_code == 404  # wrong region


async def test_lookups_ignore_case_and_accept_percent_encoded_unicode(api: Api) -> None:
    accented = [c for c in api.visible() if not c.name.isascii()]
    assert accented, "the test world should contain non-ASCII names"
    c = accented[0]
    path = f"/profile/wow/character/{c.realm_slug.upper()}/{quote(c.name.upper(), safe='')}"
    response = await api.get(path)
    assert response.status_code == 200 and response.json()["name"] == c.name
    guilds = sandbox_of(api.app).world.guilds("eu")
    g = guilds[0]
    response = await api.get(
        f"/data/wow/guild/{g.realm_slug}/{quote(g.name.upper().replace(' ', '-'))}"
    )
    assert response.status_code == 200 and response.json()["id"] == g.id


# --- payloads ---------------------------------------------------------------------------------


async def test_payloads_are_shaped_like_the_recorded_ones(api: Api) -> None:
    world = sandbox_of(api.app).world
    g = world.guilds("eu")[0]
    guild = (await api.get(f"/data/wow/guild/{g.realm_slug}/{quote(g.name_slug)}")).json()
    roster = (await api.get(f"/data/wow/guild/{g.realm_slug}/{quote(g.name_slug)}/roster")).json()
    assert shape(guild) == shape(fixture("guild"))
    assert shape(roster) == shape(fixture("guild_roster"))
    assert guild["member_count"] == len(roster["members"]) == g.member_count
    assert sorted(m["rank"] for m in roster["members"]).count(0) == 1

    c = next(m for m in api.visible() if m.guild_id == g.id)
    profile = (await api.get(api.character_path(c))).json()
    assert shape(profile) == shape(fixture("character_profile"))
    assert profile["guild"]["id"] == g.id and profile["guild"]["name"] == g.name
    assert profile["_links"]["self"]["href"] == (
        f"https://eu.api.blizzard.com/profile/wow/character/{c.realm_slug}/{c.name_slug}?namespace=profile-eu"
    )

    equipment = (await api.get(api.character_path(c, "/equipment"))).json()
    recorded = fixture("character_equipment")
    assert equipment.keys() == recorded.keys()
    assert shape(equipment["character"]) == shape(recorded["character"])
    assert len(equipment["equipped_items"]) == 16
    item_keys = set().union(*(item.keys() for item in recorded["equipped_items"]))
    for item in equipment["equipped_items"]:
        assert set(item) <= item_keys and {"item", "slot", "level", "name", "quality"} <= set(item)


async def test_mythic_profiles_vary_like_the_real_ones(api: Api) -> None:
    recorded = fixture("character_mythic_keystone_profile")
    kinds: Counter[str] = Counter()
    for c in api.visible():
        mythic = (await api.get(api.character_path(c, "/mythic-keystone-profile"))).json()
        assert set(mythic) - set(recorded) <= {"current_mythic_rating"}
        assert set(recorded) <= set(mythic)
        if "best_runs" in mythic["current_period"]:
            kinds["runs"] += 1
            expected = shape(recorded["current_period"]["best_runs"][0])
            assert shape(mythic["current_period"]["best_runs"][0]) == expected
        elif "current_mythic_rating" in mythic:
            kinds["rating_only"] += 1
        else:
            kinds["never_ran"] += 1
            assert set(mythic) == set(recorded)
    assert kinds["runs"] and kinds["never_ran"]


async def test_professions_and_status_payloads(api: Api) -> None:
    kinds: Counter[str] = Counter()
    for c in api.visible():
        professions = (await api.get(api.character_path(c, "/professions"))).json()
        kinds["empty" if "primaries" not in professions else "trained"] += 1
        for entry in professions.get("primaries", []):
            assert {"profession", "tiers"} <= set(entry)
            assert {"skill_points", "max_skill_points", "tier", "known_recipes"} <= set(
                entry["tiers"][0]
            )
    assert kinds["empty"] and kinds["trained"]
    c = api.visible()[0]
    status = await api.get(api.character_path(c, "/status"))
    assert status.json() == {
        "_links": {
            "self": {
                "href": f"https://eu.api.blizzard.com/profile/wow/character/"
                f"{c.realm_slug}/{c.name_slug}/status?namespace=profile-eu"
            }
        },
        "id": c.id,
        "is_valid": True,
    }
    assert status.headers["battlenet-schema"] == "character-status"


async def test_success_headers(api: Api) -> None:
    g = sandbox_of(api.app).world.guilds("eu")[0]
    guild = await api.get(f"/data/wow/guild/{g.realm_slug}/{quote(g.name_slug)}")
    assert guild.headers["content-type"] == "application/json;charset=UTF-8"
    assert guild.headers["battlenet-schema"] == "guild"
    assert guild.headers["battlenet-schema-revision"] == "8"
    assert guild.headers["cache-control"] == "public, max-age=10800"
    assert guild.headers["last-modified"].endswith(" GMT")
    assert parsedate_to_datetime(guild.headers["last-modified"]) == g.last_modified
    assert "date" in guild.headers and "retry-after" not in guild.headers
    c = api.visible()[0]
    schemas = {
        "profile": "character",
        "equipment": "character-equipment",
        "mythic_keystone_profile": "mythic-keystone-profile",
    }
    for key, schema in schemas.items():
        response = await api.get(api.character_path(c, CHAR_SUFFIXES[key]))
        assert response.headers["battlenet-schema"] == schema
        assert "cache-control" not in response.headers


def test_world_is_deterministic_per_seed() -> None:
    one, two = BattleNetWorld(WORLD), BattleNetWorld(WORLD)
    other = BattleNetWorld(BattleNetWorldConfig(seed=8))
    for region in ("eu", "us"):
        assert one.characters(region) == two.characters(region)
        assert one.guilds(region) == two.guilds(region)
    c = one.characters("eu")[3]
    for build in ("character_profile", "character_equipment", "character_mythic_keystone_profile"):
        assert getattr(one, build)("eu", c.realm_slug, c.name) == getattr(two, build)(
            "eu", c.realm_slug, c.name
        )
    assert one.characters("eu") != other.characters("eu")
    ids = [c.id for c in one.characters("eu")]
    assert len(ids) == len(set(ids))
    names = [(c.realm_slug, c.name_slug) for c in one.characters("eu")]
    assert len(names) == len(set(names))


def test_a_large_world_has_the_rosters_it_was_asked_for() -> None:
    # (no wall-clock bound here: a timed unit test beside the servers' tests is a flaky one)
    world = BattleNetWorld(
        BattleNetWorldConfig(regions=("eu",), guilds_per_region=10, roster_min=500, roster_max=500)
    )
    assert [g.member_count for g in world.guilds("eu")] == [500] * 10


# --- conditional requests and touches ---------------------------------------------------------


async def test_if_modified_since_gives_304_until_the_character_is_touched(api: Api) -> None:
    c = api.visible()[0]
    first = await api.get(api.character_path(c))
    last_modified = first.headers["last-modified"]
    same = await api.get(api.character_path(c), headers={"If-Modified-Since": last_modified})
    assert same.status_code == 304 and same.content == b""
    lenient = last_modified.replace(" 0", " ", 1)  # a non-zero-padded day still parses
    assert (
        await api.get(api.character_path(c), headers={"If-Modified-Since": lenient})
    ).status_code == 304
    touched = await api.client.post(
        f"/_admin/touch/character/eu/{c.realm_slug}/{quote(c.name_slug)}"
    )
    assert touched.json()["version"] == 2
    again = await api.get(api.character_path(c), headers={"If-Modified-Since": last_modified})
    assert again.status_code == 200
    assert parsedate_to_datetime(again.headers["last-modified"]) > parsedate_to_datetime(
        last_modified
    )
    assert again.json()["achievement_points"] > first.json()["achievement_points"]
    assert again.json()["equipped_item_level"] > first.json()["equipped_item_level"]


async def test_guild_touch_changes_guild_and_roster(api: Api) -> None:
    g = sandbox_of(api.app).world.guilds("eu")[0]
    base = f"/data/wow/guild/{g.realm_slug}/{quote(g.name_slug)}"
    guild, roster = await api.get(base), await api.get(base + "/roster")
    since = {"If-Modified-Since": roster.headers["last-modified"]}
    assert (await api.get(base + "/roster", headers=since)).status_code == 304
    assert (
        await api.client.post(f"/_admin/touch/guild/eu/{g.realm_slug}/{quote(g.name_slug)}")
    ).status_code == 200
    new_roster = await api.get(base + "/roster", headers=since)
    assert new_roster.status_code == 200 and new_roster.json() != roster.json()
    new_guild = (await api.get(base)).json()
    assert new_guild["achievement_points"] > guild.json()["achievement_points"]


def test_a_touch_changes_only_the_touched_entity() -> None:
    world = BattleNetWorld(WORLD)
    builders = (
        "character_profile",
        "character_equipment",
        "character_mythic_keystone_profile",
        "character_professions",
        "character_status",
    )

    def snapshot() -> dict[tuple[int, str], Any]:
        return {
            (c.id, b): getattr(world, b)("eu", c.realm_slug, c.name)
            for c in world.characters("eu")
            for b in builders
        }

    before = snapshot()
    touched = [c for c in world.characters("eu") if not c.hidden][:5]
    for c in touched:
        world.touch_character("eu", c.realm_slug, c.name)
    for g in world.guilds("eu"):
        world.touch_guild("eu", g.realm_slug, g.name_slug)
    after = snapshot()
    changed = {key[0] for key in before if before[key] != after[key]}
    assert changed == {c.id for c in touched}


# --- the strict limiter -----------------------------------------------------------------------


async def test_strict_limiter_admits_exactly_the_limit_of_a_concurrent_burst(api: Api) -> None:
    c = api.visible()[0]
    responses = await asyncio.gather(
        *(api.get(api.character_path(c, "/status")) for _ in range(150))
    )
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 100, 429: 50}
    for response in responses:
        if response.status_code == 429:
            assert response.json() == ERR_429
            assert "retry-after" not in response.headers
    stats = await api.stats()
    assert stats["requests"] == 150 and stats["throttled"] == 50
    assert stats["by_status"] == {"200": 100, "429": 50}
    assert stats["by_route"]["status"] == 150
    assert stats["max_in_window"]["1"] == 100
    assert stats["max_arrivals_in_window"]["1"] == 150
    assert stats["limits"] == {"per_second": 100, "per_hour": 36000}


async def test_hourly_window_limits_too_and_limits_can_change() -> None:
    async with open_api(per_hour=3, retry_after_header=True) as api:
        c = api.visible()[0]
        statuses = [(await api.get(api.character_path(c))).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        throttled = await api.get(api.character_path(c))
        assert throttled.headers["retry-after"] == "1" and throttled.json() == ERR_429
        limits = await api.client.post("/_admin/limits", json={"per_hour": 10})
        assert limits.json() == {"per_second": 100, "per_hour": 10}
        assert (await api.get(api.character_path(c))).status_code == 200
        assert (await api.stats())["max_in_window"] == {"1": 4, "3600": 4}


async def test_admin_reset_zeroes_counters_but_keeps_tokens(api: Api) -> None:
    c = api.visible()[0]
    await api.get(api.character_path(c))
    for _ in range(3):
        await api.client.get("/_admin/stats")
        await api.client.get("/_admin/truth/characters", params={"region": "eu"})
    assert (await api.stats())["requests"] == 1  # admin calls are never counted
    reset = (await api.client.post("/_admin/reset")).json()
    assert reset["requests"] == 0 and reset["by_status"] == {} and reset["max_in_window"]["1"] == 0
    assert reset["first_request_at"] is None
    assert (await api.get(api.character_path(c))).status_code == 200


# --- fault injection --------------------------------------------------------------------------


async def test_forced_429s_and_5xx_come_after_the_limiter() -> None:
    async with open_api(per_second=3) as api:
        path = api.character_path(api.visible()[0])
        await api.client.post("/_admin/faults", json={"force_429": 1, "force_5xx": 1})
        responses = [await api.get(path) for _ in range(4)]
        assert [r.status_code for r in responses] == [429, 503, 200, 429]
        assert responses[0].json() == ERR_429 and responses[1].json() == ERR_503
        faults = (await api.client.get("/_admin/faults")).json()
        assert faults["force_429"] == 0 and faults["force_5xx"] == 0
        stats = await api.stats()
        assert stats["throttled"] == 2 and stats["max_in_window"]["1"] == 3


async def test_error_rate_is_deterministic_and_match_limits_faults(api: Api) -> None:
    async def run() -> list[int]:
        async with open_api() as opened:
            await opened.client.post(
                "/_admin/faults", json={"error_rate": 0.5, "error_status": 500}
            )
            c = opened.visible()[0]
            return [(await opened.get(opened.character_path(c))).status_code for _ in range(20)]

    first, second = await run(), await run()
    assert first == second and set(first) == {200, 500}
    c = api.visible()[0]
    await api.client.post("/_admin/faults", json={"force_5xx": 2, "match": "/equipment"})
    assert (await api.get(api.character_path(c))).status_code == 200
    assert (await api.get(api.character_path(c, "/equipment"))).status_code == 503
    cleared = (await api.client.post("/_admin/faults", json={"clear": True})).json()
    assert cleared["force_5xx"] == 0 and cleared["match"] is None
    assert (await api.get(api.character_path(c, "/equipment"))).status_code == 200
    for bad in ({"no_such_fault": 1}, {"error_status": 599}, {"error_rate": 2}):
        assert (await api.client.post("/_admin/faults", json=bad)).status_code == 400


async def test_latency_and_truncation_faults(api: Api) -> None:
    c = api.visible()[0]
    full = await api.get(api.character_path(c, "/equipment"))
    await api.client.post("/_admin/faults", json={"latency_ms": 80, "truncate_rate": 1.0})
    started = time.perf_counter()
    cut = await api.get(api.character_path(c, "/equipment"))
    assert time.perf_counter() - started >= 0.08
    assert cut.status_code == 200
    assert int(cut.headers["content-length"]) == len(cut.content) == len(full.content) // 2
    assert full.content.startswith(cut.content)
    with pytest.raises(json.JSONDecodeError):
        json.loads(cut.content)
    assert (await api.stats())["faults_injected"] == {"latency": 1, "truncate": 1}


# --- ground truth -----------------------------------------------------------------------------


async def test_admin_truth_equals_what_the_api_serves(api: Api) -> None:
    guilds = (await api.client.get("/_admin/truth/guilds", params={"region": "eu"})).json()
    assert len(guilds) == 2 and set(guilds[0]) == {
        "region",
        "realm_slug",
        "name_slug",
        "name",
        "id",
        "member_count",
    }
    g = guilds[0]
    truth = (
        await api.client.get(f"/_admin/truth/guild/eu/{g['realm_slug']}/{quote(g['name_slug'])}")
    ).json()
    base = f"/data/wow/guild/{g['realm_slug']}/{quote(g['name_slug'])}"
    guild, roster = await api.get(base), await api.get(base + "/roster")
    assert truth["guild"] == guild.json() and truth["roster"] == roster.json()
    assert truth["last_modified"] == guild.headers["last-modified"]

    characters = (await api.client.get("/_admin/truth/characters", params={"region": "eu"})).json()
    assert len(characters) == len(api.characters())
    c = api.visible()[0]
    await api.client.post(f"/_admin/touch/character/eu/{c.realm_slug}/{quote(c.name_slug)}")
    truth = (
        await api.client.get(f"/_admin/truth/character/eu/{c.realm_slug}/{quote(c.name_slug)}")
    ).json()
    assert truth["id"] == c.id and truth["hidden"] is False
    for key, suffix in CHAR_SUFFIXES.items():
        assert truth[key] == (await api.get(api.character_path(c, suffix))).json(), key
    hidden = next(h for h in api.characters() if h.hidden)
    truth = (
        await api.client.get(
            f"/_admin/truth/character/eu/{hidden.realm_slug}/{quote(hidden.name_slug)}"
        )
    ).json()
    assert truth["hidden"] is True and truth["profile"] is None and truth["status"] is None


# --- a real server ----------------------------------------------------------------------------


async def test_real_server_serves_and_resets_connections() -> None:
    app = create_battlenet_app(config())
    c = next(x for x in sandbox_of(app).world.characters("eu") if not x.hidden)
    path = f"/profile/wow/character/{c.realm_slug}/{quote(c.name_slug)}"
    with SandboxServer(app, port=0) as server:
        assert server.url.startswith("http://127.0.0.1:") and not server.url.endswith(":0")
        async with httpx.AsyncClient(base_url=server.url) as client:
            headers = {"Authorization": f"Bearer {await get_token(client)}"}
            ok = await client.get(path, params=NS, headers=headers)
            assert ok.status_code == 200 and ok.json()["id"] == c.id
            timings = []
            for _ in range(9):  # no Nagle/delayed-ACK stall (that one costs ~40 ms a request)
                started = time.perf_counter()
                await client.get("/_admin/faults")
                timings.append(time.perf_counter() - started)
            assert sorted(timings)[4] < 0.02
            await client.post("/_admin/faults", json={"reset_rate": 1.0})
            with pytest.raises(httpx.TransportError):
                await client.get(path, params=NS, headers=headers)
            await client.post("/_admin/faults", json={"clear": True})
            assert (await client.get(path, params=NS, headers=headers)).status_code == 200
            stats = (await client.get("/_admin/stats")).json()
            assert stats["faults_injected"] == {"reset": 1} and stats["by_status"] == {"200": 2}
    assert not [t for t in threading.enumerate() if t.name.startswith("sandbox-")]


def test_serve_forever_refuses_a_taken_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"^port {port} is already in use; pass --port$"):
            serve_forever(config(), port=port)
    assert issubclass(PortInUseError, OSError)


def test_sandbox_process_serves_the_configured_world() -> None:
    with SandboxProcess(config(per_second=7)) as process:
        stats = httpx.get(process.url + "/_admin/stats").json()
        assert stats["limits"] == {"per_second": 7, "per_hour": 36000}
        guilds = httpx.get(process.url + "/_admin/truth/guilds", params={"region": "eu"}).json()
        assert [g["id"] for g in guilds] == [g.id for g in BattleNetWorld(WORLD).guilds("eu")]
        pid = process.pid
    assert pid is not None and process.pid is None


# --- sliding windows --------------------------------------------------------------------------


def test_sliding_window_is_strict_at_the_boundary() -> None:
    window = SlidingWindow(limit=2, period=1.0)
    assert window.try_admit(10.0) and window.try_admit(10.5)
    assert not window.try_admit(10.999)  # (9.999, 10.999] already holds two
    assert window.retry_after(10.999) == pytest.approx(0.001)
    assert window.try_admit(11.0)  # 10.0 is no longer inside (10.0, 11.0]
    assert not window.try_admit(11.2)
    assert window.max_in_window == 2
    for moment in (11.0, 11.1, 11.2):
        window.observe_arrival(moment)
    assert window.max_arrivals_in_window == 3


def test_rejected_requests_do_not_extend_the_window() -> None:
    limiter = MultiWindowLimiter([(1, 1.0), (2, 10.0)])
    assert limiter.try_admit(0.0)
    assert not limiter.try_admit(0.9)
    assert limiter.try_admit(1.0)
    assert not limiter.try_admit(2.5)  # the 10 s window is full although the 1 s one is free
    assert limiter.max_in_window() == {"1": 1, "10": 2}
    assert limiter.max_arrivals_in_window() == {"1": 2, "10": 4}


@settings(max_examples=200, deadline=None)
@given(
    gaps=st.lists(st.floats(min_value=0.0, max_value=0.7, allow_nan=False), max_size=80),
    limit=st.integers(min_value=1, max_value=6),
    period=st.sampled_from([0.5, 1.0, 2.5]),
)
def test_no_window_ever_admits_more_than_the_limit(
    gaps: list[float], limit: int, period: float
) -> None:
    window = SlidingWindow(limit, period)
    now, admitted = 0.0, list[float]()
    for gap in gaps:
        now += gap
        in_window = [t for t in admitted if now - period < t <= now]
        assert window.try_admit(now) == (len(in_window) < limit)  # strict and work-conserving
        if len(in_window) < limit:
            admitted.append(now)
    for end in admitted:
        assert sum(1 for t in admitted if end - period < t <= end) <= limit
    assert window.max_in_window <= limit
