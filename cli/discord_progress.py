"""Discord's progress for `sync discord --wait` (cli.progress shows it): the run's channel jobs
in Postgres, which every worker writes as it goes — channels done of the run's total, messages
stored and the 429s each channel met.

A tenant's workflow id is the same for every sync; its rows record ``<workflow id>#<run id>``,
so an earlier run's rows are never shown as this one's.
"""

from __future__ import annotations

from cli.progress import Probe, Snapshot, Watch, details_probe
from storage import discord as db

UNDER_WAY = ("pending", "running", "waiting")  # a job in any other state is over


def sync_probe(tenant: str) -> Probe:
    """The probe of a DiscordTenantSync of ``tenant`` (a guild id)."""

    async def probe(watch: Watch) -> Snapshot:
        async with watch.connect() as conn:
            if conn is None:
                return await details_probe(watch)
            run = await db.latest_run(conn, int(tenant))
            if run is None or run["workflow_id"] != f"{watch.workflow_id}#{watch.run_id}":
                return Snapshot("listing channels", unit="channels")
            jobs = await db.run_jobs(conn, int(run["sync_run_id"]))
        messages = sum(int(j["messages_processed"]) for j in jobs)
        return Snapshot(
            "channels" if run["run_status"] == "running" else str(run["run_status"]),
            done=sum(1 for j in jobs if j["status"] not in UNDER_WAY),
            total=len(jobs),
            unit="channels",
            note=f"{messages} messages",
            rate_limited=sum(int(j["rate_limited"]) for j in jobs),
        )

    return probe
