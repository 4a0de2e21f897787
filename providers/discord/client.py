"""Discord REST v10 client for a bot token: guilds, channels, threads and message pages.

The endpoints the sync calls are declared once, in a table (:data:`ENDPOINTS`): path, major
parameter (which makes the bucket), the name used in errors and the shape the answer must have.
:meth:`DiscordClient.fetch` asks any of them. Every request takes a place in its route bucket
(``DiscordLimiter.slot``), then the global limit (``ProviderHTTP.send``), and its answer is fed
back to the limiter before any error is raised; a transient failure is asked again through the
limiter. A request made for a tenant (``tenant=``, its guild id) takes its turn in the global
limit as that tenant's, for the fair share between servers on one token. The token is sent only
as the ``Authorization`` header; no message or repr contains it.
It goes to DISCORD_API_BASE_URL's scheme, host and port only, and an id put into a path is a
snowflake of ASCII digits (:func:`check_snowflake`): anything else is :class:`BadInput`, and
nothing is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx

from providers.discord.parse import (
    MessagesPage,
    parse_channels,
    parse_guild,
    parse_messages_page,
    parse_thread_list,
)
from providers.discord.ratelimit import DiscordLimiter
from providers.errors import (
    AuthFailed,
    BadInput,
    BadPayload,
    RateLimited,
)
from providers.http import DEFAULT_MAX_RESPONSE_BYTES, ProviderHTTP
from providers.ratelimit import Priority, after_waiting, for_tenant

USER_AGENT = "DiscordBot (https://github.com/ratesync/ratesync, 0.1)"

T = TypeVar("T")
# An answer's expected shape: (response, entity, major id, query) → the validated value.
Shape = Callable[[httpx.Response, str, int, Mapping[str, str]], T]


@dataclass(frozen=True)
class Endpoint(Generic[T]):
    """One endpoint the sync calls, declared: where, in which bucket, and what comes back."""

    path: str  # "/guilds/{guild_id}/channels"
    major: str  # the one path parameter, Discord's major parameter: buckets are per its value
    entity: str  # "guild {guild_id} channels": names the request in errors
    shape: Shape[T]  # validates the answer (BadPayload naming ``entity`` when it drifted)
    method: str = "GET"

    @property
    def route(self) -> str:
        """The bucket's route template, e.g. ``GET /guilds/{guild_id}/channels``."""
        return f"{self.method} {self.path}"


def _json(parse: Callable[[Any, str], T]) -> Shape[T]:
    def shape(response: httpx.Response, entity: str, major: int, query: Mapping[str, str]) -> T:
        return parse(ProviderHTTP.json_of(response, entity), entity)

    return shape


def _active_threads(data: Any, entity: str) -> list[dict[str, Any]]:
    return parse_thread_list(data, entity)[0]


def _message_page(
    response: httpx.Response, entity: str, major: int, query: Mapping[str, str]
) -> MessagesPage:
    return parse_messages_page(
        response.content, channel_id=major, after=int(query["after"]), limit=int(query["limit"])
    )


GUILD = Endpoint("/guilds/{guild_id}", "guild_id", "guild {guild_id}", _json(parse_guild))
GUILD_CHANNELS = Endpoint(
    "/guilds/{guild_id}/channels", "guild_id", "guild {guild_id} channels",
    _json(parse_channels),
)  # fmt: skip
ACTIVE_THREADS = Endpoint(
    "/guilds/{guild_id}/threads/active", "guild_id", "guild {guild_id} active threads",
    _json(_active_threads),
)  # fmt: skip
ARCHIVED_THREADS = Endpoint(
    "/channels/{channel_id}/threads/archived/public", "channel_id",
    "channel {channel_id} archived threads", _json(parse_thread_list),
)  # fmt: skip
MESSAGES = Endpoint(
    "/channels/{channel_id}/messages", "channel_id", "channel {channel_id}", _message_page
)
# By the names the sandbox (and its fault injection) uses for them.
ENDPOINTS: dict[str, Endpoint[Any]] = {
    "guild": GUILD,
    "guild_channels": GUILD_CHANNELS,
    "active_threads": ACTIVE_THREADS,
    "archived_threads": ARCHIVED_THREADS,
    "messages": MESSAGES,
}


