"""The dashboard (``GET /`` of the read API, issue 14) in headless Chromium during a real sync.

A Battle.net sync runs against the sandbox with RATE_LIMIT_BACKEND=postgres and an hourly
budget smaller than its work, so it spends the budget and sleeps on its timer, still running:
its bucket, run row and progress hold still while the browser reads the page. The sandbox
answers one request 429; a paused Battle.net scheduler holds a request the refresh hook
queued; a dead letter carries markup in its name. Chromium loads ``/`` and lets the page's
script refresh it (``--dump-dom`` after ``--virtual-time-budget``); every number the DOM shows
is compared with ``/v1/ops/state`` read just before and just after (the same both times), and
the JSON with the truth: the configured limits, the requests and 429s the sandbox counted, the
run's row and its characters, the queued request. An API whose Temporal never answers still
renders its page from Postgres, the schedulers "unknown".

Chromium is Debian's package ``chromium``; without it the test fails naming the apt command.
``RATESYNC_DASHBOARD_PNG=docs/dashboard.png`` also keeps the screenshot there (README's).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from temporalio.client import Client, WorkflowHandle

from activities.types import BattleNetSyncInput
from api.app import create_app
from cli import scheduler as scheduler_cli
from storage import sync as syncdb
from storage.db import create_engine
from tests.integration.api_support import serving
from tests.integration.battlenet_support import track_sandbox_guilds
from tests.sandbox_helpers import admin, battlenet_sandbox, sandbox_settings
from worker import build_worker
from workflows.battlenet import BattleNetSync

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
INSTALL = "apt-get update -qq && apt-get install -y -qq chromium"
PER_SECOND, PER_HOUR = 50, 30  # 2 guild calls + 4 per character: 20 characters need 82
ROSTER = 20
MARKUP = '<img src=x onerror="alert(1)">&'
PERIODS = {1.0: "1s", 60.0: "1m", 3600.0: "1h"}  # as the page writes a window's period
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail(f"chromium is not installed: run `{INSTALL}` (Debian's package chromium)")
    return found


async def browse(url: str, profile: Path, *options: str) -> str:
    """What headless Chromium prints for ``url`` (the DOM for --dump-dom) once the page's
    script had 3 s of (virtual) time."""
    proc = await asyncio.create_subprocess_exec(
        chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
        f"--user-data-dir={profile}", "--virtual-time-budget=3000", *options, url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


class Dom(HTMLParser):
    """The text of every element with a ``data-field``, and the body's attributes."""

    def __init__(self, document: str) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}
        self.body: dict[str, str | None] = {}
        self.tags: list[str] = []
        self.text: list[str] = []
        self._open: list[tuple[str, int, list[str]]] = []
        self._depth = 0
        self.feed(document)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag in VOID:
            return
        self._depth += 1
        found = dict(attrs)
        if tag == "body":
            self.body = found
        if found.get("data-field"):
            self._open.append((str(found["data-field"]), self._depth, []))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if self._open and self._open[-1][1] == self._depth:
            field, _, parts = self._open.pop()
            self.fields[field] = "".join(parts).strip()
        self._depth -= 1

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        for _, _, parts in self._open:
            parts.append(data)


def shown(state: dict[str, Any]) -> dict[str, str]:
    """The ``data-field``s the page shows for ``state`` and the text each must read."""
    out: dict[str, str] = {}
    for b in state["budgets"]["items"]:
        key = f"budget/{b['bucket']}"
        for i, w in enumerate(b["windows"]):
            for f in ("limit", "used", "leased", "cooling", "free", "wanted"):
                out[f"{key}/w{i}/{f}"] = str(w[f])
            out[f"{key}/w{i}/period"] = PERIODS.get(w["period"], f"{w['period']:g}s")
        for lane, n in b["waiting"].items():
            out[f"{key}/waiting/{lane}"] = str(n)
        for f in ("processes", "requests", "rate_limited"):
            out[f"{key}/{f}"] = str(b[f])
        if b["paused_until"] is None:
            out[f"{key}/paused_until"] = "—"
    for r in state["runs"]:
        out[f"run/{r['id']}/id"] = str(r["id"])
        out[f"run/{r['id']}/status"] = r["status"]
        for f in ("done", "total"):
            if r[f] is not None:
                out[f"run/{r['id']}/{f}"] = str(r[f])
    for s in state["schedulers"]["items"]:
        if "queued" in s:
            key = f"scheduler/{s['scheduler']}"
            out[f"{key}/queued"] = str(s["queued"])
            out[f"{key}/running"] = str(len(s["running"]))
            out[f"{key}/dispatched"] = str(s["dispatched_total"])
            out[f"{key}/rejected"] = str(s["rejected_total"])
            out[f"{key}/conflicts_avoided"] = str(s["conflicts_avoided"])
    hour = state["last_hour"]
    out["last_hour/rate_limited/zwift"] = str(hour["rate_limited"]["zwift"])
    out["last_hour/rate_limited/discord"] = str(hour["rate_limited"]["discord"])
    out["last_hour/dead_letters"] = str(hour["dead_letters"])
    out["last_hour/parked_channels"] = str(len(hour["parked_channels"]))
    return out


