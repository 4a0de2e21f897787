"""LOG_FORMAT=json: one JSON object per line with the Temporal context the SDK's loggers attach
(a real activity run in the SDK's ActivityEnvironment), extra fields and tracebacks as fields;
LOG_FORMAT=text as before."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from temporalio import activity, workflow
from temporalio.testing import ActivityEnvironment

import logformat
from logformat import JsonFormatter
from settings import Settings

WORKFLOW_DETAILS = {  # what temporalio's workflow.logger attaches (workflow/_context.py)
    "attempt": 1,
    "namespace": "default",
    "run_id": "run-7",
    "task_queue": "ratesync",
    "workflow_id": "discord-sync/42",
    "workflow_type": "DiscordTenantSync",
}


def _record(msg: str = "page stored", **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("ratesync.test", logging.INFO, __file__, 1, msg, None, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def kept() -> Iterator[_Keep]:
    handler = _Keep()
    base = activity.logger.base_logger
    base.addHandler(handler)
    level = base.level
    base.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        base.removeHandler(handler)
        base.setLevel(level)


@pytest.fixture
def restore_sdk_loggers() -> Iterator[None]:
    on_message = (
        activity.logger.activity_info_on_message,
        workflow.logger.workflow_info_on_message,
    )
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        activity.logger.activity_info_on_message = on_message[0]
        workflow.logger.workflow_info_on_message = on_message[1]
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)


def test_a_line_is_one_json_object_with_time_level_logger_and_message() -> None:
    line = JsonFormatter().format(_record())
    assert "\n" not in line
    data = json.loads(line)
    assert data["level"] == "INFO" and data["logger"] == "ratesync.test"
    assert data["message"] == "page stored"
    assert data["time"].endswith("+00:00") and "T" in data["time"]
    assert list(data)[:4] == list(logformat.CORE_FIELDS)


async def test_an_activity_s_line_carries_workflow_id_run_id_activity_and_attempt(kept) -> None:
    @activity.defn(name="discord_sync_channel_pages")
    async def store_a_page() -> None:
        activity.logger.info("messages page stored", extra={"channel": 7, "messages": 100})

    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info, workflow_id="channel-sync/7", workflow_run_id="run-1", attempt=3,
        activity_type="discord_sync_channel_pages",
    )  # fmt: skip
    await env.run(store_a_page)
    (record,) = kept.records
    data = json.loads(JsonFormatter().format(record))
    assert data["workflow_id"] == "channel-sync/7"
    assert data["run_id"] == "run-1"
    assert data["activity"] == "discord_sync_channel_pages"
    assert data["attempt"] == 3
    assert data["channel"] == 7 and data["messages"] == 100
    assert "temporal_activity" not in data  # mapped to the fields above, not dumped whole


def test_a_workflow_s_line_carries_its_id_run_id_and_type() -> None:
    data = json.loads(JsonFormatter().format(_record(temporal_workflow=WORKFLOW_DETAILS)))
    assert data["workflow_id"] == "discord-sync/42" and data["run_id"] == "run-7"
    assert data["workflow_type"] == "DiscordTenantSync" and data["attempt"] == 1
    assert "activity" not in data


def test_a_traceback_is_a_field_and_the_line_stays_one_line() -> None:
    try:
        raise ValueError("bad page")
    except ValueError:
        record = _record(exc_info=sys.exc_info())
    line = JsonFormatter().format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert "ValueError: bad page" in data["exception"] and "Traceback" in data["exception"]


def test_extra_values_that_json_cannot_hold_are_written_as_text() -> None:
    at = datetime(2026, 1, 2, tzinfo=UTC)
    data = json.loads(JsonFormatter().format(_record(at=at, ids={1, 2})))
    assert data["at"] == str(at)
    assert data["ids"] == str({1, 2})


def test_json_stops_the_sdk_appending_its_context_to_the_message(restore_sdk_loggers) -> None:
    out = io.StringIO()
    logformat.install("DEBUG", "json", out)
    assert activity.logger.activity_info_on_message is False
    assert workflow.logger.workflow_info_on_message is False
    logging.getLogger("httpx").debug('HTTP Request: GET http://x/y "HTTP/1.1 200 OK"')
    logformat.install("INFO", "json", out)  # a second call replaces the handler, not adds one
    logging.getLogger("ratesync.x").info("once")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["message"] for line in lines] == [
        'HTTP Request: GET http://x/y "HTTP/1.1 200 OK"',
        "once",
    ]
    assert lines[0]["level"] == "DEBUG" and lines[0]["logger"] == "httpx"


def test_text_keeps_the_readable_format(restore_sdk_loggers) -> None:
    out = io.StringIO()
    logformat.install("INFO", "text", out)
    logging.getLogger("ratesync.x").info("worker polling %s", "ratesync")
    (line,) = out.getvalue().splitlines()
    assert line.endswith(" INFO ratesync.x: worker polling ratesync")
    assert activity.logger.activity_info_on_message is True


def test_a_worker_pool_tags_a_json_line_with_a_field_and_a_text_line_with_a_prefix():
    from cli.workerpool import tagged

    line = json.dumps({"level": "INFO", "message": "stored", "workflow_id": "w"})
    assert json.loads(tagged(2, line)) == {**json.loads(line), "worker": 2}
    assert tagged(3, "worker polling task queue 'q'") == "[worker 3] worker polling task queue 'q'"
    assert tagged(1, "{not json") == "[worker 1] {not json"


def test_the_embedded_servers_started_line_is_a_json_line_with_json_logs(
    monkeypatch, restore_sdk_loggers, capsys
):
    """`started the embedded …` was a plain print among the JSON lines."""
    import runtime
    import settings as settings_module

    started = runtime.SharedServers(None, None, None, ["Postgres on 127.0.0.1:1"])
    monkeypatch.setattr(runtime, "start_shared", lambda *args: started)
    monkeypatch.setattr(settings_module, "get_settings", lambda: Settings(LOG_FORMAT="json"))
    out = io.StringIO()
    logformat.install("INFO", "json", out)
    with runtime.embedded_services():
        pass
    (line,) = [json.loads(raw) for raw in out.getvalue().splitlines()]
    assert line["logger"] == "ratesync.services" and "Postgres on 127.0.0.1:1" in line["message"]
    assert capsys.readouterr().err == ""


def test_with_text_logs_the_started_line_stays_plain(monkeypatch, capsys):
    import runtime
    import settings as settings_module

    started = runtime.SharedServers(None, None, None, ["Postgres on 127.0.0.1:1"])
    monkeypatch.setattr(runtime, "start_shared", lambda *args: started)
    monkeypatch.setattr(settings_module, "get_settings", lambda: Settings(LOG_FORMAT="text"))
    with runtime.embedded_services():
        pass
    assert capsys.readouterr().err.startswith("started the embedded Postgres on 127.0.0.1:1")


def test_core_lines_are_forwarded_to_python_logging_only_with_json_logs():
    from temporalio.runtime import LoggingConfig

    forwarded = logformat.core_logging("json").forwarding
    assert forwarded is not None and forwarded.logger.name == "temporalio.core"
    assert logformat.core_logging("text") is LoggingConfig.default
    record = logging.LogRecord("temporalio.core", logging.WARNING, "", 0, "poll failed", None, None)
    record.temporal_log = type("Core", (), {"target": "temporalio_client::retry"})()
    line = json.loads(JsonFormatter().format(record))
    assert line["target"] == "temporalio_client::retry" and "temporal_log" not in line
