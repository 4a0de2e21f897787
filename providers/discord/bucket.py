"""One Discord rate-limit bucket as the client sees it: pure bookkeeping with explicit times.

A request is keyed by its route template and its major parameter (channel, guild or webhook
id); the first answer maps the route to its ``X-RateLimit-Bucket`` hash, and state is kept per
(bucket hash, major): limit, remaining (decremented locally for every request started) and the
local monotonic reset time (received time + ``X-RateLimit-Reset-After``). A request holds its
place until one period after its answer (DESIGN §5), so no server window can overflow.
"""

from __future__ import annotations

from collections import deque

from providers.discord.headers import RateHeaders

__all__ = ["BucketState"]


class BucketState:
    """One (bucket hash, major parameter): what the server said, minus what we started since.

    States:
    - unknown (``known`` False): no headers seen yet; one request at a time (discovery);
    - unlimited (``known`` and ``limit`` None): the route answers without bucket headers;
    - limited: ``remaining`` requests may start before ``reset_at`` (None: reset not known yet,
      i.e. the window rolled over locally and no answer from the new one arrived).
    """

    SAME_WINDOW = 0.25  # reset estimates closer than this describe the same server window

    def __init__(self, reset_margin: float = 0.0) -> None:
        self.known = False
        self.limit: int | None = None
        self.remaining = 0
        self.reset_at: float | None = None
        self.in_flight = 0
        self.paused_until = 0.0
        self.reset_margin = reset_margin
        # Answer times of the latest requests and the longest Reset-After seen (the window's
        # length): a request answered at ``e`` arrived before ``e``, so it has left any window
        # that starts after ``e + period``. Lets a slot free up one period after its own answer
        # instead of waiting for the whole bucket to reset.
        self.period = 0.0
        self.answers: deque[float] = deque()
        # Starts of a learned bucket are spread a period/limit apart instead of going in bursts
        # of ``limit``: a burst leaves the server's window full for a whole period, and a worker
        # that replaces one killed right after a burst (it cannot know of it) would meet a 429.
        self.last_start = float("-inf")

    def __repr__(self) -> str:
        return (
            f"BucketState(known={self.known}, limit={self.limit}, remaining={self.remaining}, "
            f"reset_at={self.reset_at}, in_flight={self.in_flight}, paused={self.paused_until})"
        )

    @property
    def limited(self) -> bool:
        return self.known and self.limit is not None

    def _roll(self, now: float) -> None:
        if not self.limited:
            return
        assert self.limit is not None
        if self.reset_at is not None and now >= self.reset_at:
            # A new server window: requests still in flight may land in it.
            self.remaining = max(0, self.limit - self.in_flight)
            self.reset_at = None
        elif self.reset_at is None and self.remaining <= 0 and self.in_flight == 0:
            # Nothing left, no reset known and no answer coming: headers went missing.
            self.remaining = self.limit

    def ready_at(self, now: float) -> float | None:
        """When one more request may start: ``now``, a later time, or None until an answer."""
        if self.paused_until > now:
            return self.paused_until
        if not self.known:
            return now if self.in_flight == 0 else None
        if self.limit is None:
            return now
        self._roll(now)
        paced = self._paced(now)
        if self.remaining > 0:
            return paced
        own = self._own_slot_free_at()
        if self.reset_at is not None:
            at = self.reset_at if own is None else max(now, min(self.reset_at, own))
            return max(at, paced)
        return None if own is None else max(own, paced)  # None: wait for an answer

    def _paced(self, now: float) -> float:
        if self.limit is None or self.period <= 0:
            return now
        return max(now, self.last_start + 0.98 * self.period / self.limit)

    def _own_slot_free_at(self) -> float | None:
        """When fewer than ``limit`` requests can still be inside the server's window.

        Whatever arrives at ``t`` shares the window with requests in flight and requests
        answered after ``t - period``; so ``t`` must be a period after the answer that is
        ``limit - in_flight`` back.
        """
        if self.limit is None or self.period <= 0:
            return None
        back = self.limit - self.in_flight
        if back <= 0 or len(self.answers) < back:
            return None
        return self.answers[-back] + self.period + self.reset_margin

    def waiting_on_reset(self, now: float) -> bool:
        """True when a request would wait because nothing remains until the reset."""
        return (
            self.limited
            and self.paused_until <= now
            and self.remaining <= 0
            and self.reset_at is not None
            and self.reset_at > now
        )

    def start(self, now: float | None = None) -> None:
        self.in_flight += 1
        if now is not None:
            self.last_start = now
        if self.limited:
            self.remaining = max(0, self.remaining - 1)

    def cancel(self) -> None:
        """A started request was never sent: give its place back.

        Whichever window it was counted in (the current one, or a new one that subtracted it
        as in flight), it was subtracted once and never arrives.
        """
        self.in_flight = max(0, self.in_flight - 1)
        if self.limited:
            assert self.limit is not None
            self.remaining = min(self.limit, self.remaining + 1)

    def finish(self) -> None:
        """A started request got an answer (or may have reached the server)."""
        self.in_flight = max(0, self.in_flight - 1)

    def lost(self, now: float) -> None:
        """A started request got no answer (reset, timeout) but may have reached the server:
        it counts as answered now, so its place frees one period from now, and a whole-bucket
        reset cannot come before that either."""
        self.finish()
        if not self.limited:
            return
        self.answers.append(now)
        assert self.limit is not None
        while len(self.answers) > self.limit:
            self.answers.popleft()
        if self.period > 0:
            held = now + self.period + self.reset_margin
            self.reset_at = held if self.reset_at is None else max(self.reset_at, held)

    def mark_unlimited(self) -> None:
        if not self.known:
            self.known = True
            self.limit = None

    def pause(self, until: float) -> None:
        self.paused_until = max(self.paused_until, until)

    def update(self, now: float, info: RateHeaders) -> None:
        """Merge an answer's headers, received at ``now`` (call after ``finish``).

        The server's ``remaining`` does not count requests still in flight, so they are
        subtracted. Answers can arrive out of order: within one window the lower remaining and
        the later reset win; an answer describing an older window is ignored, a newer window is
        adopted.
        """
        new_remaining = max(0, info.remaining - self.in_flight)
        new_reset: float | None = None
        if info.reset_after is not None:
            new_reset = now + info.reset_after + self.reset_margin
        elif info.remaining == 0:
            new_reset = now + 1.0  # no reset given: back off a second
        if not self.limited:
            self.remaining = new_remaining
            self.reset_at = new_reset
        elif new_reset is None:
            self.remaining = min(self.remaining, new_remaining)
        elif self.reset_at is None:
            self.remaining = min(self.remaining, new_remaining)
            self.reset_at = new_reset
        elif new_reset > self.reset_at + self.SAME_WINDOW:
            self.remaining = new_remaining
            self.reset_at = new_reset
        elif new_reset >= self.reset_at - self.SAME_WINDOW:
            self.remaining = min(self.remaining, new_remaining)
            self.reset_at = max(self.reset_at, new_reset)
        # else: an answer from an older window, overtaken by a newer one: ignore it
        self.known = True
        if self.limit != info.limit:
            self.answers.clear()
        self.limit = info.limit
        self.remaining = min(self.remaining, info.limit)
        if info.reset_after is not None:
            self.period = max(self.period, info.reset_after)
        self.answers.append(now)
        while len(self.answers) > info.limit:
            self.answers.popleft()
