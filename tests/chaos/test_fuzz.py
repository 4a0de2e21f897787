"""Chaos scenario "input fuzzing": every payload parser and every CLI argument, fuzzed.

Allowed outcomes: a parsed value, or a typed error (`providers/errors.py`) whose message is one
line naming the entity; for settings one `SettingsError` line; for the CLI exit 0, 1 or 2 with
a one-line error and never a traceback or an untyped exception. Quick form by default,
``CHAOS_LONG=1`` for thousands of examples (see `tests/chaos/fuzz_support.py`).

Defects found here in files this scenario does not own are ``xfail(strict=True)`` tests with
the failing example (the owner removes the mark with the fix); the property tests that would
rediscover them carry the same example and mark, so they stay deterministic.
"""

from __future__ import annotations

import asyncio
import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from providers.battlenet.client import BattleNetClient
from providers.battlenet.parse import (
    character_columns,
    guild_columns,
    mythic_rating,
    roster_members,
    slugify,
)
from providers.battlenet.pvp import equipped_items, leaderboard_columns
from providers.discord import DiscordClient, DiscordLimiter
from providers.discord.client import ACTIVE_THREADS, ARCHIVED_THREADS, GUILD, GUILD_CHANNELS
from providers.discord.headers import parse_429, parse_rate_headers
from providers.discord.parse import (
    parse_channels,
    parse_guild,
    parse_messages_page,
    parse_thread_list,
)
from providers.errors import BudgetExhausted, CircuitOpen, ProviderError
from providers.http import MAX_RETRY_AFTER, ProviderHTTP, parse_retry_after
from providers.ratelimit import RateLimiter, Window
from settings import Settings, SettingsError, load_settings, parse_rate
from starter import build_parser
from tests.chaos.fuzz_support import (
    VALID_ARGV,
    argv_lists,
    assert_typed,
    dumps,
    environment,
    fixture,
    fuzz_settings,
    hostile_values,
    leaves,
    mutated,
    outcome,
    raw_bodies,
    run_cli,
)
from workflows.scheduler_types import parse_cadence

pytestmark = [pytest.mark.chaos]


def _json_of(body: bytes, entity: str) -> Any:
    return ProviderHTTP.json_of(httpx.Response(200, content=body), entity)


def _decoded_then(parse: Any, body: bytes, entity: str) -> Any:
    """What the clients do with a 200: decode (json_of), then the parser."""
    return parse(_json_of(body, entity), entity)


# -- Battle.net and PvP payload parsers ---------------------------------------------------------

GUILD_FIXTURE = fixture("blizzard/guild.json")
ROSTER_FIXTURE = fixture("blizzard/guild_roster.json")
PROFILE_FIXTURE = fixture("blizzard/character_profile.json")
MYTHIC_FIXTURE = fixture("blizzard/character_mythic_keystone_profile.json")
EQUIPMENT_FIXTURE = fixture("blizzard/character_equipment.json")
LEADERBOARD_FIXTURE = fixture("blizzard/pvp_leaderboard_2v2_season27_first50.json")
# a roster of 5 members keeps each example fast; the structure is the fixture's
SMALL_ROSTER = {**ROSTER_FIXTURE, "members": ROSTER_FIXTURE["members"][:5]}
SMALL_LEADERBOARD = {**LEADERBOARD_FIXTURE, "entries": LEADERBOARD_FIXTURE["entries"][:5]}
SMALL_EQUIPMENT = {
    **EQUIPMENT_FIXTURE,
    "equipped_items": EQUIPMENT_FIXTURE["equipped_items"][:4],
}

BNET_PARSERS = [
    pytest.param(guild_columns, GUILD_FIXTURE, "guild eu/draenor/fuzz", id="guild_columns"),
    pytest.param(roster_members, SMALL_ROSTER, "roster eu/draenor/fuzz", id="roster_members"),
    pytest.param(
        character_columns, PROFILE_FIXTURE, "character eu/draenor/fuzz", id="character_columns"
    ),
    pytest.param(leaderboard_columns, SMALL_LEADERBOARD, "eu/37/2v2", id="pvp_leaderboard_columns"),
    pytest.param(equipped_items, SMALL_EQUIPMENT, "character eu/draenor/fuzz", id="pvp_equipment"),
]


@pytest.mark.parametrize(("parse", "base", "entity"), BNET_PARSERS)
def test_battlenet_parsers_return_a_value_or_a_typed_error(parse, base, entity):
    @fuzz_settings(quick=60)
    @given(body=raw_bodies(base))
    def check(body: bytes) -> None:
        outcome(lambda: _decoded_then(parse, body, entity), entity)

    check()


