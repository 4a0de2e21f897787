"""ZwiftRacing's per-endpoint-family limits, enforced strictly, divided by a time scale.

One strict sliding window (:class:`~sandbox.limits.SlidingWindow`) per family, standard tier
(UPSTREAM §3.2, issue 13): ``clubs`` 1/3600 s, ``riders_post`` 1/900 s, ``riders_get`` 5/60 s,
``events`` 1/60 s, ``event_signups`` 1/60 s, ``results`` 1/60 s. The time scale ``S`` divides
every period: ``S = 60`` turns 1/900 s into 1/15 s. The windows are per API key; the sandbox
has one key, so one window per family.

A rejected request is not recorded (it does not push the window forward); every arrival is
observed for ``max_arrivals_in_window`` (what a client sent, whether admitted or not), and a
429's ``retryAfter`` is the time until one place frees, rounded up to the millisecond.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from sandbox.limits import SlidingWindow

__all__ = ["DEFAULT_LIMITS", "FAMILIES", "ZwiftLimits", "ceil_ms", "parse_limit"]

DEFAULT_LIMITS: dict[str, tuple[int, float]] = {
    "clubs": (1, 3600.0),
    "riders_post": (1, 900.0),
    "riders_get": (5, 60.0),
    "events": (1, 60.0),
    "event_signups": (1, 60.0),
    "results": (1, 60.0),
}
FAMILIES = tuple(DEFAULT_LIMITS)


def ceil_ms(seconds: float) -> float:
    """Round up to the millisecond, so a client waiting this long is never early."""
    return math.ceil(round(seconds * 1000, 6)) / 1000


def parse_limit(family: str, value: Any) -> tuple[int, float]:
    """``[count, seconds]`` (or ``"count/seconds"``) → a checked pair; ValueError otherwise."""
    pair = tuple(value.partition("/")[::2]) if isinstance(value, str) else value
    if not isinstance(pair, list | tuple) or len(pair) != 2:
        raise ValueError(f"{family} must be [count, period_seconds]")
    limit, period = int(pair[0]), float(pair[1])
    if limit < 1 or not period > 0 or not math.isfinite(period):
        raise ValueError(f"{family}: count must be >= 1 and the period > 0")
    return limit, period


class ZwiftLimits:
    """The windows of one sandbox; the caller passes ``now`` (monotonic seconds)."""

    def __init__(
        self,
        limits: Mapping[str, tuple[int, float]] | None = None,
        time_scale: float = 1.0,
        lifted: bool = False,
    ) -> None:
        self.limits = {**DEFAULT_LIMITS, **(limits or {})}
        unknown = set(self.limits) - set(FAMILIES)
        if unknown:
            raise ValueError(f"unknown zwift families: {sorted(unknown)}")
        self.time_scale = _scale(time_scale)
        self.lifted = lifted
        self.windows = {
            family: SlidingWindow(limit, period / self.time_scale)
            for family, (limit, period) in self.limits.items()
        }

    def admit(self, family: str, now: float) -> float | None:
        """None when admitted (and recorded), else the ``retryAfter`` in seconds."""
        window = self.windows[family]
        window.observe_arrival(now)
        if self.lifted or window.can_admit(now):
            window.record(now)
            return None
        return max(0.001, ceil_ms(window.retry_after(now)))

    def reset(self) -> None:
        for window in self.windows.values():
            window.reset()

    def max_in_window(self) -> dict[str, int]:
        return {family: w.max_in_window for family, w in self.windows.items()}

    def max_arrivals_in_window(self) -> dict[str, int]:
        return {family: w.max_arrivals_in_window for family, w in self.windows.items()}

    def describe(self) -> dict[str, Any]:
        """Each family's ``[count, period]`` as configured (unscaled), the scale, the real
        (scaled) periods and whether limits are lifted."""
        return {
            **{family: [limit, period] for family, (limit, period) in self.limits.items()},
            "time_scale": self.time_scale,
            "effective_periods": {f: w.period for f, w in self.windows.items()},
            "lifted": self.lifted,
        }

    def update(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Apply ``POST /_admin/limits`` (families as ``[count, seconds]``, ``lifted``);
        ValueError on unknown or bad fields (nothing changed then). Window histories are kept.
        The time scale is fixed at start: the world's event times were placed with it."""
        unknown = set(body) - {*FAMILIES, "lifted"}
        if unknown:
            raise ValueError(f"unknown limit fields: {sorted(unknown)}")
        changes = {f: parse_limit(f, body[f]) for f in FAMILIES if f in body}
        self.limits.update(changes)
        self.lifted = bool(body.get("lifted", self.lifted))
        for family, (limit, period) in self.limits.items():
            window = self.windows[family]
            window.limit, window.period = limit, period / self.time_scale
        return self.describe()


def _scale(value: Any) -> float:
    scale = float(value)
    if not scale > 0 or not math.isfinite(scale):
        raise ValueError("time_scale must be a finite number > 0")
    return scale
