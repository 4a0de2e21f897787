"""What a scheduler request starts, per provider: the only provider-specific part of scheduling.

A plan maps a request kind to a child workflow (by type name, so the scheduler stays generic),
its id, summary and input; priorities come from the provider's spec. A provider names its plan
in its spec (``plan="module:Class"``); the Scheduler finds it through the registry.

A plan may also have ``check(scope, request)``, raising ValueError (one line) for a kind, key or
scope it cannot plan. :func:`plan_problem` is what the Scheduler's handlers, its update
validator and the CLI ask before a request is queued: the generic checks, the plan's own, a dry
run of ``child`` and ``build_arg`` (pure functions), and the child id's length.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows.scheduler_types import MAX_ID_BYTES, SyncRequest, check_request, one_line


@dataclass
class ChildPlan:
    workflow: str
    id: str
    summary: str
    build_arg: Callable[[str], Any]  # report_to (the scheduler's workflow id) → child input


class ProviderPlan(Protocol):
    """(Optionally also ``check(scope, request) -> None``, raising ValueError.)"""

    def default_priority(self, kind: str) -> int: ...

    def child(
        self, provider: str, scope: str, request: SyncRequest, seq: int, now: datetime
    ) -> ChildPlan: ...


# Filled from the registry on first use (this module is passed through the workflow sandbox,
# so every workflow run shares it); tests add stand-in providers with `register_plan`.
_PLANS: dict[str, ProviderPlan] = {}


def plan_for(provider: str) -> ProviderPlan:
    if provider not in _PLANS:
        with workflow.unsafe.imports_passed_through():
            from providers.registry import SPECS
            from providers.spec import load

            for spec in SPECS:
                _PLANS.setdefault(spec.name, load(spec.plan)())
    try:
        return _PLANS[provider]
    except KeyError:
        raise ValueError(f"no scheduler plan for provider {provider!r}") from None


def register_plan(provider: str, plan: ProviderPlan) -> None:
    """A stand-in provider for tests."""
    _PLANS[provider] = plan


def plan_problem(
    plan: ProviderPlan,
    provider: str,
    scope: str,
    request: SyncRequest,
    now: datetime,
    seq: int = 0,
    report_to: str = "scheduler/-",
) -> str | None:
    """Why ``request`` cannot be planned (one line), or None. Any exception of a plan counts:
    a request that fails here is rejected, never left to fail a workflow task. Its request id
    is the one it will have (the sender's, or the scheduler's own r<seq>)."""
    try:
        check_request(request, own_ids=True)
        check = getattr(plan, "check", None)
        if check is not None:
            check(scope, request)
        child = plan.child(provider, scope, request, seq, now)
        size = len(child.id.encode())
        if size > MAX_ID_BYTES:
            return f"its workflow id would be {size} bytes long (at most {MAX_ID_BYTES})"
        child.build_arg(report_to)
    except Exception as exc:  # a plan's bug or a bad key: refused, with its reason
        return one_line(exc)
    return None
