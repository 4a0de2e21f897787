"""The "rate budgets" block of `status` (cli/budget_view.py): rows as storage.status.rate_budgets
returns them, formatted."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from cli import budget_view
from cli.status import _render

NOW = datetime(2026, 12, 2, 18, 40, 1, tzinfo=UTC).timestamp()
FP = "0123456789abcdef"


def _row(**over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "bucket": f"web:web api:{FP}",
        "provider": "web",
        "fingerprint": FP,
        "paused_until": NOW + 4.2,
        "manual_until": 0.0,
        "statements": 900,
        "requests": 12034,
        "rate_limited": 2,
        "updated_at": datetime(2026, 12, 2, 18, 40, tzinfo=UTC),
        "db_now": NOW,
        "windows": [
            {"limit": 100, "period": 1.0, "leased": 97, "cooling": 3, "demand": 140},
            {"limit": 36000, "period": 3600.0, "leased": 210, "cooling": 20510, "demand": 230},
        ],
        "processes": 3,
        "hosts": 1,
        "waiting": [0, 12, 0, 0, 1],  # backfill, bulk, incremental, urgent, manual
    }
    return {**row, **over}


def test_a_budget_line_shows_each_window_the_pause_the_lanes_and_the_processes():
    line = budget_view.budget_line(budget_view.budget(_row()))
    assert line == (
        "web api 01234567  100/1s: 97 leased, 3 cooling, 0 free · "
        "36000/1h: 210 leased, 20510 cooling, 15280 free · "
        "paused until 18:40:05 UTC (4.2 s) · "
        "waiting manual 1 urgent 0 incremental 0 bulk 12 backfill 0 · 3 processes · "
        "12034 requests, 2 rate-limited"
    )
    assert FP not in line


def test_the_json_fields_are_the_lines_numbers():
    b = budget_view.budget(_row(manual_until=NOW + 2.5, hosts=2, processes=1))
    assert b["windows"][1] == {
        "limit": 36000, "period": 3600.0, "leased": 210, "cooling": 20510, "used": 20720,
        "free": 15280, "wanted": 230,
    }  # fmt: skip
    assert b["waiting"] == {"backfill": 0, "bulk": 12, "incremental": 0, "urgent": 0, "manual": 1}
    assert b["paused_until"] == datetime(2026, 12, 2, 18, 40, 5, 200000, tzinfo=UTC)
    assert (b["paused_seconds"], b["manual_hold_seconds"]) == (4.2, 2.5)
    assert b["fingerprint"] == "01234567" and not b["idle"]
    line = budget_view.budget_line(b)
    assert " · manual hold 2.5 s · " in line and " · 1 process on 2 hosts · " in line, line


def test_free_never_goes_below_zero_and_a_past_pause_is_not_shown():
    row = _row(paused_until=NOW - 1, windows=[{"limit": 5, "period": 0.5, "leased": 4,
                                              "cooling": 3, "demand": 0}])  # fmt: skip
    b = budget_view.budget(row)
    assert b["windows"][0]["free"] == 0 and b["paused_until"] is None
    assert budget_view.budget_line(b).startswith("web api 01234567  5/0.5s: 4 leased, 3 cooling")
    assert "paused" not in budget_view.budget_line(b)


def test_an_idle_budget_is_one_short_line():
    row = _row(
        paused_until=0.0, processes=0, waiting=None, requests=1, rate_limited=0,
        windows=[{"limit": 50, "period": 1.0, "leased": 0, "cooling": 0, "demand": 0}],
    )  # fmt: skip
    b = budget_view.budget(row)
    assert b["idle"] and b["waiting"]["bulk"] == 0
    assert budget_view.budget_line(b) == (
        "web api 01234567  50/1s: idle since 2026-12-02 18:40:00 · 1 request, 0 rate-limited"
    )
    cooling = budget_view.budget(
        {**row, "windows": [{"limit": 50, "period": 1.0, "leased": 0, "cooling": 2, "demand": 0}]}
    )  # a process that stopped: its places still cool down
    assert not cooling["idle"]
    assert budget_view.budget_line(cooling) == (
        "web api 01234567  50/1s: 0 leased, 2 cooling, 48 free · no live process · "
        "1 request, 0 rate-limited"
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(1.0, "1s"), (0.5, "0.5s"), (3600.0, "1h"), (60.0, "1m"), (600.0, "10m"), (90.0, "90s"),
     (86400.0, "1d"), (7200.0, "2h")],
)  # fmt: skip
def test_periods(seconds, text):
    assert budget_view.period_text(seconds) == text


def test_a_bucket_not_named_as_expected_still_hides_its_full_fingerprint():
    b = budget_view.budget(_row(bucket=f"odd-{FP}"))
    assert b["budget"] == "odd-01234567"


def test_the_block_in_status_output():
    idle = budget_view.budget(_row(paused_until=0.0, processes=0, windows=[]))
    busy = budget_view.budget(_row())
    data = {
        "runs": [],
        "schedulers": [],
        "rate_budgets": {"shared": True, "budgets": [idle] * 7 + [busy]},
    }
    lines = _render(data).splitlines()
    at = lines.index("rate budgets:")
    assert lines[:at] == ["runs: none yet", "schedulers: none running"]
    assert lines[at + 1].startswith("  web api 01234567  100/1s: 97 leased")  # busy ones first
    assert lines[at + 2 : at + 7] == ["  " + budget_view.budget_line(idle)] * 5
    assert lines[at + 7 :] == ["  … and 2 more idle budgets"]


def test_nothing_to_show():
    assert budget_view.render({"shared": True, "budgets": [], "note": budget_view.EMPTY}) == [
        "rate budgets: no shared budget in use"
    ]
    assert budget_view.render({"shared": False, "budgets": [], "note": budget_view.LOCAL}) == [
        "rate budgets: per process (RATE_LIMIT_BACKEND=local): each worker keeps its own "
        "budget, not visible from here"
    ]
    busy = budget_view.budget(_row())
    shown = budget_view.render({"shared": False, "budgets": [busy], "note": budget_view.LOCAL})
    assert shown[0].startswith("rate budgets: per process") and shown[1].startswith("  web api")
