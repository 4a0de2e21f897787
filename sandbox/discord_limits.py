"""Discord's rate limits, enforced strictly: global per bot, per-route buckets, invalid requests.

- **Global**: ``global_per_second`` requests in any 1 s window (strict sliding window) over all
  authenticated API requests.
- **Route buckets**: one strict sliding window per ``(route, major parameter)``: the channel id
  for channel routes, the guild id for guild routes. ``X-RateLimit-Bucket`` is a fixed 40-hex
  hash of the route name, the same for every channel (it does not include the major parameter).
- **Header semantics** (every non-429 answer of a bucketed route, after its own admission):
  ``X-RateLimit-Limit`` = the bucket limit; ``X-RateLimit-Remaining`` = limit minus requests
  admitted in the window (this one included); ``X-RateLimit-Reset-After`` = seconds until *all*
  requests now in the window have left it (the newest admission + period - now, rounded up to
  the millisecond); ``X-RateLimit-Reset`` = epoch seconds of that moment. A client that sees
  remaining 0 and waits reset-after may then send ``limit`` requests without a 429 ("the bucket
  resets"). On a bucket 429 the same headers are sent with remaining 0, plus ``Retry-After``
  (integer, ceil) and body ``retry_after`` (float) = time until *one* slot frees.
- **Invalid requests**: 401, 403 and 429 answers (not 429s of scope ``shared``) are counted in
  a sliding ``invalid_period`` window; once more than ``invalid_limit`` are in it, every request
  for the next ``invalid_period`` seconds gets the Cloudflare ban (429, ``text/html``,
  ``error code: 1015``, no rate-limit headers). Ban answers are not counted as invalid.
- **Lifted**: no limit rejects anything (global, buckets, ban), but admissions are still
  recorded and headers still sent, with ``X-RateLimit-Limit: 1000000`` so a header-driven client
  never waits.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sandbox.limits import SlidingWindow

__all__ = [
    "LIFTED_LIMIT",
    "ROUTES",
    "BucketWindow",
    "DiscordLimits",
    "LimitSettings",
    "bucket_hash",
    "ceil_ms",
]

LIFTED_LIMIT = 1_000_000
# Route name -> the path parameter that is its major parameter.
ROUTES: dict[str, str] = {
    "guild": "guild_id",
    "guild_channels": "guild_id",
    "active_threads": "guild_id",
    "archived_threads": "channel_id",
    "messages": "channel_id",
}


def bucket_hash(route: str) -> str:
    """The opaque ``X-RateLimit-Bucket`` of a route (40 hex chars, fixed per route)."""
    return hashlib.sha1(f"ratesync-sandbox:discord:{route}".encode()).hexdigest()


def ceil_ms(seconds: float) -> float:
    """Round up to the millisecond, so a client waiting this long is never early."""
    return math.ceil(round(seconds * 1000, 6)) / 1000


class BucketWindow(SlidingWindow):
    """A sliding window that also knows when every request in it will have left."""

    def reset_after(self, now: float) -> float:
        if self.in_window(now) == 0:
            return 0.0
        return max(0.0, self._admitted[-1] + self.period - now)


@dataclass
class LimitSettings:
    global_per_second: int = 50
    routes: dict[str, tuple[int, float]] | None = None
    invalid_limit: int = 10_000
    invalid_period: float = 600.0
    lifted: bool = False

    def route_limits(self) -> dict[str, tuple[int, float]]:
        defaults = {route: (5, 5.0) for route in ROUTES}
        return {**defaults, **(self.routes or {})}


class DiscordLimits:
    """All windows of one sandbox; the caller passes ``now`` (monotonic seconds)."""

    def __init__(self, settings: LimitSettings, wall: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.routes = settings.route_limits()
        self.wall = wall
        self.global_window = SlidingWindow(settings.global_per_second, 1.0)
        self.buckets: dict[tuple[str, str], BucketWindow] = {}
        self.invalid = SlidingWindow(settings.invalid_limit, settings.invalid_period)
        self.banned_until: float | None = None

    # -- checks -------------------------------------------------------------------------------

    def banned(self, now: float) -> bool:
        if self.banned_until is None or self.settings.lifted:
            return False
        if now < self.banned_until:
            return True
        self.banned_until = None
        self.invalid.reset()
        return False

    def note_invalid(self, now: float) -> None:
        self.invalid.record(now)
        over = self.invalid.in_window(now) > self.settings.invalid_limit
        if over and self.banned_until is None:
            self.banned_until = now + self.settings.invalid_period

    def admit_global(self, now: float) -> float | None:
        """None when admitted, else the float ``retry_after``."""
        window = self.global_window
        window.observe_arrival(now)
        if self.settings.lifted or window.can_admit(now):
            window.record(now)
            return None
        return ceil_ms(window.retry_after(now))

    def bucket(self, route: str, major: str) -> BucketWindow:
        window = self.buckets.get((route, major))
        if window is None:
            limit, period = self.routes[route]
            window = self.buckets[(route, major)] = BucketWindow(limit, period)
        return window

    def admit_bucket(self, window: BucketWindow, now: float) -> float | None:
        """None when admitted, else the float ``retry_after`` (until one slot frees)."""
        window.observe_arrival(now)
        if self.settings.lifted or window.can_admit(now):
            window.record(now)
            return None
        return ceil_ms(window.retry_after(now))

    def headers(self, route: str, window: BucketWindow, now: float) -> dict[str, str]:
        """The five X-RateLimit-* headers for a bucket, as of ``now``."""
        limit = LIFTED_LIMIT if self.settings.lifted else window.limit
        reset_after = ceil_ms(window.reset_after(now))
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(0, limit - window.in_window(now))),
            "X-RateLimit-Reset": f"{self.wall() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": bucket_hash(route),
        }

    # -- admin --------------------------------------------------------------------------------

    def reset(self) -> None:
        self.global_window.reset()
        self.buckets.clear()
        self.invalid.reset()
        self.banned_until = None

    def route_max_in_window(self) -> dict[str, int]:
        result = dict.fromkeys(self.routes, 0)
        for (route, _), window in self.buckets.items():
            result[route] = max(result[route], window.max_in_window)
        return result

    def describe(self) -> dict[str, Any]:
        return {
            "global_per_second": self.global_window.limit,
            **{route: [limit, period] for route, (limit, period) in self.routes.items()},
            "invalid_limit": self.settings.invalid_limit,
            "invalid_period": self.settings.invalid_period,
            "lifted": self.settings.lifted,
        }

    def update(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Apply ``POST /_admin/limits``; ValueError on unknown or bad fields."""
        known = {"global_per_second", "lifted", "invalid_limit", "invalid_period", *ROUTES}
        unknown = set(body) - known
        if unknown:
            raise ValueError(f"unknown limit fields: {sorted(unknown)}")
        changes = {route: _pair(route, body[route]) for route in ROUTES if route in body}
        per_second = int(body.get("global_per_second", self.global_window.limit))
        invalid_limit = int(body.get("invalid_limit", self.settings.invalid_limit))
        invalid_period = float(body.get("invalid_period", self.settings.invalid_period))
        if per_second < 1 or invalid_limit < 1 or invalid_period <= 0:
            raise ValueError("limits must be >= 1 and periods > 0")
        self.global_window.limit = self.settings.global_per_second = per_second
        self.settings.invalid_limit, self.invalid.limit = invalid_limit, invalid_limit
        self.settings.invalid_period = self.invalid.period = invalid_period
        self.settings.lifted = bool(body.get("lifted", self.settings.lifted))
        for route, (limit, period) in changes.items():
            self.routes[route] = (limit, period)
            for (bucket_route, _), window in self.buckets.items():
                if bucket_route == route:
                    window.limit, window.period = limit, period
        return self.describe()


def _pair(route: str, value: Any) -> tuple[int, float]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError(f"{route} must be [limit, period_seconds]")
    limit, period = int(value[0]), float(value[1])
    if limit < 1 or period <= 0:
        raise ValueError(f"{route}: limit must be >= 1 and period > 0")
    return limit, period
