"""The docker-compose stack, checked statically (no Docker engine here to run it).

What the files promise: the services start in the right order, the app containers are configured
only through settings.py names with values that validate, credentials are compose secrets (files
named by a required `${RATESYNC_SECRETS_DIR:?}`, never environment values or defaults), every
service runs with least privilege on a pinned image, the Temporal side (schema job,
namespace job, dynamic config) matches what the worker expects, and the `observability` profile's
Prometheus and Grafana read the deploy/ files read-only and scrape the workers' METRICS_PORT.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import SecretStr

import runtime
from activities.discord_types import channel_queue
from settings import Settings

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("migrate", "worker")
OBSERVABILITY = ("prometheus", "grafana")  # profile `observability`: not started by a plain `up`
MANDATORY_SETTINGS = {
    "DATABASE_URL",
    "TEMPORAL_ADDRESS",
    "TEMPORAL_NAMESPACE",
    "TEMPORAL_TASK_QUEUE",
}
NAMED_SECRETS = {"BNET_CLIENT_SECRET", "DISCORD_BOT_TOKEN", "ZWIFT_API_KEY"}

SECRETS_DIR = "RATESYNC_SECRETS_DIR"
_SECRET_NAME = re.compile(r"PASSWORD|PASSWD|PWD|SECRET|TOKEN|KEY", re.IGNORECASE)

# Compose's `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`,
# `$VAR` and the `$$` escape.
_SUBSTITUTION = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_]\w*)(?:(?P<op>:?[-?])(?P<default>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_]\w*))"
)


class MissingVariable(Exception):
    """`${VAR:?message}` with VAR unset: compose refuses to start and prints the message."""


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
        if match["op"] in (":?", "?"):
            found = environ.get(name)
            if found is None or (match["op"] == ":?" and not found):
                raise MissingVariable(f"{name}: {match['default']}")
            return found
        return environ.get(name, "")

    return _SUBSTITUTION.sub(replace, value)


def substitutions(text: str) -> list[re.Match[str]]:
    return [m for m in _SUBSTITUTION.finditer(text) if not m["escaped"]]


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
        "api",
        *OBSERVABILITY,
    }


def test_only_prometheus_and_grafana_are_in_the_observability_profile(
    services: dict[str, Any],
) -> None:
    for name, service in services.items():
        expected = ["observability"] if name in OBSERVABILITY else None
        assert service.get("profiles") == expected, name


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
        ("grafana", "prometheus", "service_healthy"),
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
    assert app_db["image"] == temporal_db["image"]
    assert re.fullmatch(r"postgres:16\.\d+-bookworm", app_db["image"])
    assert app_db["volumes"] != temporal_db["volumes"]
    assert services["temporal"]["environment"]["POSTGRES_SEEDS"] == "postgresql"


# --- (b) + (c) the app environment -----------------------------------------------------------


def test_migrate_and_worker_share_one_environment_block(compose: dict[str, Any]) -> None:
    # A YAML alias loads as the very same object, so `is` proves the anchor is used.
    shared = compose["x-app-env"]
    assert compose["services"]["migrate"]["environment"] is shared
    # the worker merges it (`<<: *app-env`) and adds only where it serves metrics
    assert compose["services"]["worker"]["environment"] == {**shared, "METRICS_PORT": "9464"}
    for name in APP_SERVICES:
        assert compose["services"][name]["image"] == compose["services"]["worker"]["image"]


@pytest.mark.parametrize("service", APP_SERVICES)
def test_app_environment_sets_only_settings_names(services: dict[str, Any], service: str) -> None:
    names = set(services[service]["environment"])
    # NAME_FILE is NAME read from a secret file (deploy/secrets-env.sh); PGPASSWORD is asyncpg's
    settings_names = {n.removesuffix("_FILE") for n in names} - {"PGPASSWORD"}
    unknown = settings_names - set(Settings.model_fields)
    assert not unknown, f"{service}: not fields of settings.Settings: {sorted(unknown)}"
    assert names >= MANDATORY_SETTINGS


def _secret_files(compose: dict[str, Any], secrets_dir: Path) -> dict[str, Path]:
    """Where each compose secret comes from, with RATESYNC_SECRETS_DIR set to `secrets_dir`."""
    return {
        name: Path(interpolate(spec["file"], {SECRETS_DIR: str(secrets_dir)}))
        for name, spec in compose["secrets"].items()
    }


def container_environment(
    compose: dict[str, Any],
    service: str,
    host: Mapping[str, str],
    secret_values: dict[str, str],
    tmp_path: Path,
) -> dict[str, str]:
    """The environment the service's process gets: compose's substitutions from `host`, each
    secret file under /run/secrets (here: files in tmp_path), then deploy/secrets-env.sh."""
    spec = compose["services"][service]
    run_secrets = tmp_path / "run-secrets"
    run_secrets.mkdir(exist_ok=True)
    for name in spec["secrets"]:
        (run_secrets / name).write_text(secret_values.get(name, "") + "\n")
    env = {
        name: interpolate(str(value), host).replace("/run/secrets/", f"{run_secrets}/")
        for name, value in spec["environment"].items()
    }
    entrypoint = spec["entrypoint"]
    assert entrypoint[0] == "/bin/sh"
    (mount,) = [v for v in spec["volumes"] if v.split(":")[1] == entrypoint[1]]
    script = ROOT / mount.split(":")[0]
    done = subprocess.run(
        ["/bin/sh", str(script), "env", "-0"],
        env={"PATH": os.environ["PATH"], **env}, capture_output=True, check=True,
    )  # fmt: skip
    pairs = [item.split("=", 1) for item in done.stdout.decode().split("\0") if "=" in item]
    return {k: v for k, v in pairs if k != "PATH"}


@pytest.mark.usefixtures("isolated_settings_env")
def test_app_environment_with_compose_defaults_validates_as_settings(
    compose: dict[str, Any], services: dict[str, Any], tmp_path: Path
) -> None:
    env = container_environment(compose, "worker", {}, {"ratesync_db_password": "pw"}, tmp_path)
    settings = settings_from({k: v for k, v in env.items() if k != "PGPASSWORD"})

    assert settings.DATABASE_URL is not None
    db = urlsplit(settings.DATABASE_URL)
    app_db = services["app-db"]["environment"]
    assert db.scheme == "postgresql"
    assert (db.hostname, db.port) == ("app-db", 5432)
    assert db.path == "/" + app_db["POSTGRES_DB"]
    assert db.username == app_db["POSTGRES_USER"]
    # no password in the URL: asyncpg reads PGPASSWORD, set from the secret app-db uses too
    assert db.password is None
    assert env["PGPASSWORD"] == "pw"
    assert services["worker"]["environment"]["PGPASSWORD_FILE"] == app_db["POSTGRES_PASSWORD_FILE"]
    for name in NAMED_SECRETS:  # not configured: empty secret files leave them unset
        assert getattr(settings, name) is None

    host, _, port = (settings.TEMPORAL_ADDRESS or "").partition(":")
    assert (host, port) == ("temporal", "7233")
    assert host in services
    assert settings.METRICS_PORT == 9464


@pytest.mark.usefixtures("isolated_settings_env")
def test_host_configuration_and_secret_files_reach_the_app_settings(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    host = {"BNET_CLIENT_ID": "client-id", "BNET_REGION": "us"}
    values = {
        "bnet_client_secret": "bnet-secret",
        "discord_bot_token": "discord-token",
        "zwift_api_key": "zwift-key",
        "ratesync_db_password": "pw",
    }
    env = container_environment(compose, "worker", host, values, tmp_path)
    assert not [name for name in env if name.endswith("_FILE")]
    settings = settings_from({k: v for k, v in env.items() if k != "PGPASSWORD"})

    assert settings.BNET_CLIENT_ID == "client-id"
    assert settings.BNET_REGION == "us"
    for name, secret in {
        "BNET_CLIENT_SECRET": "bnet-secret",
        "DISCORD_BOT_TOKEN": "discord-token",
        "ZWIFT_API_KEY": "zwift-key",
    }.items():
        value = getattr(settings, name)
        assert isinstance(value, SecretStr)
        assert value.get_secret_value() == secret
    assert settings.DATABASE_URL == "postgresql://ratesync@app-db:5432/ratesync"
    assert env["PGPASSWORD"] == "pw"


def test_secrets_env_refuses_an_unreadable_secret_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        ["/bin/sh", str(ROOT / "deploy" / "secrets-env.sh"), "true"],
        env={"PATH": os.environ["PATH"], "X_TOKEN_FILE": str(tmp_path / "missing")},
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 78
    assert done.stderr.count("\n") == 1 and "X_TOKEN_FILE" in done.stderr


# --- (d) secrets ---------------------------------------------------------------------------


def _secret_fields() -> set[str]:
    return {
        name
        for name, field in Settings.model_fields.items()
        if field.annotation is SecretStr or SecretStr in typing.get_args(field.annotation)
    }


def test_credentials_are_compose_secrets_never_environment_values(
    compose: dict[str, Any], app_env: dict[str, str]
) -> None:
    assert _secret_fields() >= NAMED_SECRETS
    for name in _secret_fields():
        assert name not in app_env, f"{name} must come from a secret file, not the environment"
    for name in NAMED_SECRETS:
        path = app_env[f"{name}_FILE"]
        secret = path.removeprefix("/run/secrets/")
        assert path == f"/run/secrets/{secret}" and secret in compose["secrets"]
        for service in APP_SERVICES:
            assert secret in compose["services"][service]["secrets"]
    for service_name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if _SECRET_NAME.search(key):
                assert key.endswith("_FILE"), f"{service_name}: {key} holds a credential"
                assert str(value).startswith("/run/secrets/"), (service_name, key)
                assert str(value).removeprefix("/run/secrets/") in service["secrets"]


def test_secret_files_come_from_a_required_directory_with_no_default(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    assert set(compose["secrets"]) >= {
        "ratesync_db_password", "temporal_db_password", "bnet_client_secret",
        "discord_bot_token", "zwift_api_key",
    }  # fmt: skip
    for name, spec in compose["secrets"].items():
        assert set(spec) == {"file"}, name
        (use,) = substitutions(spec["file"])
        assert (use["braced"], use["op"]) == (SECRETS_DIR, ":?"), spec["file"]
        assert "README" in use["default"]  # the error names where to read how
        with pytest.raises(MissingVariable):
            interpolate(spec["file"], {})
    assert _secret_files(compose, tmp_path)["ratesync_db_password"] == (
        tmp_path / "ratesync_db_password"
    )


def test_no_password_or_secret_has_a_default_anywhere() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for use in substitutions(text):
        name = use["braced"] or use["bare"]
        if _SECRET_NAME.search(name):
            assert use["op"] in (":?", "?"), f"${{{name}}} must be ${{{name}:?...}}"
    assert ":-ratesync}" not in text and ":-temporal}" not in text


# --- least privilege ---------------------------------------------------------------------------


def test_every_service_drops_all_capabilities_and_cannot_gain_privileges(
    services: dict[str, Any],
) -> None:
    for name, service in services.items():
        assert service.get("cap_drop") == ["ALL"], name
        assert not service.get("cap_add"), name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        assert not service.get("privileged"), name


def test_services_that_write_only_their_volumes_have_read_only_root_file_systems(
    services: dict[str, Any],
) -> None:
    for name in ("postgresql", "app-db", "temporal-admin-tools", "temporal-create-namespace",
                 *APP_SERVICES, *OBSERVABILITY):  # fmt: skip
        assert services[name].get("read_only") is True, name
    for name in ("postgresql", "app-db"):
        assert services[name]["user"] == "999:999"  # Postgres's own user: no capability needed


def test_published_ports_are_on_loopback_only(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_every_image_is_pinned_to_an_exact_version(services: dict[str, Any]) -> None:
    for name, service in services.items():
        image = service["image"]
        if "build" in service:
            assert image == "ratesync:local"
            continue
        _, _, tag = image.partition(":")
        assert re.fullmatch(r"v?\d+\.\d+(\.\d+)?(-[a-z0-9]+)?", tag), f"{name}: {image}"


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
    queues = [queue, channel_queue(queue)]  # the app's, and Discord's channel paging beside it
    for key in ("matching.numTaskqueueReadPartitions", "matching.numTaskqueueWritePartitions"):
        assert values(key) == [(1, {"taskQueueName": q}) for q in queues]


# --- observability: Prometheus and Grafana ------------------------------------------------


def _bind_mounts(service: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """target -> (source in this repository, mode) of a service's bind mounts."""
    mounts = {}
    for volume in service["volumes"]:
        source, target, *mode = volume.split(":")
        if source.startswith("./"):
            mounts[target] = (source, mode[0] if mode else "rw")
    return mounts