async def until(check: Any, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds:g} s: {what}")
        await asyncio.sleep(0.2)


async def test_dashboard_shows_in_chromium_what_the_json_says_during_a_sync(
    client: Client, database_url: str, task_queue: str, tmp_path: Path
) -> None:
    chromium()  # before anything starts
    with battlenet_sandbox(seed=14, guilds_per_region=1, roster_min=ROSTER,
                           roster_max=ROSTER) as bnet:  # fmt: skip
        await track_sandbox_guilds(database_url, bnet.url)
        admin(bnet.url, "faults", {"force_429": 1})  # one 429: a shared pause, counted
        settings = sandbox_settings(
            bnet.url, RATE_LIMIT_BACKEND="postgres", BNET_RATE_PER_SECOND=PER_SECOND,
            BNET_RATE_PER_HOUR=PER_HOUR, RATE_LIMIT_MAX_WAIT_SECONDS=1.0,
            TEMPORAL_TASK_QUEUE=task_queue, SCHEDULER_BATTLENET_SYNC_EVERY="off",
            SCHEDULER_PVP_EVERY="off",
        )  # fmt: skip
        engine = create_engine(database_url, pool_size=1)
        async with engine.begin() as conn:
            await syncdb.record_failure(conn, "test", MARKUP, "bad_payload", MARKUP, None)

        async def temporal() -> Client:
            return client

        handles: list[WorkflowHandle[Any, Any]] = []
        app = create_app(settings, database_url, temporal)
        async with (
            build_worker(client, settings, database_url, task_queue) as parts,
            parts.worker,
            serving(app) as url,
            httpx.AsyncClient(base_url=url, timeout=10) as http,
        ):
            try:
                sync = await client.start_workflow(
                    BattleNetSync.run, BattleNetSyncInput(region="eu", batch_size=10),
                    id=f"battlenet-sync/eu/dash-{uuid.uuid4().hex[:6]}", task_queue=task_queue,
                )  # fmt: skip
                handles.append(sync)
                sched = await scheduler_cli.start(client, "battlenet", "us", settings)
                handles.append(sched)
                await sched.signal("pause")
                queued = await http.post("/v1/refresh/wow/us/characters/draenor/Dashtest")
                assert queued.status_code == 202, queued.text

                seen: dict[str, Any] = {}

                async def settled() -> dict[str, Any] | None:
                    """The state once the budget is spent and nothing moves for a second."""
                    first = seen["state"] = (await http.get("/v1/ops/state")).json()
                    bucket = _bnet(first)
                    spent = bucket is not None and bucket["windows"][1]["used"] >= PER_HOUR - 3
                    if not spent or not first["runs"]:
                        return None
                    sched_known = first["schedulers"]["items"]
                    if not any(s.get("queued") for s in sched_known):
                        return None
                    await asyncio.sleep(1.0)
                    again = (await http.get("/v1/ops/state")).json()
                    return again if shown(again) == shown(first) else None

                try:
                    state = await until(settled, 20, "the hourly budget spent, the page still")
                except AssertionError:
                    print(seen)
                    raise
                await _check_truth(state, bnet.url, database_url)
                for _attempt in range(3):
                    dom = Dom(await browse(url + "/", tmp_path / "profile", "--dump-dom"))
                    after = (await http.get("/v1/ops/state")).json()
                    if shown(after) == shown(state):
                        break
                    state = after
                else:
                    raise AssertionError("the state kept moving while Chromium read the page")
                _check_page(dom, state)
                png = tmp_path / "dashboard.png"
                await browse(url + "/", tmp_path / "profile", f"--screenshot={png}",
                             "--window-size=1280,900", "--hide-scrollbars")  # fmt: skip
                assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
                if os.environ.get("RATESYNC_DASHBOARD_PNG"):
                    shutil.copyfile(png, os.environ["RATESYNC_DASHBOARD_PNG"])
                await _check_without_temporal(settings, database_url, state)
            finally:
                for handle in handles:
                    await handle.terminate("test over")
        await engine.dispose()


