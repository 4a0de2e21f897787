"""Snowflakes, Discord timestamps and one channel's message ids.

``timestamp_ms = (id >> 22) + 1420070400000`` (UPSTREAM §2.2). A :class:`Channel` keeps its
message ids ascending in a compact ``array('q')`` and answers the ``GET .../messages`` cursor
queries with bisection; message JSON is rendered elsewhere and cached on ``Channel.cache``.
"""

from __future__ import annotations

import random
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

__all__ = [
    "DISCORD_EPOCH_MS",
    "Access",
    "Channel",
    "ThreadInfo",
    "iso_timestamp",
    "parse_iso_ms",
    "snowflake",
    "snowflake_ms",
]

DISCORD_EPOCH_MS = 1_420_070_400_000
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FIRST_GUILD_MS = 1_577_836_800_000  # 2020-01-01
_LAST_GUILD_MS = 1_672_531_200_000  # 2023-01-01
_HISTORY_END_MS = 1_748_736_000_000  # 2025-06-01: generated history ends before this
_MAX_GAP_MS = 20 * 60 * 1000
_TIE_RATE = 0.1

Access = Literal["ok", "no_history", "forbidden"]


def snowflake(ms: int, worker: int = 0, process: int = 0, increment: int = 0) -> int:
    """The snowflake for a Unix-ms timestamp and the given worker/process/increment bits."""
    return ((ms - DISCORD_EPOCH_MS) << 22) | (worker << 17) | (process << 12) | increment


def snowflake_ms(value: int) -> int:
    """Unix milliseconds encoded in a snowflake."""
    return (value >> 22) + DISCORD_EPOCH_MS


def iso_timestamp(ms: int) -> str:
    """Discord's timestamp format, e.g. ``2023-10-31T05:30:23.005000+00:00``."""
    return (_UNIX_EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="microseconds")


def parse_iso_ms(text: str) -> int:
    """Unix milliseconds of an ISO 8601 timestamp (naive means UTC); ValueError if malformed."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _UNIX_EPOCH) // timedelta(milliseconds=1)


@dataclass
class ThreadInfo:
    owner_id: int
    archived: bool
    archive_ms: int
    auto_archive_duration: int = 1440


class Channel:
    """A channel or thread and its message ids (ascending), with a per-message bytes cache."""

    def __init__(
        self,
        *,
        id: int,
        type: int,
        guild_id: int,
        name: str,
        position: int,
        parent_id: int | None,
        rng: random.Random,
        access: Access = "ok",
        thread: ThreadInfo | None = None,
    ) -> None:
        self.id, self.type, self.guild_id, self.name = id, type, guild_id, name
        self.position, self.parent_id, self.access, self.thread = (
            position,
            parent_id,
            access,
            thread,
        )
        self.topic: str | None = rng.choice((None, f"All about {name}", "Be nice. Read the rules."))
        self.nsfw = rng.random() < 0.1
        self.rate_limit_per_user = rng.choice((0, 0, 0, 5, 30))
        self.ids: array[int] = array("q")
        self.cache: dict[int, bytes] = {}
        self._rng = rng
        self._worker, self._process = rng.randrange(32), rng.randrange(32)
        self._ms = snowflake_ms(id) + rng.randrange(60_000, 86_400_000)
        self._increment = 0
        self._gap_ms = 1

    @property
    def has_messages(self) -> bool:
        return self.type not in (4, 15)

    @property
    def is_thread(self) -> bool:
        return self.thread is not None

    @property
    def created_ms(self) -> int:
        return snowflake_ms(self.id)

    def last_message_id(self) -> int | None:
        return self.ids[-1] if self.ids else None

    def seed_history(self, count: int) -> None:
        """Generate the initial ``count`` messages, spread to end before mid-2025."""
        span = max(1, _HISTORY_END_MS - self._ms)
        self._gap_ms = max(1, min(_MAX_GAP_MS, span // (count + 1)))
        self.append(count)

    def append(self, count: int) -> list[int]:
        """Add ``count`` newer messages; their ids, ascending."""
        rng, ms, increment, ids = self._rng, self._ms, self._increment, self.ids
        high = (self._worker << 17) | (self._process << 12)
        start = len(ids)
        for _ in range(count):
            if ids and increment < 4000 and rng.random() < _TIE_RATE:
                increment += 1
            else:
                ms += 1 + int(rng.expovariate(1.0 / self._gap_ms))
                increment = rng.randrange(2048)
            ids.append(((ms - DISCORD_EPOCH_MS) << 22) | high | increment)
        self._ms, self._increment = ms, increment
        return list(ids[start:])

    def delete(self, message_ids: Iterable[int]) -> int:
        """Remove the given messages; how many existed."""
        doomed = set(message_ids) & set(self.ids) if self.ids else set()
        if doomed:
            self.ids = array("q", (mid for mid in self.ids if mid not in doomed))
            self.cache.clear()  # replies may embed a deleted message
        return len(doomed)

    def contains(self, message_id: int) -> bool:
        index = bisect_left(self.ids, message_id)
        return index < len(self.ids) and self.ids[index] == message_id

    def position_of(self, message_id: int) -> int:
        return bisect_left(self.ids, message_id)

    def page(
        self, limit: int, after: int | None, before: int | None, around: int | None
    ) -> list[int]:
        """Ids of one ``GET /channels/{id}/messages`` page, newest first."""
        ids = self.ids
        if after is not None:
            start = bisect_right(ids, after)
            chosen = ids[start : start + limit]
        elif before is not None:
            end = bisect_left(ids, before)
            chosen = ids[max(0, end - limit) : end]
        elif around is not None:
            start = max(0, bisect_left(ids, around) - limit // 2)
            chosen = ids[start : start + limit]
        else:
            chosen = ids[max(0, len(ids) - limit) :]
        return chosen.tolist()[::-1]
