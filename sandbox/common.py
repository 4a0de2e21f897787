"""Parts shared by every sandbox app: counters, fault injection, admin routes, raw responses.

An app built on these keeps one state object on ``app.state.sandbox`` that satisfies
:class:`AdminTarget`; :func:`admin_routes` then serves ``/_admin/stats``, ``/_admin/reset``,
``/_admin/faults`` and ``/_admin/limits`` for it.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import struct
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from http import HTTPStatus
from typing import Any, Literal, Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

__all__ = [
    "AdminTarget",
    "Counters",
    "FaultDecision",
    "Faults",
    "SandboxApp",
    "abort_connection",
    "admin_routes",
    "http_date",
    "json_bytes",
    "parse_http_date",
    "read_json",
]

RAW_SEND_KEY = "sandbox.raw_send"


# ---------------------------------------------------------------------------------------------
# Small helpers


def json_bytes(payload: Any) -> bytes:
    """Compact UTF-8 JSON, as the real APIs send it."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def http_date(moment: datetime) -> str:
    """RFC 1123 date in GMT, e.g. ``Sun, 22 Dec 2019 09:05:19 GMT``."""
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def parse_http_date(value: str | None) -> datetime | None:
    """Lenient HTTP-date parser (accepts non-padded days); ``None`` when unparseable."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


async def read_json(request: Request) -> dict[str, Any]:
    """The request body as a JSON object (``{}`` when empty); ValueError if it is not one."""
    raw = await request.body()
    if not raw.strip():
        return {}
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("body must be a JSON object")
    return data


# ---------------------------------------------------------------------------------------------
# Counters


class Counters:
    """What the sandbox saw: API requests per route and per status, throttles, faults."""

    def __init__(self, routes: Iterable[str]) -> None:
        self._routes = tuple(routes)
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.by_route: Counter[str] = Counter({route: 0 for route in self._routes})
        self.by_status: Counter[str] = Counter()
        self.throttled = 0
        self.faults: Counter[str] = Counter()
        self.first_request_at: float | None = None
        self.last_request_at: float | None = None

    def count_request(self, route: str) -> None:
        now = time.time()
        self.requests += 1
        self.by_route[route] += 1
        if self.first_request_at is None:
            self.first_request_at = now
        self.last_request_at = now

    def count_response(self, status: int) -> None:
        self.by_status[str(status)] += 1
        if status == 429:
            self.throttled += 1

    def count_fault(self, kind: str) -> None:
        self.faults[kind] += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_route": dict(self.by_route),
            "by_status": dict(sorted(self.by_status.items())),
            "throttled": self.throttled,
            "faults_injected": dict(self.faults),
            "first_request_at": self.first_request_at,
            "last_request_at": self.last_request_at,
        }


# ---------------------------------------------------------------------------------------------
# Fault injection

FaultAction = Literal["none", "throttle", "error", "reset"]


@dataclass(frozen=True)
class FaultDecision:
    """What to do to one admitted request. ``truncate`` applies to a 200 answer only."""

    action: FaultAction = "none"
    status: int = 0
    delay: float = 0.0
    truncate: bool = False


@dataclass
class Faults:
    """Runtime-configurable faults, deterministic for a given seed and request sequence."""

    seed: int = 0
    error_rate: float = 0.0
    error_status: int = 503
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    reset_rate: float = 0.0
    truncate_rate: float = 0.0
    force_429: int = 0
    force_5xx: int = 0
    throttle_seconds: float = 0.0  # every matching request answers 429 for this long from now
    match: str | None = None
    _rng: random.Random = field(init=False, repr=False, compare=False)
    _throttle_until: float = field(default=0.0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(f"faults:{self.seed}")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}

    def clear(self) -> None:
        """Back to no faults (the seed is kept and the random stream restarts)."""
        defaults = Faults(seed=self.seed)
        for name, value in defaults.to_dict().items():
            setattr(self, name, value)
        self._throttle_until = 0.0
        self._rng = random.Random(f"faults:{self.seed}")

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply the given fields; ``{"clear": true}`` clears first. ValueError on bad input."""
        changes = dict(changes)
        if changes.pop("clear", False):
            self.clear()
        known = self.to_dict()
        unknown = set(changes) - set(known)
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        for name, value in changes.items():
            setattr(self, name, _coerce_fault_field(name, value))
        if "throttle_seconds" in changes:
            self._throttle_until = time.monotonic() + self.throttle_seconds
        if "seed" in changes:
            self._rng = random.Random(f"faults:{self.seed}")

    def applies_to(self, path: str) -> bool:
        return self.match is None or self.match in path

    def decide(self, path: str) -> FaultDecision:
        """Pick the fault for one request; forced 429s/5xx are used up first."""
        if not self.applies_to(path):
            return FaultDecision()
        rng = self._rng
        jitter, reset_roll, error_roll, truncate_roll = (rng.random() for _ in range(4))
        delay = max(0.0, self.latency_ms + self.latency_jitter_ms * jitter) / 1000.0
        if self.force_429 > 0:
            self.force_429 -= 1
            return FaultDecision("throttle", 429, delay)
        if self._throttle_until and time.monotonic() < self._throttle_until:
            return FaultDecision("throttle", 429, delay)
        if self.force_5xx > 0:
            self.force_5xx -= 1
            return FaultDecision("error", self.error_status, delay)
        if reset_roll < self.reset_rate:
            return FaultDecision("reset", 0, delay)
        if error_roll < self.error_rate:
            return FaultDecision("error", self.error_status, delay)
        return FaultDecision("none", 0, delay, truncate=truncate_roll < self.truncate_rate)


