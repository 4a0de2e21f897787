"""Issue 12 item 8: `python worker.py --processes N` runs N real worker processes as one command.

Each child is a full `python worker.py` that polls the task queue itself (seen from Temporal's
side: one poller per child pid); the first SIGINT / SIGTERM reaches every child once and the
command exits as worker.py does (130 / 0); a child that dies on its own is named in one line and
the others keep polling; a bad --processes value is one line and exit 2.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import yaml
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

import runtime
import worker
from tests.integration.embedded_support import embedded_env
from tests.integration.worker_process import ROOT

pytestmark = [pytest.mark.integration]


def start_pool(env: dict[str, str], log: Path, processes: int) -> subprocess.Popen[bytes]:
    out = open(log, "ab")
    return subprocess.Popen(
        [sys.executable, "worker.py", "--processes", str(processes)],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a process group of its own, as a shell gives a command
    )


def children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def poller_identities(client: Client, task_queue: str) -> set[str]:
    """Who polled ``task_queue``'s workflow tasks in the last 10 s (the SDK's identity:
    ``pid@host``)."""
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    now = time.time()
    return {p.identity for p in response.pollers if now - p.last_access_time.seconds <= 10}


def text(log: Path) -> str:
    return log.read_text(errors="replace")


async def wait_for(
    check: Callable[[], Awaitable[bool]], timeout: float, what: str, log: Path
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"{what} not within {timeout}s:\n{text(log)}"
        await asyncio.sleep(0.1)


def pool_env(
    temporal_env: WorkflowEnvironment, database_url: str, task_queue: str
) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
        "TEMPORAL_TASK_QUEUE": task_queue,
        "PVP_SYNC_TASK_QUEUE": f"{task_queue}.pvp-sync",
        "PVP_PROCESSING_TASK_QUEUE": f"{task_queue}.pvp-processing",
        "LOG_LEVEL": "WARNING",
        "RATE_LIMIT_BACKEND": "local",
    }


async def test_two_processes_both_poll_and_one_ctrl_c_stops_both(
    temporal_env, database_url, task_queue, tmp_path: Path
):
    log = tmp_path / "pool.log"
    pool = start_pool(pool_env(temporal_env, database_url, task_queue), log, 2)
    client = temporal_env.client
    try:

        async def both_announced() -> bool:
            assert pool.poll() is None, log.read_text()
            return "2 worker processes polling task queue" in log.read_text()

        await wait_for(both_announced, 60, "both children polling", log)
        kids = children(pool.pid)
        assert len(kids) == 2, kids
        wanted = {f"{pid}@{socket.gethostname()}" for pid in kids}

        async def each_child_polls() -> bool:
            return wanted <= await poller_identities(client, task_queue)

        # Temporal's own view: a poller from each child process, not one process twice
        await wait_for(each_child_polls, 20, f"pollers {wanted}", log)
        began = time.monotonic()
        os.killpg(pool.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
        returncode = await asyncio.to_thread(pool.wait, 30)
        took = time.monotonic() - began
    finally:
        if pool.poll() is None:
            pool.kill()
            pool.wait()
    output = log.read_text()
    assert returncode == 130, output[-4000:]
    assert not any(alive(pid) for pid in kids), output[-4000:]
    # each child got the signal exactly once (not once from the terminal and once from us)
    for number in (1, 2):
        assert output.count(f"[worker {number}] worker stopping (SIGINT)") == 1, output[-4000:]
    assert "Traceback" not in output, output[-4000:]
    assert took < 15, took
    # RATE_LIMIT_BACKEND=local (the test's): one line says the budgets are not shared
    assert output.count("RATE_LIMIT_BACKEND=local: each of the 2 worker processes") == 1


async def test_a_child_that_dies_is_named_and_the_other_keeps_polling(
    temporal_env, database_url, task_queue, tmp_path: Path
):
    log = tmp_path / "pool.log"
    pool = start_pool(pool_env(temporal_env, database_url, task_queue), log, 2)
    try:

        async def both_announced() -> bool:
            assert pool.poll() is None, log.read_text()
            return "2 worker processes polling task queue" in log.read_text()

        await wait_for(both_announced, 60, "both children polling", log)
        first, second = sorted(children(pool.pid))
        os.kill(second, signal.SIGKILL)

        async def named() -> bool:
            return "was killed by SIGKILL" in log.read_text()

        await wait_for(named, 10, "the line naming the dead child", log)
        await asyncio.sleep(0.5)  # no restart, no exit of the command or of the other child
        assert pool.poll() is None and alive(first), log.read_text()
        assert children(pool.pid) == {first}, log.read_text()
        pool.send_signal(signal.SIGTERM)
        returncode = await asyncio.to_thread(pool.wait, 30)
    finally:
        if pool.poll() is None:
            pool.kill()
            pool.wait()
    output = log.read_text()
    assert returncode == 0, output[-4000:]
    lines = [line for line in output.splitlines() if "SIGKILL" in line]
    assert len(lines) == 1 and f"(pid {second})" in lines[0], output[-4000:]
    assert "1 of 2 worker processes keep running" in lines[0], lines
    killed = int(lines[0].split("worker process ", 1)[1].split()[0])  # its number, 1 or 2
    assert f"[worker {3 - killed}] worker stopping (SIGTERM)" in output, output[-4000:]
    assert f"[worker {killed}] worker stopping" not in output, output[-4000:]
    assert not alive(first)


@pytest.mark.parametrize("value", ["0", "-1", "two", ""])
def test_a_bad_processes_value_is_one_line_and_exit_2(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert worker.main(["--processes", value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--processes 3" in err[0], err


def test_the_compose_worker_service_scales() -> None:
    """`docker compose up --scale worker=3` refuses a fixed container name and can publish a
    host port only once."""
    worker_service = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["worker"]
    assert "container_name" not in worker_service
    assert "ports" not in worker_service
    assert "hostname" not in worker_service  # Temporal's poller identity is pid@host


@pytest.mark.parametrize(
    ("setting", "code", "line"),
    [
        ({"TEMPORAL_ADDRESS": "127.0.0.1:1"}, 1, "[worker 1] error: cannot reach Temporal"),
        ({"BNET_RATE_PER_SECOND": "0"}, 2, "error: "),  # checked once, before any child
    ],
    ids=["failed-start", "bad-setting"],
)
def test_a_start_that_fails_exits_with_its_code_and_starts_no_other(
    setting: dict[str, str], code: int, line: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/nothing",
        "TEMPORAL_ADDRESS": "127.0.0.1:1",
        "DATA_DIR": str(tmp_path / "data"),
        **setting,
    }
    log = tmp_path / "pool.log"
    pool = start_pool(env, log, 3)
    try:
        returncode = pool.wait(30)
    finally:
        if pool.poll() is None:
            pool.kill()
            pool.wait()
    output = text(log)
    assert returncode == code, output
    errors = [x for x in output.splitlines() if "error: " in x]
    assert len(errors) == 1 and errors[0].startswith(line), output
    assert "[worker 2]" not in output and "Traceback" not in output, output


def test_a_ctrl_c_while_the_first_child_starts_stops_it_and_starts_no_other(
    tmp_path: Path,
) -> None:
    """The first child starts the embedded servers alone; a Ctrl-C then reaches it once."""
    data_dir = tmp_path / "data"
    log = tmp_path / "pool.log"
    pool = start_pool(embedded_env(data_dir), log, 2)
    try:
        deadline = time.monotonic() + 60
        while not (data_dir / "postgres.log").exists():  # the first child starts Postgres
            assert pool.poll() is None and time.monotonic() < deadline, text(log)
            time.sleep(0.02)
        os.killpg(pool.pid, signal.SIGINT)
        returncode = pool.wait(45)
    finally:
        if pool.poll() is None:
            pool.kill()
            pool.wait()
        runtime.stop_servers(data_dir)
    output = text(log)
    assert returncode == 130, output[-4000:]
    assert "[worker 2]" not in output and "polling task queue" not in output, output[-4000:]
    assert "Traceback" not in output, output[-4000:]


async def test_children_do_not_outlive_a_killed_pool(
    temporal_env: WorkflowEnvironment, database_url: str, task_queue: str, tmp_path: Path
) -> None:
    """A SIGKILLed (or OOM-killed) pool takes its children with it: no orphan goes on polling."""
    log = tmp_path / "pool.log"
    pool = start_pool(pool_env(temporal_env, database_url, task_queue), log, 2)
    kids: set[int] = set()
    try:

        async def both_announced() -> bool:
            assert pool.poll() is None, text(log)
            return "2 worker processes polling task queue" in text(log)

        await wait_for(both_announced, 60, "both children polling", log)
        kids = children(pool.pid)
        assert len(kids) == 2, kids
        pool.kill()
        pool.wait()

        async def orphans_gone() -> bool:
            return not any(alive(pid) for pid in kids)

        await wait_for(orphans_gone, 5, f"the end of the children {kids}", log)
    finally:
        for pid in kids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
