"""Embedded servers, locked down (issue 10), the parts checked without starting a server.

The children get a minimal environment, Postgres is durable unless a test asks otherwise,
`DATA_DIR` and its files are private, and the service user that runs Postgres under root gets
access through an ACL for that one user — never by loosening a directory for everyone.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import runtime

SECRETS = {
    "BNET_CLIENT_SECRET": "bnet-secret-value",
    "DISCORD_BOT_TOKEN": "discord-token-value",
    "ZWIFT_API_KEY": "zwift-key-value",
    "PGPASSWORD": "pg-password-value",
    "AWS_SECRET_ACCESS_KEY": "aws-value",
    "LC_TOKEN": "looks-like-a-locale-but-is-a-token",
}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_child_environment_keeps_only_path_home_locale_and_timezone(monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:pw@h/db")
    monkeypatch.setenv("RATESYNC_SOMETHING", "x")

    env = runtime.child_env(home="/nonexistent")

    assert env["HOME"] == "/nonexistent"
    assert env["PATH"] == os.environ["PATH"]
    assert (env["LANG"], env["LC_ALL"], env["TZ"]) == ("C.UTF-8", "C.UTF-8", "UTC")
    assert set(env) <= {"PATH", "HOME", "LANG", "TZ"} | {n for n in env if n.startswith("LC_")}
    assert "LC_TOKEN" not in env
    for value in [*SECRETS.values(), "postgresql://u:pw@h/db"]:
        assert value not in env.values()


def test_child_environment_has_a_path_even_when_the_parent_has_none(monkeypatch):
    monkeypatch.delenv("PATH", raising=False)
    assert runtime.child_env()["PATH"] == os.defpath


def test_postgres_is_durable_by_default_and_fast_only_when_asked(tmp_path):
    durable = " ".join(runtime.postgres_args(tmp_path, 5432))
    for unsafe in ("fsync=off", "synchronous_commit=off", "full_page_writes=off"):
        assert unsafe not in durable
    fast = " ".join(runtime.postgres_args(tmp_path, 5432, fast_unsafe=True))
    for unsafe in ("fsync=off", "synchronous_commit=off", "full_page_writes=off"):
        assert unsafe in fast
    assert "-h 127.0.0.1" in durable  # loopback only


def test_pid_files_are_private(tmp_path):
    old = os.umask(0o022)
    try:
        runtime._PidFile(tmp_path / "x.pid").write(os.getpid(), 1)
    finally:
        os.umask(old)
    assert mode(tmp_path / "x.pid") == 0o600


def test_data_dir_is_created_private(tmp_path):
    old = os.umask(0o022)
    try:
        runtime.prepare_data_dir(tmp_path / "new" / "data")
    finally:
        os.umask(old)
    assert mode(tmp_path / "new" / "data") == 0o700


def test_an_existing_world_readable_data_dir_is_tightened_with_its_files(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    for name in ("temporal.db", "temporal.log", "postgres.log", "temporal-7233.pid"):
        (data / name).write_text("x")
        (data / name).chmod(0o644)
    runtime.prepare_data_dir(data)
    assert mode(data) == 0o700
    for name in ("temporal.db", "temporal.log", "postgres.log", "temporal-7233.pid"):
        assert mode(data / name) == 0o600, name


class _FakeSetfacl:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, args: list[str]) -> None:
        self.calls.append(args)


def test_service_user_gets_an_acl_entry_and_no_directory_is_loosened(tmp_path, monkeypatch):
    private = tmp_path / "private"
    data = private / "data"
    data.mkdir(parents=True)
    private.chmod(0o700)
    data.chmod(0o700)
    before = {p: mode(p) for p in [data, *data.parents]}
    fake = _FakeSetfacl()
    monkeypatch.setattr(runtime, "_setfacl", fake)
    monkeypatch.setattr(runtime, "_setfacl_path", lambda: "/usr/bin/setfacl")

    # a uid/gid that owns nothing here and is in no group of these directories
    runtime.grant_service_user(data, "svc", 54321, 54321)

    assert {p: mode(p) for p in [data, *data.parents]} == before
    granted = {Path(call[-1]) for call in fake.calls}
    assert {data, private} <= granted
    for call in fake.calls:
        assert call[:2] == ["-m", "u:svc:x"], call
    # a directory everyone may already traverse needs no entry
    assert Path("/") not in granted


def test_without_setfacl_root_refuses_in_one_line_naming_the_fix(tmp_path, monkeypatch):
    private = tmp_path / "private"
    private.mkdir()
    private.chmod(0o700)
    monkeypatch.setattr(runtime, "_setfacl_path", lambda: None)

    with pytest.raises(runtime.RuntimeStartError) as err:
        runtime.grant_service_user(private, "svc", 54321, 54321)

    message = str(err.value)
    assert "\n" not in message
    assert "acl" in message and "DATABASE_URL" in message and str(private) in message
    assert mode(private) == 0o700


def test_scram_verifier_has_postgres_format():
    verifier = runtime.scram_sha256_verifier("pw", salt=b"0123456789abcdef", iterations=4096)
    head, keys = verifier.split("$", 1)[1].split("$")
    assert verifier.startswith("SCRAM-SHA-256$4096:")
    assert head == "4096:MDEyMzQ1Njc4OWFiY2RlZg=="
    stored, server = keys.split(":")
    assert len(stored) == len(server) == 44
    assert "pw" not in verifier


def test_embedded_database_url_is_not_in_the_endpoints_repr():
    ep = runtime.Endpoints("postgresql://postgres:s3cret@127.0.0.1:1/db", "a:1", None, True, True)
    assert "s3cret" not in repr(ep)
