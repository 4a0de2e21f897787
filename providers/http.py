"""The provider-client base: one pooled httpx client, a rate-limit bucket, status → typed error.

Every request goes through ``ProviderHTTP.send``: it holds a limiter slot for exactly the
time the request is on the wire, turns transport failures and statuses into the errors of
``providers.errors`` and pauses the whole bucket on a 429.

Hostile answers and hostile input: every body is read as a stream and refused as
:class:`BadPayload` once it grows past ``max_response_bytes`` (``HTTP_MAX_RESPONSE_BYTES``)
*after decompression* — a gzip bomb of 1 GB of zeros in 1 MB never becomes more than the cap in
memory (gzip and deflate are decoded here, in bounded steps). A client that names its
``origins`` (the configured base URLs) sends nothing, no credential and no token, to any other
scheme, host or port: :class:`BadInput`.

Retries (README, "The retry contract"): an idempotent GET that fails transiently (5xx, reset,
timeout, a body cut in transit) is asked again up to ``transient_retries`` times with jittered
backoff, each time through the limiter (:meth:`ProviderHTTP.retrying`). What still fails is
raised as :class:`Transient` and Temporal retries the activity. A 429 is never retried here: the
bucket is paused and the caller turns it into a budget wait.

Metrics (README "Metrics"): every request sent is counted in ``_exchange`` by provider, the
budget whose place it holds (``providers.ratelimit.budget_held``) and its answer's status (or
what became of it: timeout, connect, reset, cancelled), and each 429 by its scope.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import zlib
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from observability import metrics
from providers.errors import (
    AuthFailed,
    BadInput,
    BadPayload,
    Forbidden,
    MalformedBody,
    NotFound,
    RateLimited,
    Transient,
    UnexpectedStatus,
)
from providers.ratelimit import Limiter, Priority, budget_held


@dataclass
class Fetched:
    """A successful answer: 200 with its JSON body, or 304 (``data is None``)."""

    status: int
    data: Any
    last_modified: str | None
    raw: bytes = b""  # the body as received: stored or hashed without re-serialising

    @property
    def not_modified(self) -> bool:
        return self.status == 304


class RequestLinesAtDebug(logging.Filter):
    """httpx logs every request ("HTTP Request: GET … 200 OK") at INFO: thousands of lines a
    minute at a provider's rate. Per-request lines are DEBUG: shown with LOG_LEVEL=DEBUG only."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        # the logger let it through as INFO: look again at the level it now has
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def _quiet_request_lines() -> None:
    httpx_log = logging.getLogger("httpx")
    if not any(isinstance(f, RequestLinesAtDebug) for f in httpx_log.filters):
        httpx_log.addFilter(RequestLinesAtDebug())


_quiet_request_lines()  # every process that sends provider requests imports this module

_counter: ContextVar[list[int] | None] = ContextVar("provider_request_counter", default=None)


@contextmanager
def count_requests() -> Iterator[list[int]]:
    """Count the requests sent by this task and the tasks it spawns: ``with count_requests() as n``.

    A shared client serves many activities at once, so its own total cannot say which activity
    sent what; a context variable can.
    """
    box = [0]
    token = _counter.set(box)
    try:
        yield box
    finally:
        _counter.reset(token)


T = TypeVar("T")
TRANSIENT_RETRIES = 2  # an idempotent GET is sent at most 3 times per activity attempt
RETRY_BACKOFF = 0.2  # seconds, doubled per retry, with full jitter

MAX_RETRY_AFTER = 3600.0  # a larger or non-finite hint is treated as an hour, never forever

# Settings.HTTP_MAX_RESPONSE_BYTES' default; workers pass the setting (activities/*_build.py)
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024
READ_STEP = 64 * 1024  # bytes decoded at a time: the most a body may overshoot the cap by
ACCEPT_ENCODING = "gzip, deflate"  # what read_capped can decode in bounded steps
_DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]


