"""The one place settings come from: environment variables or a `.env` file.

Every name here is part of the contract (README "Configuration" and DESIGN.md §6). Secrets are
`SecretStr` so they never print by accident; nothing in this module logs.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_DAY = 86400
_YEAR = 366 * _DAY  # every *_SECONDS setting is bounded: a typo must not overflow a datetime

_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*$")


class SettingsError(Exception):
    """A setting has a bad value; the message names the variable and the fix."""


def parse_rate(value: str) -> tuple[int, float]:
    """Parse a `"<count>/<seconds>"` rate such as `"5/60"`."""
    match = _RATE_RE.match(value)
    if not match or int(match.group(1)) < 1 or float(match.group(2)) <= 0:
        raise ValueError(f"{value!r} is not '<count>/<seconds>', e.g. '5/60'")
    return int(match.group(1)), float(match.group(2))


MAX_TENANT_WEIGHT = 1000.0


def parse_tenant_weights(value: str) -> dict[str, float]:
    """Parse ``"<guild id>:<weight>,..."`` (DISCORD_TENANT_WEIGHTS), e.g. ``"123:4,456:0.5"``:
    each tenant's share of the bot token's global limit while several wait (default 1)."""
    weights: dict[str, float] = {}
    for item in value.split(","):
        if not item.strip():
            continue
        key, sep, raw = item.partition(":")
        key = key.strip()
        try:
            weight = float(raw)
        except ValueError:
            weight = float("nan")
        if not sep or not (key.isascii() and key.isdigit() and len(key) <= 20):
            raise ValueError(f"{item.strip()[:40]!r} is not '<guild id>:<weight>', e.g. '123:2'")
        if not 0 < weight <= MAX_TENANT_WEIGHT:  # also refuses nan and inf
            raise ValueError(f"weight of {key} must be > 0 and <= {MAX_TENANT_WEIGHT:g}")
        weights[str(int(key))] = weight
    return weights


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=True
    )

    # --- infrastructure ---------------------------------------------------------------------
    DATABASE_URL: str | None = None
    TEMPORAL_ADDRESS: str | None = None
    TEMPORAL_NAMESPACE: str = "default"
    TEMPORAL_TASK_QUEUE: str = "ratesync"
    DATA_DIR: Path = Path(".data")
    EMBEDDED_TEMPORAL_PORT: int = Field(7233, ge=1, le=65535)
    EMBEDDED_TEMPORAL_UI_PORT: int = Field(8233, ge=1, le=65535)
    EMBEDDED_POSTGRES_PORT: int = Field(54329, ge=1, le=65535)
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # `json`: one JSON object per line (workflow id, run id, activity, attempt); `text` for people
    LOG_FORMAT: Literal["text", "json"] = "text"
    # where a worker serves Prometheus metrics (`worker.py --processes N`: N ports from here);
    # unset: none served
    METRICS_PORT: int | None = Field(None, ge=1, le=65535)

    # --- the read API (`starter.py api`) -----------------------------------------------------
    API_HOST: str = "127.0.0.1"
    API_PORT: int = Field(8000, ge=1, le=65535)
    API_MAX_PAGE_SIZE: int = Field(200, ge=1, le=1000)
    API_REFRESH_PER_MINUTE: int = Field(30, ge=1, le=10000)  # refresh hook calls per client

    # --- Battle.net ------------------------------------------------------------------------
    BNET_CLIENT_ID: str | None = None
    BNET_CLIENT_SECRET: SecretStr | None = None
    BNET_REGION: Literal["us", "eu", "kr", "tw", "cn"] = "eu"
    BNET_API_BASE_URL: str = "https://{region}.api.blizzard.com"
    BNET_OAUTH_URL: str = "https://oauth.battle.net/token"
    BNET_LOCALE: str = "en_GB"
    BNET_RATE_PER_SECOND: int = Field(100, ge=1)
    BNET_RATE_PER_HOUR: int = Field(36000, ge=1)
    BNET_MAX_CONCURRENT: int = Field(20, ge=1, le=500)
    BNET_CHARACTER_BATCH_SIZE: int = Field(50, ge=1, le=1000)
    BNET_STALENESS_SECONDS: int = Field(6 * 3600, ge=0, le=_YEAR)
    BNET_NOT_FOUND_RECHECK_SECONDS: int = Field(7 * 24 * 3600, ge=0, le=_YEAR)
    BNET_HTTP_TIMEOUT_SECONDS: float = Field(15.0, gt=0, le=600)

    # --- Discord ---------------------------------------------------------------------------
    DISCORD_BOT_TOKEN: SecretStr | None = None
    DISCORD_API_BASE_URL: str = "https://discord.com/api/v10"
    DISCORD_GLOBAL_RATE_PER_SECOND: int = Field(50, ge=1)
    DISCORD_TENANT_WEIGHTS: str = ""  # "<guild id>:<weight>,...": shares of the global limit
    SYNC_MAX_CHANNEL_WORKERS: int = Field(10, ge=1, le=500)
    SYNC_MESSAGE_FETCH_SIZE: int = Field(100, ge=1, le=100)
    SYNC_CHANNEL_MAX_ATTEMPTS: int = Field(5, ge=1, le=100)
    DISCORD_INVALID_REQUEST_BUDGET: int = Field(5000, ge=1, le=9999)
    DISCORD_RECHECK_SECONDS: int = Field(24 * 3600, ge=0, le=_YEAR)
    DISCORD_HTTP_TIMEOUT_SECONDS: float = Field(15.0, gt=0, le=600)

    # --- ZwiftRacing -----------------------------------------------------------------------
    ZWIFT_API_KEY: SecretStr | None = None
    ZWIFT_API_BASE_URL: str = "https://api.zwiftracing.app/api"
    ZWIFT_RATE_CLUBS: str = "1/3600"
    ZWIFT_RATE_RIDERS_GET: str = "5/60"
    ZWIFT_RATE_RIDERS_POST: str = "1/900"
    ZWIFT_RATE_RESULTS: str = "1/60"
    ZWIFT_RATE_EVENTS: str = "1/60"
    ZWIFT_RATE_EVENT_SIGNUPS: str = "1/60"
    # an event starting within this many seconds is urgent; within NEAR, near; later, far
    ZWIFT_URGENT_WITHIN_SECONDS: int = Field(900, ge=1, le=_DAY)
    ZWIFT_NEAR_WITHIN_SECONDS: int = Field(3600, ge=1, le=7 * _DAY)
    ZWIFT_FAR_EVENTS_PER_RUN: int = Field(3, ge=1, le=1000)  # then more urgent work goes first
    # for the sandbox's time scale S only (1 against the real API): every Zwift window,
    # cadence, horizon and the ageing step are divided by it
    ZWIFT_TIME_SCALE: float = Field(1.0, gt=0, le=3600)

    # --- scheduler -----------------------------------------------------------------------------
    SCHEDULER_BATTLENET_SYNC_EVERY: str = "15m"
    SCHEDULER_PVP_EVERY: str = "off"
    SCHEDULER_DISCORD_SYNC_EVERY: str = "15m"
    SCHEDULER_ZWIFT_RIDERS_EVERY: str = "6h"
    SCHEDULER_ZWIFT_URGENT_EVERY: str = "5m"
    SCHEDULER_ZWIFT_NEAR_EVERY: str = "10m"
    SCHEDULER_ZWIFT_FAR_EVERY: str = "2h"
    SCHEDULER_ZWIFT_RESULTS_EVERY: str = "10m"
    SCHEDULER_MAX_CONCURRENT: int = Field(4, ge=1, le=100)
    SCHEDULER_AGEING_SECONDS: float = Field(60.0, gt=0, le=_DAY)

    # --- PvP and shared ----------------------------------------------------------------------
    PVP_SYNC_THREADS: int = Field(2, ge=1, le=64)
    PVP_PROCESSING_THREADS: int = Field(4, ge=1, le=64)
    PVP_SYNC_TASK_QUEUE: str = "pvp-sync"
    PVP_PROCESSING_TASK_QUEUE: str = "pvp-processing"
    RATE_LIMIT_BACKEND: Literal["local", "postgres"] = "postgres"
    # the most one response body may hold once decompressed; a bigger one is a BadPayload
    HTTP_MAX_RESPONSE_BYTES: int = Field(32 * 1024 * 1024, ge=64 * 1024, le=1024 * 1024 * 1024)
    RATE_LIMIT_MAX_WAIT_SECONDS: float = Field(30.0, gt=0, le=_DAY)

    @field_validator(
        "ZWIFT_RATE_CLUBS",
        "ZWIFT_RATE_RIDERS_GET",
        "ZWIFT_RATE_RIDERS_POST",
        "ZWIFT_RATE_RESULTS",
        "ZWIFT_RATE_EVENTS",
        "ZWIFT_RATE_EVENT_SIGNUPS",
    )
    @classmethod
    def _check_rate(cls, value: str) -> str:
        parse_rate(value)
        return value

    @field_validator("DISCORD_TENANT_WEIGHTS")
    @classmethod
    def _check_tenant_weights(cls, value: str) -> str:
        parse_tenant_weights(value)
        return value

    @field_validator(
        "SCHEDULER_BATTLENET_SYNC_EVERY",
        "SCHEDULER_PVP_EVERY",
        "SCHEDULER_DISCORD_SYNC_EVERY",
        "SCHEDULER_ZWIFT_RIDERS_EVERY",
        "SCHEDULER_ZWIFT_URGENT_EVERY",
        "SCHEDULER_ZWIFT_NEAR_EVERY",
        "SCHEDULER_ZWIFT_FAR_EVERY",
        "SCHEDULER_ZWIFT_RESULTS_EVERY",
    )
    @classmethod
    def _check_cadence(cls, value: str) -> str:
        from workflows.scheduler_types import parse_cadence

        parse_cadence(value)
        return value

    @field_validator("LOG_LEVEL", mode="before")
    @classmethod
    def _normalise_log_level(cls, value: object) -> object:
        # LOG_LEVEL=debug and LOG_LEVEL=Info are what people write; any case is accepted
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("DATABASE_URL")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not re.match(r"^postgres(ql)?(\+\w+)?://", value):
            raise ValueError("must look like postgresql://user:password@host:5432/dbname")
        return value

    @field_validator("TEMPORAL_ADDRESS")
    @classmethod
    def _check_temporal_address(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not re.match(r"^[\w.\-\[\]:]+:\d+$", value):
            raise ValueError("must be host:port, e.g. localhost:7233")
        return value

    def bnet_api_base(self, region: str) -> str:
        return self.BNET_API_BASE_URL.replace("{region}", region).rstrip("/")


def secret_names() -> list[str]:
    """The settings that may come from a file (``<NAME>_FILE``): the secrets, and DATABASE_URL,
    whose URL may carry a password."""
    secret = [n for n, f in Settings.model_fields.items() if "SecretStr" in str(f.annotation)]
    return ["DATABASE_URL", *secret]


def _from_files() -> dict[str, Any]:
    """``<NAME>_FILE`` (a compose or Kubernetes secret's path): the value is the file's content
    (one trailing newline or space dropped), read here so that it never sits in the process's
    environment. An empty file leaves the setting unset (a provider not configured)."""
    found: dict[str, Any] = {}
    for name in secret_names():
        path = os.environ.get(f"{name}_FILE")
        if not path:
            continue
        if os.environ.get(name):
            raise SettingsError(f"both {name} and {name}_FILE are set: keep one of them")
        try:
            value = Path(path).read_text().strip()
        except OSError as exc:
            raise SettingsError(
                f"cannot read {name}_FILE ({path}): {exc.strerror}; check the path and that "
                "this user may read it"
            ) from None
        if value:
            found[name] = value
    return found


def load_settings() -> Settings:
    """Build settings, turning validation errors into one clear line per bad variable."""
    try:
        return Settings(**_from_files())
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = ".".join(str(part) for part in err["loc"]) or "settings"
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"invalid setting {name}: {msg} (fix it in the environment or .env)")
        raise SettingsError("; ".join(lines)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
