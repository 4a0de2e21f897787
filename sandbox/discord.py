"""The Discord REST API v10 sandbox: a strict imitation of the endpoints the sync uses.

Base path ``/api/v10`` (clients use ``DISCORD_API_BASE_URL = <server url>/api/v10``). Every API
request goes through these checks, in order (see ``../shared/UPSTREAM.md`` §2):

1. count it; 2. Cloudflare ban (429 ``error code: 1015``, see :mod:`sandbox.discord_limits`);
3. ``User-Agent`` must start with ``DiscordBot`` (403, code 40333); 4. ``Authorization: Bot
<token>`` (401); 5. global limit (429, scope ``global``); 6. route bucket (429, scope ``user``);
7. injected faults (:class:`~sandbox.discord_admin.DiscordFaults` first, then the generic
:class:`~sandbox.common.Faults`); 8. 404 / 403 Missing Access / 400 Invalid Form Body;
9. 200. Answers from step 6 on carry the bucket's ``X-RateLimit-*`` headers.

Routes and buckets (default 5 per 5 s each, major parameter in brackets): ``GET
/guilds/{guild_id}`` ``guild`` [guild], ``GET /guilds/{guild_id}/channels`` ``guild_channels``
[guild], ``GET /guilds/{guild_id}/threads/active`` ``active_threads`` [guild], ``GET
/channels/{channel_id}/threads/archived/public`` ``archived_threads`` [channel], ``GET
/channels/{channel_id}/messages`` ``messages`` [channel]. Anything else under ``/api/v10``
answers 404 ``{"message": "404: Not Found", "code": 0}`` without a bucket.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sandbox.common import Counters, Faults, SandboxApp, abort_connection, admin_routes, json_bytes
from sandbox.discord_admin import DiscordFaults, discord_admin_routes
from sandbox.discord_api import resolve
from sandbox.discord_limits import ROUTES, DiscordLimits, LimitSettings, bucket_hash
from sandbox.discord_world import DiscordWorld, DiscordWorldConfig

__all__ = [
    "API_PREFIX",
    "DiscordSandbox",
    "DiscordSandboxConfig",
    "create_discord_app",
]

API_PREFIX = "/api/v10"
JSON_TYPE = "application/json"
RATE_LIMITED = "You are being rate limited."
UNKNOWN_ROUTE = "unknown"
_PATHS = {
    "guild": "/guilds/{guild_id}",
    "guild_channels": "/guilds/{guild_id}/channels",
    "active_threads": "/guilds/{guild_id}/threads/active",
    "archived_threads": "/channels/{channel_id}/threads/archived/public",
    "messages": "/channels/{channel_id}/messages",
}


@dataclass
class DiscordSandboxConfig:
    world: DiscordWorldConfig = field(default_factory=DiscordWorldConfig)
    bot_token: str = "sandbox-bot-token"
    global_per_second: int = 50
    messages: tuple[int, float] = (5, 5.0)
    guild: tuple[int, float] = (5, 5.0)
    guild_channels: tuple[int, float] = (5, 5.0)
    active_threads: tuple[int, float] = (5, 5.0)
    archived_threads: tuple[int, float] = (5, 5.0)
    invalid_limit: int = 10_000
    invalid_period: float = 600.0
    lifted: bool = False

    def limit_settings(self) -> LimitSettings:
        return LimitSettings(
            global_per_second=self.global_per_second,
            routes={route: _pair(getattr(self, route)) for route in ROUTES},
            invalid_limit=self.invalid_limit,
            invalid_period=self.invalid_period,
            lifted=self.lifted,
        )


def _pair(value: Any) -> tuple[int, float]:
    limit, period = value
    return int(limit), float(period)


def error_body(status: int) -> dict[str, Any]:
    """A generic Discord error body for a forced status, e.g. ``500: Internal Server Error``."""
    return {"message": f"{status}: {HTTPStatus(status).phrase}", "code": 0}


FORCED_BODIES = {
    400: {"code": 50035, "errors": {}, "message": "Invalid Form Body"},
    401: {"message": "401: Unauthorized", "code": 0},
    403: {"message": "Missing Access", "code": 50001},
    404: {"message": "Unknown Channel", "code": 10003},
}


class DiscordSandbox:
    """All state of one Discord sandbox app: world, limits, counters and faults."""

    def __init__(
        self, config: DiscordSandboxConfig, clock: Callable[[], float] | None = None
    ) -> None:
        self.config = replace(config)
        self.clock = clock or time.monotonic
        self.world = DiscordWorld(config.world)
        self.limits = DiscordLimits(config.limit_settings())
        self.counters = Counters([*ROUTES, UNKNOWN_ROUTE])
        self.faults = Faults(seed=config.world.seed)
        self.discord_faults = DiscordFaults()
        self._auth = f"Bot {config.bot_token}"
        self._reset_extra()

    def _reset_extra(self) -> None:
        self.rate_limited: Counter[str] = Counter({"user": 0, "global": 0, "shared": 0})
        self.rate_limited_by_bucket: Counter[str] = Counter()
        self.banned_responses = 0

    # -- admin (common.AdminTarget) -------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        counters = self.counters.snapshot()
        now = self.clock()
        return {
            "requests": counters["requests"],
            "by_route": counters["by_route"],
            "by_status": counters["by_status"],
            "throttled": counters["throttled"],
            "rate_limited": dict(self.rate_limited),
            "rate_limited_by_bucket": dict(self.rate_limited_by_bucket),
            "invalid_requests": self.limits.invalid.in_window(now),
            "banned": self.limits.banned(now),
            "banned_responses": self.banned_responses,
            "global_max_in_window": self.limits.global_window.max_in_window,
            "global_max_arrivals_in_window": self.limits.global_window.max_arrivals_in_window,
            "route_max_in_window": self.limits.route_max_in_window(),
            "limits": self.limits.describe(),
            "faults_injected": counters["faults_injected"],
            "first_request_at": counters["first_request_at"],
            "last_request_at": counters["last_request_at"],
        }

    def reset(self) -> None:
        """Zero counters, windows, the invalid-request count and any ban; data and faults stay."""
        self.counters.reset()
        self.limits.reset()
        self._reset_extra()

    def set_limits(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return self.limits.update(body)

    # -- responses ----------------------------------------------------------------------------

    def _send(
        self, status: int, body: Any, headers: dict[str, str] | None = None, raw: bytes = b""
    ) -> Response:
        self.counters.count_response(status)
        if status in (401, 403):
            self.limits.note_invalid(self.clock())
        content = raw or json_bytes(body)
        all_headers = {"Date": formatdate(usegmt=True), **(headers or {})}
        return Response(content, status_code=status, headers=all_headers, media_type=JSON_TYPE)

    def _ban(self) -> Response:
        self.banned_responses += 1
        self.counters.count_response(429)
        headers = {"Date": formatdate(usegmt=True)}
        return Response(b"error code: 1015", 429, headers=headers, media_type="text/html")

    def _too_many(
        self,
        scope: str,
        retry_after: float,
        headers: dict[str, str],
        key: str | None = None,
    ) -> Response:
        self.rate_limited[scope] += 1
        if key is not None:
            self.rate_limited_by_bucket[key] += 1
        if scope != "shared":
            self.limits.note_invalid(self.clock())
        headers = {**headers, "Retry-After": str(math.ceil(retry_after))}
        if scope == "global":
            headers["X-RateLimit-Global"] = "true"
        headers["X-RateLimit-Scope"] = scope
        message = "The resource is being rate limited." if scope == "shared" else RATE_LIMITED
        body = {"message": message, "retry_after": retry_after, "global": scope == "global"}
        return self._send(429, body, headers)

    def _forced_bucket_headers(self, route: str, limit: int, retry_after: float) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": f"{self.limits.wall() + retry_after:.3f}",
            "X-RateLimit-Reset-After": f"{retry_after:.3f}",
            "X-RateLimit-Bucket": bucket_hash(route),
        }

    # -- the pipeline ---------------------------------------------------------------------

    async def handle(self, request: Request, route: str) -> Response:
        now = self.clock()
        self.counters.count_request(route)
        if self.limits.banned(now):
            return self._ban()
        if not request.headers.get("user-agent", "").startswith("DiscordBot"):
            return self._send(403, {"message": "internal network error", "code": 40333})
        if request.headers.get("authorization") != self._auth:
            return self._send(401, {"message": "401: Unauthorized", "code": 0})
        retry_after = self.limits.admit_global(now)
        if retry_after is not None:
            return self._too_many("global", retry_after, {})
        if route == UNKNOWN_ROUTE:
            return self._send(404, {"message": "404: Not Found", "code": 0})
        major = str(request.path_params.get(ROUTES[route], ""))
        window = self.limits.bucket(route, major)
        retry_after = self.limits.admit_bucket(window, now)
        headers = self.limits.headers(route, window, now)
        if retry_after is not None:
            return self._too_many("user", retry_after, headers, f"{route}:{major}")
        forced, truncate = await self._faults(request, route, major, window.limit, headers)
        if forced is not None:
            return forced
        status, body = resolve(self.world, route, request.path_params, request.query_params)
        if isinstance(body, bytes):
            if truncate:
                self.counters.count_fault("truncate")
                body = body[: len(body) // 2]
            return self._send(status, None, headers, raw=body)
        return self._send(status, body, headers)

    async def _faults(
        self, request: Request, route: str, major: str, limit: int, headers: dict[str, str]
    ) -> tuple[Response | None, bool]:
        """An injected answer (or None), and whether to truncate the 200 body."""
        forced = self.discord_faults.take(route)
        if forced is not None:
            kind, value = forced
            self.counters.count_fault(f"forced_{kind}")
            return self._forced(route, major, limit, headers, kind, value), False
        fault = self.faults.decide(request.url.path)
        if fault.delay > 0:
            self.counters.count_fault("latency")
            await asyncio.sleep(fault.delay)
        if fault.action == "reset":
            self.counters.count_fault("reset")
            await abort_connection(request)
            return Response(status_code=500), False  # never sent: the socket is gone
        if fault.action == "throttle":
            self.counters.count_fault("forced_429")
            return self._forced(route, major, limit, headers, "bucket_429", 1.0), False
        if fault.action == "error":
            self.counters.count_fault("error")
            return self._send(fault.status, error_body(fault.status), headers), False
        return None, fault.truncate

    def _forced(
        self,
        route: str,
        major: str,
        limit: int,
        headers: dict[str, str],
        kind: str,
        value: float,
    ) -> Response:
        if kind == "global_429":
            return self._too_many("global", value, {})
        if kind == "bucket_429":
            forced_headers = self._forced_bucket_headers(route, limit, value)
            return self._too_many("user", value, forced_headers, f"{route}:{major}")
        if kind == "shared_429":
            return self._too_many("shared", value, headers)
        status = int(value)
        return self._send(status, FORCED_BODIES.get(status) or error_body(status), headers)


def discord_routes(sandbox: DiscordSandbox) -> list[BaseRoute]:
    """The API routes under ``/api/v10`` plus a catch-all that answers 404."""

    def route(name: str, path: str) -> Route:
        async def handler(request: Request) -> Response:
            return await sandbox.handle(request, name)

        return Route(API_PREFIX + path, handler, methods=["GET"], name=f"discord_{name}")

    routes: list[BaseRoute] = [route(name, path) for name, path in _PATHS.items()]
    routes.append(route(UNKNOWN_ROUTE, "/{rest:path}"))
    return routes


def create_discord_app(
    config: DiscordSandboxConfig | None = None, *, clock: Callable[[], float] | None = None
) -> SandboxApp:
    """The Discord sandbox as an ASGI app; its state is ``app.state.sandbox``."""
    sandbox = DiscordSandbox(config or DiscordSandboxConfig(), clock=clock)
    routes = [*admin_routes(), *discord_admin_routes(), *discord_routes(sandbox)]
    app = SandboxApp(routes=routes)
    app.state.sandbox = sandbox
    return app