# Found by this fuzzing, fixed in providers/battlenet/parse.py: the examples that failed.
@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"id": 1, "name": "x", "average_item_level": Infinity}', id="inf"),
        pytest.param(b'{"id": 1, "name": "x", "equipped_item_level": NaN}', id="nan"),
        pytest.param(b'{"id": 1, "name": "x", "average_item_level": 1e400}', id="1e400"),
    ],
)
def test_character_columns_non_finite_item_level_is_a_bad_payload(body):
    entity = "character eu/draenor/fuzz"
    outcome(lambda: _decoded_then(character_columns, body, entity), entity)


def test_mythic_rating_of_an_integer_beyond_a_double_is_none():
    body = b'{"current_mythic_rating": {"rating": 1' + b"0" * 400 + b"}}"
    assert mythic_rating(_json_of(body, "mythic")) is None


@fuzz_settings(quick=60)
@given(body=raw_bodies(MYTHIC_FIXTURE))
def test_mythic_rating_never_raises_and_is_a_number_or_none(body):
    data = outcome(lambda: _json_of(body, "mythic eu/draenor/fuzz"), "mythic eu/draenor/fuzz")
    rating = mythic_rating(data)
    assert rating is None or isinstance(rating, float)


@fuzz_settings(quick=100)
@given(name=st.text())
def test_slugify_takes_any_text(name):
    assert isinstance(slugify(name), str)


def _fits(value: Any, bits: int) -> bool:
    return value is None or -(2 ** (bits - 1)) <= value < 2 ** (bits - 1)


@fuzz_settings(quick=60)
@given(doc=mutated(SMALL_LEADERBOARD))
@example(
    doc={
        **SMALL_LEADERBOARD,
        "entries": [{**SMALL_LEADERBOARD["entries"][0], "rating": 2**40}],
    }
)
def test_pvp_columns_fit_their_postgres_columns(doc):
    """leaderboard_columns' docstring: never a value Postgres would refuse later."""
    entity = "eu/37/2v2"
    cols = outcome(lambda: leaderboard_columns(doc, entity), entity)
    if cols is None:
        return
    assert all(_fits(v, 64) for v in cols.bnet_ids)
    for column in (cols.ranks, cols.ratings, cols.played, cols.won, cols.lost, cols.tiers):
        assert all(_fits(v, 32) for v in column), column
    for text in (*cols.names, *cols.realms, *cols.entries_json):
        assert "\x00" not in text and "\\u0000" not in text


# -- Discord payload parsers --------------------------------------------------------------------

CHANNELS_FIXTURE = fixture("discord/guild_channels_n8n.json")
MESSAGES_FIXTURE = fixture("discord/channel_messages_n8n.json")
THREAD_FIXTURE = fixture("discord/channel_thread_example.json")
GUILD_OBJECT = {"id": "1168516062791340136", "name": "n8n"}
THREAD_LIST = {"threads": [THREAD_FIXTURE], "members": [], "has_more": True}

DISCORD_PARSERS = [
    pytest.param(parse_guild, GUILD_OBJECT, "guild 1168516062791340136", id="guild"),
    pytest.param(
        parse_channels, CHANNELS_FIXTURE, "guild 1168516062791340136 channels", id="channels"
    ),
    pytest.param(
        parse_thread_list,
        THREAD_LIST,
        "channel 1168516240332034067 archived threads",
        id="thread_list",
    ),
]


@pytest.mark.parametrize(("parse", "base", "entity"), DISCORD_PARSERS)
def test_discord_listing_validation_returns_a_value_or_a_typed_error(parse, base, entity):
    @fuzz_settings(quick=60)
    @given(body=raw_bodies(base))
    def check(body: bytes) -> None:
        outcome(lambda: _decoded_then(parse, body, entity), entity)

    check()


@fuzz_settings(quick=80)
@given(
    body=raw_bodies(MESSAGES_FIXTURE),
    after=st.sampled_from([0, 1168784010269433000, 2**63 - 1]),
    limit=st.sampled_from([1, 2, 50, 100]),
)
def test_discord_message_page_validation_returns_a_page_or_a_typed_error(body, after, limit):
    channel = 1168516240332034067
    page = outcome(
        lambda: parse_messages_page(body, channel_id=channel, after=after, limit=limit),
        f"channel {channel}",
    )
    if page is not None:
        assert page.count == len(page.ids) <= limit
        assert all(i > after for i in page.ids)


