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
    from activities.discord_types import TenantSyncInput
    from activities.types import BattleNetSyncInput, EntitySyncInput, PvpSyncInput
    from providers.battlenet.spec import SPEC as BATTLENET
    from providers.discord.spec import SPEC as DISCORD
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


class BattleNetPlan:
    """Scope = region. Kinds: `sync` (outdated, incremental), `full` (everything, bulk),
    `pvp` (leaderboards of the current season, bulk), `character` / `guild` (one entity,
    key `realm/name`: manual adds)."""

    def default_priority(self, kind: str) -> int:
        return BATTLENET.priority(kind)

    def child(
        self, provider: str, scope: str, request: SyncRequest, seq: int, now: datetime
    ) -> ChildPlan:
        if request.kind in ("sync", "full"):
            full = request.kind == "full"
            stamp = now.strftime("%Y%m%dT%H%M%SZ")
            return ChildPlan(
                workflow="BattleNetSync",
                id=f"battlenet-sync/{scope}/{stamp}-{request.request_id}",
                summary=f"Battle.net {'full' if full else 'outdated'} sync of {scope}",
                build_arg=lambda report_to: BattleNetSyncInput(
                    region=scope, full=full, priority=request.priority, report_to=report_to
                ),
            )
        if request.kind == "pvp":
            return ChildPlan(
                workflow="PvpSync",
                id=f"pvp-sync/{scope}/{now.strftime('%Y%m%dT%H%M%SZ')}-{request.request_id}",
                summary=f"PvP leaderboards of {scope}",
                build_arg=lambda report_to: PvpSyncInput(
                    region=scope, priority=request.priority, report_to=report_to
                ),
            )
        if request.kind in ("character", "guild"):
            realm, _, name = request.key.partition("/")
            return ChildPlan(
                workflow="BattleNetEntitySync",
                id=f"{request.kind}/{scope}/{realm}/{name.lower()}/{request.request_id}",
                summary=f"{request.kind} {scope}/{realm}/{name} ({request.reason or 'manual'})",
                build_arg=lambda report_to: EntitySyncInput(
                    region=scope,
                    kind=request.kind,
                    realm=realm,
                    name=name,
                    priority=request.priority,
                    report_to=report_to,
                ),
            )
        raise ValueError(f"battlenet has no sync kind {request.kind!r}")


class DiscordPlan:
    """Scope = tenant (Discord guild id). Kinds: `sync` (new messages of every channel,
    incremental) and `full` (every channel re-read from its start, bulk). One sync per tenant
    at a time: the child id is the tenant's, so an overlapping request is refused by Temporal
    rather than run twice over the same cursors."""

    def default_priority(self, kind: str) -> int:
        return DISCORD.priority(kind)

    def child(
        self, provider: str, scope: str, request: SyncRequest, seq: int, now: datetime
    ) -> ChildPlan:
        if DISCORD.kind(request.kind) is None:
            raise ValueError(f"discord has no sync kind {request.kind!r}")
        full = request.kind == "full"
        return ChildPlan(
            workflow="DiscordTenantSync",
            id=f"discord-sync/{scope}",
            summary=f"Discord {'full' if full else 'incremental'} sync of guild {scope}",
            build_arg=lambda report_to: TenantSyncInput(
                discord_guild_id=int(scope),
                full=full,
                priority=request.priority,
                report_to=report_to,
            ),
        )


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
