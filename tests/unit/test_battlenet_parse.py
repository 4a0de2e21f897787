"""Battle.net payload parsing against real captured eu.api.blizzard.com responses."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from providers.battlenet.client import BattleNetClient
from providers.battlenet.parse import (
    CLASS_NAMES,
    RosterMember,
    character_columns,
    guild_columns,
    mythic_rating,
    roster_members,
    slugify,
)
from providers.battlenet.pvp import equipped_items, leaderboard_columns
from providers.errors import BadPayload
from providers.ratelimit import RateLimiter, Window

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "blizzard"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.name)
def test_every_blizzard_fixture_is_a_json_object(path: Path):
    payload = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(payload, dict)
    assert "_links" in payload


# -- guild ----------------------------------------------------------------------------------------


def test_guild_columns_from_real_guild_payload():
    columns = guild_columns(load("guild.json"), "guild eu/stormrage/avalerion")
    assert columns == {
        "bnet_guild_id": 36886834,
        "name": "Avalerion",
        "realm_name": "Stormrage",
        "faction": "ALLIANCE",
        "member_count": 418,
        "achievement_points": 2895,
    }


def test_guild_columns_leave_missing_optional_blocks_null():
    columns = guild_columns({"id": 7, "name": "Tiny"}, "guild eu/x/tiny")
    assert columns["bnet_guild_id"] == 7
    assert columns["realm_name"] is None
    assert columns["faction"] is None
    assert columns["member_count"] is None


# -- roster ---------------------------------------------------------------------------------------


def test_roster_members_from_real_roster_payload():
    payload = load("guild_roster.json")
    members = roster_members(payload, "roster eu/stormrage/avalerion")

    assert len(members) == 418
    assert all(isinstance(m, RosterMember) for m in members)
    ids = [m.bnet_character_id for m in members]
    assert len(set(ids)) == len(ids)
    assert all(isinstance(i, int) and i > 0 for i in ids)
    assert all(isinstance(m.rank, int) and m.rank >= 0 for m in members)
    assert all(isinstance(m.name, str) and m.name for m in members)


def test_roster_members_keep_each_members_realm_slug():
    payload = load("guild_roster.json")
    members = roster_members(payload, "roster eu/stormrage/avalerion")

    raw_slugs = [m["character"]["realm"]["slug"] for m in payload["members"]]
    assert [m.realm for m in members] == raw_slugs
    # The guild lives on Stormrage; a few members transferred in from a connected realm.
    assert sum(m.realm == "stormrage" for m in members) == 405
    assert {m.realm for m in members} == {"stormrage", "azuremyst"}


def test_roster_members_resolve_class_names_through_class_names():
    members = roster_members(load("guild_roster.json"), "roster eu/stormrage/avalerion")

    for member in members:
        assert member.class_id is not None and member.class_id in CLASS_NAMES
        assert member.character_class == CLASS_NAMES[member.class_id]
    # Every playable class of the BfA era shows up in a 418-member guild (no Evoker yet).
    assert {m.character_class for m in members} == set(CLASS_NAMES.values()) - {"Evoker"}
    first = members[0]
    assert (first.name, first.bnet_character_id, first.rank) == ("Yoana", 92307548, 6)
    assert (first.class_id, first.character_class, first.level) == (3, "Hunter", 91)
    assert first.raw["character"]["id"] == first.bnet_character_id


def test_roster_member_with_unknown_or_missing_class_has_no_class_name():
    payload = {
        "members": [
            {
                "character": {
                    "id": 1,
                    "name": "A",
                    "realm": {"slug": "x"},
                    "playable_class": {"id": 99},
                }
            },
            {"character": {"id": 2, "name": "B", "realm": {"slug": "x"}}},
        ]
    }
    first, second = roster_members(payload, "roster eu/x/y")
    assert (first.class_id, first.character_class) == (99, None)
    assert (second.class_id, second.character_class) == (None, None)
    assert second.rank == 0


# -- character ------------------------------------------------------------------------------------


def test_character_columns_from_real_profile_payload():
    columns = character_columns(load("character_profile.json"), "character eu/stormrage/sheday")

    assert columns["bnet_character_id"] == 142650023
    assert columns["name"] == "Sheday"
    assert columns["character_class"] == "Paladin"
    assert columns["level"] == 120
    assert columns["race"] == "Human"
    assert columns["faction"] == "ALLIANCE"
    assert columns["active_spec"] == "Retribution"
    assert columns["average_item_level"] == 446
    assert columns["equipped_item_level"] == 444
    assert columns["guild_bnet_id"] == 36886834
    last_login = columns["last_login_at"]
    assert isinstance(last_login, datetime)
    assert last_login.tzinfo is not None
    assert last_login == datetime(2019, 12, 22, 9, 5, 19, tzinfo=UTC)


def test_character_without_guild_or_login_has_null_columns():
    columns = character_columns({"id": 5, "name": "Lone", "last_login_timestamp": 0}, "c")
    assert columns["guild_bnet_id"] is None
    assert columns["last_login_at"] is None
    assert columns["character_class"] is None


def test_character_profile_matches_its_guild_and_roster():
    profile = character_columns(load("character_profile.json"), "c")
    guild = guild_columns(load("guild.json"), "g")
    assert profile["guild_bnet_id"] == guild["bnet_guild_id"]
    assert guild["member_count"] == len(roster_members(load("guild_roster.json"), "r"))


# -- mythic keystone ------------------------------------------------------------------------------


def test_mythic_rating_is_none_for_the_2019_fixture_without_current_rating():
    mythic = load("character_mythic_keystone_profile.json")
    assert "current_mythic_rating" not in mythic
    assert mythic_rating(mythic) is None


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"current_mythic_rating": {"color": {"r": 1}, "rating": 2456.7}}, 2456.7),
        ({"current_mythic_rating": {"rating": 1800}}, 1800.0),
        ({"current_mythic_rating": {"rating": "high"}}, None),
        ({"current_mythic_rating": None}, None),
        ({}, None),
        (None, None),
        ([1, 2], None),
    ],
)
def test_mythic_rating_reads_current_mythic_rating(payload, expected):
    rating = mythic_rating(payload)
    assert rating == expected
    if expected is not None:
        assert isinstance(rating, float)


# -- schema drift ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parse", "payload"),
    [
        (guild_columns, {"name": "No Id"}),
        (guild_columns, {"id": None, "name": "Null Id"}),
        (guild_columns, {"id": 1}),
        (guild_columns, [{"id": 1}]),
        (guild_columns, None),
        (guild_columns, "oops"),
        (character_columns, {"name": "No Id"}),
        (character_columns, {"id": 1}),
        (character_columns, ["id"]),
        (character_columns, None),
        (roster_members, {}),
        (roster_members, {"members": None}),
        (roster_members, {"members": {"not": "a list"}}),
        (roster_members, {"members": [{"rank": 1}]}),
        (roster_members, {"members": [{"character": {"id": 1, "name": "X"}}]}),
        (roster_members, {"members": [{"character": {"id": 1, "realm": {"slug": "x"}}}]}),
        (roster_members, {"members": [{"character": {"name": "X", "realm": {"slug": "x"}}}]}),
        (roster_members, {"members": [{"character": {"id": 1, "name": "X", "realm": {}}}]}),
        (roster_members, {"members": ["not a member"]}),
        (roster_members, []),
        (roster_members, None),
    ],
)
def test_missing_ids_and_non_dict_payloads_raise_bad_payload_naming_the_entity(parse, payload):
    entity = "thing eu/stormrage/avalerion"
    with pytest.raises(BadPayload) as info:
        parse(payload, entity)
    assert entity in str(info.value)
    assert info.value.entity == entity
    assert info.value.retryable is False


def test_roster_member_with_a_missing_id_fails_the_whole_roster():
    payload = load("guild_roster.json")
    del payload["members"][17]["character"]["id"]
    with pytest.raises(BadPayload, match="roster eu/stormrage/avalerion"):
        roster_members(payload, "roster eu/stormrage/avalerion")


# -- slugs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Les Éclaireurs", "les-éclaireurs"),
        ("Area 52", "area-52"),
        ("Stormrage", "stormrage"),
        ("  Argent  Dawn ", "argent-dawn"),
        ("Kel'Thuzad", "kelthuzad"),
    ],
)
def test_slugify(name, slug):
    assert slugify(name) == slug


def test_slugify_matches_the_realm_slugs_blizzard_sends():
    guild = load("guild.json")
    assert slugify(guild["realm"]["name"]) == guild["realm"]["slug"]
    assert slugify(guild["name"]) == "avalerion"


# -- pvp leaderboard (no parser yet: document the shape we will rely on) --------------------------


def test_pvp_leaderboard_fixture_entries_have_the_documented_keys():
    board = load("pvp_leaderboard_2v2_season27_first50.json")
    assert board["season"]["id"] == 27
    assert board["bracket"]["type"] == "ARENA_2v2"
    entries = board["entries"]
    assert len(entries) == 50

    for entry in entries:
        assert isinstance(entry["character"]["id"], int)
        assert isinstance(entry["character"]["realm"]["slug"], str)
        assert isinstance(entry["rank"], int)
        assert isinstance(entry["rating"], int)
        stats = entry["season_match_statistics"]
        assert set(stats) >= {"played", "won", "lost"}
        assert stats["played"] == stats["won"] + stats["lost"]

    # Ranks tie (two 21s, four 38s...): the natural key is the character id, not the rank.
    ranks = [e["rank"] for e in entries]
    assert ranks == sorted(ranks)
    assert len(set(ranks)) < len(ranks)
    character_ids = [e["character"]["id"] for e in entries]
    assert len(set(character_ids)) == len(character_ids)
    assert ranks[0] == 1
    ratings = [e["rating"] for e in entries]
    assert ratings == sorted(ratings, reverse=True)


# -- wrong-typed fields are schema drift, never a bare ValueError/AttributeError -----------------

WRONG_PROFILES = [
    {"id": "abc", "name": "Sheday"},
    {"id": True, "name": "Sheday"},
    {"id": 1, "name": 7},
    {"id": 1, "name": "Sheday", "faction": "ALLIANCE"},
    {"id": 1, "name": "Sheday", "level": "80"},
    {"id": 1, "name": "Sheday", "guild": ["x"]},
    {"id": 1, "name": "Sheday", "character_class": "Mage"},
    {"id": 1, "name": "Sheday", "equipped_item_level": {"value": 1}},
    "not an object",
    ["a", "list"],
]


@pytest.mark.parametrize(
    "payload", WRONG_PROFILES, ids=[str(i) for i in range(len(WRONG_PROFILES))]
)
def test_a_wrong_typed_profile_is_a_bad_payload_naming_the_character(payload):
    with pytest.raises(BadPayload) as info:
        character_columns(payload, "character eu/draenor/sheday")
    assert "character eu/draenor/sheday" in str(info.value)
    assert info.value.entity == "character eu/draenor/sheday"


@pytest.mark.parametrize(
    "payload",
    [
        {"id": "abc", "name": "G"},
        {"id": 1, "name": "G", "faction": "HORDE"},
        {"id": 1, "name": "G", "realm": "draenor"},
        {"id": 1, "name": "G", "member_count": "many"},
    ],
)
def test_a_wrong_typed_guild_is_a_bad_payload(payload):
    with pytest.raises(BadPayload):
        guild_columns(payload, "guild eu/draenor/g")


@pytest.mark.parametrize(
    "member",
    [
        "a string",
        {"character": "a string", "rank": 1},
        {"character": {"id": "x", "name": "a", "realm": {"slug": "r"}}, "rank": 1},
        {"character": {"id": 1, "name": "a", "realm": {"slug": "r"}}, "rank": "first"},
        {"character": {"id": 1, "name": "a", "realm": "r"}, "rank": 1},
        {"character": {"id": 1, "name": "a", "realm": {"slug": "r"}, "playable_class": 3}},
    ],
)
def test_a_wrong_typed_roster_member_is_a_bad_payload(member):
    with pytest.raises(BadPayload):
        roster_members({"members": [member]}, "roster eu/draenor/g")


def test_float_item_levels_are_stored_as_integers():
    columns = character_columns(
        {"id": 1, "name": "S", "average_item_level": 480.6, "equipped_item_level": 479},
        "character eu/draenor/s",
    )
    assert (columns["average_item_level"], columns["equipped_item_level"]) == (481, 479)


@pytest.mark.parametrize(
    "level",
    [float("inf"), float("-inf"), float("nan"), 10**400, 1e300, 2**31, -(2**31)],
    ids=["inf", "-inf", "nan", "int-beyond-a-double", "1e300", "2**31", "-2**31"],
)
@pytest.mark.parametrize("key", ["average_item_level", "equipped_item_level"])
def test_an_item_level_no_integer_column_holds_is_a_bad_payload(key, level):
    with pytest.raises(BadPayload) as info:
        character_columns({"id": 1, "name": "S", key: level}, "character eu/draenor/s")
    assert "character eu/draenor/s" in str(info.value) and key in str(info.value)


@pytest.mark.parametrize(
    "rating", [10**400, float("inf"), float("nan")], ids=["int-beyond-a-double", "inf", "nan"]
)
def test_a_mythic_rating_that_is_no_finite_double_is_none(rating):
    assert mythic_rating({"current_mythic_rating": {"rating": rating}}) is None


# -- pvp values Postgres would refuse: skipped and counted (entries) or BadPayload (equipment) ----


def _with(entry: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    entry = json.loads(json.dumps(entry))
    node = entry
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return entry


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("rating",), 2**40),
        (("rank",), -(2**31) - 1),
        (("season_match_statistics", "played"), 2**31),
        (("tier", "id"), 2**32),
        (("character", "id"), 2**63),
        (("character", "id"), 2**64),
        (("character", "name"), "Sh\x00eday"),
        (("character", "realm", "name"), "Dra\x00enor"),
        (("season_match_statistics", "note"), "\x00"),
    ],
    ids=["rating", "rank", "played", "tier", "id-2**63", "id-2**64", "nul-name", "nul-nested",
         "nul-extra"],
)  # fmt: skip
def test_a_pvp_entry_postgres_would_refuse_is_rejected_and_counted(path, value):
    board = load("pvp_leaderboard_2v2_season27_first50.json")
    entries = board["entries"][:3]
    bad = _with(entries[1], path, value)
    columns = leaderboard_columns({**board, "entries": [entries[0], bad, entries[2]]}, "eu/27/2v2")
    assert columns.rejected == 1
    assert columns.bnet_ids == [entries[0]["character"]["id"], entries[2]["character"]["id"]]
    assert all("\\u0000" not in text for text in columns.entries_json)


def test_pvp_entries_at_the_column_bounds_are_kept():
    board = load("pvp_leaderboard_2v2_season27_first50.json")
    entry = _with(
        _with(board["entries"][0], ("rating",), 2**31 - 1), ("character", "id"), 2**63 - 1
    )
    columns = leaderboard_columns({**board, "entries": [entry]}, "eu/27/2v2")
    assert (columns.rejected, columns.ratings, columns.bnet_ids) == (0, [2**31 - 1], [2**63 - 1])


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("level", "value"), 2**40),
        (("item", "id"), 2**64),
        (("name",), "Hel\x00m"),
        (("slot", "name"), "\x00"),
    ],
    ids=["item-level", "item-id", "nul-name", "nul-nested"],
)
def test_an_equipped_item_postgres_would_refuse_is_a_bad_payload(path, value):
    equipment = load("character_equipment.json")
    items = [_with(equipment["equipped_items"][0], path, value)]
    with pytest.raises(BadPayload) as info:
        equipped_items({**equipment, "equipped_items": items}, "character eu/draenor/sheday")
    assert "character eu/draenor/sheday" in str(info.value)


# -- the token endpoint's expires_in: a lifetime that is no finite number is a BadPayload ---------


@pytest.mark.parametrize(
    "expires_in",
    [b"1" + b"0" * 400, b"Infinity", b"-Infinity", b"NaN", b"1e400"],
    ids=["int-beyond-a-double", "inf", "-inf", "nan", "1e400"],
)
async def test_a_token_lifetime_that_is_no_finite_number_is_a_bad_payload(expires_in):
    body = b'{"access_token": "AccessToken-9999", "expires_in": ' + expires_in + b"}"
    client = BattleNetClient(
        client_id="id", client_secret="secret-value", api_base="https://{region}.bnet.test",
        oauth_url="https://oauth.bnet.test/token",
        limiter=RateLimiter("battlenet", [Window(100, 1.0)], max_wait=0.5),
        transport=httpx.MockTransport(lambda request: httpx.Response(200, content=body)),
    )  # fmt: skip
    try:
        with pytest.raises(BadPayload) as info:
            await client._bearer()
    finally:
        await client.aclose()
    message = str(info.value)
    assert "expires_in" in message and "\n" not in message
    assert "AccessToken-9999" not in message and "secret-value" not in message
