"""The ZwiftRacing club plan: what a club scheduler accepts, what each kind holds, how far waiting
lifts it, and the workflow each request starts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from activities.zwift_types import ZwiftSyncInput
from providers.ratelimit import Priority
from providers.zwift.spec import NEAR, SPEC
from workflows.plans import plan_problem
from workflows.scheduler_types import SyncRequest
from workflows.zwift import RESOURCES, ZwiftPlan

NOW = datetime(2026, 12, 3, tzinfo=UTC)


def problem(scope: str, request: SyncRequest) -> str | None:
    return plan_problem(ZwiftPlan(), "zwift", scope, request, NOW)


def test_the_brief_s_priority_order():
    order = [SPEC.priority(k) for k in ("rider", "urgent", "near", "riders", "far")]
    assert order == sorted(order, reverse=True) and len(set(order)) == 5
    assert SPEC.priority("near") == NEAR and Priority.INCREMENTAL < NEAR < Priority.URGENT
    rider = SPEC.kind("rider")
    assert rider is not None and rider.entity


@pytest.mark.parametrize(
    ("scope", "request_", "words"),
    [
        ("abc", SyncRequest(kind="near"), "no club id"),
        ("0", SyncRequest(kind="near"), "no club id"),
        ("20650", SyncRequest(kind="bogus"), "no sync kind"),
        ("20650", SyncRequest(kind="near", key="5"), "has no key"),
        ("20650", SyncRequest(kind="rider", key="x1"), "no rider id"),
        ("20650", SyncRequest(kind="rider", key=""), "no rider id"),
        ("20650", SyncRequest(kind="rider", key="9" * 25), "no rider id"),
    ],
)
def test_a_request_it_cannot_plan_is_refused_with_one_line(scope, request_, words):
    found = problem(scope, request_)
    assert found is not None and words in found and "\n" not in found


def test_kinds_of_the_same_endpoints_hold_the_same_resources_and_adds_hold_none():
    plan = ZwiftPlan()
    assert plan.resources("urgent") == plan.resources("near") == plan.resources("far")
    assert not plan.resources("urgent") & plan.resources("riders")
    assert not plan.resources("results") & (plan.resources("riders") | plan.resources("far"))
    assert plan.resources("rider") == frozenset()
    assert set(RESOURCES) == {k.name for k in SPEC.kinds}


def test_waiting_lifts_near_and_far_past_each_other_never_past_urgent():
    plan = ZwiftPlan()
    assert plan.ageing_cap("far") < Priority.URGENT and plan.ageing_cap("far") > NEAR
    assert plan.ageing_cap("near") == plan.ageing_cap("far")
    assert plan.ageing_cap("riders") == Priority.MANUAL


def test_each_request_starts_one_zwift_sync_of_its_kind_with_one_id_per_kind():
    plan = ZwiftPlan()
    near = plan.child("zwift", "20650", SyncRequest(kind="near", priority=NEAR), 1, NOW)
    rider = plan.child("zwift", "20650", SyncRequest(kind="rider", key="5574"), 2, NOW)
    assert (near.workflow, near.id) == ("ZwiftSync", "zwift-sync/20650/near")
    assert rider.id == "zwift-sync/20650/rider/5574"
    arg = rider.build_arg("scheduler/zwift/20650")
    assert isinstance(arg, ZwiftSyncInput)
    assert (arg.club_id, arg.kind, arg.key, arg.priority) == (20650, "rider", "5574", 40)
    assert arg.report_to == "scheduler/zwift/20650"
