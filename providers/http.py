"""The provider-client base: one pooled httpx client, a rate-limit bucket, status → typed error.

Every request goes through ``ProviderHTTP.request``: it holds a limiter slot for exactly the
time the request is on the wire, turns transport failures and statuses into the errors of
``providers.errors`` and pauses the whole bucket on a 429. It never retries by itself: Temporal
owns retries.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import httpx

from providers.errors import BadPayload, Forbidden, NotFound, ProviderError, RateLimited, Transient
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
    ) -> None:
        self.limiter = limiter
        self.requests_sent = 0
        self.rate_limited = 0
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

    def classify(self, response: httpx.Response, entity: str) -> None:
        """Raise the typed error for a non-success status (401 is handled by the caller)."""
        status = response.status_code
        if status < 400:
            return
        if status == 429:
            self.rate_limited += 1
            retry_after = self.retry_after_of(response)
            paused = self.limiter.on_rate_limited(retry_after)
            raise RateLimited(
                f"{self.provider}: 429 on {entity}; bucket paused {paused:.1f}s",
                retry_after=paused,
                entity=entity,
            )
        if status == 404:
            raise NotFound(f"{self.provider}: {entity} not found (404)", entity=entity, status=404)
        if status == 403:
            raise Forbidden(
                f"{self.provider}: no access to {entity} (403)", entity=entity, status=403
            )
        if status >= 500 or status == 408:
            raise Transient(f"{self.provider}: {status} on {entity}", entity=entity, status=status)
        raise ProviderError(f"{self.provider}: unexpected {status} on {entity}", entity=entity,
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
        """Decode the body; a truncated or malformed body is a BadPayload marked retryable."""
        try:
            return json.loads(response.content)
        except ValueError as exc:
            error = BadPayload(f"malformed JSON for {entity} ({len(response.content)} bytes)",
                               entity=entity)  # fmt: skip
            error.retryable = True  # a cut body is usually transport trouble: try again
            raise error from exc
