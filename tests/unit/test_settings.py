"""Settings: defaults, environment overrides, one-line errors naming the variable, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from settings import Settings, SettingsError, load_settings, parse_rate


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """No variable from the developer's shell and no stray `.env` may leak into a test."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_defaults():
    settings = load_settings()
    assert settings.TEMPORAL_TASK_QUEUE == "ratesync"
    assert settings.TEMPORAL_NAMESPACE == "default"
    assert settings.BNET_RATE_PER_SECOND == 100
    assert settings.BNET_RATE_PER_HOUR == 36000
    assert settings.RATE_LIMIT_BACKEND == "postgres"  # budgets survive restarts (issue 12)
    assert settings.ZWIFT_RATE_RIDERS_POST == "1/900"
    assert settings.ZWIFT_RATE_CLUBS == "1/3600"
    assert settings.BNET_REGION == "eu"
    assert settings.DATABASE_URL is None
    assert settings.TEMPORAL_ADDRESS is None
    assert settings.BNET_CLIENT_ID is None
    assert settings.BNET_CLIENT_SECRET is None
    assert settings.DATA_DIR == Path(".data")
    assert settings.bnet_api_base("eu") == "https://eu.api.blizzard.com"


def test_every_default_rate_parses():
    settings = load_settings()
    for name in Settings.model_fields:
        if name.startswith("ZWIFT_RATE_"):
            count, seconds = parse_rate(getattr(settings, name))
            assert count >= 1 and seconds > 0


def test_environment_overrides_defaults(monkeypatch):
    monkeypatch.setenv("TEMPORAL_TASK_QUEUE", "mirror-eu")
    monkeypatch.setenv("BNET_RATE_PER_SECOND", "25")
    monkeypatch.setenv("BNET_RATE_PER_HOUR", "90000")
    monkeypatch.setenv("RATE_LIMIT_BACKEND", "postgres")
    monkeypatch.setenv("ZWIFT_RATE_RIDERS_POST", "2/600")
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://u:p@db:5432/ratesync")
    monkeypatch.setenv("TEMPORAL_ADDRESS", "temporal:7233")
    monkeypatch.setenv("BNET_REGION", "us")

    settings = load_settings()
    assert settings.TEMPORAL_TASK_QUEUE == "mirror-eu"
    assert settings.BNET_RATE_PER_SECOND == 25
    assert settings.BNET_RATE_PER_HOUR == 90000
    assert settings.RATE_LIMIT_BACKEND == "postgres"
    assert settings.ZWIFT_RATE_RIDERS_POST == "2/600"
    assert settings.DATABASE_URL == "postgresql+asyncpg://u:p@db:5432/ratesync"
    assert settings.TEMPORAL_ADDRESS == "temporal:7233"
    assert settings.BNET_REGION == "us"


def test_dotenv_file_in_the_working_directory_is_read(tmp_path):
    (tmp_path / ".env").write_text("BNET_RATE_PER_SECOND=7\nBNET_CLIENT_ID=from-dotenv\n")
    settings = load_settings()
    assert settings.BNET_RATE_PER_SECOND == 7
    assert settings.BNET_CLIENT_ID == "from-dotenv"


def test_environment_wins_over_dotenv(monkeypatch, tmp_path):
    (tmp_path / ".env").write_text("BNET_RATE_PER_SECOND=7\n")
    monkeypatch.setenv("BNET_RATE_PER_SECOND", "9")
    assert load_settings().BNET_RATE_PER_SECOND == 9


def test_empty_optional_urls_mean_unset(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "")
    monkeypatch.setenv("TEMPORAL_ADDRESS", "")
    settings = load_settings()
    assert settings.DATABASE_URL is None
    assert settings.TEMPORAL_ADDRESS is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BNET_RATE_PER_SECOND", "abc"),
        ("BNET_RATE_PER_SECOND", "0"),
        ("BNET_RATE_PER_HOUR", "-5"),
        ("ZWIFT_RATE_CLUBS", "fast"),
        ("ZWIFT_RATE_RIDERS_GET", "0/60"),
        ("ZWIFT_RATE_RESULTS", "5/0"),
        ("DATABASE_URL", "mysql://x"),
        ("TEMPORAL_ADDRESS", "no-port"),
        ("RATE_LIMIT_BACKEND", "redis"),
        ("BNET_REGION", "mars"),
        ("EMBEDDED_POSTGRES_PORT", "70000"),
        ("LOG_LEVEL", "chatty"),
    ],
)
def test_bad_value_raises_settings_error_naming_the_variable_on_one_line(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(f"invalid setting {name}: ")
    assert "\n" not in message
    assert message.count("invalid setting") == 1
    assert "Value error," not in message


def test_bad_rate_message_shows_the_expected_format(monkeypatch):
    monkeypatch.setenv("ZWIFT_RATE_CLUBS", "fast")
    with pytest.raises(SettingsError, match=r"ZWIFT_RATE_CLUBS: 'fast' is not '<count>/<seconds>'"):
        load_settings()


def test_bad_database_url_message_shows_the_expected_form(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "mysql://x")
    with pytest.raises(SettingsError, match=r"DATABASE_URL: must look like postgresql://"):
        load_settings()


def test_several_bad_values_are_all_named_in_one_line(monkeypatch):
    monkeypatch.setenv("BNET_RATE_PER_SECOND", "abc")
    monkeypatch.setenv("ZWIFT_RATE_CLUBS", "fast")
    monkeypatch.setenv("DATABASE_URL", "mysql://x")
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert "\n" not in message
    for name in ("BNET_RATE_PER_SECOND", "ZWIFT_RATE_CLUBS", "DATABASE_URL"):
        assert f"invalid setting {name}:" in message


def test_settings_error_is_not_chained_to_the_pydantic_traceback(monkeypatch):
    monkeypatch.setenv("BNET_RATE_PER_SECOND", "abc")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert info.value.__suppress_context__ is True
    assert info.value.__cause__ is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5/60", (5, 60.0)),
        ("1/900", (1, 900.0)),
        (" 10 / 1.5 ", (10, 1.5)),
        ("1/3600", (1, 3600.0)),
    ],
)
def test_parse_rate(text, expected):
    assert parse_rate(text) == expected
    count, seconds = parse_rate(text)
    assert isinstance(count, int) and isinstance(seconds, float)


