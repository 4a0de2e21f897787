"""The docker-compose stack, checked statically (no Docker engine here to run it).

What the files promise: the services start in the right order, the app containers are configured
only through settings.py names with values that validate, secrets come from the host, and the
Temporal side (schema job, namespace job, dynamic config) matches what the worker expects.
"""

from __future__ import annotations

import json
import re
import shlex
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import SecretStr

import runtime
from settings import Settings

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("migrate", "worker")
MANDATORY_SETTINGS = {
    "DATABASE_URL",
    "TEMPORAL_ADDRESS",
    "TEMPORAL_NAMESPACE",
    "TEMPORAL_TASK_QUEUE",
}
NAMED_SECRETS = {"BNET_CLIENT_SECRET", "DISCORD_BOT_TOKEN", "ZWIFT_API_KEY"}

# Compose's `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `$VAR` and the `$$` escape.
_SUBSTITUTION = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_]\w*)(?:(?P<op>:?-)(?P<default>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_]\w*))"
)


def interpolate(value: str, environ: Mapping[str, str]) -> str:
    """Substitute variables the way `docker compose` does for the forms above."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["bare"]
        if match["op"] == ":-":
            return environ.get(name) or match["default"]
        if match["op"] == "-":
            return environ.get(name, match["default"])
        return environ.get(name, "")

    return _SUBSTITUTION.sub(replace, value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


@pytest.fixture(scope="module")
def app_env(services: dict[str, Any]) -> dict[str, str]:
    env = services["worker"]["environment"]
    assert isinstance(env, dict), "app environment must be a mapping (the x-app-env anchor)"
    return {name: str(value) for name, value in env.items()}


@pytest.fixture
def isolated_settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No settings leak in from the machine running the tests."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name, raising=False)


def settings_from(env: Mapping[str, str]) -> Settings:
    """`Settings(**env)` as the container would build it, ignoring any local `.env` file."""
    values: dict[str, Any] = dict(env)
    return Settings(_env_file=None, **values)


def script_lines(service: Mapping[str, Any]) -> list[list[str]]:
    """The shell lines of a one-shot job's `sh -c` script, split into words ($$ unescaped)."""
    assert service["entrypoint"][0] == "/bin/sh"
    (script,) = service["command"]
    lines = [line.strip() for line in script.replace("$$", "$").splitlines()]
    return [shlex.split(line) for line in lines if line and not line.startswith("#")]


def version(tag: str) -> tuple[int, ...]:
    return tuple(int(part) for part in tag.split("."))


# --- (a) services and start order ----------------------------------------------------------


def test_stack_defines_exactly_the_expected_services(services: dict[str, Any]) -> None:
    assert set(services) == {
        "postgresql",
        "app-db",
        "temporal-admin-tools",
        "temporal",
        "temporal-create-namespace",
        "temporal-ui",
        "migrate",
        "worker",
    }
    assert "api" not in services  # DESIGN §2 lists it, but it does not exist yet


@pytest.mark.parametrize(
    ("service", "dependency", "condition"),
    [
        ("temporal-admin-tools", "postgresql", "service_healthy"),
        ("temporal", "temporal-admin-tools", "service_completed_successfully"),
        ("temporal-create-namespace", "temporal", "service_healthy"),
        ("temporal-ui", "temporal", "service_healthy"),
        ("migrate", "app-db", "service_healthy"),
        ("worker", "migrate", "service_completed_successfully"),
        ("worker", "temporal-create-namespace", "service_completed_successfully"),
    ],
)
def test_service_starts_only_after_its_dependency_is_ready(
    services: dict[str, Any], service: str, dependency: str, condition: str
) -> None:
    assert services[service]["depends_on"][dependency] == {"condition": condition}


def test_services_that_are_waited_on_for_health_define_a_healthcheck(
    services: dict[str, Any],
) -> None:
    for name, service in services.items():
        for dependency, spec in service.get("depends_on", {}).items():
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits on {dependency}"


def test_worker_restarts_unless_stopped_and_one_shot_jobs_do_not_loop(
    services: dict[str, Any],
) -> None:
    assert services["worker"]["restart"] == "unless-stopped"
    for job in ("migrate", "temporal-admin-tools", "temporal-create-namespace"):
        # `always`/`unless-stopped` would rerun a finished job forever.
        assert services[job].get("restart", "no").split(":")[0] in {"no", "on-failure"}


