"""Strict sliding-window rate limits, as an upstream API enforces them.

A limit "N per T" means: in every half-open interval ``(t - T, t]`` at most N requests are
admitted. Rejected requests are not recorded, so they do not push the window forward. The
caller passes the clock value (``time.monotonic()`` in the servers), which keeps the class
deterministic under test.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable

__all__ = ["MultiWindowLimiter", "SlidingWindow", "period_label"]


def period_label(period: float) -> str:
    """The key used for a window in stats: ``1.0 -> "1"``, ``3600 -> "3600"``, ``0.5 -> "0.5"``."""
    return f"{period:g}"


class SlidingWindow:
    """At most ``limit`` admitted arrivals in any window of ``period`` seconds."""

    def __init__(self, limit: int, period: float) -> None:
        if period <= 0:
            raise ValueError("period must be positive")
        self.limit = limit
        self.period = float(period)
        self._admitted: deque[float] = deque()
        self._arrivals: deque[float] = deque()
        self.max_in_window = 0
        self.max_arrivals_in_window = 0

    @staticmethod
    def now() -> float:
        """The default clock (monotonic seconds)."""
        return time.monotonic()

    def _prune(self, times: deque[float], now: float) -> None:
        cutoff = now - self.period
        while times and times[0] <= cutoff:
            times.popleft()

    def in_window(self, now: float) -> int:
        """How many admitted requests have arrival time in ``(now - period, now]``."""
        self._prune(self._admitted, now)
        return len(self._admitted)

    def can_admit(self, now: float) -> bool:
        return self.in_window(now) < self.limit

    def record(self, now: float) -> None:
        """Record an admission (the caller has checked ``can_admit``)."""
        self._prune(self._admitted, now)
        self._admitted.append(now)
        self.max_in_window = max(self.max_in_window, len(self._admitted))

    def try_admit(self, now: float) -> bool:
        """Admit and record the request iff fewer than ``limit`` are in the window."""
        if not self.can_admit(now):
            return False
        self.record(now)
        return True

    def observe_arrival(self, now: float) -> None:
        """Track every arrival (admitted or not) for ``max_arrivals_in_window``."""
        self._prune(self._arrivals, now)
        self._arrivals.append(now)
        self.max_arrivals_in_window = max(self.max_arrivals_in_window, len(self._arrivals))

    def retry_after(self, now: float) -> float:
        """Seconds until one slot frees up (0 when a request would be admitted now)."""
        if self.can_admit(now):
            return 0.0
        index = len(self._admitted) - self.limit
        return max(0.0, self._admitted[index] + self.period - now)

    def reset(self) -> None:
        self._admitted.clear()
        self._arrivals.clear()
        self.max_in_window = 0
        self.max_arrivals_in_window = 0


class MultiWindowLimiter:
    """Several windows enforced together (e.g. 100/1 s **and** 36,000/1 h).

    A request is admitted only if every window has room; it is then recorded in all of them.
    """

    def __init__(self, limits: Iterable[tuple[int, float]]) -> None:
        self.windows: dict[str, SlidingWindow] = {
            period_label(period): SlidingWindow(limit, period) for limit, period in limits
        }

    def try_admit(self, now: float) -> bool:
        for window in self.windows.values():
            window.observe_arrival(now)
        if not all(window.can_admit(now) for window in self.windows.values()):
            return False
        for window in self.windows.values():
            window.record(now)
        return True

    def set_limit(self, period: float, limit: int) -> None:
        """Change one window's limit in place (its history is kept)."""
        label = period_label(period)
        if label in self.windows:
            self.windows[label].limit = limit
        else:
            self.windows[label] = SlidingWindow(limit, period)

    def limits(self) -> dict[str, int]:
        return {label: window.limit for label, window in self.windows.items()}

    def max_in_window(self) -> dict[str, int]:
        return {label: window.max_in_window for label, window in self.windows.items()}

    def max_arrivals_in_window(self) -> dict[str, int]:
        return {label: window.max_arrivals_in_window for label, window in self.windows.items()}

    def reset(self) -> None:
        for window in self.windows.values():
            window.reset()
