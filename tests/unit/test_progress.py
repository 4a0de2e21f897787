"""cli.progress: the pace (rate, ETA), both renderings and the reporter's loop, with a fake
probe (no Temporal: what is tested is what the CLI makes of the snapshots)."""

from __future__ import annotations

import asyncio
import io
import re
import time
from typing import Any

import pytest
from rich.console import Console

from cli import battlenet_progress, progress
from cli.progress import Pace, Part, Reporter, Snapshot, Tracking, Watch, live_view, plain_line

CHARACTERS = Snapshot("characters", done=60, total=100, unit="characters", requests=400)


def _pace(*samples: tuple[float, int, int | None]) -> Pace:
    """A pace that saw these (seconds since its start, done, requests); the last is now."""
    base = time.monotonic() - samples[-1][0]
    pace = Pace(started=base)
    for at, done, requests in samples:
        pace.add(Snapshot("characters", done, 100, requests=requests), now=base + at)
    return pace


def test_rate_and_eta_come_from_the_recent_samples() -> None:
    # 40 more characters and 80 more requests in 10 s: 8 req/s, 4 characters/s, 40 left → 10 s
    pace = _pace((0.0, 20, 320), (5.0, 40, 360), (10.0, 60, 400))
    assert pace.request_rate() == pytest.approx(8.0)
    assert pace.eta(CHARACTERS) == pytest.approx(10.0)


def test_old_samples_leave_the_window_and_unknowns_stay_unknown() -> None:
    pace = _pace((0.0, 0, 0), (20.0, 50, 1000), (36.0, 60, 1016))
    assert pace.request_rate() == pytest.approx(1.0)  # the first 20 s are forgotten
    assert _pace((0.0, 0, None), (5.0, 10, None)).request_rate() is None
    assert _pace((0.0, 0, 0)).eta(CHARACTERS) is None  # one sample: no pace yet
    assert Pace().eta(Snapshot("guilds", 3)) is None  # no total


def test_a_new_unit_starts_the_pace_afresh() -> None:
    # 3 guilds in 5 s, then characters from 0: no negative pace, none made of guilds
    pace = Pace()
    pace.add(Snapshot("guilds", 0, 3, "guilds"), now=0.0)
    pace.add(Snapshot("guilds", 3, 3, "guilds"), now=5.0)
    assert pace.done_rate() == pytest.approx(0.6)
    pace.add(Snapshot("characters", 0, 60, "characters"), now=6.0)
    assert pace.done_rate() is None
    pace.add(Snapshot("characters", 10, 60, "characters"), now=8.0)
    assert pace.done_rate() == pytest.approx(5.0)


def test_a_plain_line_has_done_total_rate_against_limit_429s_and_eta() -> None:
    pace = _pace((0.0, 20, 320), (10.0, 60, 400))
    snapshot = Snapshot("characters", 60, 100, "characters", 400, 3, live_requests=True)
    line = plain_line(snapshot, pace, 10)
    assert re.fullmatch(
        r"progress \[\d+s\] characters: 60/100 \(60%\) characters, 4\.0 characters/s, "
        r"8\.0 req/s of 10 allowed, 429s 3, ETA 10s",
        line,
    ), line
    unknown = plain_line(Snapshot("guilds", 2, unit="guilds"), Pace(), None)
    assert "2/? guilds, ? guilds/s, ? req/s (worker elsewhere), 429s ?, ETA ?" in unknown


def test_a_workflows_own_words_are_shown_without_empty_fields() -> None:
    # a verb with no probe of its own: what the workflow says it does (current details)
    line = plain_line(Snapshot("fetching guild and roster"), Pace(), 100)
    assert re.fullmatch(r"progress \[0s\] fetching guild and roster", line), line
    console = Console(record=True, width=80)
    console.print(live_view(Snapshot("fetching guild and roster"), Pace(), 100))
    assert console.export_text().split() == ["phase", "fetching", "guild", "and", "roster",
                                             "elapsed", "0s"]  # fmt: skip


def test_a_workflows_request_count_makes_no_rate() -> None:
    # a worker elsewhere: its requests are counted as its batches end, 0 for 20 s then 400 at
    # once; a rate of that would read 0, then 25 req/s "of 20 allowed"
    pace = _pace((0.0, 0, 0), (20.0, 0, 0), (36.0, 50, 400))
    line = plain_line(Snapshot("characters", 50, 100, "characters", requests=400), pace, 20)
    assert "? req/s of 20 allowed (worker elsewhere)" in line and "429s ?" in line
    assert "3.1 characters/s" in line  # the pace of what is done still shows, and the ETA
    assert line.endswith("ETA 16s")