def test_app_database_is_separate_from_temporals(services: dict[str, Any]) -> None:
    app_db, temporal_db = services["app-db"], services["postgresql"]
    assert app_db["image"] == temporal_db["image"] == "postgres:16"
    assert app_db["volumes"] != temporal_db["volumes"]
    assert services["temporal"]["environment"]["POSTGRES_SEEDS"] == "postgresql"


# --- (b) + (c) the app environment -----------------------------------------------------------


def test_migrate_and_worker_share_one_environment_block(compose: dict[str, Any]) -> None:
    # A YAML alias loads as the very same object, so `is` proves the anchor is used.
    shared = compose["x-app-env"]
    for name in APP_SERVICES:
        assert compose["services"][name]["environment"] is shared
        assert compose["services"][name]["image"] == compose["services"]["worker"]["image"]


@pytest.mark.parametrize("service", APP_SERVICES)
def test_app_environment_sets_only_settings_names(services: dict[str, Any], service: str) -> None:
    names = set(services[service]["environment"])
    unknown = names - set(Settings.model_fields)
    assert not unknown, f"{service}: not fields of settings.Settings: {sorted(unknown)}"
    assert names >= MANDATORY_SETTINGS


@pytest.mark.usefixtures("isolated_settings_env")
def test_app_environment_with_compose_defaults_validates_as_settings(
    app_env: dict[str, str], services: dict[str, Any]
) -> None:
    env = {name: interpolate(value, {}) for name, value in app_env.items()}
    settings = settings_from(env)

    assert settings.DATABASE_URL is not None
    db = urlsplit(settings.DATABASE_URL)
    app_db = services["app-db"]["environment"]
    assert db.scheme == "postgresql"
    assert (db.hostname, db.port) == ("app-db", 5432)
    assert db.path == "/" + app_db["POSTGRES_DB"]
    assert db.username == app_db["POSTGRES_USER"]
    assert db.password == interpolate(app_db["POSTGRES_PASSWORD"], {})

    host, _, port = (settings.TEMPORAL_ADDRESS or "").partition(":")
    assert (host, port) == ("temporal", "7233")
    assert host in services


@pytest.mark.usefixtures("isolated_settings_env")
def test_host_environment_reaches_the_app_settings(app_env: dict[str, str]) -> None:
    host = {
        "BNET_CLIENT_ID": "client-id",
        "BNET_CLIENT_SECRET": "bnet-secret",
        "BNET_REGION": "us",
        "DISCORD_BOT_TOKEN": "discord-token",
        "ZWIFT_API_KEY": "zwift-key",
        "RATESYNC_DB_PASSWORD": "pw",
    }
    settings = settings_from({name: interpolate(v, host) for name, v in app_env.items()})

    assert settings.BNET_CLIENT_ID == "client-id"
    assert settings.BNET_REGION == "us"
    for name in NAMED_SECRETS:
        secret = getattr(settings, name)
        assert isinstance(secret, SecretStr)
        assert secret.get_secret_value() == host[name]
    assert settings.DATABASE_URL == "postgresql://ratesync:pw@app-db:5432/ratesync"


# --- (d) secrets ---------------------------------------------------------------------------


def _secret_fields() -> set[str]:
    return {
        name
        for name, field in Settings.model_fields.items()
        if field.annotation is SecretStr or SecretStr in typing.get_args(field.annotation)
    }


def test_secrets_are_host_substitutions_never_literal_values(app_env: dict[str, str]) -> None:
    assert _secret_fields() >= NAMED_SECRETS
    for name in _secret_fields() & set(app_env):
        assert re.fullmatch(rf"\$\{{{name}(:?-)?\}}", app_env[name]), (
            f"{name} must be ${{{name}:-}} (from the host, no default), not {app_env[name]!r}"
        )
    assert set(app_env) >= NAMED_SECRETS


# --- (e) namespace job ---------------------------------------------------------------------


def test_namespace_job_registers_exactly_the_workflow_search_attributes(
    services: dict[str, Any],
) -> None:
    registered: dict[str, str] = {}
    for words in script_lines(services["temporal-create-namespace"]):
        if "search-attribute" in words and "create" in words:
            names = [words[i + 1] for i, word in enumerate(words) if word == "--name"]
            types = [words[i + 1] for i, word in enumerate(words) if word == "--type"]
            assert len(types) == 1, words
            registered.update(dict.fromkeys(names, types[0]))

    assert registered == dict.fromkeys(["Provider", "Scope", "SyncKind"], "Keyword")
    assert set(registered) == set(runtime.SEARCH_ATTRIBUTES)