MAX_SNOWFLAKE = 2**64 - 1  # a snowflake is an unsigned 64-bit integer


def check_snowflake(value: Any, what: str = "Discord id") -> int:
    """A Discord id to put into a path: an int (not a bool) or a string of ASCII digits, in
    0..2**64-1; anything else is :class:`BadInput` (nothing is sent)."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        number = int(value)
    else:
        number = -1
    if 0 <= number <= MAX_SNOWFLAKE:
        return number
    shown = repr(value)
    shown = shown if len(shown) <= 48 else shown[:45] + "..."
    raise BadInput(f"discord: {what} {shown} is not a Discord id (ASCII digits only)")


def _error_detail(response: httpx.Response) -> str:
    """Discord's ``{"message", "code"}`` as one short line, e.g. ``50001 Missing Access``."""
    try:
        body = response.json()
    except (ValueError, RecursionError):  # not JSON, or nested too deeply: no detail
        return ""
    if not isinstance(body, dict):
        return ""
    parts = [_scalar(body.get("code")), " ".join(_scalar(body.get("message")).split())[:160]]
    return " ".join(part for part in parts if part)


def _scalar(value: Any) -> str:
    """A string or number as text; a container (a nested body) is no detail."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return ""
    return str(value)[:160]


class DiscordClient(ProviderHTTP):
    provider = "discord"

    def __init__(
        self,
        *,
        token: str,
        base_url: str,
        limiter: DiscordLimiter,
        timeout: float = 15.0,
        max_connections: int = 50,
        transport: httpx.AsyncBaseTransport | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        token = (token or "").strip()
        if token.startswith("Bot "):
            token = token[4:].strip()
        if not token:
            raise AuthFailed("discord: DISCORD_BOT_TOKEN is not set")
        super().__init__(
            limiter.global_limiter, timeout=timeout, max_connections=max_connections,
            transport=transport,
            headers={
                "Authorization": f"Bot {token}",
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
            },
            max_response_bytes=max_response_bytes,
            origins=[base_url],
        )  # fmt: skip
        self.discord_limiter = limiter
        self.base_url = base_url.rstrip("/")

    origin_setting = "DISCORD_API_BASE_URL"

    def __repr__(self) -> str:
        return f"DiscordClient(base_url={self.base_url!r})"

    # -- transport --------------------------------------------------------------------------

    async def get(
        self,
        route: str,
        major: int | None,
        path: str,
        *,
        entity: str,
        params: Mapping[str, str] | None = None,
        priority: int = Priority.BULK,
        max_wait: float | None = None,
        tenant: str | None = None,
    ) -> httpx.Response:
        """GET ``path`` within the bucket of ``route`` (template) and ``major``; 2xx or raise.
        ``tenant``: whose request it is, in the global limit's fair share.

        Raises CircuitOpen, BudgetExhausted, RateLimited, AuthFailed, Forbidden, NotFound,
        Transient or a non-retryable ProviderError (other 4xx).
        """
        limiter = self.discord_limiter
        major_key = "" if major is None else str(major)
        async with limiter.slot(
            route, major_key, priority=priority, max_wait=max_wait, entity=entity, tenant=tenant
        ) as ticket:
            # the global limit is taken inside ProviderHTTP.send, its wait observed with the
            # route bucket's as one
            with for_tenant(tenant), after_waiting(ticket.waited):
                response = await self.send(
                    "GET", self.base_url + path, entity=entity, priority=priority, params=params,
                    max_wait=max_wait,
                )  # fmt: skip
            hit = limiter.on_response(
                ticket, response.status_code, response.headers, response.content
            )
        if hit is not None:
            self.rate_limited += 1
            if hit.scope == "cloudflare":
                raise limiter.circuit_error(entity)
            raise RateLimited(
                f"discord: 429 ({hit.scope}) on {entity}; retry in {hit.retry_after:.2f}s",
                retry_after=hit.retry_after,
                entity=entity,
            )
        self.classify(response, entity)  # 429s were handled by the bucket above
        return response

    auth_hint = " — check DISCORD_BOT_TOKEN"

    def error_detail(self, response: httpx.Response) -> str:
        return _error_detail(response)

    # -- API --------------------------------------------------------------------------------

    async def fetch(
        self,
        endpoint: Endpoint[T],
        major: int,
        *,
        params: Mapping[str, str] | None = None,
        priority: int = Priority.BULK,
        max_wait: float | None = None,
        tenant: str | None = None,
    ) -> T:
        """Ask ``endpoint`` about ``major`` (its guild or channel id), in the bucket of the
        endpoint's route and that id; return the answer validated by the endpoint's shape.

        A transient failure (5xx, reset, timeout, a body cut in transit) is asked again up to
        ``transient_retries`` times, each time through the limiter.
        """
        ident = check_snowflake(major, endpoint.major)
        values = {endpoint.major: ident}
        path = endpoint.path.format(**values)
        entity = endpoint.entity.format(**values)
        query = dict(params or {})

        async def once() -> T:
            response = await self.get(
                endpoint.route, ident, path, entity=entity, params=query, priority=priority,
                max_wait=max_wait, tenant=tenant,
            )  # fmt: skip
            return endpoint.shape(response, entity, ident, query)

        return await self.retrying(once)

    async def archived_threads(
        self,
        channel_id: int,
        *,
        page_size: int = 100,
        priority: int = Priority.BULK,
        max_wait: float | None = None,
        tenant: str | None = None,
    ) -> list[dict[str, Any]]:
        """All public archived threads of a channel, newest archived first (paged by time)."""
        entity = ARCHIVED_THREADS.entity.format(channel_id=check_snowflake(channel_id))
        threads: list[dict[str, Any]] = []
        before: str | None = None
        while True:
            params = {"limit": str(page_size)}
            if before is not None:
                params["before"] = before
            page, has_more = await self.fetch(
                ARCHIVED_THREADS, channel_id, params=params, priority=priority, max_wait=max_wait,
                tenant=tenant,
            )  # fmt: skip
            threads.extend(page)
            if not has_more or not page:
                return threads
            metadata = page[-1].get("thread_metadata")
            stamp = metadata.get("archive_timestamp") if isinstance(metadata, dict) else None
            if not isinstance(stamp, str) or not stamp:
                raise BadPayload(f"discord: {entity}: thread without archive_timestamp",
                                      entity=entity)  # fmt: skip
            if stamp == before:
                raise BadPayload(f"discord: {entity}: paging did not advance past {stamp}",
                                      entity=entity)  # fmt: skip
            before = stamp

    def messages_wait(self, channel_id: int) -> float:
        """Seconds until the channel's message bucket lets a request start (0: now or unknown).

        For progress displays ("waiting on a rate limit until …"); the wait itself happens in
        :meth:`messages_page`.
        """
        limiter = self.discord_limiter
        now = limiter.clock()
        ready = limiter.state(MESSAGES.route, str(check_snowflake(channel_id))).ready_at(now)
        return 0.0 if ready is None else max(0.0, ready - now)

    async def messages_page(
        self,
        channel_id: int,
        *,
        after: int,
        limit: int = 100,
        priority: int = Priority.BULK,
        max_wait: float | None = None,
        tenant: str | None = None,
    ) -> MessagesPage:
        """The ``limit`` oldest messages with id > ``after`` (returned newest first)."""
        if not 1 <= limit <= 100:
            raise ValueError(f"limit must be 1..100, not {limit}")
        params = {"after": str(int(after)), "limit": str(limit)}
        return await self.fetch(
            MESSAGES, channel_id, params=params, priority=priority, max_wait=max_wait,
            tenant=tenant,
        )  # fmt: skip
