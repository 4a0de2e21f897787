"""The invalid-request circuit breaker: stop before Discord (via Cloudflare) bans the IP.

Discord bans an IP after 10,000 invalid requests — 401, 403 and 429 except ``scope: shared`` —
in 10 minutes. Every such answer is counted in a process-wide sliding window; at the budget
(default half the ban line) every further request is refused with
:class:`~providers.errors.CircuitOpen` without being sent, until the oldest counted answer
leaves the window. A Cloudflare block itself (a 429 without Discord's headers) opens the
breaker for the ban's length.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

from providers.errors import CircuitOpen

__all__ = [
    "DISCORD_BAN_LINE",
    "INVALID_WINDOW_SECONDS",
    "InvalidRequestBreaker",
    "InvalidRequestWindow",
]

DISCORD_BAN_LINE = 10_000  # invalid requests per 10 minutes per IP before a Cloudflare ban
INVALID_WINDOW_SECONDS = 600.0


class InvalidRequestWindow:
    """Process-wide count of invalid answers (401/403/429 except shared) in a sliding window."""

    def __init__(self, budget: int, period: float = INVALID_WINDOW_SECONDS) -> None:
        if budget < 1:
            raise ValueError("the invalid-request budget must be at least 1")
        self.budget = budget
        self.period = period
        self._times: deque[float] = deque()
        # other processes' answers on the same token (providers.discord.shared): (time, count)
        self._external: list[tuple[float, int]] = []

    def _prune(self, now: float) -> None:
        cutoff = now - self.period
        while self._times and self._times[0] <= cutoff:
            self._times.popleft()
        if self._external and self._external[0][0] <= cutoff:
            self._external = [(t, n) for t, n in self._external if t > cutoff]

    def set_external(self, entries: list[tuple[float, int]]) -> None:
        """The other processes' invalid answers, as (monotonic time, count), oldest first."""
        self._external = sorted(entries)

    def record(self, now: float) -> None:
        self._times.append(now)
        self._prune(now)

    def count(self, now: float) -> int:
        self._prune(now)
        return len(self._times) + sum(n for _, n in self._external)

    def local_times(self) -> list[float]:
        return list(self._times)

    def open_until(self, now: float) -> float | None:
        """None while closed; else when enough counted answers will have left the window."""
        excess = self.count(now) - self.budget
        if excess < 0:
            return None
        if not self._external:
            return self._times[excess] + self.period
        # the (excess + 1)-th oldest answer of all processes must leave the window first
        merged = sorted([(t, 1) for t in self._times] + self._external)
        seen = 0
        for t, n in merged:
            seen += n
            if seen > excess:
                return t + self.period
        return merged[-1][0] + self.period


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(math.ceil(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class InvalidRequestBreaker:
    """Open while the invalid answers in the window reach the budget, or a Cloudflare block
    lasts; counts its trips (closed → open) and the requests it refused."""

    def __init__(
        self,
        budget: int,
        period: float = INVALID_WINDOW_SECONDS,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.window = InvalidRequestWindow(budget, period)
        self.trips = 0
        self.refusals = 0
        self._clock = clock
        self._wall = wall_clock
        self._banned_until = 0.0
        self._was_open = False

    @property
    def budget(self) -> int:
        return self.window.budget

    @property
    def period(self) -> float:
        return self.window.period

    def record(self, now: float) -> None:
        """An invalid answer (401, 403, a 429 not of scope shared) arrived at ``now``."""
        self.window.record(now)

    def count(self, now: float) -> int:
        return self.window.count(now)

    def ban(self, until: float) -> None:
        """Cloudflare blocked us: open (at least) until ``until`` (monotonic)."""
        self._banned_until = max(self._banned_until, until)

    def open_until(self) -> float | None:
        """Monotonic time the breaker closes, or None while it is closed."""
        now = self._clock()
        until = self.window.open_until(now)
        if self._banned_until > now:
            until = max(until or 0.0, self._banned_until)
        if until is not None and not self._was_open:
            self.trips += 1
        self._was_open = until is not None
        return until

    def error(self, entity: str | None = None) -> CircuitOpen:
        """The error for an open breaker (also used right after a Cloudflare block)."""
        now = self._clock()
        until = self.open_until() or now
        resume_at = self._wall() + (until - now)
        if self._banned_until > now:
            why = (
                "Cloudflare blocked this IP (429 without Discord rate-limit headers), "
                "usually after too many invalid requests"
            )
        else:
            count = self.window.count(now)
            minutes = self.window.period / 60
            why = (
                f"{count} invalid requests (401/403/429) in the last {minutes:g} min; "
                f"Discord bans at {DISCORD_BAN_LINE:,}"
            )
        return CircuitOpen(
            f"discord: circuit breaker open: {why} — check the bot token and channel "
            f"permissions, then retry after {_iso(resume_at)}",
            resume_at=resume_at,
            entity=entity,
        )

    def check(self, entity: str | None = None) -> None:
        """Raise CircuitOpen while the breaker is open."""
        if self.open_until() is not None:
            self.refusals += 1
            raise self.error(entity)