HEADER_VALUES = st.one_of(
    st.sampled_from(["1", "0", "-1", "5", "0.25", "nan", "inf", "-inf", "1e308", "1e400", "", "x"]),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=12),
)
RATE_HEADERS = st.dictionaries(
    st.sampled_from([
        "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset",
        "X-RateLimit-Reset-After", "X-RateLimit-Bucket", "X-RateLimit-Global",
        "X-RateLimit-Scope", "Retry-After", "x-ratelimit-limit",
    ]),
    HEADER_VALUES,
    max_size=6,
)  # fmt: skip
RATE_LIMIT_BODY = {"message": "You are being rate limited.", "retry_after": 0.64, "global": False}
DEEP_429_BODY = b'{"retry_after": ' + b"[" * 100_000


@fuzz_settings(quick=80)
@given(headers=RATE_HEADERS, now=st.floats(0, 2e9))
def test_discord_rate_headers_are_understood_or_ignored(headers, now):
    parsed = parse_rate_headers(headers, now)
    if parsed is not None:
        assert parsed.limit >= 1 and parsed.remaining >= 0
        assert parsed.reset_after is None or 0 <= parsed.reset_after <= MAX_RETRY_AFTER


@fuzz_settings(quick=80)
@given(headers=RATE_HEADERS, body=raw_bodies(RATE_LIMIT_BODY))
def test_discord_429_is_always_classified(headers, body):
    hit = parse_429(headers, body)
    assert hit.scope in ("user", "global", "shared", "cloudflare")
    assert 0 <= hit.retry_after <= MAX_RETRY_AFTER and "\n" not in hit.message


def test_discord_429_with_a_deeply_nested_body_is_classified():
    hit = parse_429({"X-RateLimit-Scope": "user"}, DEEP_429_BODY)
    assert hit.scope == "user"


@fuzz_settings(quick=100)
@given(value=st.one_of(st.none(), HEADER_VALUES, st.text(max_size=20)))
def test_retry_after_is_none_or_a_bounded_delay(value):
    delay = parse_retry_after(value)
    assert delay is None or 0 <= delay <= MAX_RETRY_AFTER


# -- the clients, end to end over a fake transport: status, headers and body all fuzzed ---------

STATUSES = st.sampled_from([200, 200, 200, 204, 304, 400, 401, 403, 404, 408, 418, 429, 500, 503])
RESPONSE_HEADERS = st.one_of(
    RATE_HEADERS,
    st.just({"Content-Type": "application/json", "Last-Modified": "Wed, 21 Oct 2015 07:28:00 GMT"}),
)


def _transport(status: int, headers: dict[str, str], body: bytes) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "fuzz-token", "expires_in": 86399})
        return httpx.Response(status, headers=headers, content=body)

    return httpx.MockTransport(handle)


def _bnet_client(transport: httpx.MockTransport) -> BattleNetClient:
    limiter = RateLimiter("battlenet", [Window(1000, 1.0)], max_wait=0.5)
    client = BattleNetClient(
        client_id="fuzz", client_secret="fuzz-secret", api_base="https://{region}.bnet.test",
        oauth_url="https://oauth.bnet.test/token", limiter=limiter, transport=transport,
    )  # fmt: skip
    client.transient_retries = 0
    return client


async def _bnet_guild(status: int, headers: dict[str, str], body: bytes) -> Any:
    client = _bnet_client(_transport(status, headers, body))
    try:
        fetched = await client.guild("eu", "draenor", "fuzz")
        if fetched.data is not None:
            return guild_columns(fetched.data, "guild eu/draenor/fuzz")
        return None
    finally:
        await client.aclose()


@fuzz_settings(quick=60)
@given(status=STATUSES, headers=RESPONSE_HEADERS, body=raw_bodies(GUILD_FIXTURE))
def test_battlenet_client_answers_a_value_or_a_typed_error(status, headers, body):
    outcome(lambda: asyncio.run(_bnet_guild(status, headers, body)), "guild eu/draenor/fuzz")


TOKEN_BODY = {"access_token": "abc", "token_type": "bearer", "expires_in": 86399, "sub": "x"}


async def _bnet_token(status: int, body: bytes) -> str:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body)

    client = _bnet_client(httpx.MockTransport(handle))
    try:
        return await client._bearer()
    finally:
        await client.aclose()


@fuzz_settings(quick=60)
@given(status=STATUSES, body=raw_bodies(TOKEN_BODY))
def test_battlenet_token_endpoint_answers_a_token_or_a_typed_error(status, body):
    token = outcome(lambda: asyncio.run(_bnet_token(status, body)), None)
    assert token is None or (isinstance(token, str) and token)


def test_battlenet_429_with_a_deeply_nested_body_is_rate_limited():
    outcome(lambda: asyncio.run(_bnet_guild(429, {}, DEEP_429_BODY)), "guild eu/draenor/fuzz")


