"""A server that does not answer is one line naming the setting (issue 10): the CLI printed the
client libraries' own text, a Rust transport dump or an errno tuple."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again at once: nothing listens there


def _starter(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "starter.py", *args], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "server", "setting"),
    [
        (["sync", "battlenet"], "the Temporal server", "TEMPORAL_ADDRESS"),
        (["status"], "PostgreSQL", "DATABASE_URL"),
    ],
)
def test_an_unreachable_server_is_one_line_naming_the_setting(args, server, setting):
    port = _closed_port()
    env = {**os.environ, "TEMPORAL_ADDRESS": f"127.0.0.1:{port}",
           "DATABASE_URL": f"postgresql://u@127.0.0.1:{port}/db"}  # fmt: skip
    done = _starter(env, *args)
    assert done.returncode == 1, done
    assert done.stderr.strip() == (
        f"error: cannot reach {server} at 127.0.0.1:{port} (connection refused): "
        f"check {setting} (or unset it for the embedded server)"
    ), done.stderr
