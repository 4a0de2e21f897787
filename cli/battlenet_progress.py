"""Battle.net and PvP progress: the probes of `sync battlenet|pvp --wait` (cli.progress shows
what they read) and the `status --region` view of a region's latest runs.

Done/total of a Battle.net run come from Postgres, which every synced row reaches at once: done
is what was synced since the run started, total that plus what is still due at the run's cutoff
(the workflow's ``progress`` query names its sync_runs row and cutoff). The workflow's own
counts move only when a child ends. PvP's come from the workflows' ``progress`` queries (the
master names each bracket's child; a child counts its entries and equipment batches).
"""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text
from sqlalchemy import Table as SqlTable
from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from cli.progress import Part, Probe, Snapshot, Watch, duration, shown
from storage.battlenet import due as due_at  # the outdated rule the run's selection uses
from storage.models import characters, guilds, pvp_leaderboard_entries, pvp_leaderboards, sync_runs

PROVIDER = "battlenet"
PVP_KIND = "pvp"  # sync_runs.kind of a PvP run; every other battlenet kind is a sync


async def synced_and_due(
    conn: AsyncConnection, table: SqlTable, region: str, started: Any, cutoff: datetime
) -> tuple[int, int]:
    """(synced since ``started``, still due at ``cutoff``) of a region's guilds or characters;
    ``started`` is a time or a SQL expression of one."""
    where = [table.c.region == region]
    if table is guilds:
        where.append(guilds.c.tracked)
    row = (
        await conn.execute(
            select(
                func.count().filter(table.c.last_synced_at >= started),
                func.count().filter(due_at(table, cutoff, datetime.now(UTC))),
            ).where(*where)
        )
    ).one()
    return int(row[0]), int(row[1])


def _table(phase: str) -> tuple[SqlTable, str]:
    return (guilds, "guilds") if phase == "guilds" else (characters, "characters")


def sync_probe(region: str) -> Probe:
    """The probe of a BattleNetSync of ``region``."""

    async def probe(watch: Watch) -> Snapshot:
        state: dict[str, Any] = await watch.query(watch.workflow_id) or {}
        if not state:
            return Snapshot("starting")
        phase = str(state["phase"])
        table, unit = _table(phase)
        done = state["guilds"] + state["guilds_not_found"]
        if unit == "characters":
            done = state["characters"] + state["characters_not_found"] + state["failed"]
        total = None
        if state.get("run_id") and state.get("cutoff"):
            started = (
                select(sync_runs.c.started_at)
                .where(sync_runs.c.id == state["run_id"])
                .scalar_subquery()
            )
            cutoff = datetime.fromisoformat(state["cutoff"])
            async with watch.connect() as conn:
                if conn is not None:
                    done, due = await synced_and_due(conn, table, region, started, cutoff)
                    total = done + due
        if state.get("final_pass") and phase == "characters":
            phase = "characters (final pass)"
        return Snapshot(phase, done, total, unit, requests=int(state["requests"]))

    return probe


def _bracket_part(name: str, state: dict[str, Any] | None, failed: bool) -> Part:
    if failed:
        return Part(name, "failed", 0, 0)
    if not state:
        return Part(name, "waiting")
    phase = str(state["phase"])
    if phase == "not modified":
        return Part(name, phase, 0, 0)
    processed = int(state["equipment"].get("processed", 0))
    known = phase not in ("starting", "importing")
    return Part(name, phase, processed, int(state["entries"]) if known else None)


