"""Run `starter.py` as a user does: a subprocess in the repository, with the given environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run_cli(
    env: dict[str, str], *args: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "starter.py", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def cli_env(
    temporal_env: Any, database_url: str, task_queue: str, drop: str = "", **settings: str
) -> dict[str, str]:
    """This process's environment (less names starting with ``drop``) pointed at the test's
    database and Temporal, on a task queue nobody polls (so --wait runs a worker in-process)."""
    return {
        **{k: v for k, v in os.environ.items() if not (drop and k.startswith(drop))},
        "DATABASE_URL": database_url,
        "TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
        "TEMPORAL_TASK_QUEUE": task_queue,
        **settings,
    }


def terminate(address: str, workflow_id: str, reason: str = "test over") -> None:
    """End ``workflow_id`` with the `temporal` CLI (a no-op when it has ended already)."""
    import runtime

    subprocess.run(
        [runtime.temporal_binary(), "workflow", "terminate", "--address", address,
         "--workflow-id", workflow_id, "--reason", reason],
        capture_output=True, timeout=60,
    )  # fmt: skip
