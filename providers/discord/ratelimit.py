"""Discord's rate limits, driven by the headers Discord sends (UPSTREAM §2.4, DESIGN §5).

Three layers, checked in this order before every request:

1. **Circuit breaker.** Discord bans an IP (via Cloudflare) after 10,000 invalid requests — 401,
   403 and 429 except ``scope: shared`` — in 10 minutes. Every such answer is counted in a
   process-wide sliding window; at ``invalid_budget`` (default half the ban line) every further
   request raises :class:`~providers.errors.CircuitOpen` without being sent, until the oldest
   counted answer leaves the window. A Cloudflare block itself (a 429 without Discord's headers)
   opens the breaker for ``ban_pause`` seconds.
2. **Route buckets, learned from headers.** A request is keyed by its route template and its
   major parameter (channel, guild or webhook id). The first answer maps the route to its
   ``X-RateLimit-Bucket`` hash; state is kept per (bucket hash, major): limit, remaining
   (decremented locally for every request started) and the local monotonic reset time
   (received time + ``X-RateLimit-Reset-After``). With nothing remaining a request waits for the
   reset, then ``limit`` is assumed to be available again. Until a (route, major) has answered
   with headers only one request may be in flight for it, so a new bucket costs at most one 429.
   A route that answers without rate-limit headers is limited by the global limit only.
3. **Global limit.** A strict client-side :class:`~providers.ratelimit.RateLimiter` of
   ``global_per_second`` requests per second, taken by :class:`ProviderHTTP.send` for every
   request; a 429 with ``scope: global`` pauses it, i.e. pauses all Discord requests.

Waits that would exceed ``max_wait`` raise :class:`~providers.ratelimit.BudgetExhausted` so that
a workflow can sleep on a durable timer instead. Waiters are served highest priority first,
both in a bucket and in the global limiter.

One module per job: :mod:`~providers.discord.headers` (parsing), :mod:`~providers.discord.bucket`
(bucket state), :mod:`~providers.discord.breaker` (the invalid-request breaker) and
:mod:`~providers.discord.limiter` (the limiter; its waiters stand in one
:class:`~providers.ratelimit.WaitLine` per bucket). The bookkeeping is pure and takes explicit
times, so it is unit-testable without sleeping. This module gathers their public names.
"""

from providers.discord.breaker import (
    DISCORD_BAN_LINE,
    INVALID_WINDOW_SECONDS,
    InvalidRequestBreaker,
    InvalidRequestWindow,
)
from providers.discord.bucket import BucketState
from providers.discord.headers import (
    SCOPES,
    RateHeaders,
    RateLimitHit,
    parse_429,
    parse_rate_headers,
)
from providers.discord.limiter import MIN_PAUSE, DiscordLimiter, DiscordLimiterStats, Ticket

__all__ = [
    "DISCORD_BAN_LINE",
    "INVALID_WINDOW_SECONDS",
    "MIN_PAUSE",
    "SCOPES",
    "BucketState",
    "DiscordLimiter",
    "DiscordLimiterStats",
    "InvalidRequestBreaker",
    "InvalidRequestWindow",
    "RateHeaders",
    "RateLimitHit",
    "Ticket",
    "parse_429",
    "parse_rate_headers",
]