def test_a_worker_elsewhere_shows_the_shared_budgets_rate() -> None:
    # the workflow's own count comes in lumps; the shared budget's count moves with every
    # process's report, so its rate is the one shown (and said to be the budget's)
    base = time.monotonic() - 10.0
    pace = Pace(started=base)
    for at, done, requests, budget in (
        (0.0, 0, 0, 1000),
        (5.0, 10, 0, 1480),
        (10.0, 20, 400, 1980),
    ):
        snapshot = Snapshot("characters", done, 100, "characters", requests, budget_sent=budget)
        pace.add(snapshot, now=base + at)
    line = plain_line(snapshot, pace, 100)
    assert "98.0 req/s of 100 allowed (the shared budget, every sync)" in line, line
    # no shared budget (RATE_LIMIT_BACKEND=local, or nothing sent yet): unknown, as before
    line = plain_line(Snapshot("characters", 20, 100, "characters", 400), Pace(), 100)
    assert "? req/s of 100 allowed (worker elsewhere)" in line, line


def test_parts_and_budget_waits_are_on_the_same_line() -> None:
    snapshot = Snapshot(
        "season 37: equipment", 5, None, "entries", 9, waits=2,
        parts=(Part("2v2", "equipment", 5, 20), Part("3v3", "importing")),
    )  # fmt: skip
    line = plain_line(snapshot, Pace(), 100)
    assert "budget waits 2" in line
    assert line.endswith("; 2v2 equipment 5/20 (25%), 3v3 importing 0/?")


def test_the_terminal_view_is_a_table_with_bars() -> None:
    console = Console(force_terminal=True, record=True, width=100, color_system="truecolor")
    pace = _pace((0.0, 20, 320), (10.0, 60, 400))
    snapshot = Snapshot(
        "season 37: equipment", 60, 100, "entries", 400, rate_limited=1, live_requests=True,
        parts=(Part("2v2", "equipment", 15, 20), Part("3v3", "done", 45, 80)),
    )  # fmt: skip
    console.print(live_view(snapshot, pace, 10))
    text = console.export_text(clear=False)
    assert "\x1b[" in console.export_text(styles=True)  # drawn with styles: a terminal
    assert re.search(r"phase\s+season 37: equipment", text)
    assert re.search(r"done\s+━+\S*\s+60/100 \(60%\) entries", text)
    assert re.search(r"requests\s+8\.0 req/s of 10 allowed *\n", text)
    assert re.search(r"pace\s+4\.0 entries/s", text)
    assert re.search(r"429s\s+1", text)
    assert re.search(r"ETA\s+10s", text)
    assert re.search(r"2v2\s+equipment\s+15/20 \(75%\)\s+━", text)
    assert re.search(r"3v3\s+done\s+45/80 \(56%\)", text)


class _Probe:
    """Snapshots in turn; ``fail`` first raises that many times (a query nobody answers)."""

    def __init__(self, snapshots: list[Snapshot], fail: int = 0) -> None:
        self.snapshots, self.fail, self.calls = snapshots, fail, 0

    async def __call__(self, watch: Watch) -> Snapshot:
        self.calls += 1
        if self.fail:
            self.fail -= 1
            raise TimeoutError("no worker polls")
        return self.snapshots[min(self.calls - 1, len(self.snapshots) - 1)]


class _Counters:
    requests_sent = 77
    rate_limited = 2


def _reporter(probe: _Probe, stream: io.StringIO, counters: Any = None) -> Reporter:
    watch = Watch(client=None, workflow_id="wf", counters=counters)  # type: ignore[arg-type]
    return Reporter(stream, Tracking(probe, "battlenet", 10), watch)


async def _later(value: str, seconds: float) -> str:
    await asyncio.sleep(seconds)
    return value


@pytest.mark.asyncio
async def test_plain_lines_on_each_phase_change_and_a_last_one(monkeypatch) -> None:
    monkeypatch.setattr(progress, "POLL_SECONDS", 0.01)
    probe = _Probe([Snapshot("guilds", 0, 1, "guilds"), Snapshot("characters", 3, 6, "characters")])
    stream = io.StringIO()
    assert await _reporter(probe, stream, _Counters()).follow(_later("ok", 0.2)) == "ok"
    lines = stream.getvalue().splitlines()
    assert [line.split("] ")[1].split(":")[0] for line in lines] == [
        "guilds", "characters", "characters",
    ]  # fmt: skip
    assert "3/6 (50%) characters" in lines[-1] and "429s 2" in lines[-1]  # in-process counts
    assert probe.calls > 3  # polled all along, printed only what changed (and the last read)


@pytest.mark.asyncio
async def test_a_probe_that_fails_says_waiting_once_and_never_breaks_the_wait(monkeypatch) -> None:
    monkeypatch.setattr(progress, "POLL_SECONDS", 0.01)
    stream = io.StringIO()
    probe = _Probe([Snapshot("done", 6, 6, "characters")], fail=5)
    assert await _reporter(probe, stream).follow(_later("ok", 0.2)) == "ok"
    lines = stream.getvalue().splitlines()
    assert lines[0] == "progress: waiting for wf to answer"
    assert lines.count(lines[0]) == 1 and "6/6 (100%)" in lines[-1]