def origin_of(url: str | httpx.URL) -> Origin:
    """(scheme, host, port) of a URL, the port filled in when it is the scheme's default."""
    parsed = httpx.URL(url)
    return parsed.scheme, parsed.host, parsed.port or _DEFAULT_PORTS.get(parsed.scheme, 0)


def _too_large(provider: str, entity: str, limit: int) -> BadPayload:
    return BadPayload(
        f"{provider}: the answer for {entity} is larger than HTTP_MAX_RESPONSE_BYTES "
        f"({limit} bytes once decompressed); raise HTTP_MAX_RESPONSE_BYTES if it is genuine",
        entity=entity,
    )


class _Inflater:
    """gzip or deflate, decoded at most ``READ_STEP`` bytes at a time."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._wbits = 31 if encoding in ("gzip", "x-gzip") else 15
        self._z = zlib.decompressobj(self._wbits)
        self._started = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        if not self._started and self._wbits == 15:
            # "deflate" is meant to be zlib-wrapped; some servers send it raw (as httpx allows)
            self._started = True
            try:
                probe = zlib.decompressobj(15)
                probe.decompress(data[:64], 1)
            except zlib.error:
                self._z = zlib.decompressobj(-15)
        self._started = True
        while data and not self._z.eof:
            out = self._z.decompress(data, READ_STEP)
            data = self._z.unconsumed_tail
            yield out
            while len(out) == READ_STEP and not data and not self._z.eof:
                out = self._z.decompress(b"", READ_STEP)  # output still held in the window
                yield out


async def read_capped(
    response: httpx.Response, limit: int, provider: str, entity: str
) -> httpx.Response:
    """The response with its whole body, decoded; :class:`BadPayload` as soon as the decoded
    body passes ``limit`` bytes (nothing more is read or decoded)."""
    if response.is_stream_consumed:  # an in-memory answer (a test transport): already whole
        if len(response.content) > limit:
            raise _too_large(provider, entity, limit)
        return response
    codings = [
        c.strip().lower()
        for c in response.headers.get("content-encoding", "").split(",")
        if c.strip().lower() not in ("", "identity")
    ]
    if len(codings) > 1 or (codings and codings[0] not in ("gzip", "x-gzip", "deflate")):
        shown = response.headers.get("content-encoding", "")[:40]
        raise BadPayload(
            f"{provider}: the answer for {entity} has Content-Encoding {shown!r}, which was not "
            f"asked for (only {ACCEPT_ENCODING})",
            entity=entity,
        )
    if not codings:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _too_large(provider, entity, limit)  # refused before a byte is read
    inflater = _Inflater(codings[0]) if codings else None
    parts: list[bytes] = []
    size = 0
    try:
        async for raw in response.aiter_raw(READ_STEP):
            for piece in inflater.feed(raw) if inflater is not None else (raw,):
                size += len(piece)
                if size > limit:
                    raise _too_large(provider, entity, limit)
                parts.append(piece)
    except zlib.error as exc:
        raise MalformedBody(
            f"{provider}: the {codings[0]} body of {entity} does not decode ({exc})",
            entity=entity,
        ) from None
    headers = [
        (k, v)
        for k, v in response.headers.multi_items()
        if k.lower() not in ("content-encoding", "content-length")
    ]
    return httpx.Response(
        response.status_code, headers=headers, content=b"".join(parts), request=response.request
    )


_SCOPES = frozenset({"user", "global", "shared"})


def _no_answer(exc: BaseException) -> str:
    """What became of a request that got no answer (the ``status`` label)."""
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connect"
    if isinstance(exc, httpx.ReadError | httpx.WriteError | httpx.RemoteProtocolError):
        return "reset"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    return "error"


def _sane_delay(value: float) -> float | None:
    if value != value:  # NaN
        return None
    return min(MAX_RETRY_AFTER, max(0.0, value))


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return _sane_delay(float(value))
    except ValueError:
        return None


class ProviderHTTP:
    """Shared machinery of the provider clients."""

    provider = "provider"

    def __init__(
        self,
        limiter: Limiter,
        *,
        timeout: float = 15.0,
        max_connections: int = 50,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
        transient_retries: int = TRANSIENT_RETRIES,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        origins: Iterable[str] | None = None,
    ) -> None:
        """``origins``: the base URLs requests may go to (None: any, for tests of the base);
        ``max_response_bytes``: HTTP_MAX_RESPONSE_BYTES, the most a decoded body may hold."""
        self.limiter = limiter
        self.max_response_bytes = max_response_bytes
        self.origins = None if origins is None else frozenset(origin_of(o) for o in origins)
        self.requests_sent = 0
        self.rate_limited = 0
        self.transient_retries = transient_retries
        self.retries = 0  # requests sent again after a transient failure
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(5.0, timeout)),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            transport=transport,
            headers={"Accept-Encoding": ACCEPT_ENCODING, **dict(headers or {})},
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send(
        self,
        method: str,
        url: str,
        *,
        entity: str,
        priority: int = Priority.BULK,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        content: bytes | None = None,
        auth: httpx.Auth | None = None,
        limited: bool = True,
        max_wait: float | None = None,
    ) -> httpx.Response:
        """Send one request inside a limiter slot and read its body (capped at
        ``max_response_bytes`` once decoded); raise Transient on transport failure, BadInput
        (nothing sent) for a URL off the configured origins. ``data`` is a form body,
        ``content`` a body of its own (give its Content-Type in ``headers``)."""
        try:
            request = self._http.build_request(
                method, url, params=params, headers=headers, data=data, content=content
            )
        except (httpx.InvalidURL, UnicodeError) as exc:
            raise BadInput(f"{self.provider}: no valid URL for {entity} ({type(exc).__name__})",
                           entity=entity) from None  # fmt: skip
        self.check_origin(request.url, entity)
        try:
            if limited:
                async with self.limiter.slot(priority, max_wait):
                    self.requests_sent += 1
                    box = _counter.get()
                    if box is not None:
                        box[0] += 1
                    return await self._exchange(request, auth, entity)
            return await self._exchange(request, auth, entity)
        except httpx.TimeoutException as exc:
            raise Transient(f"{self.provider}: timeout on {entity}", entity=entity) from exc
        except httpx.TransportError as exc:
            raise Transient(
                f"{self.provider}: connection error on {entity} ({type(exc).__name__})",
                entity=entity,
            ) from exc

    origin_setting = "the configured base URL"  # named when a URL is refused

    def check_origin(self, url: httpx.URL, entity: str) -> None:
        """Refuse (BadInput) a URL whose scheme, host or port is not a configured origin's:
        the credentials this client attaches go to those hosts only."""
        if self.origins is None:
            return
        got = origin_of(url)
        if got not in self.origins:
            scheme, host, port = got
            raise BadInput(
                f"{self.provider}: refused to send {entity} to {scheme}://{host[:60]}:{port}, "
                f"which is not the host of {self.origin_setting}",
                entity=entity,
            )

    async def _exchange(
        self, request: httpx.Request, auth: httpx.Auth | None, entity: str
    ) -> httpx.Response:
        bucket = budget_held()  # the budget whose place this request holds (None: outside any)
        try:
            response = await self._http.send(
                request, auth=auth or httpx.USE_CLIENT_DEFAULT, stream=True
            )
        except BaseException as exc:
            metrics.upstream_request(self.provider, bucket, _no_answer(exc))
            raise
        metrics.upstream_request(self.provider, bucket, response.status_code)
        answer = response  # a 429's scope is read from the whole answer when it can be read
        try:
            answer = await read_capped(response, self.max_response_bytes, self.provider, entity)
            return answer
        finally:
            if response.status_code == 429:
                metrics.rate_limited(self.provider, self.rate_limit_scope(answer, bucket))
            await response.aclose()

    async def retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run one idempotent request (``call`` sends it through the limiter), asking again on
        a transient failure up to ``transient_retries`` times with jittered backoff."""
        for attempt in range(self.transient_retries + 1):
            try:
                return await call()
            except Transient:
                if attempt >= self.transient_retries:
                    raise
            self.retries += 1
            await asyncio.sleep(random.uniform(0.5, 1.0) * RETRY_BACKOFF * 2**attempt)
        raise AssertionError("unreachable")

    def rate_limit_scope(self, response: httpx.Response, bucket: str | None) -> str:
        """The ``scope`` label of a 429 in ``ratesync_rate_limited_total``: the scope the answer
        names (Discord's ``X-RateLimit-Scope``: user, global, shared; ``X-RateLimit-Global``),
        else the bucket. Only those three words: a hostile header makes no new series. (Called
        with the whole answer, or only its headers when its body could not be read.)"""
        scope = response.headers.get("x-ratelimit-scope", "").strip().lower()
        if response.headers.get("x-ratelimit-global", "").strip().lower() == "true":
            scope = "global"
        return scope if scope in _SCOPES else (bucket or metrics.NO_BUCKET)

    auth_hint = ""  # appended to a 401's message: which setting to check

    def error_detail(self, response: httpx.Response) -> str:
        """The API's own short reason for an error answer ("" when it gives none)."""
        return ""

    def classify(self, response: httpx.Response, entity: str) -> None:
        """The one status → typed error mapping of every provider (a 401 the caller could not
        cure by a fresh token, a 429 that pauses the bucket, 403/404, 5xx, other 4xx)."""
        status = response.status_code
        if status < 400:
            return
        p = self.provider
        if status == 429:
            self.rate_limited += 1
            retry_after = self.retry_after_of(response)
            paused = self.limiter.on_rate_limited(retry_after)
            raise RateLimited(
                f"{p}: 429 on {entity}; bucket paused {paused:.1f}s",
                retry_after=paused,
                entity=entity,
            )
        if status >= 500 or status == 408:
            raise Transient(f"{p}: {status} on {entity}", entity=entity, status=status)
        detail = self.error_detail(response)
        also = f", {detail}" if detail else ""
        if status == 401:
            raise AuthFailed(f"{p}: 401 Unauthorized on {entity}{self.auth_hint}",
                             entity=entity, status=401)  # fmt: skip
        if status == 404:
            raise NotFound(f"{p}: {entity} not found (404{also})", entity=entity, status=404)
        if status == 403:
            raise Forbidden(f"{p}: no access to {entity} (403{also})", entity=entity, status=403)
        reason = f" ({detail})" if detail else ""
        raise UnexpectedStatus(f"{p}: unexpected {status} on {entity}{reason}", entity=entity,
                               status=status)  # fmt: skip

    def retry_after_of(self, response: httpx.Response) -> float | None:
        """Seconds to wait after a 429 (header, else a JSON ``retry_after``/``retryAfter``)."""
        header = parse_retry_after(response.headers.get("retry-after"))
        if header is not None:
            return header
        try:
            body = response.json()
        except (ValueError, RecursionError):  # not JSON, or nested too deeply to be an answer
            return None
        if isinstance(body, dict):
            for key in ("retry_after", "retryAfter"):
                value = body.get(key)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    try:
                        return _sane_delay(float(value))
                    except OverflowError:  # an integer beyond a double: the longest wait
                        return MAX_RETRY_AFTER
        return None

    @staticmethod
    def json_of(response: httpx.Response, entity: str) -> Any:
        """Decode the body; one that does not parse (usually cut in transit) is MalformedBody."""
        try:
            return json.loads(response.content)
        except RecursionError:
            raise BadPayload(f"JSON for {entity} is nested too deeply to be an answer",
                             entity=entity) from None  # fmt: skip
        except ValueError as exc:
            raise MalformedBody(f"malformed JSON for {entity} ({len(response.content)} bytes)",
                                entity=entity) from exc  # fmt: skip
