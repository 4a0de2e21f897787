"""Shared test environment: one embedded Postgres and one Temporal dev server per session.

Each test gets a fresh database (a copy of a migrated template) and its own task queue, so tests
are independent. Nothing is downloaded: both servers come from the installed wheels.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

import runtime
from storage.migrate import upgrade

TEMPLATE_DB = "ratesync_template"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[runtime.EmbeddedPostgres]:
    data_dir = Path(tempfile.mkdtemp(prefix="ratesync-test-pg-"))
    # fsync off etc.: a test database is thrown away, and it saves CI time (tests only).
    server = runtime.start_postgres(
        data_dir, runtime.free_port(), database=TEMPLATE_DB, fast_unsafe=True
    )
    try:
        upgrade(server.url(TEMPLATE_DB))
        yield server
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def _psql(server: runtime.EmbeddedPostgres, sql: str) -> None:
    subprocess.run(
        [runtime._pg_bin("psql"), server.url("postgres"), "-v", "ON_ERROR_STOP=1", "-c", sql],
        check=True,
        capture_output=True,
    )


@contextmanager
def fresh_database(pg_server: runtime.EmbeddedPostgres) -> Iterator[str]:
    """A fresh, migrated database (its URL), dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    _psql(pg_server, f'CREATE DATABASE "{name}" TEMPLATE {TEMPLATE_DB}')
    yield pg_server.url(name)
    _psql(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(pg_server: runtime.EmbeddedPostgres) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    with fresh_database(pg_server) as url:
        yield url


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=runtime.temporal_binary(),
        data_converter=pydantic_data_converter,
        search_attributes=[SearchAttributeKey.for_keyword(n) for n in runtime.SEARCH_ATTRIBUTES],
        dev_server_log_level="error",
        dev_server_extra_args=runtime.dev_server_args(),
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest_asyncio.fixture(loop_scope="session")
async def client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture
def task_queue() -> str:
    return f"tq-{uuid.uuid4().hex[:10]}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The order ``ServersInOrder`` hands the tests out in: unit tests, then the replays and
    the time-skipping tests, then a few integration tests that time nothing (one worker); the
    sturdy integration and end-to-end tests, then the others, then the chaos ones (the other
    worker); each in collection order."""
    items.sort(key=_rank)  # stable


_CALM = ("tests/unit/", "tests/replay/", "tests/timeskip/")  # no servers shared; no time measured
_LAST = ("tests/e2e/", "tests/chaos/")


def _integration(*names: str) -> tuple[str, ...]:
    return tuple(f"tests/integration/test_{name}.py" for name in names)


# Integration tests that assert no rate, latency or duration (data, exit codes, messages, counts;
# their waits are generous timeouts): they run first, while the other worker still runs the
# calm tests, so the tests that do measure time run with the machine to themselves.
_STURDY = (
    *_integration(
        "discord_storage", "zwift_storage", "hostile_input", "embedded_security", "logs",
        "metrics", "temporal_config", "pvp_faults", "battlenet_transient", "discord_faults",
        "bounded_histories", "cli_root_cause", "status_counts", "demo_own_database",
        "services_lifecycle", "first_hour_exit_codes", "pvp_import", "pvp_sync",
        "battlenet_sync", "status_truth", "status_budgets",
    ),
    "tests/e2e/", "tests/chaos/test_secret_scan.py",
)  # fmt: skip
# More of those, run by the calm worker after its own tests (with servers of its own), so the
# two lanes' first parts end together and the servers' lane is shorter by them.
_CALM_SERVERS = _integration(
    "cli_battlenet", "discord_cli", "discord_sync", "battlenet_crash", "discord_crash",
)  # fmt: skip


def _calm_lane(nodeid: str) -> bool:
    return nodeid.startswith(_CALM + _CALM_SERVERS)


def _rank(item: pytest.Item) -> int:
    """0-2 the calm worker's tests, 3-5 the servers worker's; from 4 on they are timed (or come
    after timed ones) and wait for the calm lane's end."""
    nodeid = item.nodeid
    if nodeid.startswith("tests/unit/"):
        return 0
    if nodeid.startswith(_CALM):
        return 1
    if nodeid.startswith(_CALM_SERVERS):
        return 2
    if nodeid.startswith(_STURDY):
        return 3
    return 5 if nodeid.startswith(_LAST) else 4


# The calm lane's end, told to the servers' worker: the calm worker leaves a file after its
# last test, and a test that measures time (any servers test after the sturdy ones) waits for
# it, so the machine is its own whatever the two lanes' lengths (a CPU-bound neighbour made the
# Discord fairness test take 2.25x its time alone instead of 1.2x). Only where both lanes run.
_calm_done = False


_markers: dict[int, Path | None] = {}  # per session (its id): asked before every test


def _calm_done_marker(session: pytest.Session) -> Path | None:
    if id(session) not in _markers:
        uid = os.environ.get("PYTEST_XDIST_TESTRUNUID")
        ranks = {_rank(item) for item in session.items}
        both = bool(ranks & {0, 1, 2}) and bool(ranks & {4, 5})
        path = Path(tempfile.gettempdir()) / f"ratesync-calm-done-{uid}"
        _markers[id(session)] = path if uid and both else None
    return _markers[id(session)]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    try:
        return (yield)
    finally:
        last_calm = _rank(item) < 3 and (nextitem is None or _rank(nextitem) >= 3)
        if last_calm and (marker := _calm_done_marker(item.session)):
            marker.touch()


@pytest.fixture(autouse=True)
def _machine_to_itself(request: pytest.FixtureRequest) -> None:
    global _calm_done
    marker = _calm_done_marker(request.session)
    if _calm_done or marker is None or _rank(request.node) < 4:
        return
    deadline = time.monotonic() + 900  # a calm lane that never ends fails on its own
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    marker.unlink(missing_ok=True)
    _calm_done = True


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """README's test command runs two xdist workers (`-n 2` in pyproject.toml), each given one
    work unit of tests run in order. The *calm* worker runs the unit tests, then the replays and
    the time-skipping tests (no shared servers, nothing timed), then a few integration tests
    that time nothing (``_CALM_SERVERS``, on servers of its own); the servers' worker starts
    with the sturdy integration tests (``_STURDY``: they time nothing either), so the two lanes'
    first parts run side by side. The tests that measure rates and latencies, and after them the
    chaos tests, wait for the calm lane's end (``_machine_to_itself``), so they run with the
    machine to themselves. (xdist's own ``--dist loadgroup`` cannot do this under pytest 9: it
    renames ``item._nodeid``, which pytest 9 no longer reads.)"""
    from xdist.scheduler import LoadScopeScheduling

    class ServersInOrder(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "calm" if _calm_lane(nodeid) else "servers"

    config.option.loadscopereorder = False  # in collection order: the unit tests first
    return ServersInOrder(config, log)