def pvp_probe() -> Probe:
    """The probe of a PvpSync: each bracket's import, then its entries' equipment. The
    brackets' children are asked at once; one the master saw end is not asked again."""
    ended: dict[str, dict[str, Any]] = {}  # bracket -> its child's last state

    async def child_state(watch: Watch, state: dict[str, Any], name: str) -> Any:
        if name in ended:
            return ended[name]
        try:
            child = await watch.query(state["brackets"][name])
        except Exception:  # not started yet
            return None
        if name in state["finished"]:
            ended[name] = child
        return child

    async def probe(watch: Watch) -> Snapshot:
        state: dict[str, Any] = await watch.query(watch.workflow_id) or {}
        if state.get("season") is None:
            return Snapshot("resolving season")
        names = list(state["brackets"])
        children = await asyncio.gather(*(child_state(watch, state, n) for n in names))
        parts = [
            _bracket_part(name, child, name in state["failed"])
            for name, child in zip(names, children, strict=True)
        ]
        equipment = [(child or {}).get("equipment", {}) for child in children]
        phases = {p.phase for p in parts}
        busy = [p for p in ("waiting", "importing", "equipment") if p in phases]
        totals = [p.total for p in parts]
        return Snapshot(
            f"{busy[-1] if busy else 'done'} (season {state['season']})",
            sum(p.done for p in parts),
            None if None in totals else sum(t or 0 for t in totals),
            "entries",
            requests=sum(int(e.get("requests", 0)) for e in equipment),
            waits=sum(int(e.get("budget_waits", 0)) for e in equipment),
            parts=tuple(parts),
        )

    return probe


# --- status --region -------------------------------------------------------------------------


async def _latest_run(conn: AsyncConnection, region: str, pvp: bool) -> dict[str, Any] | None:
    kind = sync_runs.c.kind == PVP_KIND if pvp else sync_runs.c.kind != PVP_KIND
    row = (
        await conn.execute(
            select(
                sync_runs.c.id,
                sync_runs.c.workflow_id,
                sync_runs.c.kind,
                sync_runs.c.status,
                sync_runs.c.started_at,
                sync_runs.c.finished_at,
                sync_runs.c.counts,
                sync_runs.c.errors,
                sync_runs.c.error,
                (func.coalesce(sync_runs.c.finished_at, func.now()) - sync_runs.c.started_at).label(
                    "elapsed"
                ),
            )
            .where(sync_runs.c.provider == PROVIDER, sync_runs.c.scope == region, kind)
            .order_by(sync_runs.c.started_at.desc(), sync_runs.c.id.desc())
            .limit(1)
        )
    ).first()
    if row is None:
        return None
    run = dict(row._mapping)
    run["seconds"] = run.pop("elapsed").total_seconds()
    return run


async def _live(conn: AsyncConnection, region: str, run: dict[str, Any]) -> dict[str, Any]:
    """A running sync's guilds and characters: synced since it started, and still due (the
    cutoff as a CLI-started run takes it: BNET_STALENESS_SECONDS before the start). Its phase
    follows: a run syncs every due guild before any character."""
    from settings import Settings

    staleness = 0 if run["kind"] == "full" else Settings().BNET_STALENESS_SECONDS
    cutoff = run["started_at"] - timedelta(seconds=staleness)
    live: dict[str, Any] = {}
    for table, unit in ((guilds, "guilds"), (characters, "characters")):
        done, due = await synced_and_due(conn, table, region, run["started_at"], cutoff)
        live[unit] = {"done": done, "total": done + due}
    guilds_left = live["guilds"]["total"] > live["guilds"]["done"]
    return {"phase": "guilds" if guilds_left else "characters", **live}


async def _brackets(conn: AsyncConnection, region: str) -> list[dict[str, Any]]:
    """The region's latest season's leaderboards: entries of the latest snapshot and how many
    of them have their equipment processed."""
    latest = (
        select(func.max(pvp_leaderboards.c.season_id))
        .where(pvp_leaderboards.c.region == region)
        .scalar_subquery()
    )
    entries = pvp_leaderboard_entries
    of_snapshot = and_(
        entries.c.leaderboard_id == pvp_leaderboards.c.id,
        entries.c.snapshot_at == pvp_leaderboards.c.last_snapshot_at,
    )
    processed = (
        select(func.count())
        .where(of_snapshot, entries.c.equipment_processed_at.is_not(None))
        .scalar_subquery()
    )
    rows = await conn.execute(
        select(
            pvp_leaderboards.c.bracket,
            pvp_leaderboards.c.season_id.label("season"),
            pvp_leaderboards.c.entry_count.label("entries"),
            processed.label("equipment"),
            pvp_leaderboards.c.last_synced_at,
        )
        .where(pvp_leaderboards.c.region == region, pvp_leaderboards.c.season_id == latest)
        .order_by(pvp_leaderboards.c.bracket)
    )
    return [dict(r._mapping) for r in rows]


