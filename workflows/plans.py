"""What a scheduler request starts, per provider: the only provider-specific part of scheduling.

A plan maps a request kind to a child workflow (by type name, so the scheduler stays generic),
its id, summary and input; priorities come from the provider's spec. A provider names its plan
in its spec (``plan="module:Class"``); the Scheduler finds it through the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows.scheduler_types import SyncRequest


@dataclass
class ChildPlan:
    workflow: str
    id: str
    summary: str
    build_arg: Callable[[str], Any]  # report_to (the scheduler's workflow id) → child input


class ProviderPlan(Protocol):
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
