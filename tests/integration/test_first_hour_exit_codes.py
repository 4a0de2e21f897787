"""A port setting another program holds is a bad setting (DESIGN §6): the CLI and the worker
exit 2 with one line naming the setting to change (they exited 1), nothing started."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        yield holder.getsockname()[1]


def _run(script: str, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, script, *args], cwd=ROOT, env={**os.environ, **env},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _assert_exit_2_naming(done: subprocess.CompletedProcess[str], setting: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "already in use" in lines[0] and setting in lines[0]


@pytest.mark.parametrize(
    ("script", "args"), [("starter.py", ["status"]), ("worker.py", [])], ids=["cli", "worker"]
)
def test_a_taken_postgres_port_is_exit_2_naming_the_setting(tmp_path, taken_port, script, args):
    env = {
        "DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": "",
        "TEMPORAL_ADDRESS": "",
        "EMBEDDED_POSTGRES_PORT": str(taken_port),
        "EMBEDDED_TEMPORAL_PORT": str(taken_port),  # nothing is started whichever comes first
    }
    _assert_exit_2_naming(_run(script, args, env), "EMBEDDED_POSTGRES_PORT")


def test_a_taken_temporal_port_is_exit_2_naming_the_setting(tmp_path, taken_port):
    env = {
        "DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": "postgresql://x@127.0.0.1:1/x",
        "TEMPORAL_ADDRESS": "",
        "EMBEDDED_TEMPORAL_PORT": str(taken_port),
    }
    done = _run("starter.py", ["scheduler", "status", "battlenet"], env)
    _assert_exit_2_naming(done, "EMBEDDED_TEMPORAL_PORT")