def test_battlenet_token_with_an_integer_expires_in_beyond_a_double_is_typed():
    body = b'{"access_token": "abc", "expires_in": 1' + b"0" * 400 + b"}"
    outcome(lambda: asyncio.run(_bnet_token(200, body)), None)


DISCORD_ENDPOINTS = [
    pytest.param(GUILD, GUILD_OBJECT, id="guild"),
    pytest.param(GUILD_CHANNELS, CHANNELS_FIXTURE, id="guild_channels"),
    pytest.param(ACTIVE_THREADS, THREAD_LIST, id="active_threads"),
    pytest.param(ARCHIVED_THREADS, THREAD_LIST, id="archived_threads"),
]


async def _discord_fetch(endpoint: Any, status: int, headers: dict[str, str], body: bytes) -> Any:
    client = DiscordClient(
        token="fuzz-bot-token", base_url="https://discord.test/api/v10",
        limiter=DiscordLimiter(), transport=_transport(status, headers, body),
    )  # fmt: skip
    client.transient_retries = 0
    try:
        if endpoint is ARCHIVED_THREADS:
            return await client.archived_threads(1168516240332034067, max_wait=0.5)
        return await client.fetch(endpoint, 1168516062791340136, max_wait=0.5)
    finally:
        await client.aclose()


@pytest.mark.parametrize(("endpoint", "base"), DISCORD_ENDPOINTS)
def test_discord_client_answers_a_value_or_a_typed_error(endpoint, base):
    major = 1168516240332034067 if endpoint is ARCHIVED_THREADS else 1168516062791340136
    entity = endpoint.entity.format(**{endpoint.major: major})

    @fuzz_settings(quick=40)
    @given(status=STATUSES, headers=RESPONSE_HEADERS, body=raw_bodies(base))
    def check(status: int, headers: dict[str, str], body: bytes) -> None:
        def call() -> Any:
            return asyncio.run(_discord_fetch(endpoint, status, headers, body))

        try:
            call()
        except (CircuitOpen, BudgetExhausted) as exc:
            # the client's own state (a ban risk, a spent budget), not this request's: the
            # message names the cause and the fix instead of the entity
            assert_typed(exc, None)
        except ProviderError as exc:
            assert_typed(exc, entity)

    check()


def test_discord_404_with_a_deeply_nested_body_is_not_found():
    outcome(
        lambda: asyncio.run(_discord_fetch(GUILD, 404, {}, DEEP_429_BODY)),
        "guild 1168516062791340136",
    )


# -- settings, rates and cadences ---------------------------------------------------------------

SETTING_NAMES = sorted(Settings.model_fields)
SETTING_VALUES = st.one_of(
    st.sampled_from([
        "1", "0", "-1", "100", "1e11", "1e400", "nan", "inf", "true", "yes", "", " ", "15m",
        "off", "3000000d", "5/60", "0/60", "5/0", "1/1e400", "eu", "xx", "DEBUG", "debug",
        "local", "postgres", "postgresql://u@h:1/d", "mysql://x", "localhost:7233", "host",
        "x" * 5000, "[1, 2]", '{"a": 1}', "null", "9" * 5000,
    ]),
    st.text(
        alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
        max_size=20,
    ),
)  # fmt: skip


@fuzz_settings(quick=80)
@given(values=st.dictionaries(st.sampled_from(SETTING_NAMES), SETTING_VALUES, max_size=4))
def test_settings_load_or_fail_with_one_line_naming_the_variable(values, tmp_path_factory):
    with environment(values, drop_prefixes=tuple(SETTING_NAMES)):
        try:
            loaded = load_settings()
        except SettingsError as exc:
            message = str(exc)
            assert "\n" not in message and "\r" not in message, message[:300]
            named = re.findall(r"invalid setting (\w+):", message)
            assert named and set(named) <= set(values), message[:300]
            return
    # what the rest of the program derives from accepted settings must not fail either
    for name in SETTING_NAMES:
        if name.startswith("ZWIFT_RATE_"):
            parse_rate(getattr(loaded, name))
        if name.endswith("_EVERY"):
            parse_cadence(getattr(loaded, name))
    loaded.bnet_api_base(loaded.BNET_REGION)


@fuzz_settings(quick=100)
@given(value=st.one_of(SETTING_VALUES, st.from_regex(r"\s*\d{1,6}\s*/\s*\d{1,6}(\.\d{1,3})?\s*")))
def test_parse_rate_answers_a_positive_rate_or_a_one_line_value_error(value):
    try:
        count, seconds = parse_rate(value)
    except ValueError as exc:
        assert "\n" not in str(exc)
        return
    assert count >= 1 and seconds > 0 and math.isfinite(seconds)