@pytest.mark.parametrize(
    "text", ["fast", "", "5", "5/", "/60", "0/60", "5/0", "-1/60", "5/-60", "5/60/2"]
)
def test_parse_rate_rejects_malformed_rates(text):
    with pytest.raises(ValueError, match="<count>/<seconds>"):
        parse_rate(text)


def test_secrets_are_secret_str_and_never_shown(monkeypatch):
    secrets = {
        "BNET_CLIENT_SECRET": "bnet-s3cr3t-value",
        "DISCORD_BOT_TOKEN": "discord-t0ken-value",
        "ZWIFT_API_KEY": "zwift-k3y-value",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BNET_CLIENT_ID", "public-client-id")

    settings = load_settings()
    shown = f"{settings!r} {settings!s} {settings.model_dump()!r}"
    for name, value in secrets.items():
        field = getattr(settings, name)
        assert isinstance(field, SecretStr)
        assert field.get_secret_value() == value
        assert value not in repr(field)
        assert value not in str(field)
        assert value not in shown
    assert settings.BNET_CLIENT_ID == "public-client-id"


def test_secret_does_not_leak_into_an_error_about_another_variable(monkeypatch):
    monkeypatch.setenv("BNET_CLIENT_SECRET", "bnet-s3cr3t-value")
    monkeypatch.setenv("BNET_RATE_PER_SECOND", "abc")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "bnet-s3cr3t-value" not in str(info.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BNET_STALENESS_SECONDS", "100000000000"),  # 3,000 years: overflowed a datetime
        ("BNET_NOT_FOUND_RECHECK_SECONDS", "99999999999"),
        ("DISCORD_RECHECK_SECONDS", "40000000"),
        ("BNET_HTTP_TIMEOUT_SECONDS", "1e9"),
        ("DISCORD_HTTP_TIMEOUT_SECONDS", "inf"),
        ("SCHEDULER_AGEING_SECONDS", "1e300"),
        ("RATE_LIMIT_MAX_WAIT_SECONDS", "1e12"),
        ("HTTP_MAX_RESPONSE_BYTES", "10"),
    ],
)
def test_every_seconds_setting_is_bounded(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=f"^invalid setting {name}: .*less than|greater than"):
        load_settings()


def test_every_seconds_setting_has_an_upper_bound():
    """A new `*_SECONDS` setting without `le=` would let a typo overflow a datetime again."""
    for name, field in Settings.model_fields.items():
        if name.endswith("_SECONDS"):
            bounds = [m for m in field.metadata if hasattr(m, "le") or hasattr(m, "lt")]
            assert bounds, f"{name} has no upper bound"


def test_a_secret_can_come_from_a_file_and_never_sits_in_the_environment(tmp_path, monkeypatch):
    """<NAME>_FILE (a compose secret's path) is read by the settings themselves; it was only
    read by deploy/secrets-env.sh, which exported the value into the environment."""
    from settings import load_settings, secret_names

    secret = tmp_path / "bnet_client_secret"
    secret.write_text("s3cret\n")
    monkeypatch.delenv("BNET_CLIENT_SECRET", raising=False)
    monkeypatch.setenv("BNET_CLIENT_SECRET_FILE", str(secret))
    loaded = load_settings()
    assert loaded.BNET_CLIENT_SECRET is not None
    assert loaded.BNET_CLIENT_SECRET.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(loaded)
    assert {"DATABASE_URL", "BNET_CLIENT_SECRET", "DISCORD_BOT_TOKEN"} <= set(secret_names())


def test_a_secret_file_that_cannot_be_read_or_is_doubled_is_one_line(tmp_path, monkeypatch):
    import pytest

    from settings import SettingsError, load_settings

    monkeypatch.setenv("DISCORD_BOT_TOKEN_FILE", str(tmp_path / "missing"))
    monkeypatch.delenv("DISCORD_BOT_TOKEN", raising=False)
    with pytest.raises(SettingsError, match=r"cannot read DISCORD_BOT_TOKEN_FILE \(.*missing\)"):
        load_settings()
    (tmp_path / "token").write_text("abc")
    monkeypatch.setenv("DISCORD_BOT_TOKEN_FILE", str(tmp_path / "token"))
    monkeypatch.setenv("DISCORD_BOT_TOKEN", "abc")
    with pytest.raises(SettingsError, match="both DISCORD_BOT_TOKEN and DISCORD_BOT_TOKEN_FILE"):
        load_settings()