async def region_status(conn: AsyncConnection, region: str) -> dict[str, Any]:
    """`status --region`: the region's latest Battle.net sync and PvP run (and brackets)."""
    sync = await _latest_run(conn, region, pvp=False)
    if sync is not None and sync["status"] == "running":
        sync["live"] = await _live(conn, region, sync)
    pvp = await _latest_run(conn, region, pvp=True)
    brackets = await _brackets(conn, region)
    return {"region": region, "battlenet": sync, "pvp": pvp, "brackets": brackets}


def _percent(done: int, total: int | None) -> str:
    return f"{100.0 * done / total:.0f}%" if total else ""


def _per_second(count: int, seconds: float) -> str:
    return f"{count / seconds:.1f}" if seconds > 0 else ""


def _run_head(title: str, run: dict[str, Any]) -> Text:
    ended = run["finished_at"]
    when = f"started {run['started_at']:%Y-%m-%d %H:%M:%S}"
    if ended:
        when += f", ended {ended:%H:%M:%S}"
    elif "live" in run:
        when += f", now syncing {run['live']['phase']}"
    return shown(
        f"{title} — run {run['id']} ({run['kind']}, {run['status']}), {when}, "
        f"{duration(run['seconds'])}; errors {run['errors']}"
        + (f": {run['error'][:100]}" if run.get("error") else "")
    )


def _sync_table(run: dict[str, Any]) -> Table:
    """Guilds and characters of a sync: live (synced/total) while it runs, else its counts."""
    table = Table(box=None, pad_edge=False)
    for name in ("", "done", "total", "%", "per s"):
        table.add_column(name, justify="left" if not name else "right")
    seconds = float(run["seconds"])
    if "live" in run:
        for unit in ("guilds", "characters"):
            done, total = run["live"][unit]["done"], run["live"][unit]["total"]
            table.add_row(unit, str(done), str(total), _percent(done, total),
                          _per_second(done, seconds))  # fmt: skip
        return table
    counts = run["counts"] or {}
    for unit in ("guilds", "characters"):
        done = int(counts.get(unit, 0))
        missing = int(counts.get(f"{unit}_not_found", 0))
        table.add_row(unit, str(done), str(done + missing), _percent(done, done + missing),
                      _per_second(done, seconds))  # fmt: skip
    requests = int(counts.get("requests", 0))
    table.add_row("requests", str(requests), "", "", _per_second(requests, seconds))
    return table


def _bracket_table(brackets: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False)
    for name in ("bracket", "season", "entries", "equipment", "%", "synced at"):
        table.add_column(name, justify="right" if name in ("entries", "equipment", "%") else "left")
    for b in brackets:
        synced = b["last_synced_at"]
        table.add_row(
            shown(b["bracket"]), str(b["season"]), str(b["entries"]), str(b["equipment"]),
            _percent(int(b["equipment"]), int(b["entries"])),
            "" if synced is None else f"{synced:%Y-%m-%d %H:%M:%S}",
        )  # fmt: skip
    return table


def _sections(data: dict[str, Any]) -> list[RenderableType]:
    region, sync, pvp = data["region"], data["battlenet"], data["pvp"]
    out: list[RenderableType] = []
    if sync is None:
        out.append(Text(f"Battle.net {region}: no sync run yet"))
    else:
        out += [_run_head(f"Battle.net {region}", sync), _sync_table(sync)]
    out.append(Text(""))
    if pvp is not None:
        out.append(_run_head(f"PvP {region}", pvp))
    if data["brackets"]:
        out.append(_bracket_table(data["brackets"]))
    else:
        out.append(Text(f"PvP {region}: no leaderboard imported yet"))
    return out


def render(renderable: RenderableType, width: int = 120) -> str:
    """Rich output as plain text (the status verb prints a string; a pipe gets no escapes)."""
    console = Console(file=io.StringIO(), width=width, color_system=None, highlight=False)
    console.print(renderable)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    return "\n".join(line.rstrip() for line in str(text).splitlines())


def render_region(data: dict[str, Any]) -> str:
    return render(Group(*_sections(data)))
