"""The "rate budgets" block of `status`: each shared rate budget (RATE_LIMIT_BACKEND=postgres,
migration 0005) as the database holds it, one line per budget with each of its windows.

Per window: *leased* places are held by live processes (in use, cooling locally or spare),
*cooling* ones were given back or used up (or belong to a process that stopped renewing) and
free up when their period has passed, *free* = limit - leased - cooling. Then the pause shared
by every process after a 429, the manual hold (places kept for a manual request), the requests
waiting per lane in every process, the live processes and the budget's counters since it was
first used. Everything is read in one statement on the database's clock; no credential is
stored (a budget is named by a fingerprint, of which 8 hex digits are shown).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.budgets import LANE_NAMES, budget, rate_budgets  # noqa: F401

IDLE_SHOWN = 5  # idle budgets listed before "… and N more"
EMPTY = "no shared budget in use"
LOCAL = (
    "per process (RATE_LIMIT_BACKEND=local): each worker keeps its own budget, "
    "not visible from here"
)
UNMIGRATED = "unknown: the database has no rate budget tables (run `starter.py db upgrade`)"


async def fetch(engine: AsyncEngine, backend: str) -> dict[str, Any]:
    """The block's data (what ``--json`` prints): ``shared`` (RATE_LIMIT_BACKEND=postgres),
    ``budgets`` (see ``budget``), and a ``note`` when there is nothing to show or the budgets
    are per process. With the local backend only budgets some process uses now are listed (a
    worker started with RATE_LIMIT_BACKEND=postgres elsewhere)."""
    shared = backend == "postgres"
    try:
        async with engine.connect() as conn:
            rows = await rate_budgets(conn)
    except ProgrammingError as exc:
        if "rate_limit_" not in str(exc.orig):
            raise
        return {"shared": shared, "note": UNMIGRATED, "budgets": []}
    budgets = [budget(row) for row in rows]
    if not shared:
        budgets = [b for b in budgets if b["processes"]]
    data: dict[str, Any] = {"shared": shared, "budgets": budgets}
    if not shared:
        data["note"] = LOCAL
    elif not budgets:
        data["note"] = EMPTY
    return data


def period_text(seconds: float) -> str:
    """1.0 → "1s", 3600 → "1h", 0.5 → "0.5s", 90 → "90s", 600 → "10m"."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    return f"{seconds:g}s"


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 10 else f"{math.ceil(value)} s"


def window_text(w: dict[str, Any]) -> str:
    return (
        f"{w['limit']}/{period_text(w['period'])}: {w['leased']} leased, {w['cooling']} cooling, "
        f"{w['free']} free"
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 'es' if word.endswith('s') else 's'}"


def budget_line(b: dict[str, Any]) -> str:
    """``<name> <fp8>  <window> · <window> · paused … · manual hold … · waiting … · N processes
    · counters``; a budget nobody uses, holds or pauses: its limits, idle since when."""
    head = f"{b['budget']} {b['fingerprint']}  "
    counters = f"{_plural(b['requests'], 'request')}, {b['rate_limited']} rate-limited"
    if b["idle"]:
        limits = " · ".join(f"{w['limit']}/{period_text(w['period'])}" for w in b["windows"])
        when = b["updated_at"]
        since = f" since {when.astimezone(UTC):%Y-%m-%d %H:%M:%S}" if when else ""
        return f"{head}{limits}: idle{since} · {counters}"
    parts = [window_text(w) for w in b["windows"]]
    if b["paused_until"] is not None:
        parts.append(
            f"paused until {b['paused_until']:%H:%M:%S} UTC ({_seconds(b['paused_seconds'])})"
        )
    if b["manual_hold_seconds"]:
        parts.append(f"manual hold {_seconds(b['manual_hold_seconds'])}")
    if b["processes"]:
        lanes = reversed(list(b["waiting"].items()))  # manual first, as they are served
        parts.append("waiting " + " ".join(f"{lane} {n}" for lane, n in lanes))
        procs = _plural(b["processes"], "process")
        parts.append(procs + (f" on {b['hosts']} hosts" if b["hosts"] > 1 else ""))
    else:
        parts.append("no live process")
    parts.append(counters)
    return head + " · ".join(parts)


def render(data: dict[str, Any]) -> list[str]:
    """The block's lines: a heading, then a line per budget (idle ones after the rest, at most
    IDLE_SHOWN of them)."""
    budgets = data.get("budgets", [])
    note = data.get("note")
    if not budgets:
        return [f"rate budgets: {note or EMPTY}"]
    lines = [f"rate budgets: {note}" if note else "rate budgets:"]
    busy = [b for b in budgets if not b["idle"]]
    idle = [b for b in budgets if b["idle"]]
    idle.sort(key=lambda b: b["updated_at"] or datetime.min.replace(tzinfo=UTC), reverse=True)
    lines += ["  " + budget_line(b) for b in busy + idle[:IDLE_SHOWN]]
    if len(idle) > IDLE_SHOWN:
        lines.append(f"  … and {len(idle) - IDLE_SHOWN} more idle budgets")
    return lines
