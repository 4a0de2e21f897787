"""Status → typed error, typed error → Temporal ApplicationError, and the Battle.net client.

The client runs against an ``httpx.MockTransport``: this is a unit test of the client's own logic
(token caching and refresh, headers, params, conditional requests, error mapping).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from datetime import timedelta
from urllib.parse import parse_qs

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from activities.errors import NON_RETRYABLE, to_application_error
from providers.battlenet.client import BattleNetClient
from providers.errors import (
    AuthFailed,
    BadPayload,
    CircuitOpen,
    Forbidden,
    MalformedBody,
    NotFound,
    ProviderError,
    RateLimited,
    Transient,
    UnexpectedStatus,
)
from providers.http import Fetched, ProviderHTTP
from providers.ratelimit import RateLimiter, Window

ENTITY = "guild eu/stormrage/avalerion"


def make_limiter() -> RateLimiter:
    return RateLimiter("test", [Window(100, 1.0)])


@pytest.fixture
async def http():
    provider = ProviderHTTP(make_limiter())
    yield provider
    await provider.aclose()


# -- classify -------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 204, 304])
def test_classify_accepts_success_and_not_modified(http, status):
    http.classify(httpx.Response(status), ENTITY)


@pytest.mark.parametrize(
    ("status", "error", "retryable"),
    [
        (404, NotFound, False),
        (403, Forbidden, False),
        (500, Transient, True),
        (502, Transient, True),
        (503, Transient, True),
        (504, Transient, True),
        (408, Transient, True),
    ],
)
def test_classify_maps_status_to_typed_error(http, status, error, retryable):
    with pytest.raises(error) as info:
        http.classify(httpx.Response(status), ENTITY)
    exc = info.value
    assert type(exc) is error
    assert exc.status == status
    assert exc.entity == ENTITY
    assert exc.retryable is retryable
    assert ENTITY in str(exc)
    assert str(status) in str(exc)


def test_classify_unexpected_client_error_is_a_non_retryable_unexpected_status(http):
    with pytest.raises(UnexpectedStatus) as info:
        http.classify(httpx.Response(418), ENTITY)
    assert info.value.status == 418
    assert info.value.retryable is False


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (httpx.Response(429, headers={"Retry-After": "7"}), 7.0),
        (httpx.Response(429, json={"retry_after": 2.5}), 2.5),
        (httpx.Response(429, json={"retryAfter": 4}), 4.0),
        (httpx.Response(429, headers={"Retry-After": "3"}, json={"retry_after": 9}), 3.0),
        (httpx.Response(429), 1.0),
        (httpx.Response(429, headers={"Retry-After": "0"}), 1.0),
        (httpx.Response(429, json={"retry_after": 0.2}), 1.0),
        (httpx.Response(429, content=b"<html>slow down</html>"), 1.0),
        (httpx.Response(429, headers={"Retry-After": "soon"}), 1.0),
    ],
)
async def test_429_pauses_the_bucket_and_raises_rate_limited(response, expected):
    limiter = make_limiter()
    provider = ProviderHTTP(limiter)
    try:
        assert limiter.seconds_until_free() == 0.0
        with pytest.raises(RateLimited) as info:
            provider.classify(response, ENTITY)
    finally:
        await provider.aclose()

    exc = info.value
    assert exc.retry_after == pytest.approx(expected)
    assert exc.status == 429
    assert exc.entity == ENTITY
    assert exc.retryable is True
    assert provider.rate_limited == 1
    assert limiter.seconds_until_free() >= min(0.9, expected - 0.1)
    assert limiter.seconds_until_free() <= expected
    assert limiter.stats.pauses == 1


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (httpx.Response(429, headers={"Retry-After": "7"}), 7.0),
        (httpx.Response(429, json={"retry_after": 2.5}), 2.5),
        (httpx.Response(429), None),
        (httpx.Response(429, json=[1, 2]), None),
        (httpx.Response(429, json={"retry_after": "2"}), None),
    ],
)
def test_retry_after_of_reads_header_then_json_body(http, response, expected):
    assert http.retry_after_of(response) == expected


# -- json_of --------------------------------------------------------------------------------------


def test_json_of_decodes_a_body():
    response = httpx.Response(200, content=b'{"id": 1, "name": "\xc3\x89clat"}')
    assert ProviderHTTP.json_of(response, ENTITY) == {"id": 1, "name": "Éclat"}


@pytest.mark.parametrize(
    "content", [b'{"id": 36886834, "name": "Aval', b"", b"<html>502</html>", b"\xff\xfe{"]
)
def test_truncated_or_malformed_json_is_a_transient_malformed_body(content):
    with pytest.raises(MalformedBody) as info:
        ProviderHTTP.json_of(httpx.Response(200, content=content), ENTITY)
    exc = info.value
    assert isinstance(exc, Transient) and exc.retryable is True
    assert exc.entity == ENTITY
    assert ENTITY in str(exc)
    assert f"({len(content)} bytes)" in str(exc)
    # Schema drift stays non-retryable; retryability is a class property, never flipped.
    assert BadPayload("x").retryable is False
    assert not issubclass(BadPayload, Transient)


def test_json_nested_too_deeply_is_a_bad_payload_not_a_recursion_error():
    content = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(BadPayload) as info:
        ProviderHTTP.json_of(httpx.Response(200, content=content), ENTITY)
    assert ENTITY in str(info.value)


# -- send -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "fragment"),
    [
        (httpx.ConnectTimeout("connect timed out"), "timeout"),
        (httpx.ReadTimeout("read timed out"), "timeout"),
        (httpx.ConnectError("connection refused"), "ConnectError"),
        (httpx.RemoteProtocolError("peer closed connection"), "RemoteProtocolError"),
        (httpx.ReadError("connection reset"), "ReadError"),
    ],
)
async def test_send_maps_transport_failures_to_transient_and_releases_the_slot(failure, fragment):
    def handler(request: httpx.Request) -> httpx.Response:
        raise failure

    limiter = make_limiter()
    provider = ProviderHTTP(limiter, transport=httpx.MockTransport(handler))
    try:
        with pytest.raises(Transient) as info:
            await provider.send("GET", "https://api.test/x", entity=ENTITY)
    finally:
        await provider.aclose()

    exc = info.value
    assert fragment in str(exc)
    assert ENTITY in str(exc)
    assert exc.__cause__ is failure
    assert limiter.stats.acquired == 1
    assert all(log.in_flight == 0 for log in limiter._logs)  # the slot was given back


# -- to_application_error -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "kind", "non_retryable"),
    [
        (NotFound("battlenet: x not found (404)", entity="x", status=404), "NotFound", True),
        (Forbidden("battlenet: no access (403)", entity="x", status=403), "Forbidden", True),
        (AuthFailed("battlenet: 401 after a fresh token", entity="x"), "AuthFailed", True),
        (BadPayload("payload for x lacks 'id'", entity="x"), "BadPayload", True),
        (Transient("battlenet: 503 on x", entity="x", status=503), "Transient", False),
        (ProviderError("battlenet: unexpected 418 on x", status=418), "ProviderError", False),
    ],
)
def test_to_application_error_keeps_type_message_and_retryability(exc, kind, non_retryable):
    error = to_application_error(exc)
    assert isinstance(error, ApplicationError)
    assert error.type == kind
    assert error.non_retryable is non_retryable
    assert error.message == str(exc)
    assert error.next_retry_delay is None


def test_retryable_bad_payload_becomes_a_retryable_application_error():
    exc = BadPayload("malformed JSON for x (12 bytes)", entity="x")
    exc.retryable = True
    error = to_application_error(exc)
    assert error.type == "BadPayload"
    assert error.non_retryable is False


@pytest.mark.parametrize(("retry_after", "delay"), [(7.0, 7.0), (2.5, 2.5), (0.0, 1.0), (0.3, 1.0)])
def test_rate_limited_becomes_application_error_with_next_retry_delay(retry_after, delay):
    error = to_application_error(RateLimited("429 on x", retry_after=retry_after, entity="x"))
    assert error.type == "RateLimited"
    assert error.non_retryable is False
    assert error.next_retry_delay == timedelta(seconds=delay)


def test_every_listed_non_retryable_type_is_raised_non_retryable():
    classes = (AuthFailed, NotFound, Forbidden, BadPayload, UnexpectedStatus, CircuitOpen)
    by_name = {cls.__name__: cls for cls in classes}
    assert set(NON_RETRYABLE) == {*by_name, "BadInput"}
    for name, cls in by_name.items():
        assert to_application_error(cls("m")).non_retryable is True, name
    for retryable in (Transient, MalformedBody):
        assert to_application_error(retryable("m")).non_retryable is False


@pytest.mark.parametrize("header", ["inf", "1e999"])
async def test_non_finite_retry_after_neither_pauses_forever_nor_breaks_error_conversion(header):
    limiter = make_limiter()
    provider = ProviderHTTP(limiter)
    try:
        with pytest.raises(RateLimited) as info:
            provider.classify(httpx.Response(429, headers={"Retry-After": header}), ENTITY)
    finally:
        await provider.aclose()
    error = to_application_error(info.value)
    assert error.type == "RateLimited"
    assert limiter.seconds_until_free() < 24 * 3600


# -- BattleNetClient against a mock transport -----------------------------------------------------

CLIENT_ID = "ratesync-client-id"
CLIENT_SECRET = "s3cr3t-Client-Secret-9f8e7d"
OAUTH_URL = "https://oauth.test/token"
API_BASE = "https://{region}.api.test"


def token_value(n: int) -> str:
    return f"AccessToken-{n:04d}-abcdef"


class FakeBattleNet:
    """A scripted Battle.net: a token endpoint and an API whose answers the test chooses."""

    def __init__(self) -> None:
        self.token_requests: list[httpx.Request] = []
        self.api_requests: list[httpx.Request] = []
        self.token_answer: Callable[[httpx.Request], httpx.Response] | None = None
        self.api_answers: list[Callable[[httpx.Request], httpx.Response]] = []
        self.valid_tokens: set[str] = set()

    def handle(self, request: httpx.Request) -> httpx.Response:
        if str(request.url) == OAUTH_URL:
            self.token_requests.append(request)
            if self.token_answer is not None:
                return self.token_answer(request)
            token = token_value(len(self.token_requests))
            self.valid_tokens.add(token)
            return httpx.Response(
                200, json={"access_token": token, "token_type": "bearer", "expires_in": 86399}
            )
        self.api_requests.append(request)
        if self.api_answers:
            return self.api_answers.pop(0)(request)
        auth = request.headers.get("authorization", "")
        if auth.removeprefix("Bearer ") not in self.valid_tokens:
            return httpx.Response(401)
        return httpx.Response(
            200, json={"id": 36886834, "name": "Avalerion"}, headers={"Last-Modified": LM}
        )


LM = "Sun, 22 Dec 2019 09:05:19 GMT"


@pytest.fixture
def bnet() -> FakeBattleNet:
    return FakeBattleNet()


@pytest.fixture
async def client(bnet: FakeBattleNet):
    client = make_client(bnet)
    yield client
    await client.aclose()


def make_client(
    bnet: FakeBattleNet,
    *,
    client_id: str | None = CLIENT_ID,
    client_secret: str | None = CLIENT_SECRET,
    locale: str = "en_GB",
    limiter: RateLimiter | None = None,
) -> BattleNetClient:
    return BattleNetClient(
        client_id=client_id,
        client_secret=client_secret,
        api_base=API_BASE,
        oauth_url=OAUTH_URL,
        limiter=limiter or make_limiter(),
        locale=locale,
        transport=httpx.MockTransport(bnet.handle),
    )


def assert_no_secrets(exc: BaseException, *tokens: str) -> None:
    """Neither the client secret nor any access token appears in the error or its causes."""
    forbidden = (CLIENT_SECRET, *tokens)
    seen: BaseException | None = exc
    while seen is not None:
        text = f"{seen} {seen!r} {seen.args!r}"
        for secret in forbidden:
            assert secret not in text
        seen = seen.__cause__ or seen.__context__


async def test_token_is_fetched_once_with_basic_auth_and_reused(client, bnet):
    for _ in range(5):
        fetched = await client.guild("eu", "stormrage", "avalerion")
        assert fetched.status == 200
    await asyncio.gather(*(client.character("eu", "stormrage", "Sheday") for _ in range(10)))

    assert len(bnet.token_requests) == 1
    assert client.token_fetches == 1
    token_request = bnet.token_requests[0]
    assert token_request.method == "POST"
    expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert token_request.headers["authorization"] == f"Basic {expected}"
    assert token_request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(token_request.content.decode()) == {"grant_type": ["client_credentials"]}

    assert len(bnet.api_requests) == 15
    for request in bnet.api_requests:
        assert request.headers["authorization"] == f"Bearer {token_value(1)}"
        assert CLIENT_SECRET not in str(request.url)
        assert CLIENT_SECRET not in request.headers.get("authorization", "")


async def test_get_sends_namespace_locale_and_path(bnet):
    client = make_client(bnet, locale="fr_FR")
    try:
        fetched = await client.character("eu", "stormrage", "Sheday", endpoint="mythic")
        await client.get(
            "us", "/data/wow/playable-class/index", entity="classes", namespace="static"
        )
    finally:
        await client.aclose()

    assert fetched.data == {"id": 36886834, "name": "Avalerion"}
    profile, static = bnet.api_requests
    assert profile.url.host == "eu.api.test"
    assert profile.url.path == "/profile/wow/character/stormrage/sheday/mythic-keystone-profile"
    assert dict(profile.url.params) == {"namespace": "profile-eu", "locale": "fr_FR"}
    assert profile.headers["accept"] == "application/json"
    assert static.url.host == "us.api.test"
    assert dict(static.url.params) == {"namespace": "static-us", "locale": "fr_FR"}


async def test_guild_request_uses_profile_namespace_and_default_locale(client, bnet):
    fetched = await client.guild("eu", "stormrage", "avalerion")
    request = bnet.api_requests[0]
    assert request.url.path == "/data/wow/guild/stormrage/avalerion"
    assert request.url.params["namespace"] == "profile-eu"
    assert request.url.params["locale"] == "en_GB"
    assert "if-modified-since" not in request.headers
    assert fetched == Fetched(200, {"id": 36886834, "name": "Avalerion"}, LM, fetched.raw)
    assert json.loads(fetched.raw) == fetched.data  # the body as received
    assert fetched.not_modified is False


async def test_if_modified_since_is_forwarded_and_304_means_not_modified(client, bnet):
    bnet.api_answers.append(lambda request: httpx.Response(304))
    fetched = await client.guild("eu", "stormrage", "avalerion", if_modified_since=LM)

    assert bnet.api_requests[0].headers["if-modified-since"] == LM
    assert fetched.not_modified is True
    assert fetched.status == 304
    assert fetched.data is None
    assert fetched.last_modified == LM


async def test_304_prefers_the_servers_last_modified(client, bnet):
    newer = "Mon, 23 Dec 2019 10:00:00 GMT"
    bnet.api_answers.append(lambda request: httpx.Response(304, headers={"Last-Modified": newer}))
    fetched = await client.guild("eu", "stormrage", "avalerion", if_modified_since=LM)
    assert fetched == Fetched(304, None, newer)


async def test_a_401_refreshes_the_token_once_and_retries_once(client, bnet):
    await client.guild("eu", "stormrage", "avalerion")
    bnet.valid_tokens.clear()  # the server revoked the token

    fetched = await client.guild("eu", "stormrage", "avalerion")

    assert fetched.status == 200
    assert len(bnet.token_requests) == 2
    assert client.token_fetches == 2
    assert len(bnet.api_requests) == 3
    rejected, retried = bnet.api_requests[1:]
    assert rejected.headers["authorization"] == f"Bearer {token_value(1)}"
    assert retried.headers["authorization"] == f"Bearer {token_value(2)}"
    # The fresh token is cached again.
    await client.guild("eu", "stormrage", "avalerion")
    assert len(bnet.token_requests) == 2


async def test_a_second_401_raises_auth_failed_without_more_retries(client, bnet):
    bnet.api_answers.extend([lambda r: httpx.Response(401), lambda r: httpx.Response(401)])
    with pytest.raises(AuthFailed) as info:
        await client.guild("eu", "stormrage", "avalerion")

    assert len(bnet.api_requests) == 2
    assert len(bnet.token_requests) == 2
    exc = info.value
    assert exc.retryable is False
    assert "guild eu/stormrage/avalerion" in str(exc)
    assert_no_secrets(exc, token_value(1), token_value(2))


@pytest.mark.parametrize("status", [400, 401, 403])
async def test_token_endpoint_refusal_raises_auth_failed_without_leaking_the_secret(
    client, bnet, status
):
    bnet.token_answer = lambda request: httpx.Response(
        status, json={"error": "invalid_client", "error_description": "Invalid client"}
    )
    with pytest.raises(AuthFailed) as info:
        await client.guild("eu", "stormrage", "avalerion")

    exc = info.value
    assert str(status) in str(exc)
    assert "BNET_CLIENT_ID" in str(exc) and "BNET_CLIENT_SECRET" in str(exc)
    assert CLIENT_ID not in str(exc)
    assert_no_secrets(exc)
    assert bnet.api_requests == []


@pytest.mark.parametrize(
    ("client_id", "client_secret"), [(None, None), ("", ""), (CLIENT_ID, None), (None, "x")]
)
async def test_missing_credentials_raise_auth_failed_naming_the_variables(
    bnet, client_id, client_secret
):
    client = make_client(bnet, client_id=client_id, client_secret=client_secret)
    try:
        with pytest.raises(AuthFailed) as info:
            await client.guild("eu", "stormrage", "avalerion")
    finally:
        await client.aclose()
    assert "BNET_CLIENT_ID" in str(info.value)
    assert "BNET_CLIENT_SECRET" in str(info.value)
    assert bnet.token_requests == [] and bnet.api_requests == []


async def test_transport_error_on_the_api_raises_transient(client, bnet):
    await client.guild("eu", "stormrage", "avalerion")

    def reset(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("connection reset by peer", request=request)

    bnet.api_answers.extend([reset] * 3)  # every in-client retry fails too
    with pytest.raises(Transient) as info:
        await client.guild("eu", "stormrage", "avalerion")
    assert "guild eu/stormrage/avalerion" in str(info.value)
    assert_no_secrets(info.value, token_value(1))


@pytest.mark.parametrize(
    "fault",
    [
        lambda request: httpx.Response(503),
        lambda request: httpx.Response(200, content=b'{"id": 368'),
        lambda request: (_ for _ in ()).throw(httpx.ReadError("reset", request=request)),
    ],
    ids=["503", "truncated", "reset"],
)
async def test_a_transient_fault_is_asked_again_through_the_limiter(bnet, fault):
    limiter = make_limiter()
    client = make_client(bnet, limiter=limiter)
    try:
        await client.guild("eu", "stormrage", "avalerion")
        before = limiter.stats.acquired
        bnet.api_answers.extend([fault, fault])
        fetched = await client.guild("eu", "stormrage", "avalerion")
    finally:
        await client.aclose()
    assert fetched.data == {"id": 36886834, "name": "Avalerion"}
    assert limiter.stats.acquired - before == 3  # each retry took its own slot
    assert client.retries == 2


async def test_a_429_is_not_asked_again_inside_the_client(client, bnet):
    bnet.api_answers.append(lambda request: httpx.Response(429, headers={"Retry-After": "1"}))
    with pytest.raises(RateLimited):
        await client.guild("eu", "stormrage", "avalerion")
    assert len(bnet.api_requests) == 1 and client.retries == 0


async def test_transport_error_on_the_token_endpoint_raises_transient(client, bnet):
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    bnet.token_answer = refuse
    with pytest.raises(Transient) as info:
        await client.guild("eu", "stormrage", "avalerion")
    assert "oauth token" in str(info.value)
    assert_no_secrets(info.value)


@pytest.mark.parametrize(
    "answer",
    [
        lambda request: httpx.Response(503),
        lambda request: httpx.Response(200, json={"token_type": "bearer"}),
        lambda request: httpx.Response(200, content=b'{"access_token": "AccessTok'),
    ],
)
async def test_token_endpoint_trouble_is_retryable(client, bnet, answer):
    bnet.token_answer = answer
    with pytest.raises(ProviderError) as info:
        await client.guild("eu", "stormrage", "avalerion")
    assert info.value.retryable is True
    assert_no_secrets(info.value, "AccessTok")


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (
            lambda request: httpx.Response(404, json={"code": 404, "type": "BLZWEBAPI00000404"}),
            NotFound,
        ),
        (lambda request: httpx.Response(403), Forbidden),
        (lambda request: httpx.Response(500), Transient),
        (lambda request: httpx.Response(429, headers={"Retry-After": "2"}), RateLimited),
        (lambda request: httpx.Response(200, content=b'{"id": 368'), MalformedBody),
    ],
)
async def test_api_errors_are_typed_and_never_carry_the_token(client, bnet, answer, error):
    bnet.api_answers.extend([answer] * 3)  # a transient answer stays so on every retry
    with pytest.raises(error) as info:
        await client.guild("eu", "stormrage", "avalerion")
    assert "guild eu/stormrage/avalerion" in str(info.value)
    assert_no_secrets(info.value, token_value(1))
    if error is RateLimited:
        assert client.limiter.seconds_until_free() >= 1.9


async def test_a_non_numeric_token_lifetime_is_a_bad_payload_not_a_value_error(client, bnet):
    bnet.token_answer = lambda request: httpx.Response(
        200, json={"access_token": "AccessToken-9999", "expires_in": "soon"}
    )
    with pytest.raises(BadPayload) as info:
        await client.guild("eu", "stormrage", "avalerion")
    assert "expires_in" in str(info.value)
    assert_no_secrets(info.value, "AccessToken-9999")
