"""Hostile input (issue 10): a crafted region cannot send the token to another host, `../`
cannot escape the API path, Discord ids are digits only, and no answer may grow the worker's
memory past HTTP_MAX_RESPONSE_BYTES, however well it compresses.

The client tests run against an ``httpx.MockTransport`` that records what would have left the
process. The response-size tests use the real transports (httpx's own and the aiohttp one)
against a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from providers.aiohttp_transport import AiohttpTransport
from providers.battlenet import BattleNetClient
from providers.battlenet.parse import roster_members
from providers.battlenet.pvp import leaderboard_columns
from providers.discord import DiscordClient, DiscordLimiter
from providers.discord.client import ARCHIVED_THREADS, GUILD, GUILD_CHANNELS, MESSAGES
from providers.errors import BadInput, BadPayload, ProviderError
from providers.http import ProviderHTTP
from providers.ratelimit import RateLimiter, Window
from starter import build_parser

API_BASE = "https://{region}.api.blizzard.com"
OAUTH_URL = "https://oauth.battle.net/token"
ACCESS_TOKEN = "EU-access-token-abc123"
BOT_TOKEN = "MTE2OTk5.SECRET-bot-token.value_xyz"
DISCORD_BASE = "https://discord.test/api/v10"


@dataclass
class Recorder:
    """Everything that would have left the process, and a plausible answer to it."""

    seen: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if request.url.path == "/token":
            body: Any = {"access_token": ACCESS_TOKEN, "token_type": "bearer", "expires_in": 86399}
        else:
            body = {"id": "1", "name": "x"}
        return httpx.Response(200, json=body)

    def bearer(self) -> list[str]:
        """The URLs the access token was sent to."""
        return [str(r.url) for r in self.seen if ACCESS_TOKEN in r.headers.get("authorization", "")]


def bnet(recorder: Recorder, api_base: str = API_BASE) -> BattleNetClient:
    return BattleNetClient(
        client_id="id", client_secret="secret", api_base=api_base, oauth_url=OAUTH_URL,
        limiter=RateLimiter("battlenet", [Window(1000, 1.0)]),
        transport=httpx.MockTransport(recorder),
    )  # fmt: skip


def discord(recorder: Recorder) -> DiscordClient:
    return DiscordClient(
        token=BOT_TOKEN, base_url=DISCORD_BASE, limiter=DiscordLimiter(global_per_second=1000),
        transport=httpx.MockTransport(recorder),
    )  # fmt: skip


def assert_one_line_refusal(exc: BaseException) -> None:
    text = str(exc)
    assert "\n" not in text and "\r" not in text, text
    assert ACCESS_TOKEN not in text and BOT_TOKEN not in text and "secret" not in text
    assert isinstance(exc, BadInput) and not exc.retryable


# -- 1. a crafted region never chooses the host ----------------------------------------------

HOSTILE_REGIONS = [
    "127.0.0.1:28799/#",  # the reproduction in issue 10
    "127.0.0.1:28799/?",
    "evil.example/",
    "eu.evil.example",
    "eu@evil.example",
    "eu\n",
    "EU",
    "",
    "xx",
]


@pytest.mark.parametrize("region", HOSTILE_REGIONS)
async def test_crafted_region_is_refused_before_any_request_or_token(region):
    recorder = Recorder()
    client = bnet(recorder)
    try:
        with pytest.raises(ProviderError) as info:
            await client.character(region, "draenor", "sheday")
        assert_one_line_refusal(info.value)
        assert "us, eu, kr, tw, cn" in str(info.value)
        with pytest.raises(BadInput):
            await client.get(region, "/data/wow/pvp-season/index", entity="pvp seasons",
                             namespace="dynamic")  # fmt: skip
    finally:
        await client.aclose()
    assert recorder.seen == []  # not even the token was fetched


@pytest.mark.parametrize("region", ["us", "eu", "kr", "tw", "cn"])
async def test_each_real_region_goes_to_its_own_host_only(region):
    recorder = Recorder()
    client = bnet(recorder)
    try:
        await client.character(region, "draenor", "sheday")
    finally:
        await client.aclose()
    api = [r for r in recorder.seen if r.url.path != "/token"]
    assert [(r.url.scheme, r.url.host, r.url.port) for r in api] == [
        ("https", f"{region}.api.blizzard.com", None)
    ]
    assert recorder.bearer() == [str(api[0].url)]


async def test_the_token_is_never_attached_to_a_request_for_another_host():
    recorder = Recorder()
    client = bnet(recorder)
    try:
        await client.character("eu", "draenor", "sheday")  # a token is cached now
        for url in (
            "https://evil.example/profile/wow/character/draenor/sheday",
            "http://eu.api.blizzard.com/x",  # another scheme
            "https://eu.api.blizzard.com:8443/x",  # another port
            "https://eu.api.blizzard.com.evil.example/x",
        ):
            with pytest.raises(BadInput) as info:
                await client.send("GET", url, entity="x", headers={"Authorization": "Bearer t"})
            assert_one_line_refusal(info.value)
    finally:
        await client.aclose()
    assert all(r.url.host in ("eu.api.blizzard.com", "oauth.battle.net") for r in recorder.seen)


async def test_the_bot_token_only_goes_to_the_discord_api_host():
    recorder = Recorder()
    client = discord(recorder)
    try:
        for url in ("https://evil.example/api/v10/guilds/1", "http://discord.test/api/v10/x"):
            with pytest.raises(BadInput) as info:
                await client.send("GET", url, entity="x")
            assert_one_line_refusal(info.value)
    finally:
        await client.aclose()
    assert recorder.seen == []


# -- 2. `../` cannot escape the API path ------------------------------------------------------

HOSTILE_SLUGS = [
    "../../../oauth/token",  # the reproduction in issue 10
    "..",
    ".",
    "a/b",
    "a%2Fb",
    "%2e%2e",
    "a\\b",
    "x?namespace=static-eu",
    "x#y",
    "two words",
    "tab\tname",
    "nul\x00",
    "",
    "a" * 200,
]


@pytest.mark.parametrize("slug", HOSTILE_SLUGS)
@pytest.mark.parametrize("where", ["realm", "name"])
async def test_a_hostile_slug_is_refused_before_any_request(slug, where):
    recorder = Recorder()
    client = bnet(recorder)
    realm, name = (slug, "sheday") if where == "realm" else ("draenor", slug)
    try:
        for call in (
            lambda: client.character("eu", realm, name),
            lambda: client.character("eu", realm, name, "equipment"),
            lambda: client.guild("eu", realm, name),
            lambda: client.roster("eu", realm, name),
        ):
            with pytest.raises(BadInput) as info:
                await call()
            assert_one_line_refusal(info.value)
            assert where in str(info.value)
    finally:
        await client.aclose()
    assert recorder.seen == []


@pytest.mark.parametrize(
    "path",
    [
        "/data/wow/pvp-season/37/pvp-leaderboard/../../../../oauth/token",
        "/data/wow/pvp-season/37/pvp-leaderboard/%2e%2e/x",
        "/data/wow/pvp-season/37/pvp-leaderboard/2v2?namespace=x",
        "/data/wow/pvp-season/37/pvp-leaderboard/2v2#x",
        "data/wow/pvp-season/index",
        "@evil.example/x",
    ],
)
async def test_a_path_that_escapes_its_endpoint_is_refused(path):
    recorder = Recorder()
    client = bnet(recorder)
    try:
        with pytest.raises(BadInput):
            await client.get("eu", path, entity="leaderboard", namespace="dynamic")
    finally:
        await client.aclose()
    assert recorder.seen == []


GORDUNNI = "%D0%B3%D0%BE%D1%80%D0%B4%D1%83%D0%BD%D0%BD%D0%B8"


@pytest.mark.parametrize(
    ("realm", "name", "path"),
    [
        ("area-52", "Sheday", "/profile/wow/character/area-52/sheday"),
        ("festung-der-stürme", "Shéday", "/profile/wow/character/festung-der-st%C3%BCrme/sh%C3%A9day"),  # noqa: E501
        ("гордунни", "Ыва", f"/profile/wow/character/{GORDUNNI}/%D1%8B%D0%B2%D0%B0"),
    ],
)  # fmt: skip
async def test_real_slugs_are_accepted_and_each_segment_is_quoted_whole(realm, name, path):
    recorder = Recorder()
    client = bnet(recorder)
    try:
        await client.character("eu", realm, name)
    finally:
        await client.aclose()
    api = [r for r in recorder.seen if r.url.path != "/token"]
    assert [r.url.raw_path.split(b"?")[0].decode() for r in api] == [path]


def test_slug_checks_others_can_call():
    from providers.battlenet import check_region, check_slug, slugify, valid_slug

    for good in (
        "stormrage",
        "area-52",
        "aggra-português",
        "les-éclaireurs",
        "гордунни",
        "method-25",
    ):
        assert valid_slug(good) and check_slug(good, "realm") == good
    for bad in HOSTILE_SLUGS:
        assert not valid_slug(bad)
        with pytest.raises(BadInput, match="realm"):
            check_slug(bad, "realm")
    assert slugify("Area 52") == "area-52"
    assert slugify("Aggra (Português)") == "aggra-português"
    assert not valid_slug(slugify("../../../oauth/token"))
    assert check_region("eu") == "eu"
    with pytest.raises(BadInput, match="us, eu, kr, tw, cn"):
        check_region("127.0.0.1:28799/#")


def _roster(*members: tuple[str, str]) -> dict[str, Any]:
    return {
        "members": [
            {"character": {"id": n + 1, "name": name, "realm": {"slug": realm}, "level": 60},
             "rank": 1}
            for n, (name, realm) in enumerate(members)
        ]
    }  # fmt: skip


def test_roster_member_with_an_invalid_name_or_realm_is_skipped_and_counted():
    payload = _roster(
        ("Sheday", "draenor"),
        ("token", "../../../oauth"),
        ("a/b", "draenor"),
        ("..", "draenor"),
        ("Shéday", "festung-der-stürme"),
    )
    members = roster_members(payload, "guild eu/draenor/x")
    assert [(m.name, m.realm) for m in members] == [
        ("Sheday", "draenor"),
        ("Shéday", "festung-der-stürme"),
    ]
    assert members.rejected == 3


def test_leaderboard_entry_with_an_invalid_name_or_realm_is_skipped_and_counted():
    def entry(n: int, name: str, realm: str) -> dict[str, Any]:
        return {"character": {"id": n, "name": name, "realm": {"slug": realm}},
                "rank": n, "rating": 2000 - n}  # fmt: skip

    payload = {
        "bracket": {"type": "ARENA_2v2"},
        "entries": [entry(1, "Sheday", "draenor"), entry(2, "x", "../../oauth"),
                    entry(3, "a/b", "draenor"), entry(4, "Ab", "kazzak")],
    }  # fmt: skip
    columns = leaderboard_columns(payload, "eu/37/2v2")
    assert columns.names == ["Sheday", "Ab"] and columns.realms == ["draenor", "kazzak"]
    assert columns.rejected == 2


# -- Discord ids in paths: digits only --------------------------------------------------------


@pytest.mark.parametrize(
    "ident", [-5, True, "12/../../oauth2/token", "١٢٣", " 12", "1e3", 2**64, 1.5]
)
@pytest.mark.parametrize("endpoint", [GUILD, GUILD_CHANNELS, MESSAGES], ids=lambda e: e.entity)
async def test_a_discord_id_that_is_not_digits_is_refused_before_any_request(ident, endpoint):
    recorder = Recorder()
    client = discord(recorder)
    try:
        with pytest.raises(BadInput) as info:
            params = {"after": "0", "limit": "100"} if endpoint is MESSAGES else None
            await client.fetch(endpoint, ident, params=params)
        assert_one_line_refusal(info.value)
        with pytest.raises(BadInput):
            await client.archived_threads(ident)
    finally:
        await client.aclose()
    assert recorder.seen == []


async def test_a_discord_id_of_digits_is_asked_for():
    recorder = Recorder()
    client = discord(recorder)
    try:
        await client.fetch(GUILD, 1168516062791340136)
        await client.fetch(GUILD, "1168516062791340136")  # type: ignore[arg-type]
    finally:
        await client.aclose()
    assert [r.url.path for r in recorder.seen] == ["/api/v10/guilds/1168516062791340136"] * 2
    assert ARCHIVED_THREADS.major == "channel_id"


# -- the CLI: exit 2, one line, before anything is stored -------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["track", "character", "eu", "../../../oauth/token", "x"],  # issue 10
        ["track", "character", "eu", "draenor", "../sheday"],
        ["track", "character", "eu", "draenor", "two words"],
        ["track", "guild", "eu", "realm/with", "slash"],
        ["track", "guild", "eu", "stormrage", "a/../b"],
        ["add", "character", "eu", "realm/with", "slash"],
        ["add", "guild", "eu", ".", "x"],
        ["track", "tenant", "١١٦٨٥١٦٠٦٢٧٩١٣٤٠١٣٦"],  # Arabic-Indic digits
    ],
)
def test_cli_refuses_a_hostile_name_with_exit_2_and_one_line(argv, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert "--help" in err[0]


@pytest.mark.parametrize(
    "argv",
    [
        ["track", "character", "eu", "Area 52", "Shéday"],
        ["track", "guild", "eu", "Aggra (Português)", "Les Éclaireurs"],
        ["add", "character", "us", "area-52", "Sheday"],
        ["track", "tenant", "1168516062791340136"],
    ],
)
def test_cli_accepts_real_names(argv):
    args = build_parser().parse_args(argv)
    assert args.verb == argv[0]


# -- 3. every answer is capped at HTTP_MAX_RESPONSE_BYTES once decompressed ------------------

CAP = 1 << 20  # 1 MiB for the tests; the setting's default is 32 MiB
BOMB_BYTES = 1 << 30  # 1 GiB of zeros


@functools.cache
def gzip_bomb() -> bytes:
    """1 GiB of zeros, gzip-compressed (about 1 MB)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 22)
    parts = [packer.compress(zeros) for _ in range(BOMB_BYTES // len(zeros))]
    return b"".join(parts) + packer.flush()


Body = Callable[[], Iterable[bytes]]


@dataclass
class Route:
    headers: dict[str, str]
    body: Body


@dataclass
class Server:
    """An HTTP/1.1 server on 127.0.0.1 answering each path from a table, counting requests."""

    routes: dict[str, Route]
    hits: dict[str, int] = field(default_factory=dict)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            length = 0
            for line in lines[1:]:
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            if length:
                await reader.readexactly(length)
            path = target.split("?", 1)[0]
            self.hits[path] = self.hits.get(path, 0) + 1
            route = self.routes.get(path) or Route({}, lambda: [b'{"code": 404}'])
            status = "200 OK" if path in self.routes else "404 Not Found"
            fields = {"Content-Type": "application/json", "Connection": "close", **route.headers}
            writer.write(
                f"HTTP/1.1 {status}\r\n".encode()
                + "".join(f"{k}: {v}\r\n" for k, v in fields.items()).encode()
                + b"\r\n"
            )
            if method != "HEAD":
                for chunk in route.body():
                    writer.write(chunk)
                    await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@contextlib.asynccontextmanager
async def serving(routes: dict[str, Route]) -> AsyncIterator[Server]:
    server = Server(routes)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()
        await listener.wait_closed()


def chunks(data: bytes, size: int = 1 << 16) -> Body:
    view = memoryview(data)
    return lambda: (bytes(view[i : i + size]) for i in range(0, len(view), size))


def repeated(total: int, size: int = 1 << 16) -> Body:
    block = b"x" * size
    return lambda: (block for _ in range(total // size))


TOKEN_ROUTE = Route(
    {}, lambda: [json.dumps({"access_token": ACCESS_TOKEN, "expires_in": 86399}).encode()]
)


def oversized_routes() -> dict[str, Route]:
    bomb = gzip_bomb()
    plain = 64 * CAP
    return {
        "/gzip-bomb": Route({"Content-Encoding": "gzip", "Content-Length": str(len(bomb))},
                            chunks(bomb)),
        "/gzip-bomb-chunked": Route({"Content-Encoding": "gzip", "Transfer-Encoding": "chunked"},
                                    lambda: _chunked(chunks(bomb)())),
        "/plain-with-length": Route({"Content-Length": str(plain)}, repeated(plain)),
        "/plain-until-close": Route({}, repeated(plain)),
    }  # fmt: skip


def _chunked(parts: Iterable[bytes]) -> Iterable[bytes]:
    for part in parts:
        yield f"{len(part):x}\r\n".encode() + part + b"\r\n"
    yield b"0\r\n\r\n"


TRANSPORTS: dict[str, Callable[[], httpx.AsyncBaseTransport | None]] = {
    "httpx": lambda: None,
    "aiohttp": lambda: AiohttpTransport(timeout=30.0, max_connections=4),
}


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
@pytest.mark.parametrize(
    "path", ["/gzip-bomb", "/gzip-bomb-chunked", "/plain-with-length", "/plain-until-close"]
)
async def test_an_oversized_answer_is_bad_payload_and_memory_stays_bounded(transport, path):
    async with serving(oversized_routes()) as server:
        http = ProviderHTTP(
            RateLimiter("test", [Window(1000, 1.0)]), timeout=30.0,
            transport=TRANSPORTS[transport](), max_response_bytes=CAP,
        )  # fmt: skip
        tracemalloc.start()
        try:
            with pytest.raises(BadPayload) as info:
                await http.send("GET", server.url + path, entity="leaderboard eu/37/2v2")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            await http.aclose()
    assert not info.value.retryable
    text = str(info.value)
    assert "\n" not in text and "HTTP_MAX_RESPONSE_BYTES" in text and "leaderboard" in text
    assert peak < 16 * CAP, f"peak {peak / 2**20:.1f} MiB while refusing {path}"


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
@pytest.mark.parametrize("encoding", ["gzip", "deflate", "identity"])
async def test_an_answer_within_the_cap_arrives_whole(transport, encoding):
    body = json.dumps({"entries": [{"n": i, "pad": "é" * 10} for i in range(5000)]}).encode()
    body += b" " * (CAP - len(body))  # exactly at the cap: still whole
    assert len(body) == CAP
    wire = {
        "gzip": lambda b: zlib.compress(b, 6, 31),
        "deflate": lambda b: zlib.compress(b, 6),
        "identity": lambda b: b,
    }[encoding](body)
    headers = {"Content-Length": str(len(wire))}
    if encoding != "identity":
        headers["Content-Encoding"] = encoding
    async with serving({"/ok": Route(headers, chunks(wire, 4096))}) as server:
        http = ProviderHTTP(
            RateLimiter("test", [Window(1000, 1.0)]), transport=TRANSPORTS[transport](),
            max_response_bytes=CAP,
        )  # fmt: skip
        try:
            response = await http.send("GET", server.url + "/ok", entity="x")
        finally:
            await http.aclose()
    assert response.status_code == 200
    assert response.content == body
    assert ProviderHTTP.json_of(response, "x") == json.loads(body)


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
@pytest.mark.parametrize("encoding", ["gzip", "identity"])
async def test_one_byte_over_the_cap_is_refused(transport, encoding):
    body = b"7" * (CAP + 1)
    wire = zlib.compress(body, 6, 31) if encoding == "gzip" else body
    headers = {"Content-Encoding": "gzip"} if encoding == "gzip" else {}
    async with serving({"/big": Route(headers, chunks(wire))}) as server:
        http = ProviderHTTP(
            RateLimiter("test", [Window(1000, 1.0)]), transport=TRANSPORTS[transport](),
            max_response_bytes=CAP,
        )  # fmt: skip
        try:
            with pytest.raises(BadPayload, match="HTTP_MAX_RESPONSE_BYTES"):
                await http.send("GET", server.url + "/big", entity="x")
        finally:
            await http.aclose()


async def test_the_battlenet_client_refuses_a_bomb_once_without_asking_again():
    routes = {
        "/token": TOKEN_ROUTE,
        "/profile/wow/character/draenor/sheday": oversized_routes()["/gzip-bomb"],
    }
    async with serving(routes) as server:
        client = BattleNetClient(
            client_id="id", client_secret="secret", api_base=server.url,
            oauth_url=server.url + "/token", limiter=RateLimiter("battlenet", [Window(1000, 1.0)]),
            max_response_bytes=CAP,
        )  # fmt: skip
        try:
            with pytest.raises(BadPayload, match="HTTP_MAX_RESPONSE_BYTES"):
                await client.character("eu", "draenor", "sheday")
        finally:
            await client.aclose()
    assert server.hits["/profile/wow/character/draenor/sheday"] == 1


async def test_the_discord_client_through_aiohttp_refuses_a_bomb_once():
    routes = {"/api/v10/guilds/1168516062791340136": oversized_routes()["/gzip-bomb"]}
    async with serving(routes) as server:
        client = DiscordClient(
            token=BOT_TOKEN, base_url=server.url + "/api/v10",
            limiter=DiscordLimiter(global_per_second=1000),
            transport=AiohttpTransport(timeout=30.0, max_connections=4), max_response_bytes=CAP,
        )  # fmt: skip
        try:
            with pytest.raises(BadPayload, match="HTTP_MAX_RESPONSE_BYTES"):
                await client.fetch(GUILD, 1168516062791340136)
        finally:
            await client.aclose()
    assert server.hits["/api/v10/guilds/1168516062791340136"] == 1


def test_workers_take_the_cap_from_the_setting():
    from activities.battlenet_build import bnet_client, bnet_limiter
    from activities.discord_build import LazyDiscordClient
    from settings import Settings

    settings = Settings(HTTP_MAX_RESPONSE_BYTES=5 * CAP, DISCORD_BOT_TOKEN="t")
    assert bnet_client(settings, bnet_limiter(settings)).max_response_bytes == 5 * CAP
    assert LazyDiscordClient(settings)().max_response_bytes == 5 * CAP
