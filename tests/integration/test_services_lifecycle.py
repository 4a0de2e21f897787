"""Issue 11 item 5: the embedded servers are shared, with an explicit lifecycle.

Before: each command started embedded Postgres/Temporal and stopped them when it exited, so a
`status --watch` in another terminal died with ConnectionRefusedError when the command that had
started them ended. Now the first command starts them detached and leaves them running;
`services start|stop|status` start, stop and show them; a stop keeps Temporal's data file.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import runtime
from tests.cli_support import ROOT, run_cli
from tests.integration.embedded_support import embedded_env

pytestmark = [pytest.mark.integration]


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A user's environment with no DATABASE_URL / TEMPORAL_ADDRESS: the embedded servers of
    the test's own DATA_DIR on free ports; whatever runs there at the end is stopped."""
    data_dir = tmp_path / "data"
    try:
        yield embedded_env(data_dir)
    finally:
        runtime.stop_servers(data_dir)


def _watch(env: dict[str, str], out: Path) -> subprocess.Popen[bytes]:
    """`status --watch` as in a terminal of its own (its own process group)."""
    with open(out, "wb") as sink:
        return subprocess.Popen(
            [sys.executable, "starter.py", "status", "--watch", "0.2"],
            cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def _frames(out: Path) -> int:
    return out.read_text(errors="replace").count("guilds:")


def _wait_frames(out: Path, at_least: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while _frames(out) < at_least:
        assert time.monotonic() < deadline, out.read_text(errors="replace")[-2000:]
        time.sleep(0.1)


def _interrupt(proc: subprocess.Popen[bytes]) -> int:
    os.killpg(proc.pid, signal.SIGINT)
    return proc.wait(30)


def test_a_watch_outlives_the_command_that_started_the_servers(embedded, tmp_path):
    first, second = tmp_path / "first.out", tmp_path / "second.out"
    starter = _watch(embedded, first)  # starts the embedded Postgres (first use)
    try:
        _wait_frames(first, 1)
        watcher = _watch(embedded, second)
        try:
            _wait_frames(second, 1)
            assert _interrupt(starter) == 130, first.read_text()[-2000:]
            seen = _frames(second)
            _wait_frames(second, seen + 3, timeout=10)  # still refreshing after its end
            assert watcher.poll() is None, second.read_text()[-2000:]
        finally:
            code = _interrupt(watcher)
        text = second.read_text()
        assert code == 130 and "Traceback" not in text and "Refused" not in text, text[-2000:]
    finally:
        if starter.poll() is None:
            starter.kill()
    said = first.read_text()
    assert said.count("started the embedded Postgres") == 1, said[-2000:]
    assert "services stop" in said
    assert "started the embedded" not in second.read_text()  # it found them running


async def test_services_start_status_stop_keep_the_workflows(embedded):
    down = run_cli(embedded, "services", "status")
    assert down.returncode == 1 and "not running" in down.stdout, down.stdout + down.stderr
    started = run_cli(embedded, "services", "start")
    assert started.returncode == 0, started.stdout + started.stderr
    pg, tp, ui = (embedded[f"EMBEDDED_{n}_PORT"] for n in ("POSTGRES", "TEMPORAL", "TEMPORAL_UI"))
    for where in (f"postgresql://postgres@127.0.0.1:{pg}/ratesync", f"127.0.0.1:{tp}",
                  f"http://127.0.0.1:{ui}"):  # fmt: skip
        assert where in started.stdout, started.stdout
    password = (Path(embedded["DATA_DIR"]) / runtime.PG_PASSWORD_FILE).read_text().strip()
    assert password not in started.stdout + started.stderr
    again = run_cli(embedded, "services", "start")
    assert again.returncode == 0 and "already running" in again.stdout, again.stdout
    up = run_cli(embedded, "services", "status", "--json")
    assert up.returncode == 0 and '"running": true' in up.stdout, up.stdout + up.stderr
    for setting in ("EMBEDDED_POSTGRES_PORT", "EMBEDDED_TEMPORAL_PORT"):  # one DATA_DIR, 2 ports
        elsewhere = run_cli({**embedded, setting: str(runtime.free_port())}, "services", "start")
        lines = elsewhere.stderr.strip().splitlines()
        assert elsewhere.returncode == 1 and len(lines) == 1, elsewhere.stderr
        assert "already served" in lines[0] and f"{setting}={embedded[setting]}" in lines[0], lines

    client = await runtime.connect(f"127.0.0.1:{tp}", "default")
    workflow_id = f"kept-{uuid.uuid4().hex[:8]}"
    await client.start_workflow("NobodyRunsThis", id=workflow_id, task_queue="nobody-polls")
    pids = [s.pid for s in runtime.running_servers(Path(embedded["DATA_DIR"]))]
    stopped = run_cli(embedded, "services", "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped.stdout
    assert len(pids) == 2 and all(runtime._gone(pid) for pid in pids), pids
    down = run_cli(embedded, "services", "status")
    assert down.returncode == 1, down
    not_running = run_cli(embedded, "services", "stop")
    assert not_running.returncode == 0 and "not running" in not_running.stdout, not_running

    temporal_only = {**embedded, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/unused"}
    restarted = run_cli(temporal_only, "services", "start")
    assert restarted.returncode == 0 and "started Temporal" in restarted.stdout, restarted
    client = await runtime.connect(f"127.0.0.1:{tp}", "default")
    described = await asyncio.wait_for(client.get_workflow_handle(workflow_id).describe(), 30)
    assert described.status is not None and described.status.name == "RUNNING", described.status
