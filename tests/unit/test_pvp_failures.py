"""PvP failure semantics (the brief): Battle.net errors retried, 404 discarded, deadlocks
retried, anything else fails without retry."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, OperationalError

from activities.pvp import _classify
from providers.errors import NotFound, RateLimited, Transient
from providers.ratelimit import BudgetExhausted


class _Orig(Exception):
    pass


def test_battlenet_errors_keep_their_retry_semantics():
    transient = _classify(Transient("battlenet: 503 on leaderboard eu/37/2v2"))
    assert transient.type == "Transient" and not transient.non_retryable  # type: ignore[attr-defined]
    limited = _classify(RateLimited("429", retry_after=2.0))
    assert limited.type == "RateLimited" and limited.next_retry_delay.total_seconds() == 2.0  # type: ignore[attr-defined]
    assert _classify(NotFound("gone")).non_retryable  # type: ignore[attr-defined]
    assert _classify(BudgetExhausted("battlenet", 30)).type == "BudgetExhausted"  # type: ignore[attr-defined]


def test_a_deadlock_is_retried_and_other_failures_are_not():
    deadlock = OperationalError("UPDATE …", {}, _Orig("deadlock detected"))
    mapped = _classify(deadlock)
    assert mapped.type == "Deadlock" and not mapped.non_retryable  # type: ignore[attr-defined]
    other = _classify(DBAPIError("INSERT …", {}, _Orig("value too long for type")))
    assert other.non_retryable  # type: ignore[attr-defined]
    assert _classify(KeyError("rank")).non_retryable  # type: ignore[attr-defined]
