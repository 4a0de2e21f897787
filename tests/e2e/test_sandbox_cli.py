"""Issue 11 items 2 and 3: `starter.py sandbox` takes `python -m sandbox`'s options and, once
listening, prints the `export` lines that point a worker at it.

Before: `sandbox --help`, `--port N` and `--provider discord` failed with "unrecognized
arguments" (only a bare `sandbox` worked), and nothing said which settings to export.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _starter(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "starter.py", *args],
        cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "starter.py", *args],
        cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_help_lists_the_sandbox_options_and_providers() -> None:
    done = _run("sandbox", "--help")
    assert done.returncode == 0, done.stderr
    assert "--port" in done.stdout and "--provider" in done.stdout
    assert "battlenet" in done.stdout and "discord" in done.stdout
    assert "python starter.py sandbox" in done.stdout


def test_a_bogus_option_exits_2_with_one_line() -> None:
    done = _run("sandbox", "--bogus")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "--bogus" in lines[0] and "--help" in lines[0]


def _exports_of_running_sandbox(*args: str) -> dict[str, str]:
    """Start `starter.py sandbox --port 0 *args`, read its export lines, stop it cleanly."""
    proc = _starter("sandbox", "--port", "0", *args)
    exports: dict[str, str] = {}
    lines: list[str] = []
    watchdog = threading.Timer(60, proc.kill)  # a sandbox that never prints them: EOF, not a hang
    watchdog.start()
    try:
        assert proc.stdout is not None
        while True:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            if line.startswith("export "):
                key, _, value = line.removeprefix("export ").strip().partition("=")
                exports[key] = value
            # the last line: an entity that exists in it
            if line.startswith(("a character:", "tenant (guild) ids:")):
                break
        assert proc.poll() is None, (lines, proc.communicate())
        _check(exports, "\n".join(lines))
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    return exports


def _check(exports: dict[str, str], lines: str) -> None:
    """The printed URLs answer, with the printed credentials, for the printed entities."""
    if "DISCORD_API_BASE_URL" in exports:
        base, token = exports["DISCORD_API_BASE_URL"], exports["DISCORD_BOT_TOKEN"]
        guild_id = lines.rpartition("tenant (guild) ids: ")[2].split(",")[0].strip()
        response = httpx.get(
            f"{base}/guilds/{guild_id}",
            headers={"Authorization": f"Bot {token}", "User-Agent": "DiscordBot (test, 1)"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        assert response.json()["id"] == guild_id
        return
    basic = base64.b64encode(
        f"{exports['BNET_CLIENT_ID']}:{exports['BNET_CLIENT_SECRET']}".encode()
    ).decode()
    grant = httpx.post(
        exports["BNET_OAUTH_URL"],
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
        timeout=10,
    )
    assert grant.status_code == 200, grant.text
    bearer = grant.json()["access_token"]
    region, realm, name = lines.rpartition("a guild: ")[2].split()[:3]
    guild = httpx.get(
        f"{exports['BNET_API_BASE_URL']}/data/wow/guild/{realm}/{name}",
        params={"namespace": f"profile-{region}"},
        headers={"Authorization": f"Bearer {bearer}"},
        timeout=10,
    )
    assert guild.status_code == 200, guild.text
    region, realm, char = lines.rpartition("a character: ")[2].split()[:3]
    character = httpx.get(
        f"{exports['BNET_API_BASE_URL']}/profile/wow/character/{realm}/{char}",
        params={"namespace": f"profile-{region}"},
        headers={"Authorization": f"Bearer {bearer}"},
        timeout=10,
    )
    assert character.status_code == 200, character.text


def test_discord_sandbox_prints_working_exports() -> None:
    exports = _exports_of_running_sandbox("--provider", "discord")
    assert exports["DISCORD_API_BASE_URL"].endswith("/api/v10")
    assert exports["DISCORD_BOT_TOKEN"] == "sandbox-bot-token"


def test_battlenet_sandbox_prints_working_exports() -> None:
    exports = _exports_of_running_sandbox()
    assert set(exports) >= {
        "BNET_API_BASE_URL", "BNET_OAUTH_URL", "BNET_CLIENT_ID", "BNET_CLIENT_SECRET"
    }  # fmt: skip


@pytest.mark.parametrize("option", ["--seed", "--regions"])
def test_options_pass_through(option: str) -> None:
    value = "7" if option == "--seed" else "us"
    exports = _exports_of_running_sandbox(option, value)
    assert "BNET_API_BASE_URL" in exports


def test_ctrl_c_stops_the_sandbox_with_its_own_line_and_exit_130() -> None:
    """It was the CLI's KeyboardInterrupt answer, "a run already started goes on in a worker"
    (and exit 0 when started in the background, where SIGINT is ignored)."""
    proc = _starter("sandbox", "--port", "0")
    assert proc.stdout is not None
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    try:
        while "listening on" not in proc.stdout.readline():
            assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        watchdog.cancel()
    assert proc.returncode == 130, err
    assert err.strip() == "sandbox stopped (Ctrl-C)", err