_HTTP_STATUSES = {status.value for status in HTTPStatus}
_INT_FAULT_FIELDS = ("seed", "error_status", "force_429", "force_5xx")


def _coerce_fault_field(name: str, value: Any) -> Any:
    if name == "match":
        return None if value in (None, "") else str(value)
    number: float = int(value) if name in _INT_FAULT_FIELDS else float(value)
    if number < 0:
        raise ValueError(f"{name} must be >= 0")
    if name.endswith("_rate") and number > 1:
        raise ValueError(f"{name} must be <= 1")
    if name == "error_status" and (number not in _HTTP_STATUSES or not 400 <= number <= 599):
        raise ValueError("error_status must be an HTTP error status (4xx or 5xx)")
    return number


# ---------------------------------------------------------------------------------------------
# Raw connection control


class SandboxApp(Starlette):
    """A Starlette app that remembers the server's own ``send`` so a route can drop the socket."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[RAW_SEND_KEY] = send
        await super().__call__(scope, receive, send)


async def abort_connection(request: Request) -> None:
    """Reset the client's TCP connection without sending any response.

    Works under uvicorn (h11 or httptools). Where there is no socket to drop (an in-process
    ASGI transport) it raises ``ConnectionResetError`` instead, which the client then sees.
    """
    send = request.scope.get(RAW_SEND_KEY)
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None or not hasattr(transport, "abort"):
        raise ConnectionResetError("sandbox: simulated connection reset")
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:  # linger 0 turns the close into a TCP RST, like a real reset
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()
    await asyncio.sleep(0)  # let the server see the connection as lost before we return


# ---------------------------------------------------------------------------------------------
# Generic admin routes


class AdminTarget(Protocol):
    """What :func:`admin_routes` needs from an app's state object."""

    faults: Faults

    def stats(self) -> dict[str, Any]: ...

    def reset(self) -> None: ...

    def set_limits(self, body: Mapping[str, Any]) -> dict[str, Any]: ...


def _target(request: Request) -> AdminTarget:
    target: AdminTarget = request.app.state.sandbox
    return target


def bad_request(message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=400)


async def _stats(request: Request) -> Response:
    return JSONResponse(_target(request).stats())


async def _reset(request: Request) -> Response:
    target = _target(request)
    target.reset()
    return JSONResponse(target.stats())


async def _get_faults(request: Request) -> Response:
    return JSONResponse(_target(request).faults.to_dict())


async def _set_faults(request: Request) -> Response:
    faults = _target(request).faults
    try:
        faults.update(await read_json(request))
    except (ValueError, TypeError) as exc:
        return bad_request(str(exc))
    return JSONResponse(faults.to_dict())


async def _set_limits(request: Request) -> Response:
    try:
        limits = _target(request).set_limits(await read_json(request))
    except (ValueError, TypeError) as exc:
        return bad_request(str(exc))
    return JSONResponse(limits)


def admin_routes() -> list[Route]:
    """Stats, reset, faults and limits routes for the state on ``app.state.sandbox``."""
    return [
        Route("/_admin/stats", _stats, methods=["GET"]),
        Route("/_admin/reset", _reset, methods=["POST"]),
        Route("/_admin/faults", _get_faults, methods=["GET"]),
        Route("/_admin/faults", _set_faults, methods=["POST"]),
        Route("/_admin/limits", _set_limits, methods=["POST"]),
    ]