def test_namespace_job_creates_the_namespace_the_worker_uses(
    services: dict[str, Any], app_env: dict[str, str]
) -> None:
    job = services["temporal-create-namespace"]
    lines = script_lines(job)
    assert any(words[1:4] == ["operator", "namespace", "create"] for words in lines)
    assert job["environment"]["NAMESPACE"] == app_env["TEMPORAL_NAMESPACE"]
    assert interpolate(app_env["TEMPORAL_NAMESPACE"], {}) == "default"
    assert job["environment"]["TEMPORAL_ADDRESS"] == app_env["TEMPORAL_ADDRESS"]


# --- Temporal schema job and server --------------------------------------------------------


def test_schema_job_creates_and_migrates_both_temporal_databases(
    services: dict[str, Any],
) -> None:
    job = services["temporal-admin-tools"]
    assert job["environment"]["SQL_HOST"] == "postgresql"
    assert job["environment"]["SQL_PLUGIN"] == "postgres12"
    steps = {
        (words[words.index("--db") + 1], words[words.index("--db") + 2])
        for words in script_lines(job)
        if words[0] == "temporal-sql-tool"
    }
    for database in ("temporal", "temporal_visibility"):
        assert {(database, "create"), (database, "setup-schema"), (database, "update-schema")} <= (
            steps
        )


def test_temporal_images_are_pinned_to_supported_versions(services: dict[str, Any]) -> None:
    minimum = {
        "temporalio/server": (1, 30, 1),
        "temporalio/admin-tools": (1, 30, 1),
        "temporalio/ui": (2, 34, 0),
    }
    seen = set()
    for service in services.values():
        repository, _, tag = service.get("image", "").partition(":")
        if repository in minimum:
            assert re.fullmatch(r"\d+\.\d+\.\d+", tag), f"{repository} tag {tag!r} is not pinned"
            assert version(tag) >= minimum[repository]
            seen.add(repository)
    assert seen == set(minimum)
    admin_tags = {
        services[s]["image"] for s in ("temporal-admin-tools", "temporal-create-namespace")
    }
    server_tag = services["temporal"]["image"].partition(":")[2]
    assert admin_tags == {f"temporalio/admin-tools:{server_tag}"}


def test_temporal_ui_is_published_on_port_8080(services: dict[str, Any]) -> None:
    assert any(str(port).endswith("8080:8080") for port in services["temporal-ui"]["ports"])


# --- (f) dynamic config --------------------------------------------------------------------


def test_temporal_server_loads_the_dynamic_config_file(services: dict[str, Any]) -> None:
    temporal = services["temporal"]
    config_path = temporal["environment"]["DYNAMIC_CONFIG_FILE_PATH"]
    mounts = {
        target: source
        for source, target, *_ in (volume.split(":") for volume in temporal["volumes"])
    }
    assert mounts[config_path] == "./deploy/temporal-dynamicconfig.yaml"


def test_dynamic_config_enables_updates_long_ids_and_one_partition_for_the_app_queue(
    app_env: dict[str, str],
) -> None:
    config = yaml.safe_load((ROOT / "deploy" / "temporal-dynamicconfig.yaml").read_text())

    def values(key: str) -> list[tuple[Any, dict[str, Any]]]:
        return [(item["value"], item.get("constraints") or {}) for item in config[key]]

    assert values("frontend.enableUpdateWorkflowExecution") == [(True, {})]
    assert values("limit.maxIDLength") == [(255, {})]
    queue = app_env["TEMPORAL_TASK_QUEUE"]
    assert queue == "ratesync"
    for key in ("matching.numTaskqueueReadPartitions", "matching.numTaskqueueWritePartitions"):
        assert values(key) == [(1, {"taskQueueName": queue})]


# --- (g) image and commands ----------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_app_image_runs_the_worker_by_default_as_a_non_root_user() -> None:
    instructions = _dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    cmds = [rest for keyword, rest in instructions if keyword == "CMD"]
    assert [json.loads(cmd) for cmd in cmds] == [["python", "worker.py"]]
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users and users[-1] not in {"root", "0"}
    assert any(keyword == "RUN" and "pip install ." in rest for keyword, rest in instructions)


def test_migrate_upgrades_the_database_and_worker_runs_worker_py(
    services: dict[str, Any],
) -> None:
    assert services["migrate"]["command"] == ["python", "starter.py", "db", "upgrade"]
    assert services["worker"]["command"] == ["python", "worker.py"]


def test_build_context_leaves_out_local_state_and_secrets() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".data", ".git", ".env", "**/__pycache__"} <= ignored
