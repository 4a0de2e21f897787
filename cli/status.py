"""`status [--watch [SECONDS]]`: what is stored (each provider's counts), the failures, the
latest runs and the running schedulers; with a provider's scope option (its
``ProviderCommands.view``), that scope's latest sync as a table instead."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from cli.commands import ScopeView, add_scope_option, each, scope_dest
from cli.common import (
    EXIT_OK,
    Verbs,
    add_verb,
    connect_quickly,
    database,
    running_temporal,
    services,
)
from cli.scheduler import running_schedulers
from settings import Settings
from storage.status import database_status


def register(verbs: Verbs) -> None:
    parser = add_verb(
        verbs, "status", "what is stored, what failed, the last sync runs, running schedulers", run
    )
    parser.add_argument(
        "--watch", type=float, nargs="?", const=2.0, default=None, metavar="SECONDS",
        help="refresh every SECONDS (default 2) until Ctrl-C",
    )  # fmt: skip
    options: set[str] = set()
    for spec, commands in each():
        if commands.view is not None and spec.scope_option not in options:
            options.add(spec.scope_option)
            add_scope_option(parser, spec, commands.view.help, required=False)


def _chosen_view(args: argparse.Namespace) -> tuple[ScopeView, str] | None:
    for spec, commands in each():
        value = getattr(args, scope_dest(spec), None)
        if commands.view is not None and value is not None:
            return commands.view, str(value)
    return None


async def run(args: argparse.Namespace, settings: Settings) -> int:
    view = _chosen_view(args)
    async with services(settings, temporal=False) as svc, database(svc) as engine:
        while True:
            if view is None:
                data = await _overall(engine, settings)
                human = _render(data)
            else:
                async with engine.connect() as conn:
                    data = await view[0].fetch(conn, view[1])
                human = view[0].render(data)
            if args.watch and not args.json:
                print(f"\x1b[2J\x1b[H{datetime.now(UTC):%H:%M:%S} (Ctrl-C to stop)")
            print(json.dumps(data, default=str) if args.json else human, flush=True)
            if not args.watch:
                return EXIT_OK
            await asyncio.sleep(args.watch)


async def _overall(engine: AsyncEngine, settings: Settings) -> dict[str, Any]:
    data = await database_status(engine)
    data["schedulers"] = await _schedulers_if_reachable(settings)
    return data


def _render(data: dict[str, Any]) -> str:
    lines = []
    for section, values in data.items():
        if isinstance(values, dict):
            lines.append(f"{section}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
        else:
            lines.append(f"{section}:")
            lines += ["  " + "  ".join(f"{k}={v}" for k, v in row.items()) for row in values]
    return "\n".join(lines)


async def _schedulers_if_reachable(settings: Settings) -> list[dict[str, Any]]:
    """Running schedulers, when a Temporal server is already up (status never starts one)."""
    address = running_temporal(settings)
    if address is None:
        return []
    try:
        return await running_schedulers(await connect_quickly(address, settings))
    except Exception as exc:  # status must work without Temporal
        return [{"error": f"Temporal at {address} not reachable: {exc}"}]
