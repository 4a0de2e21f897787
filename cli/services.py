"""`services start|stop|status`: the shared embedded Postgres and Temporal of DATA_DIR.

Every command that needs a server whose setting (DATABASE_URL, TEMPORAL_ADDRESS) is unset uses
the embedded one, and starts it on first use if it is not running; it is left running for the
other commands (a `status --watch` in another terminal must not lose it when a `sync` ends).
These verbs give that an explicit lifecycle: `start` ahead of time (and migrate the database),
`status` to see them, `stop` when done (Temporal's data file is kept: a restart keeps the
workflows).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from cli.common import EXIT_FAILED, EXIT_OK, Verbs, add_verb, emit
from runtime import SERVICES_STOP, RunningServer, running_servers, start_shared, stop_servers
from settings import Settings
from storage.migrate import upgrade

TITLES = {"postgres": "Postgres", "temporal": "Temporal"}
SETTING = {"postgres": "DATABASE_URL", "temporal": "TEMPORAL_ADDRESS"}
SERVICES_START = "python starter.py services start"


def register(verbs: Verbs) -> None:
    parser = add_verb(
        verbs,
        "services",
        "start, stop or show the shared embedded Postgres and Temporal",
        description="The embedded Postgres and Temporal of DATA_DIR (used where DATABASE_URL / "
        "TEMPORAL_ADDRESS are unset), shared by every command: started on first use or by "
        "`services start`, left running until `services stop`. "
        "Example: python starter.py services start",
    )
    actions = parser.add_subparsers(dest="services_verb", required=True, metavar="ACTION")
    add_verb(actions, "start", "start them detached (if not running) and say where they are",
             start)  # fmt: skip
    add_verb(actions, "stop", "stop them cleanly (Temporal keeps its workflows)", stop)
    add_verb(actions, "status", "running or not, pids and ports (exit 1 when not running)",
             status)  # fmt: skip


def _wanted(settings: Settings) -> list[str]:
    """The embedded servers the settings call for (those whose setting is unset)."""
    return [name for name in ("postgres", "temporal") if not getattr(settings, SETTING[name])]


def _describe(server: RunningServer, settings: Settings) -> dict[str, Any]:
    where: dict[str, Any] = {"running": True, "pid": server.pid, "port": server.port}
    if server.name == "postgres":
        where["url"] = f"postgresql://postgres@127.0.0.1:{server.port}/ratesync"
        where["password_file"] = str(settings.DATA_DIR / "postgres-password")
    else:
        where["address"] = f"127.0.0.1:{server.port}"
        where["ui"] = f"http://127.0.0.1:{settings.EMBEDDED_TEMPORAL_UI_PORT}"
    return where


def _lines(servers: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for name, info in servers.items():
        title = TITLES[name]
        if not info.get("running"):
            lines.append(f"{title}: {info.get('note', 'not running')}")
        elif name == "postgres":
            lines.append(f"Postgres: {info['url']}  (pid {info['pid']}; password in "
                         f"{info['password_file']})")  # fmt: skip
        else:
            lines.append(f"Temporal: {info['address']}  (pid {info['pid']})")
            lines.append(f"Temporal Web UI: {info['ui']}")
    return lines


def _state(settings: Settings) -> dict[str, dict[str, Any]]:
    """Each of the two servers: where it runs, or why not."""
    running = {s.name: s for s in running_servers(settings.DATA_DIR)}
    wanted = _wanted(settings)
    state: dict[str, dict[str, Any]] = {}
    for name in ("postgres", "temporal"):
        if name in running:
            state[name] = _describe(running[name], settings)
        elif name in wanted:
            state[name] = {"running": False, "note": "not running"}
        else:
            note = f"not used ({SETTING[name]} is set)"
            state[name] = {"running": False, "used": False, "note": note}
    return state


async def start(args: argparse.Namespace, settings: Settings) -> int:
    wanted = _wanted(settings)
    if not wanted:
        emit(args, "DATABASE_URL and TEMPORAL_ADDRESS are set: the commands use those servers; "
             "no embedded server to start", {"started": [], "already_running": []})  # fmt: skip
        return EXIT_OK
    shared = await asyncio.to_thread(start_shared, settings)
    if shared.postgres is not None:
        await asyncio.to_thread(upgrade, shared.postgres.url())
    servers = {"postgres": shared.postgres, "temporal": shared.temporal}
    started = [name for name, server in servers.items() if server and server.proc is not None]
    already = [name for name in wanted if name not in started]
    head = []
    if started:
        head.append(f"started {' and '.join(TITLES[n] for n in started)} (detached; "
                    f"`{SERVICES_STOP}` stops them)")  # fmt: skip
    if already:
        head.append(f"already running: {' and '.join(TITLES[n] for n in already)}")
    state = {name: info for name, info in _state(settings).items() if name in wanted}
    emit(args, "\n".join(head + _lines(state)),
         {"started": started, "already_running": already, **state})  # fmt: skip
    return EXIT_OK


async def status(args: argparse.Namespace, settings: Settings) -> int:
    state = _state(settings)
    wanted = _wanted(settings)
    up = bool(wanted) and all(state[name]["running"] for name in wanted)
    emit(args, "\n".join(_lines(state)), {"running": up, **state})
    if up:
        return EXIT_OK
    if wanted:
        print(f"error: not running; `{SERVICES_START}` starts them", file=sys.stderr)
    else:
        print("error: no embedded server is used: DATABASE_URL and TEMPORAL_ADDRESS are set",
              file=sys.stderr)  # fmt: skip
    return EXIT_FAILED


async def stop(args: argparse.Namespace, settings: Settings) -> int:
    stopped = await asyncio.to_thread(stop_servers, settings.DATA_DIR)
    if stopped:
        human = "stopped " + " and ".join(
            f"{TITLES[s.name]} (pid {s.pid}, port {s.port})" for s in stopped
        )
    else:
        human = f"the embedded servers of DATA_DIR {settings.DATA_DIR} are not running"
    emit(args, human, {"stopped": [vars(s) for s in stopped]})
    return EXIT_OK
