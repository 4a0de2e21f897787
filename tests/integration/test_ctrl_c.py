"""Issue 11 item 6: one Ctrl-C ends `sync battlenet --wait` (in-process worker) cleanly.

Before: ~565 lines of tracebacks in 14 s (the embedded servers died before the worker) and
exit 1. Now: exit 130, no traceback, and one line saying how to follow the run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import runtime
from tests.sandbox_helpers import admin, battlenet_sandbox

pytestmark = [pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]


def _interrupt_sync(env: dict[str, str], sandbox_url: str) -> tuple[int, str, float]:
    proc = subprocess.Popen(
        [sys.executable, "starter.py", "sync", "battlenet", "--region", "eu", "--wait"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )  # fmt: skip
    deadline = time.monotonic() + 60  # servers up, the in-process worker syncing characters
    while int(admin(sandbox_url, "stats")["requests"]) < 40:  # 3 guilds, 3 rosters, characters
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    began = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err, time.monotonic() - began


def test_one_ctrl_c_exits_130_without_a_traceback(tmp_path):
    world = {"guilds_per_region": 3, "roster_min": 200, "roster_max": 200}
    with battlenet_sandbox(per_second=20, **world) as sb:
        env = {  # embedded servers (their Ctrl-C death was the traceback storm), own DATA_DIR
            **{
                k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "TEMPORAL_ADDRESS"}
            },
            "DATA_DIR": str(tmp_path / "data"),
            "EMBEDDED_POSTGRES_PORT": str(runtime.free_port()),
            "EMBEDDED_TEMPORAL_PORT": str(runtime.free_port()),
            "EMBEDDED_TEMPORAL_UI_PORT": str(runtime.free_port()),
            "BNET_CLIENT_ID": "sandbox-client",
            "BNET_CLIENT_SECRET": "sandbox-secret",
            "BNET_API_BASE_URL": sb.url,
            "BNET_OAUTH_URL": f"{sb.url}/token",
            "BNET_RATE_PER_SECOND": "20",
        }
        try:
            for guild in admin(sb.url, "truth/guilds?region=eu"):
                tracked = subprocess.run(
                    [sys.executable, "starter.py", "track", "guild", "eu", guild["realm_slug"],
                     guild["name"]],
                    cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
                )  # fmt: skip
                assert tracked.returncode == 0, tracked.stderr
            code, err, took = _interrupt_sync(env, sb.url)
        finally:
            runtime.stop_servers(tmp_path / "data")  # shared servers outlive the commands
    assert code == 130, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert took < 20, took
    last = err.strip().splitlines()[-1]
    assert "interrupted" in last and "status" in last, last