def test_observability_runs_the_official_images_pinned(services: dict[str, Any]) -> None:
    assert re.fullmatch(r"prom/prometheus:v3\.\d+\.\d+", services["prometheus"]["image"])
    assert re.fullmatch(r"grafana/grafana:1[2-9]\.\d+\.\d+", services["grafana"]["image"])


def test_nothing_a_plain_up_starts_needs_the_observability_profile(
    services: dict[str, Any],
) -> None:
    for name, service in services.items():
        if name not in OBSERVABILITY:
            assert not set(service.get("depends_on", {})) & set(OBSERVABILITY), name


def test_prometheus_and_grafana_read_the_deploy_files_read_only(services: dict[str, Any]) -> None:
    for name in OBSERVABILITY:
        mounts = _bind_mounts(services[name])
        assert mounts, name
        for source, mode in mounts.values():
            assert mode == "ro", f"{name}: {source} is mounted writable"
            assert (ROOT / source).exists(), source
    prometheus = services["prometheus"]
    flags = dict(arg.removeprefix("--").split("=", 1) for arg in prometheus["command"])
    mounts = _bind_mounts(prometheus)
    config = Path(flags["config.file"])
    assert mounts[str(config)][0] == "./deploy/prometheus/prometheus.yml"
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    for rule_file in rules["rule_files"]:  # relative to the config file, there and here
        assert mounts[str(config.parent / rule_file)][0] == f"./deploy/prometheus/{rule_file}"
    # its data (and grafana's) in a named volume: the only writable place besides /tmp
    assert f"prometheus-data:{flags['storage.tsdb.path']}" in prometheus["volumes"]
    assert "grafana-data:/var/lib/grafana" in services["grafana"]["volumes"]
    assert flags["web.listen-address"] == ":9090"
    assert "127.0.0.1:9090:9090" in prometheus["ports"]


