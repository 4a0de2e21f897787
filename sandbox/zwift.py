"""The ZwiftRacing.app public API sandbox: a strict imitation of the endpoints issue 13 syncs.

Base path ``/api`` (clients use ``ZWIFT_API_BASE_URL = <server url>/api``), routes and their
rate-limit family (:mod:`sandbox.zwift_limits`; standard tier, every period divided by the
time scale ``S``):

==========================================  ================  =================================
route                                       family            answer (shapes: ``zwift_world``)
==========================================  ================  =================================
``GET /public/clubs/{id}``                  ``clubs``         ``{"clubId","name","riders"}``,
``GET /public/clubs/{id}/{fromRiderId}``    ``clubs``         ≤ 1000 riders, ascending, from the
                                                              cursor **inclusive**
``POST /public/riders[/{epoch}]``           ``riders_post``   bare JSON array of ≤ 1000 ids →
                                                              riders in the order sent, unknown
                                                              ids omitted; else 400
``GET /public/riders/{id}[/{epoch}]``       ``riders_get``    one rider (``race`` as of epoch)
``GET /public/events/{id}``                 ``events``        the event
``GET /public/event_signups/{id}``          ``event_signups`` ``{"eventId","time","signups"}``
``GET /public/results/{id}``                ``results``       ``results.json``'s shape once the
                                                              event finished; 404 before
==========================================  ================  =================================

Every API request goes through, in order: (1) count it; (2) ``Authorization: <key>`` exactly,
the raw key with no ``Bearer`` (401 ``{"message": "Unauthorized"}``); (3) an unknown route is
404 without a family; (4) the family's strict sliding window: 429 with body
``{"message": "Too Many Requests", "retryAfter": <seconds>}`` (UPSTREAM §3.3; a ``Retry-After``
header too unless ``retry_after_header`` is off, and never an ``X-RateLimit-*`` header);
(5) injected faults (:class:`~sandbox.common.Faults`: 5xx, resets, truncated bodies, forced
429s, latency); (6) 400 for a bad id or body, 404 ``{"message": ...}`` for an unknown club,
rider or event; (7) 200. Admitted requests count in the window whatever their answer.
"""

from __future__ import annotations

import asyncio
import json
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
from sandbox.zwift_admin import zwift_admin_routes
from sandbox.zwift_limits import DEFAULT_LIMITS, FAMILIES, ZwiftLimits
from sandbox.zwift_world import ZwiftWorld, ZwiftWorldConfig

__all__ = [
    "API_PREFIX",
    "BULK_LIMIT",
    "ROUTES",
    "ZwiftSandbox",
    "ZwiftSandboxConfig",
    "create_zwift_app",
]

API_PREFIX = "/api"
BULK_LIMIT = 1000  # ids per POST /public/riders, riders per club page
JSON_TYPE = "application/json; charset=utf-8"
UNKNOWN_ROUTE = "unknown"

# route name -> (method, path under /api, family)
ROUTES: dict[str, tuple[str, str, str]] = {
    "club": ("GET", "/public/clubs/{club_id}", "clubs"),
    "club_from": ("GET", "/public/clubs/{club_id}/{from_rider}", "clubs"),
    "riders_post": ("POST", "/public/riders", "riders_post"),
    "riders_post_at": ("POST", "/public/riders/{epoch}", "riders_post"),
    "rider": ("GET", "/public/riders/{rider_id}", "riders_get"),
    "rider_at": ("GET", "/public/riders/{rider_id}/{epoch}", "riders_get"),
    "event": ("GET", "/public/events/{event_id}", "events"),
    "event_signups": ("GET", "/public/event_signups/{event_id}", "event_signups"),
    "results": ("GET", "/public/results/{event_id}", "results"),
}


@dataclass
class ZwiftSandboxConfig:
    """``time_scale`` divides every window (and places the world's events: an offset of x
    simulated seconds is x / S real ones). ``start``: the wall-clock epoch the world is built
    around (None: when the app is created). Limits are ``(count, seconds)`` before scaling."""

    world: ZwiftWorldConfig = field(default_factory=ZwiftWorldConfig)
    api_key: str = "sandbox-zwift-key"
    time_scale: float = 1.0
    start: float | None = None
    clubs: tuple[int, float] = DEFAULT_LIMITS["clubs"]
    riders_post: tuple[int, float] = DEFAULT_LIMITS["riders_post"]
    riders_get: tuple[int, float] = DEFAULT_LIMITS["riders_get"]
    events: tuple[int, float] = DEFAULT_LIMITS["events"]
    event_signups: tuple[int, float] = DEFAULT_LIMITS["event_signups"]
    results: tuple[int, float] = DEFAULT_LIMITS["results"]
    retry_after_header: bool = True
    lifted: bool = False

    def family_limits(self) -> dict[str, tuple[int, float]]:
        return {family: _pair(getattr(self, family)) for family in FAMILIES}