CADENCES = st.one_of(SETTING_VALUES, st.from_regex(r"\s*\d{1,12}\s*[smhdSMHD]\s*", fullmatch=True))


@fuzz_settings(quick=100)
@given(value=CADENCES)
def test_parse_cadence_answers_seconds_off_or_a_one_line_value_error(value):
    try:
        seconds = parse_cadence(value)
    except ValueError as exc:
        assert "\n" not in str(exc)
        return
    assert seconds is None or (isinstance(seconds, int) and seconds > 0)


@fuzz_settings(quick=100)
@given(value=CADENCES)
@example(value="3000000d")
def test_an_accepted_cadence_fits_a_datetime(value):
    try:
        seconds = parse_cadence(value)
    except ValueError:
        return
    if seconds is not None:
        datetime(2100, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)


# -- the CLI ------------------------------------------------------------------------------------

LEAVES = leaves(build_parser())
# What an unreachable server looks like (cli/unreachable.py's one line; a few raw forms remain
# for timeouts); anything else of the form "error: SomeError: ..." is an untyped exception.
CONNECTION_FAILURES = re.compile(
    r"^error: (cannot reach (the Temporal server|PostgreSQL) at \S+ \(|ConnectionError|"
    r"TimeoutError)"
)
UNTYPED = re.compile(r"^error: ([A-Z]\w*(Error|Exception|Exit|Interrupt)|[A-Z]\w+Warning)\b:")


def _check_cli(argv: list[str], tmp: Path) -> None:
    done = run_cli(argv, tmp / "data")
    where = f"argv={argv!r} exit={done.code} stderr={done.stderr[-600:]!r}"
    assert done.code in (0, 1, 2), where
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout, where
    lines = done.stderr.strip().splitlines()
    if done.code in (1, 2):
        assert len(lines) == 1 and lines[0].startswith("error: "), where
        assert not UNTYPED.match(lines[0]) or CONNECTION_FAILURES.match(lines[0]), where
    assert not (tmp / "data").exists(), f"{where}: an embedded server was started"


def test_every_cli_command_is_fuzzed():
    """A new command without a valid command line here would be fuzzed only by its usage."""
    assert {leaf.path for leaf in LEAVES} == set(VALID_ARGV)
    assert {"track guild", "sync discord", "scheduler", "add character", "status"} <= {
        " ".join(leaf.path) for leaf in LEAVES
    }


@fuzz_settings(quick=60, long=1500)
@given(argv=argv_lists(LEAVES))
@example(argv=["scheduler", "start", "battlenet", "--every", "bogus"])
@example(argv=["add", "character", "eu", "r", "x" * 1100, "--timeout", "nan"])
@example(argv=["sync", "discord", "--tenant", "\u00b9" * 17])
@example(argv=["status", "--watch", "-1"])
def test_cli_exits_0_1_or_2_with_one_line_and_no_traceback(argv, tmp_path_factory):
    _check_cli(argv, tmp_path_factory.mktemp("cli"))


@pytest.mark.parametrize("argv", [["sync", "pvp", "--brackets", ",,,"], ["track", "tenant", "1"]])
def test_cli_usage_errors_are_exit_2(argv, tmp_path):
    """A control for the fuzz's checks: these are refused before any server is asked."""
    done = run_cli(argv, tmp_path / "data")
    assert done.code == 2 or (done.code == 1 and CONNECTION_FAILURES.match(done.stderr)), done
    _check_cli(argv, tmp_path)


def test_hostile_values_and_dumps_cover_what_they_claim():
    """The generators themselves: non-finite floats and deep nesting do reach the parsers."""
    assert b"Infinity" in dumps({"a": float("inf")}) and b"NaN" in dumps([float("nan")])

    @fuzz_settings(quick=200, long=200)
    @given(value=hostile_values)
    def check(value: Any) -> None:
        dumps(value)

    check()


@pytest.mark.parametrize(
    "junk",
    [pytest.param("a\nb", id="newline"), pytest.param("x\ry", id="cr"),
     pytest.param("\x1b[2Jfake prompt", id="escape")],
)  # fmt: skip
def test_an_unrecognized_argument_with_control_characters_is_still_one_line(junk, tmp_path):
    done = run_cli(["status", junk], tmp_path / "data")
    assert done.code == 2
    line = done.stderr.rstrip("\n")
    assert len(line.splitlines()) == 1 and line.isprintable(), repr(done.stderr)