def _bnet(state: dict[str, Any]) -> dict[str, Any] | None:
    found = [b for b in state["budgets"]["items"] if b["provider"] == "battlenet"]
    return found[0] if found else None


async def _check_truth(state: dict[str, Any], sandbox_url: str, database_url: str) -> None:
    """The JSON against what the test configured and what the sandbox and Postgres hold."""
    bucket = _bnet(state)
    assert bucket is not None and state["budgets"]["shared"], state["budgets"]
    limits = [(w["limit"], w["period"]) for w in bucket["windows"]]
    assert limits == [(PER_SECOND, 1.0), (PER_HOUR, 3600.0)], limits
    hourly = bucket["windows"][1]  # the sync stopped at its hourly budget: a place a request
    used = hourly["used"]
    assert PER_HOUR - 3 <= used <= PER_HOUR and hourly["free"] == PER_HOUR - used, hourly
    assert hourly["leased"] + hourly["cooling"] == used == bucket["requests"], bucket
    stats = admin(sandbox_url, "stats")
    assert stats["requests"] == bucket["requests"], stats
    assert stats["throttled"] == bucket["rate_limited"] == 1, (stats, bucket)
    (limited,) = state["last_hour"]["rate_limited"]["budgets"]
    assert limited["rate_limited_total"] == 1, limited
    engine = create_engine(database_url, pool_size=1)
    async with engine.connect() as conn:
        run_ids = (await conn.execute(text("SELECT id FROM sync_runs ORDER BY id"))).scalars()
        synced = (
            await conn.execute(text("SELECT count(*) FROM characters WHERE last_synced_at > "
                                    "(SELECT started_at FROM sync_runs)"))
        ).scalar_one()  # fmt: skip
        characters = (await conn.execute(text("SELECT count(*) FROM characters"))).scalar_one()
        dead = (await conn.execute(text("SELECT count(*) FROM sync_failures"))).scalar_one()
    await engine.dispose()
    (run,) = state["runs"]
    assert [run["id"]] == list(run_ids) and run["status"] == "running", state["runs"]
    assert (run["provider"], run["scope"], run["unit"]) == ("battlenet", "eu", "characters")
    assert run["done"] == synced and 0 < synced < characters == ROSTER == run["total"], run
    assert state["last_hour"]["dead_letters"] == dead >= 1
    (sched,) = state["schedulers"]["items"]
    assert sched["scheduler"] == "scheduler/battlenet/us" and sched["state"] == "paused", sched
    assert sched["queued"] == 1 and sched["queue_depth"] == {"manual": 1}, sched
    assert sched["oldest_wait_seconds"] >= 1.0, sched  # queued before the budget was spent


def _check_page(dom: Dom, state: dict[str, Any]) -> None:
    """Every number the page shows is the JSON's; the script refreshed it; markup is text."""
    assert int(dom.body.get("data-updates") or 0) >= 1, "the page's script never refreshed it"
    want = shown(state)
    assert {k: dom.fields.get(k) for k in want} == want
    # the same budgets, windows, runs and schedulers, nothing more; rates (measured over the
    # API's last reads) and waits (a clock) move between two reads, so they are not compared
    listed = {k for k in dom.fields if k.startswith(("run/", "budget/", "scheduler/"))}
    moving = ("/requests_per_second", "/rate", "/oldest_wait_seconds")
    assert {k for k in listed - set(want) if not k.endswith(moving)} == set()
    assert MARKUP in "".join(dom.text) and "img" not in dom.tags  # a name is text, not markup


async def _check_without_temporal(settings: Any, database_url: str, state: dict[str, Any]) -> None:
    """Temporal that never answers: the page still renders from Postgres within its timeout."""

    async def hanging() -> Client:
        await asyncio.sleep(60)
        raise AssertionError("unreachable")

    async with (
        serving(create_app(settings, database_url, hanging)) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        began = time.monotonic()
        page = await http.get("/")
        took = time.monotonic() - began
        data = (await http.get("/v1/ops/state")).json()
    assert page.status_code == 200 and took < 5, took
    assert (
        'id="schedulers-unknown"' in page.text and "unknown: Temporal did not answer" in page.text
    )
    assert data["schedulers"]["state"] == "unknown" and data["schedulers"]["items"] == []
    bucket = _bnet(state)
    assert bucket is not None and f'data-budget="{bucket["bucket"]}"' in page.text
    assert [r["id"] for r in data["runs"]] == [r["id"] for r in state["runs"]]
    assert MARKUP not in page.text and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page.text
