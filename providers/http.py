"""The provider-client base: one pooled httpx client, a rate-limit bucket, status → typed error.

Every request goes through ``ProviderHTTP.send``: it holds a limiter slot for exactly the
time the request is on the wire, turns transport failures and statuses into the errors of
``providers.errors`` and pauses the whole bucket on a 429.

Retries (README, "The retry contract"): an idempotent GET that fails transiently (5xx, reset,
timeout, a body cut in transit) is asked again up to ``transient_retries`` times with jittered
backoff, each time through the limiter (:meth:`ProviderHTTP.retrying`). What still fails is
raised as :class:`Transient` and Temporal retries the activity. A 429 is never retried here: the
bucket is paused and the caller turns it into a budget wait.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from providers.errors import (
    AuthFailed,
    BadPayload,
    Forbidden,
    MalformedBody,
    NotFound,
    RateLimited,
    Transient,
    UnexpectedStatus,
)
from providers.ratelimit import Limiter, Priority


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
    ) -> None:
        self.limiter = limiter
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
            headers=dict(headers or {}),
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
        auth: httpx.Auth | None = None,
        limited: bool = True,
        max_wait: float | None = None,
    ) -> httpx.Response:
        """Send one request inside a limiter slot; raise Transient on transport failure."""
        request = self._http.build_request(method, url, params=params, headers=headers, data=data)
        try:
            if limited:
                async with self.limiter.slot(priority, max_wait):
                    self.requests_sent += 1
                    box = _counter.get()
                    if box is not None:
                        box[0] += 1
                    return await self._http.send(request, auth=auth or httpx.USE_CLIENT_DEFAULT)
            return await self._http.send(request, auth=auth or httpx.USE_CLIENT_DEFAULT)
        except httpx.TimeoutException as exc:
            raise Transient(f"{self.provider}: timeout on {entity}", entity=entity) from exc
        except httpx.TransportError as exc:
            raise Transient(
                f"{self.provider}: connection error on {entity} ({type(exc).__name__})",
                entity=entity,
            ) from exc

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
        except ValueError:
            return None
        if isinstance(body, dict):
            for key in ("retry_after", "retryAfter"):
                if isinstance(body.get(key), int | float):
                    return _sane_delay(float(body[key]))
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
