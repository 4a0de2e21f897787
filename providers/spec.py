"""What a provider declares (README, "Adding a provider"); the kernel and the CLI do the rest.

A spec is plain data plus the dotted paths of its Temporal-side parts, so ``providers/`` never
imports Temporal: the worker, the scheduler and the CLI resolve the paths (``load``).
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from providers.ratelimit import Priority, Window


@dataclass(frozen=True)
class SyncKind:
    """A kind of sync the provider's scheduler can run."""

    name: str
    priority: int  # a Priority, or a level between two (ZwiftRacing's near events)
    cadence_setting: str | None = None  # the Settings field with its default cadence ("off")
    entity: bool = False  # one entity (a manual add, keyed realm/name, id…), not a whole scope


@dataclass(frozen=True)
class Bucket:
    """A rate budget: fixed windows (all enforced at once), or learned from the answers."""

    name: str
    windows: tuple[Window, ...] = ()
    learned: bool = False  # limits come from response headers (Discord)
    note: str = ""


@dataclass(frozen=True)
class ProviderSpec:
    name: str  # as in workflow ids, search attributes, sync_runs.provider, the CLI
    title: str
    scope: str  # what one scheduler covers: "region", "tenant", "club"
    scope_option: str  # its CLI option, e.g. "--region"
    kinds: tuple[SyncKind, ...]
    buckets: tuple[Bucket, ...]
    workflows: tuple[str, ...]  # "module:NAME" of lists of workflow classes
    activities: str  # "module:NAME" of ``build(ctx: BuildContext) -> ActivitySet``
    plan: str  # "module:NAME" of its Scheduler plan class
    status: str  # "module:NAME" of ``async (conn) -> dict`` for `starter.py status`
    default_scope: str | None = None  # the Settings field holding the default scope, if any
    # database connections its activities may hold at once, from the settings (pool sizing)
    db_connections: Callable[[Any], int] = lambda settings: 5
    # "module:NAME" of its ``cli.commands.ProviderCommands``: the sub-commands and options only
    # this provider has (`track guild …`, `sync pvp …`), reached through the generic verbs
    cli: str | None = None
    # a sandbox's time scale (simulated seconds per real second): its scheduler's cadences and
    # ageing step are divided by it (1: real time)
    time_scale: Callable[[Any], float] = lambda settings: 1.0

    def kind(self, name: str) -> SyncKind | None:
        return next((k for k in self.kinds if k.name == name), None)

    def priority(self, kind: str) -> int:
        found = self.kind(kind)
        return found.priority if found is not None else Priority.INCREMENTAL


@dataclass
class BuildContext:
    """What a provider's activity factory gets from the worker."""

    settings: Any  # settings.Settings
    engine: Any  # sqlalchemy AsyncEngine, shared by every provider of the worker
    task_queue: str  # the worker's main task queue
    custom_queue: bool  # a test or the demo runs its own queue: derive side queues from it
    database_url: str = ""  # where a shared rate budget lives (RATE_LIMIT_BACKEND=postgres)


@dataclass
class ActivitySet:
    """What a provider contributes to a worker."""

    main: list[Callable[..., Any]]  # activities on the main task queue
    concurrency: int  # activity slots it needs there
    queues: dict[str, tuple[list[Callable[..., Any]], int]] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)  # clients, limiters (tests, tools)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


def load(path: str) -> Any:
    """Resolve ``"package.module:NAME"``."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


async def aclose_each(*resources: Any) -> None:
    """Await ``aclose()`` of each resource that has one, in order (None and the rest skipped):
    a provider's closer for its lazily built client and its budgets."""
    for resource in resources:
        closer = getattr(resource, "aclose", None)
        if closer is not None:
            await closer()