@pytest.mark.asyncio
async def test_a_failed_result_is_raised_without_a_last_line(monkeypatch) -> None:
    monkeypatch.setattr(progress, "POLL_SECONDS", 0.01)

    async def fails() -> None:
        await asyncio.sleep(0.05)
        raise RuntimeError("run failed")

    stream = io.StringIO()
    with pytest.raises(RuntimeError, match="run failed"):
        await _reporter(_Probe([Snapshot("guilds")]), stream).follow(fails())
    assert len(stream.getvalue().splitlines()) == 1


@pytest.mark.asyncio
async def test_on_a_terminal_the_view_is_redrawn_in_place(monkeypatch) -> None:
    monkeypatch.setattr(progress, "POLL_SECONDS", 0.01)
    stream = io.StringIO()
    reporter = _reporter(_Probe([Snapshot("characters", 6, 6, "characters")]), stream)
    reporter.console = Console(file=stream, force_terminal=True, width=100)
    assert await reporter.follow(_later("ok", 0.1)) == "ok"
    out = stream.getvalue()
    assert "\x1b[" in out and "6/6 (100%) characters" in out  # cursor moves: one live view
    assert "progress [" not in out  # no plain lines on a terminal


class _Queries(Watch):
    """A watch whose queries answer from a dict by workflow id (a missing one: not started)."""

    def __init__(self, answers: dict[str, Any]) -> None:
        super().__init__(client=None, workflow_id="pvp-sync/eu/x")  # type: ignore[arg-type]
        self.answers = answers
        self.asked: list[str] = []

    async def query(self, workflow_id: str, name: str = "progress") -> Any:
        self.asked.append(workflow_id)
        if workflow_id not in self.answers:
            raise RuntimeError("workflow not found")
        return self.answers[workflow_id]


def _bracket(phase: str, entries: int, processed: int, requests: int) -> dict[str, Any]:
    equipment = {"processed": processed, "requests": requests, "budget_waits": 1}
    return {"phase": phase, "entries": entries, "batches": 2, "batches_done": 1,
            "equipment": equipment}  # fmt: skip


@pytest.mark.asyncio
async def test_pvp_progress_sums_its_brackets_children() -> None:
    children = {"2v2": "pvp/eu/37/2v2", "3v3": "pvp/eu/37/3v3", "rbg": "pvp/eu/37/rbg"}
    master = {"season": 37, "brackets": children, "finished": ["3v3"], "failed": ["rbg"]}
    answers = {"pvp-sync/eu/x": master, "pvp/eu/37/2v2": _bracket("equipment", 200, 100, 90),
               "pvp/eu/37/3v3": _bracket("done", 50, 50, 40)}  # fmt: skip
    probe, watch = battlenet_progress.pvp_probe(), _Queries(answers)
    snapshot = await probe(watch)
    assert await probe(watch) == snapshot
    assert watch.asked.count("pvp/eu/37/3v3") == 1  # ended: not asked again
    assert watch.asked.count("pvp/eu/37/2v2") == 2
    assert (snapshot.phase, snapshot.done, snapshot.total) == ("equipment (season 37)", 150, 250)
    assert (snapshot.requests, snapshot.waits) == (130, 2)
    assert snapshot.parts == (
        Part("2v2", "equipment", 100, 200),
        Part("3v3", "done", 50, 50),
        Part("rbg", "failed", 0, 0),
    )


@pytest.mark.asyncio
async def test_pvp_progress_has_no_total_while_a_bracket_is_unknown() -> None:
    master = {"season": 37, "brackets": {"2v2": "c2", "3v3": "c3"}, "finished": [], "failed": []}
    importing = {"phase": "importing", "entries": 0, "batches": 0, "batches_done": 0,
                 "equipment": {}}  # fmt: skip
    snapshot = await battlenet_progress.pvp_probe()(
        _Queries({"pvp-sync/eu/x": master, "c2": importing})
    )
    assert snapshot.total is None and snapshot.phase == "importing (season 37)"
    assert [p.phase for p in snapshot.parts] == ["importing", "waiting"]  # c3 not started
    assert (await battlenet_progress.pvp_probe()(_Queries({"pvp-sync/eu/x": {}}))).phase == (
        "resolving season"
    )


def test_words_from_a_workflow_or_an_api_are_shown_as_they_are() -> None:
    # rich markup would eat "[red]" and an escape sequence would drive the terminal
    console = Console(force_terminal=True, record=True, width=100)
    hostile = Snapshot(
        "[red]paged\x1b[2J", unit="entries", parts=(Part("[b]2v2\x1b]0;x", "done", 1, 1),)
    )
    console.print(live_view(hostile, Pace(), None))
    text = console.export_text()
    assert "[red]paged\\x1b[2J" in text and "[b]2v2\\x1b]0;x" in text
    assert "\x1b" not in text
    line = plain_line(hostile, Pace(), None)
    assert "[red]paged\\x1b[2J" in line and "[b]2v2\\x1b]0;x done 1/1" in line
    assert "\x1b" not in line
