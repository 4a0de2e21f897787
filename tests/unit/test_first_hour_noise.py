"""The first hour with ratesync (issue 11 item 10): what the logs and the CLI say about ordinary
events. A request is a DEBUG line, an expected 429 one WARNING line with no traceback, LOG_LEVEL in
any case, and the scheduler's scope options checked as usage errors (exit 2, one line)."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

import httpx
import pytest
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

import providers.http  # noqa: F401  (installs the request-line filter, as every client does)
import starter
import worker
from activities.errors import to_application_error
from providers.errors import RateLimited
from settings import load_settings

# --- 1. per-request lines are DEBUG --------------------------------------------------------


async def _one_request() -> None:
    ok = httpx.MockTransport(lambda request: httpx.Response(200, json={}))
    async with httpx.AsyncClient(transport=ok) as http:
        await http.get("https://eu.api.blizzard.test/data/wow/guild/x/y")


def _request_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "httpx" and "HTTP Request" in r.getMessage()]


async def test_a_request_is_not_logged_at_info(caplog):
    caplog.set_level(logging.INFO)
    await _one_request()
    assert _request_lines(caplog) == []


async def test_a_request_is_a_debug_line_at_log_level_debug(caplog):
    caplog.set_level(logging.DEBUG)
    await _one_request()
    lines = _request_lines(caplog)
    assert len(lines) == 1
    assert (lines[0].levelno, lines[0].levelname) == (logging.DEBUG, "DEBUG")


# --- 2. an expected 429 is one WARNING line ------------------------------------------------


@activity.defn(name="first_hour_rate_limited_once")
async def rate_limited_once() -> str:
    if activity.info().attempt == 1:
        raise to_application_error(
            RateLimited("battlenet: 429 on guild eu/x; bucket paused 0.0s", retry_after=0.0)
        )
    return "ok"


@workflow.defn(name="FirstHourRateLimitedOnce")
class RateLimitedOnce:
    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_activity(
            rate_limited_once,
            start_to_close_timeout=timedelta(seconds=20),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=100)),
        )


async def test_an_expected_429_is_one_warning_line_without_a_traceback(
    client: Client, task_queue: str, caplog
):
    worker.install_log_filters()  # what build_worker and the worker's logging set-up do
    caplog.set_level(logging.WARNING, logger="temporalio.activity")
    async with Worker(
        client, task_queue=task_queue, workflows=[RateLimitedOnce],
        activities=[rate_limited_once], workflow_runner=UnsandboxedWorkflowRunner(),
    ):  # fmt: skip
        result = await client.execute_workflow(
            RateLimitedOnce.run, id=f"first-hour-{uuid.uuid4().hex[:8]}", task_queue=task_queue
        )
    assert result == "ok"
    failed = [r for r in caplog.records if r.name == "temporalio.activity"]
    assert len(failed) == 1, [r.getMessage() for r in failed]
    record = failed[0]
    assert record.levelno == logging.WARNING
    assert record.exc_info is None and not record.exc_text
    text = logging.Formatter("%(levelname)s %(name)s: %(message)s").format(record)
    assert "\n" not in text and "Traceback" not in text
    assert "first_hour_rate_limited_once" in text and "attempt 1" in text
    assert "RateLimited: battlenet: 429 on guild eu/x" in text
    assert "retries it in 1.0s" in text


def test_an_unexpected_activity_failure_keeps_its_traceback():
    try:
        raise worker.ApplicationError("boom", type="BadPayload", non_retryable=True)
    except worker.ApplicationError:
        import sys

        record = logging.LogRecord(
            "temporalio.activity", logging.WARNING, __file__, 1,
            "Completing activity as failed", (), sys.exc_info(),
        )  # fmt: skip
    assert worker.ExpectedWaitLine().filter(record)
    assert record.exc_info is not None and record.getMessage() == "Completing activity as failed"


def test_the_worker_logging_set_up_installs_the_filter():
    worker.configure_logging("WARNING")
    filters = logging.getLogger("temporalio.activity").filters
    assert sum(isinstance(f, worker.ExpectedWaitLine) for f in filters) == 1
    worker.install_log_filters()  # idempotent: build_worker calls it again
    filters = logging.getLogger("temporalio.activity").filters
    assert sum(isinstance(f, worker.ExpectedWaitLine) for f in filters) == 1


# --- 4. the scheduler's scope options ------------------------------------------------------


@pytest.fixture
def no_servers(monkeypatch):
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
    monkeypatch.setenv("DATABASE_URL", "postgresql://x@127.0.0.1:1/x")


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_discord_scheduler_without_tenant_is_exit_2_with_one_line(no_servers, capsys):
    assert starter.main(["scheduler", "start", "discord"]) == 2
    assert "--tenant" in _one_error_line(capsys)


def test_battlenet_scheduler_with_tenant_is_exit_2_saying_it_takes_no_tenant(no_servers, capsys):
    assert starter.main(["scheduler", "start", "battlenet", "--tenant", "1168516062791340136"]) == 2
    line = _one_error_line(capsys)
    assert "battlenet takes no --tenant" in line and "--region" in line


def test_discord_scheduler_with_region_is_exit_2(no_servers, capsys):
    code = starter.main(
        ["scheduler", "start", "discord", "--tenant", "1168516062791340136", "--region", "eu"]
    )
    assert code == 2
    assert "discord takes no --region" in _one_error_line(capsys)


# --- 5. LOG_LEVEL in any case --------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "level"),
    [("debug", "DEBUG"), ("Info", "INFO"), ("WARNING", "WARNING"), (" error ", "ERROR")],
)
def test_log_level_is_accepted_in_any_case(monkeypatch, value, level):
    monkeypatch.setenv("LOG_LEVEL", value)
    assert load_settings().LOG_LEVEL == level
