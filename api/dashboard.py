"""The live dashboard at ``GET /`` of the read API: per rate budget its windows (limit, used,
leased, cooling, free), pause and waiting requests per lane; the running syncs with progress
bars and rates; the schedulers' queues with their oldest wait; the 429s and dead letters of
the last hour.

One renderer, on the server: ``GET /`` is the whole page rendered from ``GET /v1/ops/state``'s
data (api/ops.py); the page's script fetches ``GET /v1/ops/panel`` (the same renderer's
``<main>``) every REFRESH_MS and swaps it in, so no value ever reaches the browser unescaped
(names come from upstream: every text is ``html.escape``d here). No front-end build: plain
HTML, a little CSS and a dozen lines of script. Every number shown carries a ``data-field``
naming where it sits in the JSON (``budget/<bucket>/w0/used``, ``run/<id>/done``, …), which is
what the headless-browser test compares.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from api.ops import Ops
from api.queries import Mirror
from api.refresh import ClientSource
from storage.budgets import LANE_NAMES

REFRESH_MS = 1500
LANES_SHOWN = tuple(reversed(LANE_NAMES))  # manual first, as they are served


def mount_dashboard(
    app: FastAPI, mirror_of: Callable[[], Mirror], settings: Any, temporal: ClientSource | None
) -> Ops:
    """Add ``GET /`` (the page), ``GET /v1/ops/state`` (its data, JSON) and
    ``GET /v1/ops/panel`` (the page's live part, HTML) to ``app``."""
    ops = Ops(lambda: mirror_of().pool, settings, temporal)

    @app.get("/", response_class=HTMLResponse, tags=["dashboard"])
    async def dashboard() -> HTMLResponse:
        return HTMLResponse(page(await ops.state()), headers={"Cache-Control": "no-store"})

    @app.get("/v1/ops/state", tags=["dashboard"])
    async def ops_state() -> dict[str, Any]:
        """What the dashboard shows, as data."""
        return await ops.state()

    @app.get("/v1/ops/panel", response_class=HTMLResponse, tags=["dashboard"])
    async def ops_panel() -> HTMLResponse:
        return HTMLResponse(panel(await ops.state()), headers={"Cache-Control": "no-store"})

    return ops


# --- the page ---------------------------------------------------------------------------------

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.2em;color:#1d2430;background:#f6f7f9}
h1{font-size:20px;margin:0 0 .2em}h2{font-size:16px;margin:1.4em 0 .4em}
h3{font-size:14px;margin:1em 0 .3em}
table{border-collapse:collapse;background:#fff;min-width:40em}
th,td{border:1px solid #d5d9e0;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eceff3;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
.bar{display:inline-block;width:100px;height:10px;background:#e3e6eb;border-radius:5px;
overflow:hidden;vertical-align:middle;margin-right:6px}.bar>span{display:block;height:100%;
background:#3b82f6}.bar.full>span{background:#dc2626}.muted{color:#6b7280}.bad{color:#b91c1c}
.ok{color:#15803d}#live{font-size:12px;margin-left:.6em}td.lanes{font-size:12px;max-width:14em}
td.used{white-space:nowrap}
"""
_SCRIPT = """
(function () {
  var live = document.getElementById("live"), updates = 0;
  function again() { setTimeout(refresh, REFRESH_MS); }
  function refresh() {
    fetch("v1/ops/panel", {cache: "no-store"}).then(function (r) {
      if (!r.ok) { throw new Error("HTTP " + r.status); }
      return r.text();
    }).then(function (text) {
      document.getElementById("ops").outerHTML = text;
      updates += 1;
      document.body.setAttribute("data-updates", String(updates));
      live.textContent = "live"; live.className = "ok";
    }).catch(function (e) {
      live.textContent = "not updating (" + e.message + "), retrying"; live.className = "bad";
    }).then(again);
  }
  again();
})();
""".replace("REFRESH_MS", str(REFRESH_MS))


def page(state: dict[str, Any]) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>ratesync — rate limits and syncs</title>"
        f"<style>{_STYLE}</style></head>"
        '<body data-updates="0"><h1>ratesync: rate limits and syncs'
        '<span id="live" class="muted">live</span></h1>'
        f"{panel(state)}<script>{_SCRIPT}</script></body></html>"
    )


def panel(state: dict[str, Any]) -> str:
    """The page's ``<main>``: every section, from one read of the state."""
    at = state["generated_at"]
    return (
        f'<main id="ops" data-generated-at="{_e(at.isoformat())}">'
        f'<p class="muted">read {_e(_clock(at))} UTC from Postgres'
        f" (schedulers from Temporal); refreshed every {REFRESH_MS / 1000:g} s</p>"
        + _budgets(state["budgets"])
        + _runs(state["runs"], state["zwift_clubs"])
        + _schedulers(state["schedulers"])
        + _last_hour(state["last_hour"])
        + "</main>"
    )


def _budgets(data: dict[str, Any]) -> str:
    out = ["<h2>Rate budgets</h2>"]
    if data.get("note"):
        out.append(f'<p class="muted" id="budgets-note">{_e(data["note"])}</p>')
    if not data["items"]:
        return "".join(out)
    head = ["budget", "window", "used", "leased", "cooling", "free", "wanted", "requests/s",
            "paused until", "waiting per lane", "processes", "requests", "429s"]  # fmt: skip
    out.append('<table id="budgets"><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr>")
    for b in data["items"]:
        windows = b["windows"] or [None]
        span = f' rowspan="{len(windows)}"' if len(windows) > 1 else ""
        key = f"budget/{b['bucket']}"
        for i, w in enumerate(windows):
            out.append(f'<tr data-budget="{_e(b["bucket"])}">')
            if i == 0:
                out.append(
                    f"<td{span}><b>{_e(b['provider'])}</b> {_e(b['budget'])} "
                    f'<span class="muted">{_e(b["fingerprint"])}</span></td>'
                )
            out.append(_window(f"{key}/w{i}", w))
            if i == 0:
                out.append(_num(f"{key}/requests_per_second", b["requests_per_second"], span))
                out.append(_paused(key, b, span))
                lanes = " ".join(
                    f'{lane} <b data-field="{_e(key)}/waiting/{lane}">{b["waiting"][lane]}</b>'
                    for lane in LANES_SHOWN
                )
                out.append(f'<td{span} class="lanes">{lanes}</td>')
                for field in ("processes", "requests", "rate_limited"):
                    out.append(_num(f"{key}/{field}", b[field], span))
            out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def _paused(key: str, b: dict[str, Any], span: str) -> str:
    paused = "—"
    if b["paused_until"]:
        paused = f"{_clock(b['paused_until'])} ({_seconds(b['paused_seconds'])})"
    hold = b.get("manual_hold_seconds") or 0
    held = f'<br><span class="muted">manual hold {_seconds(hold)}</span>' if hold else ""
    return f'<td{span}><span data-field="{_e(key)}/paused_until">{_e(paused)}</span>{held}</td>'


def _window(key: str, w: dict[str, Any] | None) -> str:
    if w is None:
        return '<td colspan="6" class="muted">no window</td>'
    limit = int(w["limit"])
    share = 0 if not limit else min(100.0, 100.0 * w["used"] / limit)
    full = " full" if w["free"] == 0 else ""
    return (
        f'<td><span data-field="{_e(key)}/limit">{limit}</span>/'
        f'<span data-field="{_e(key)}/period">{_e(_period(w["period"]))}</span></td>'
        f'<td class="n used"><span class="bar{full}">'
        f'<span style="width:{share:.0f}%"></span></span>'
        f'<span data-field="{_e(key)}/used">{w["used"]}</span></td>'
        + "".join(_num(f"{key}/{f}", w[f]) for f in ("leased", "cooling", "free", "wanted"))
    )


def _runs(runs: list[dict[str, Any]], clubs: list[dict[str, Any]]) -> str:
    out = ["<h2>Syncs</h2>"]
    if not runs:
        out.append('<p class="muted" id="runs-none">no sync running or ended in 10 minutes</p>')
    else:
        out.append('<table id="runs"><tr><th>run</th><th>workflow</th><th>what</th>'
                   "<th>status</th><th>progress</th><th>rate</th><th>started</th>"
                   "<th>detail</th></tr>")  # fmt: skip
        for r in runs:
            key = f"run/{r['id']}"
            out.append(
                f'<tr data-run-id="{r["id"]}"><td class="n" data-field="{key}/id">{r["id"]}</td>'
                f"<td>{_e(r['workflow_id'])}</td>"
                f"<td>{_e(r['provider'])} {_e(r['scope'])} {_e(r['kind'])}</td>"
                f'<td data-field="{key}/status" class="{_state_class(r["status"])}">'
                f"{_e(r['status'])}</td><td>{_progress(key, r)}</td>"
                f"<td>{_rate(key, r)}</td><td>{_e(_clock(r['started_at']))}</td>"
                f"<td>{_e(r.get('detail') or r.get('error') or '')}</td></tr>"
            )
        out.append("</table>")
    if clubs:
        out.append('<h2>ZwiftRacing clubs (calls of the last hour)</h2><table id="clubs"><tr>'
                   "<th>club</th><th>name</th><th>calls</th><th>429s</th>"
                   "<th>last call</th><th>now</th></tr>")  # fmt: skip
        for c in clubs:
            key = f"club/{c['club_id']}"
            active = "calling" if c["recent"] else "idle"
            out.append(
                f'<tr><td class="n">{c["club_id"]}</td><td>{_e(c["name"] or "")}</td>'
                + _num(f"{key}/calls", c["calls"]) + _num(f"{key}/rate_limited", c["rate_limited"])
                + f"<td>{_e(_clock(c['last_call_at']))}</td><td>{active}</td></tr>"
            )  # fmt: skip
        out.append("</table>")
    return "".join(out)


def _progress(key: str, r: dict[str, Any]) -> str:
    done, total = r.get("done"), r.get("total")
    if done is None:
        return '<span class="muted">—</span>'
    share = r.get("percent") or 0.0
    bar = f'<span class="bar"><span style="width:{share:.0f}%"></span></span>' if total else ""
    of = f'/<span data-field="{key}/total">{total}</span>' if total is not None else ""
    return f'{bar}<span data-field="{key}/done">{done}</span>{of} {_e(r.get("unit", ""))}'


def _rate(key: str, r: dict[str, Any]) -> str:
    rate = r.get("rate")
    if rate is None:
        return '<span class="muted">—</span>'
    return f'<span data-field="{key}/rate">{rate:g}</span> {_e(r.get("rate_unit", "/s"))}'


def _schedulers(data: dict[str, Any]) -> str:
    out = ["<h2>Scheduler queues</h2>"]
    if data["state"] == "unknown":
        out.append(f'<p class="bad" id="schedulers-unknown">{_e(data["note"])}</p>')
        return "".join(out)
    if not data["items"]:
        return out[0] + '<p class="muted" id="schedulers-none">no scheduler running</p>'
    out.append('<table id="schedulers"><tr><th>scheduler</th><th>state</th><th>queued</th>'
               "<th>by kind</th><th>oldest wait</th><th>wait avg / max (1 h)</th>"
               "<th>running</th><th>dispatched</th><th>rejected</th>"
               "<th>conflicts avoided</th></tr>")  # fmt: skip
    for s in data["items"]:
        key = f"scheduler/{s['scheduler']}"
        if "queued" not in s:
            out.append(f"<tr><td>{_e(s['scheduler'])}</td><td class=\"bad\">unknown</td>"
                       f'<td colspan="8">{_e(s.get("note", ""))}</td></tr>')  # fmt: skip
            continue
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(s["queue_depth"].items()) if n)
        out.append(
            f"<tr><td>{_e(s['scheduler'])}</td><td>{_e(s['state'])}</td>"
            + _num(f"{key}/queued", s["queued"]) + f"<td>{_e(kinds or '—')}</td>"
            + f'<td class="n" data-field="{_e(key)}/oldest_wait_seconds">'
            f"{_e(_seconds(s['oldest_wait_seconds']))}</td>"
            f"<td>{_e(_seconds(s['avg_wait_seconds_last_hour']))} / "
            f"{_e(_seconds(s['max_wait_seconds_last_hour']))}</td>"
            + _num(f"{key}/running", len(s["running"])) + _num(f"{key}/dispatched",
            s["dispatched_total"]) + _num(f"{key}/rejected", s["rejected_total"])
            + _num(f"{key}/conflicts_avoided", s.get("conflicts_avoided", 0)) + "</tr>"
        )  # fmt: skip
    out.append("</table>")
    return "".join(out)


def _last_hour(data: dict[str, Any]) -> str:
    limited = data["rate_limited"]
    counts = [
        ("ZwiftRacing 429s", "rate_limited/zwift", limited["zwift"]),
        ("Discord 429s (channel jobs)", "rate_limited/discord", limited["discord"]),
        ("dead letters", "dead_letters", data["dead_letters"]),
        ("parked channels", "parked_channels", len(data["parked_channels"])),
    ]
    line = " · ".join(f'{what}: <b data-field="last_hour/{key}">{n}</b>' for what, key, n in counts)
    out = [f"<h2>The last hour: 429s and dead letters</h2><p>{line}</p>"]
    if limited["budgets"]:
        head = ["budget", "429s since first use", "429s while this API watched", "watched for"]
        rows = (
            [f"{b['provider']} {b['budget']}", b["rate_limited_total"], b["rate_limited_seen"],
             _seconds(b["seen_seconds"])]
            for b in limited["budgets"]
        )  # fmt: skip
        out.append("<h3>429s per rate budget</h3>" + _table("limited", head, rows))
    if data["dead_letter_list"]:
        head = ["provider", "entity", "reason", "attempts", "last failed", "next retry", "error"]
        rows = (
            [d["provider"], d["entity_key"], d["reason"], d["attempts"],
             _clock(d["last_failed_at"]), _clock(d["next_retry_at"]), d["last_error"] or ""]
            for d in data["dead_letter_list"]
        )  # fmt: skip
        out.append("<h3>Dead letters</h3>" + _table("dead-letters", head, rows))
    if data["parked_channels"]:
        head = ["tenant", "channel", "name", "access", "re-checked at"]
        rows = (
            [p["tenant"], p["channel"], p["name"] or "", p["access"], _clock(p["recheck_at"])]
            for p in data["parked_channels"]
        )
        out.append("<h3>Parked Discord channels</h3>" + _table("parked", head, rows))
    return "".join(out)


# --- bits -------------------------------------------------------------------------------------


def _table(ident: str, head: list[str], rows: Iterable[list[Any]]) -> str:
    body = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>" for row in rows)
    return (
        f'<table id="{ident}"><tr>'
        + "".join(f"<th>{_e(h)}</th>" for h in head)
        + (f"</tr>{body}</table>")
    )


def _num(key: str, value: Any, attrs: str = "") -> str:
    shown = "—" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
    return f'<td class="n"{attrs} data-field="{_e(key)}">{_e(shown)}</td>'


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _clock(moment: datetime | None) -> str:
    """A time of today (UTC) as HH:MM:SS, any other with its date."""
    if moment is None:
        return "—"
    moment = moment.astimezone(UTC)
    today = datetime.now(UTC).date() == moment.date()
    return f"{moment:%H:%M:%S}" if today else f"{moment:%Y-%m-%d %H:%M}"


def _period(seconds: float) -> str:
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    return f"{seconds:g}s"


def _seconds(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 60:
        return f"{value:.1f} s"
    minutes, secs = divmod(round(value), 60)
    return f"{minutes} min {secs} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def _state_class(status: str) -> str:
    return {"running": "ok", "completed": "ok", "failed": "bad", "partial": "bad"}.get(status, "")
