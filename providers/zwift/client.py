"""ZwiftRacing.app public API client (UPSTREAM §3): clubs, riders, events, signups, results.

The API key goes as the raw ``Authorization`` header (no ``Bearer``), to ZWIFT_API_BASE_URL's
scheme, host and port only (``https://api.zwiftracing.app/api``); no message or repr holds it.

Every endpoint belongs to a rate-limit **family** with its own window (:data:`FAMILIES`,
standard tier; the settings ``ZWIFT_RATE_<FAMILY>``). The client takes one
:class:`~providers.ratelimit.Limiter` per family (local or the shared Postgres budget): a
request holds a place in its family's limiter while it is on the wire, and a 429 pauses that
family for the answer's ``retryAfter`` (the body's, or a ``Retry-After`` header if one comes)
and raises :class:`RateLimited`; it is never retried here. A transient failure (5xx, reset,
timeout, a body cut in transit) is asked again through the limiter
(:meth:`ProviderHTTP.retrying`); what still fails is :class:`Transient`.

Club paging: the cursor is inclusive (``/clubs/{id}/{fromRiderId}`` starts *with* that rider),
so :meth:`ZwiftClient.club_pages` pages on the last rider id, drops the rider it already has
and stops at a page of fewer than 1000 riders.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import httpx

from providers.errors import AuthFailed, BadInput, RateLimited
from providers.http import DEFAULT_MAX_RESPONSE_BYTES, TRANSIENT_RETRIES, ProviderHTTP
from providers.ratelimit import Limiter, Priority, RateLimiter, Window
from providers.zwift.parse import (
    PAGE_SIZE,
    ClubPage,
    EventAnswer,
    ResultsAnswer,
    RiderAnswer,
    RidersAnswer,
    SignupsAnswer,
    id_of,
    parse_club_page,
    parse_event,
    parse_results,
    parse_rider,
    parse_riders,
    parse_signups,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "FAMILIES",
    "CallRecord",
    "ZwiftClient",
    "check_id",
    "chunks",
    "family_limiters",
    "parse_rate",
    "recording_calls",
]

DEFAULT_BASE_URL = "https://api.zwiftracing.app/api"
USER_AGENT = "ratesync/0.1"

# Family → its standard-tier window (issue 13; UPSTREAM §3.2).
FAMILIES: dict[str, Window] = {
    "clubs": Window(1, 3600.0),
    "riders_post": Window(1, 900.0),
    "riders_get": Window(5, 60.0),
    "events": Window(1, 60.0),
    "event_signups": Window(1, 60.0),
    "results": Window(1, 60.0),
}

T = TypeVar("T")


@dataclass
class CallRecord:
    """One request as the sync log keeps it: its family, entity, HTTP status (0: no answer, a
    transport failure), seconds waited for its rate-budget place, and its priority."""

    family: str
    entity: str
    status: int
    waited: float
    priority: int


_calls: ContextVar[list[CallRecord] | None] = ContextVar("zwift_calls", default=None)


@contextmanager
def recording_calls() -> Iterator[list[CallRecord]]:
    """Collect a record of every request the client sends in this task (``zwift_sync_log``)."""
    found: list[CallRecord] = []
    token = _calls.set(found)
    try:
        yield found
    finally:
        _calls.reset(token)


def parse_rate(text: str, setting: str = "ZWIFT_RATE_*") -> Window:
    """``"<count>/<seconds>"`` (a ``ZWIFT_RATE_<FAMILY>`` value) → a Window; ValueError."""
    count, sep, seconds = str(text).strip().partition("/")
    try:
        if not sep:
            raise ValueError
        return Window(int(count), float(seconds))
    except ValueError:
        raise ValueError(
            f"{setting} must be '<count>/<seconds>', e.g. '1/900', not {text!r}"
        ) from None


def family_limiters(
    windows: Mapping[str, Window] | None = None,
    *,
    max_wait: float | None = 30.0,
    time_scale: float = 1.0,
) -> dict[str, Limiter]:
    """One in-process :class:`RateLimiter` per family (``windows`` override the defaults;
    ``time_scale`` divides every period, as the sandbox's does)."""
    chosen = {**FAMILIES, **(windows or {})}
    unknown = set(chosen) - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown zwift families: {sorted(unknown)}")
    if not time_scale > 0:
        raise ValueError("time_scale must be > 0")
    return {
        family: RateLimiter(
            f"zwift {family}", [Window(w.limit, w.period / time_scale)], max_wait=max_wait
        )
        for family, w in chosen.items()
    }


def check_id(value: Any, what: str) -> int:
    """An id to put into a path: an int (not a bool) or a string of ASCII digits, 0..2**63-1;
    anything else is :class:`BadInput` (nothing is sent)."""
    number = id_of(value, minimum=0)
    if number is not None:
        return number
    shown = repr(value)
    shown = shown if len(shown) <= 48 else shown[:45] + "..."
    raise BadInput(f"zwift: {what} {shown} is not an id (ASCII digits only)")


@dataclass(frozen=True)
class _Endpoint:
    family: str
    method: str
    path: str  # under the base URL, e.g. "/public/riders/{rider_id}"


CLUB = _Endpoint("clubs", "GET", "/public/clubs/{club_id}")
CLUB_FROM = _Endpoint("clubs", "GET", "/public/clubs/{club_id}/{from_rider}")
RIDERS_POST = _Endpoint("riders_post", "POST", "/public/riders")
RIDER = _Endpoint("riders_get", "GET", "/public/riders/{rider_id}")
EVENT = _Endpoint("events", "GET", "/public/events/{event_id}")
EVENT_SIGNUPS = _Endpoint("event_signups", "GET", "/public/event_signups/{event_id}")
RESULTS = _Endpoint("results", "GET", "/public/results/{event_id}")


class _NoLimit:
    """The base class's limiter: the family limiters do the limiting (one per endpoint)."""

    name = "zwift (per family)"

    @asynccontextmanager
    async def slot(
        self, priority: int = Priority.BULK, max_wait: float | None = None
    ) -> AsyncIterator[None]:
        yield

    def pause(self, seconds: float) -> None:
        return None

    def on_rate_limited(self, retry_after: float | None) -> float:
        return retry_after or 0.0


def _error_detail(response: httpx.Response) -> str:
    """ZR's ``{"message": "..."}`` as one short line."""
    try:
        body = response.json()
    except (ValueError, RecursionError):
        return ""
    message = body.get("message") if isinstance(body, dict) else None
    return " ".join(message.split())[:160] if isinstance(message, str) else ""


class ZwiftClient(ProviderHTTP):
    provider = "zwift"

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str = DEFAULT_BASE_URL,
        limiters: Mapping[str, Limiter],
        timeout: float = 30.0,
        max_connections: int = 10,
        transport: httpx.AsyncBaseTransport | None = None,
        transient_retries: int = TRANSIENT_RETRIES,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        key = (api_key or "").strip()
        if not key:
            raise AuthFailed("zwift: ZWIFT_API_KEY is not set")
        missing = set(FAMILIES) - set(limiters)
        if missing:
            raise ValueError(f"zwift: no limiter for {sorted(missing)}")
        super().__init__(
            _NoLimit(),
            timeout=timeout,
            max_connections=max_connections,
            transport=transport,
            headers={"Authorization": key, "Accept": "application/json", "User-Agent": USER_AGENT},
            transient_retries=transient_retries,
            max_response_bytes=max_response_bytes,
            origins=[base_url],
        )
        self.limiters = dict(limiters)
        self.base_url = base_url.rstrip("/")

    origin_setting = "ZWIFT_API_BASE_URL"
    auth_hint = " — check ZWIFT_API_KEY"

    def __repr__(self) -> str:
        return f"ZwiftClient(base_url={self.base_url!r})"

    def error_detail(self, response: httpx.Response) -> str:
        return _error_detail(response)

    # -- transport ----------------------------------------------------------------------------

    async def call(
        self,
        endpoint: _Endpoint,
        *,
        entity: str,
        priority: int = Priority.BULK,
        max_wait: float | None = None,
        body: bytes | None = None,
        **ids: int,
    ) -> httpx.Response:
        """One request in its family's limiter; a 2xx answer or the typed error (a 429 pauses
        the family for its ``retryAfter`` and raises RateLimited). Transient failures are
        asked again, each time through the limiter."""
        url = self.base_url + endpoint.path.format(**ids)
        limiter = self.limiters[endpoint.family]
        headers = None if body is None else {"Content-Type": "application/json"}
        log = _calls.get()

        async def once() -> httpx.Response:
            asked = time.monotonic()
            record = CallRecord(endpoint.family, entity, 0, 0.0, int(priority))
            async with limiter.slot(priority, max_wait):  # BudgetExhausted: nothing sent
                record.waited = time.monotonic() - asked
                if log is not None:
                    log.append(record)  # status 0 unless an answer comes
                response = await self.send(
                    endpoint.method, url, entity=entity, content=body, headers=headers
                )
            record.status = response.status_code
            if response.status_code == 429:
                self.rate_limited += 1
                paused = limiter.on_rate_limited(self.retry_after_of(response))
                raise RateLimited(
                    f"zwift: 429 on {entity} ({endpoint.family}); paused {paused:.1f}s",
                    retry_after=paused,
                    entity=entity,
                )
            self.classify(response, entity)
            return response

        return await self.retrying(once)

    # -- API ----------------------------------------------------------------------------------

    async def club_page(
        self,
        club_id: int,
        from_rider: int | None = None,
        *,
        priority: int = Priority.BULK,
        max_wait: float | None = None,
    ) -> ClubPage:
        """One page of a club's members: the first (``from_rider`` None) or those with
        ``riderId >= from_rider`` (inclusive), ascending, at most 1000."""
        club = check_id(club_id, "club id")
        entity = f"club {club}"
        if from_rider is None:
            response = await self.call(
                CLUB, entity=entity, priority=priority, max_wait=max_wait, club_id=club
            )
            return parse_club_page(response.content, club_id=club)
        cursor = check_id(from_rider, "rider id")
        response = await self.call(
            CLUB_FROM, entity=entity, priority=priority, max_wait=max_wait,
            club_id=club, from_rider=cursor,
        )  # fmt: skip
        return parse_club_page(response.content, club_id=club, cursor=cursor)

    async def club_pages(
        self,
        club_id: int,
        from_rider: int | None = None,
        *,
        priority: int = Priority.BULK,
        max_wait: float | None = None,
    ) -> AsyncIterator[ClubPage]:
        """Every page of a club, each holding only riders not yielded before (the inclusive
        cursor's repeat dropped), until a page of fewer than 1000 riders."""
        seen_up_to = -1
        cursor = from_rider
        while True:
            page = await self.club_page(club_id, cursor, priority=priority, max_wait=max_wait)
            fresh = [i for i in page.rider_ids if i > seen_up_to]
            if fresh != page.rider_ids:
                page = replace(page, rider_ids=fresh)
            yield page
            following = page.next_cursor
            if following is None or following <= seen_up_to:  # the last page, or no progress
                return
            seen_up_to = cursor = following

    async def riders(
        self,
        rider_ids: Sequence[int],
        *,
        priority: int = Priority.BULK,
        max_wait: float | None = None,
    ) -> RidersAnswer:
        """``POST /public/riders`` with a bare JSON array of at most 1000 distinct ids; the
        riders found, in the order sent (ids it does not know are left out)."""
        ids = list(dict.fromkeys(check_id(i, "rider id") for i in rider_ids))
        if not ids:
            raise BadInput("zwift: a bulk rider request needs at least one id")
        if len(ids) > PAGE_SIZE:
            raise BadInput(f"zwift: {len(ids)} rider ids in one request (at most {PAGE_SIZE})")
        body = ("[" + ",".join(str(i) for i in ids) + "]").encode()
        response = await self.call(
            RIDERS_POST, entity=f"riders ({len(ids)} ids)", priority=priority,
            max_wait=max_wait, body=body,
        )  # fmt: skip
        return parse_riders(response.content, asked=ids)

    async def rider(
        self, rider_id: int, *, priority: int = Priority.BULK, max_wait: float | None = None
    ) -> RiderAnswer:
        """``GET /public/riders/{id}``: the single-rider endpoint (a manual add)."""
        ident = check_id(rider_id, "rider id")
        response = await self.call(
            RIDER, entity=f"rider {ident}", priority=priority, max_wait=max_wait, rider_id=ident
        )
        return parse_rider(response.content, rider_id=ident)

    async def event(
        self, event_id: int, *, priority: int = Priority.BULK, max_wait: float | None = None
    ) -> EventAnswer:
        ident = check_id(event_id, "event id")
        response = await self.call(
            EVENT, entity=f"event {ident}", priority=priority, max_wait=max_wait, event_id=ident
        )
        return parse_event(response.content, event_id=ident)

    async def event_signups(
        self, event_id: int, *, priority: int = Priority.BULK, max_wait: float | None = None
    ) -> SignupsAnswer:
        ident = check_id(event_id, "event id")
        response = await self.call(
            EVENT_SIGNUPS, entity=f"event {ident} signups", priority=priority,
            max_wait=max_wait, event_id=ident,
        )  # fmt: skip
        return parse_signups(response.content, event_id=ident)

    async def results(
        self, event_id: int, *, priority: int = Priority.BULK, max_wait: float | None = None
    ) -> ResultsAnswer:
        """``GET /public/results/{id}``; NotFound while the event has none (not finished)."""
        ident = check_id(event_id, "event id")
        response = await self.call(
            RESULTS, entity=f"event {ident} results", priority=priority, max_wait=max_wait,
            event_id=ident,
        )  # fmt: skip
        return parse_results(response.content, event_id=ident)


def chunks(ids: Sequence[int], size: int = PAGE_SIZE) -> Iterator[list[int]]:
    """``ids`` in runs of at most ``size`` (1000: one bulk POST each)."""
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])