def _pair(value: Any) -> tuple[int, float]:
    limit, period = value
    return int(limit), float(period)


def message_body(status: int, message: str | None = None) -> dict[str, Any]:
    """The ZR error body: ``{"message": "..."}`` (UPSTREAM §3.3)."""
    return {"message": message or HTTPStatus(status).phrase}


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status, self.message = status, message
        super().__init__(message)


def _int_param(request: Request, name: str) -> int:
    raw = str(request.path_params[name])
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise _Refused(400, f"Invalid {name}")
    return int(raw)


class ZwiftSandbox:
    """All state of one ZwiftRacing sandbox: world, windows, counters and faults."""

    def __init__(
        self,
        config: ZwiftSandboxConfig,
        clock: Callable[[], float] | None = None,
        wall: Callable[[], float] | None = None,
    ) -> None:
        self.config = replace(config)
        self.clock = clock or time.monotonic
        self.wall = wall or time.time
        start = config.start if config.start is not None else self.wall()
        self.world = ZwiftWorld(config.world, start=start, time_scale=config.time_scale)
        self.limits = ZwiftLimits(config.family_limits(), config.time_scale, config.lifted)
        self.counters = Counters([*ROUTES, UNKNOWN_ROUTE])
        self.faults = Faults(seed=config.world.seed)
        self._reset_extra()

    def _reset_extra(self) -> None:
        self.by_family: Counter[str] = Counter(dict.fromkeys(FAMILIES, 0))
        self.throttled_by_family: Counter[str] = Counter(dict.fromkeys(FAMILIES, 0))
        self.unauthorized = 0

    # -- admin (common.AdminTarget) -----------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        counters = self.counters.snapshot()
        return {
            "requests": counters["requests"],
            "by_route": counters["by_route"],
            "by_family": dict(self.by_family),
            "by_status": counters["by_status"],
            "throttled": counters["throttled"],
            "throttled_by_family": dict(self.throttled_by_family),
            "unauthorized": self.unauthorized,
            "max_in_window": self.limits.max_in_window(),
            "max_arrivals_in_window": self.limits.max_arrivals_in_window(),
            "limits": self.limits.describe(),
            "faults_injected": counters["faults_injected"],
            "first_request_at": counters["first_request_at"],
            "last_request_at": counters["last_request_at"],
            "world_start": self.world.start,
            "time_scale": self.world.time_scale,
        }

    def reset(self) -> None:
        """Zero counters and windows; the world and faults stay."""
        self.counters.reset()
        self.limits.reset()
        self._reset_extra()

    def set_limits(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return self.limits.update(body)

    # -- responses ----------------------------------------------------------------------------

    def _send(
        self, status: int, body: Any, raw: bytes = b"", headers: dict[str, str] | None = None
    ) -> Response:
        self.counters.count_response(status)
        content = raw or json_bytes(body)
        all_headers = {"Date": formatdate(usegmt=True), **(headers or {})}
        return Response(content, status_code=status, headers=all_headers, media_type=JSON_TYPE)

    def _too_many(self, family: str, retry_after: float) -> Response:
        self.throttled_by_family[family] += 1
        value: int | float = int(retry_after) if retry_after == int(retry_after) else retry_after
        headers = {}
        if self.config.retry_after_header:
            headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
        body = {"message": "Too Many Requests", "retryAfter": value}
        return self._send(429, body, headers=headers)

    # -- the pipeline -------------------------------------------------------------------------

    async def handle(self, request: Request, route: str) -> Response:
        now = self.clock()
        self.counters.count_request(route)
        if request.headers.get("authorization") != self.config.api_key:
            self.unauthorized += 1
            return self._send(401, message_body(401))
        if route == UNKNOWN_ROUTE:
            return self._send(404, message_body(404))
        family = ROUTES[route][2]
        self.by_family[family] += 1
        retry_after = self.limits.admit(family, now)
        if retry_after is not None:
            return self._too_many(family, retry_after)
        fault = self.faults.decide(request.url.path)
        if fault.delay > 0:
            self.counters.count_fault("latency")
            await asyncio.sleep(fault.delay)
        if fault.action == "reset":
            self.counters.count_fault("reset")
            await abort_connection(request)
            return Response(status_code=500)  # never sent: the socket is gone
        if fault.action == "throttle":
            self.counters.count_fault("forced_429")
            return self._too_many(family, 1.0)
        if fault.action == "error":
            self.counters.count_fault("error")
            return self._send(fault.status, message_body(fault.status))
        try:
            body = await self._resolve(route, request)
        except _Refused as refused:
            return self._send(refused.status, message_body(refused.status, refused.message))
        raw = json_bytes(body)
        if fault.truncate:
            self.counters.count_fault("truncate")
            raw = raw[: len(raw) // 2]
        return self._send(200, None, raw=raw)

    async def _resolve(self, route: str, request: Request) -> Any:
        world, now = self.world, self.wall()
        if route in ("club", "club_from"):
            club = world.clubs.get(_int_param(request, "club_id"))
            cursor = _int_param(request, "from_rider") if route == "club_from" else 0
            if club is None:
                raise _Refused(404, "Club not found")
            return world.club_payload(club, now, cursor, BULK_LIMIT)
        if route in ("rider", "rider_at"):
            rider = world.riders.get(_int_param(request, "rider_id"))
            at = float(_int_param(request, "epoch")) if route == "rider_at" else None
            if rider is None:
                raise _Refused(404, "Rider not found")
            return world.rider_payload(rider, now, at)
        if route in ("riders_post", "riders_post_at"):
            at = float(_int_param(request, "epoch")) if route == "riders_post_at" else None
            ids = await _bulk_ids(request)
            riders = (world.riders.get(i) for i in dict.fromkeys(ids))
            return [world.rider_payload(r, now, at) for r in riders if r is not None]
        event = world.events.get(_int_param(request, "event_id"))
        if event is None:
            raise _Refused(404, "Event not found")
        if route == "event":
            return world.event_payload(event, now)
        if route == "event_signups":
            return world.signups_payload(event, now)
        results = world.results_payload(event, now)
        if results is None:
            raise _Refused(404, "Results not found")
        return results


async def _bulk_ids(request: Request) -> list[int]:
    """The POST body: a bare JSON array of at most 1000 integer ids (UPSTREAM §3.2)."""
    try:
        data = json.loads(await request.body())
    except ValueError:
        raise _Refused(400, "Body must be a JSON array of rider ids") from None
    if not isinstance(data, list):
        raise _Refused(400, "Body must be a JSON array of rider ids")
    if len(data) > BULK_LIMIT:
        raise _Refused(400, f"At most {BULK_LIMIT} rider ids per request")
    if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in data):
        raise _Refused(400, "Rider ids must be integers")
    return list(data)


def zwift_routes(sandbox: ZwiftSandbox) -> list[BaseRoute]:
    """The API routes under ``/api`` plus a catch-all there (any method) that answers 404."""

    def route(name: str, method: str, path: str) -> Route:
        async def handler(request: Request) -> Response:
            return await sandbox.handle(request, name)

        return Route(path, handler, methods=[method], name=f"zwift_{name}")

    routes: list[BaseRoute] = [
        route(name, method, API_PREFIX + path) for name, (method, path, _) in ROUTES.items()
    ]
    any_method = ["GET", "POST", "PUT", "PATCH", "DELETE"]

    async def unknown(request: Request) -> Response:
        return await sandbox.handle(request, UNKNOWN_ROUTE)

    routes.append(
        Route(API_PREFIX + "/{rest:path}", unknown, methods=any_method, name="zwift_unknown")
    )
    return routes


def create_zwift_app(
    config: ZwiftSandboxConfig | None = None,
    *,
    clock: Callable[[], float] | None = None,
    wall: Callable[[], float] | None = None,
) -> SandboxApp:
    """The ZwiftRacing sandbox as an ASGI app; its state is ``app.state.sandbox``."""
    sandbox = ZwiftSandbox(config or ZwiftSandboxConfig(), clock=clock, wall=wall)
    routes = [*admin_routes(), *zwift_admin_routes(), *zwift_routes(sandbox)]
    app = SandboxApp(routes=routes)
    app.state.sandbox = sandbox
    return app