def test_prometheus_scrapes_every_worker_replica_on_its_metrics_port(
    services: dict[str, Any], app_env: dict[str, str]
) -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    (discovery,) = job["dns_sd_configs"]
    (name,) = discovery["names"]
    assert name == "worker" and name in services  # compose's DNS: one address per replica
    assert discovery["port"] == int(app_env["METRICS_PORT"])
    assert "METRICS_PORT" not in services["migrate"]["environment"]
    assert not services["worker"].get("ports")  # scraped over the compose network only


def test_grafana_admin_password_is_a_secret_file_and_nobody_signs_up(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    grafana = services["grafana"]
    env = grafana["environment"]
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env
    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"
    assert grafana["secrets"] == ["grafana_admin_password"]
    assert "grafana_admin_password" in compose["secrets"]
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert "127.0.0.1:3000:3000" in grafana["ports"]
    # an app secret never reaches the observability services
    for name in OBSERVABILITY:
        assert set(services[name].get("secrets", [])) <= {"grafana_admin_password"}, name


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
    keyword, base = instructions[0]
    assert keyword == "FROM" and re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base), base
    cmds = [rest for keyword, rest in instructions if keyword == "CMD"]
    assert [json.loads(cmd) for cmd in cmds] == [["python", "worker.py"]]
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users and users[-1] not in {"root", "0"}
    runs = [rest for keyword, rest in instructions if keyword == "RUN"]
    # dependencies only from the runtime lock, hash-checked; the project itself with no deps
    assert any("--require-hashes -r requirements/runtime.txt" in run for run in runs)
    assert any(re.search(r"pip install --no-deps\b.* \.(\s|$)", run) for run in runs)
    assert not any(re.search(r"pip install(?!.*--no-deps)(?!.*--require-hashes)", r) for r in runs)


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


def test_the_api_gets_the_database_password_and_no_provider_secret(
    services: dict[str, Any],
) -> None:
    api = services["api"]
    assert api["secrets"] == ["ratesync_db_password"]
    assert not any(k.endswith("_FILE") and k != "PGPASSWORD_FILE" for k in api["environment"])
    assert api["ports"] == ["127.0.0.1:8000:8000"]
    assert api["command"][:3] == ["python", "starter.py", "api"]
