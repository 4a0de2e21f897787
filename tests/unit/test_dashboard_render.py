"""The dashboard's renderer and rates (api/dashboard.py, api/ops.py) without servers, and its
budget numbers are the ones `status` prints (storage.budgets beside storage.status and
cli.budget_view, until those import it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from api import dashboard
from api.ops import Rates
from storage import budgets

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script>&'


def _row(**over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "bucket": "battlenet:battlenet:0123456789abcdef", "provider": "battlenet",
        "fingerprint": "0123456789abcdef", "paused_until": 1_000_030.0, "manual_until": 0.0,
        "statements": 4, "requests": 29, "rate_limited": 1, "updated_at": NOW,
        "db_now": 1_000_000.0, "processes": 1, "hosts": 1, "waiting": [0, 2, 0, 0, 1],
        "windows": [{"limit": 100, "period": 1.0, "leased": 3, "cooling": 2, "demand": 4},
                    {"limit": 30, "period": 3600.0, "leased": 0, "cooling": 29, "demand": 0}],
    }  # fmt: skip
    row.update(over)
    return row


def _state(**over: Any) -> dict[str, Any]:
    item = {**budgets.budget(_row()), "bucket": f"x:{HOSTILE}", "requests_per_second": 2.5}
    state: dict[str, Any] = {
        "generated_at": NOW,
        "budgets": {"shared": True, "note": None, "items": [item]},
        "runs": [{"id": 7, "workflow_id": HOSTILE, "provider": "battlenet", "scope": "eu",
                  "kind": "outdated", "status": "running", "started_at": NOW,
                  "finished_at": None, "errors": 0, "error": None, "done": 5, "total": 20,
                  "unit": "characters", "rate": 1.5, "rate_unit": "characters/s",
                  "detail": HOSTILE, "percent": 25.0}],
        "zwift_clubs": [{"club_id": 9, "name": HOSTILE, "calls": 3, "rate_limited": 0,
                         "recent": 1, "last_call_at": NOW}],
        "schedulers": {"state": "unknown", "note": f"unknown: {HOSTILE}", "items": []},
        "last_hour": {
            "rate_limited": {"zwift": 0, "discord": 2, "budgets": []},
            "dead_letters": 1,
            "dead_letter_list": [{"provider": "test", "entity_key": HOSTILE, "reason": "x",
                                  "attempts": 1, "last_error": HOSTILE, "last_failed_at": NOW,
                                  "next_retry_at": NOW + timedelta(days=7)}],
            "parked_channels": [{"tenant": 1, "channel": 2, "name": HOSTILE,
                                 "access": "forbidden", "recheck_at": NOW}],
        },
    }  # fmt: skip
    state.update(over)
    return state


def test_every_upstream_name_is_escaped() -> None:
    page = dashboard.page(_state())
    assert "<script>alert" not in page and page.count("<script>") == 1  # the page's own
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in page
    assert 'data-budget="x:&lt;script&gt;' in page


def test_the_panel_shows_the_numbers_and_unknown_schedulers() -> None:
    panel = dashboard.panel(_state())
    assert panel.startswith('<main id="ops"') and panel.endswith("</main>")
    assert 'data-field="run/7/done">5</span>/<span data-field="run/7/total">20' in panel
    assert 'id="schedulers-unknown"' in panel
    assert 'data-field="last_hour/rate_limited/discord">2<' in panel
    assert "2026-12-10 12:00" in panel  # a time beyond today carries its date


def test_the_schedulers_table_and_an_empty_mirror() -> None:
    sched = {"scheduler": "scheduler/zwift/1", "state": "running", "queued": 3,
             "queue_depth": {"near": 1, "riders": 2}, "running": ["a"],
             "oldest_wait_seconds": 75.0, "avg_wait_seconds_last_hour": 2.0,
             "max_wait_seconds_last_hour": 4000.0, "dispatched_total": 5,
             "rejected_total": 0, "conflicts_avoided": 2}  # fmt: skip
    panel = dashboard.panel(
        _state(
            budgets={"shared": False, "note": "per process", "items": []},
            runs=[],
            zwift_clubs=[],
            schedulers={"state": "known", "items": [sched]},
        )
    )
    assert 'id="budgets-note">per process<' in panel and 'id="runs-none"' in panel
    assert "near 1, riders 2" in panel and "1 min 15 s" in panel and "1 h 6 min" in panel
    assert 'data-field="scheduler/scheduler/zwift/1/queued">3<' in panel


def test_rates_are_measured_over_the_last_reads() -> None:
    now = [0.0]
    rates = Rates(clock=lambda: now[0])
    rates.add("k", 0)
    assert rates.per_second("k") is None  # one read: no rate yet
    for t, n in ((5.0, 50), (10.0, 100), (30.0, 100)):
        now[0] = t
        rates.add("k", n)
    assert rates.per_second("k") == 0.0  # nothing in the last 15 s of reads
    assert rates.growth("k") == (100, 30.0)
    rates.forget(lambda key: key == "k")
    assert rates.per_second("k") is None
