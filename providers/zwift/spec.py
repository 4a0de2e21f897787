"""ZwiftRacing (a club's riders, its tracked events, their signups and results): the declaration.

One scheduler per club (scope ``club``, ``--club``) orders every call of the club: kinds that
read the same endpoint families never run at once (``workflows.zwift.ZwiftPlan.resources``), so
they never compete for a window; which goes next is the scheduler's priority with ageing. The
windows themselves are the durable shared budgets of ``activities.zwift_build``, one per
endpoint family and API key, so a second club on the key, a one-off from the CLI or a
restarted worker never spends a place twice.
"""

from __future__ import annotations

from providers.ratelimit import Priority
from providers.spec import Bucket, ProviderSpec, SyncKind
from providers.zwift.client import FAMILIES

# manual rider add > urgent event > near event > rider sync > far event (results, which use an
# endpoint of their own, at the rider sync's level)
NEAR = (Priority.URGENT + Priority.INCREMENTAL) // 2

SPEC = ProviderSpec(
    name="zwift",
    title="ZwiftRacing",
    scope="club",
    scope_option="--club",
    kinds=(
        SyncKind("urgent", Priority.URGENT, cadence_setting="SCHEDULER_ZWIFT_URGENT_EVERY"),
        SyncKind("near", NEAR, cadence_setting="SCHEDULER_ZWIFT_NEAR_EVERY"),
        SyncKind("riders", Priority.INCREMENTAL, cadence_setting="SCHEDULER_ZWIFT_RIDERS_EVERY"),
        SyncKind("results", Priority.INCREMENTAL, cadence_setting="SCHEDULER_ZWIFT_RESULTS_EVERY"),
        SyncKind("far", Priority.BULK, cadence_setting="SCHEDULER_ZWIFT_FAR_EVERY"),
        SyncKind("rider", Priority.MANUAL, entity=True),
    ),
    buckets=tuple(
        Bucket(family, (window,), note=f"ZWIFT_RATE_{family.upper()}")
        for family, window in FAMILIES.items()
    ),
    workflows=("workflows.zwift:WORKFLOWS",),
    activities="activities.zwift_build:build",
    plan="workflows.zwift:ZwiftPlan",
    status="storage.zwift:status",
    db_connections=lambda settings: 4,
    cli="cli.zwift:COMMANDS",
    time_scale=lambda settings: settings.ZWIFT_TIME_SCALE,
)
