"""Log lines for people (`LOG_FORMAT=text`) or for a log pipeline (`LOG_FORMAT=json`).

With ``json`` every line is one JSON object: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
``message``, and inside an activity or a workflow the Temporal context the SDK's loggers attach
to the record (``activity.logger`` sets ``record.temporal_activity``, ``workflow.logger``
``record.temporal_workflow``): ``workflow_id``, ``run_id``, ``workflow_type``, ``activity``,
``activity_id``, ``attempt``, ``task_queue``, ``namespace``. What a call passes as ``extra``
(``log.info("page stored", extra={"channel": …})``) becomes fields of its own. A failure's
traceback is the ``exception`` field, so a line is always one line.

Nothing here knows a secret: what is logged must never carry one (README, "Logs").
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from temporalio.runtime import LoggingConfig

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# attributes every LogRecord has: anything else on a record came from ``extra``
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName", "temporal_activity", "temporal_workflow"}
    | {"activity_info", "workflow_info"}  # the SDK's full-info options: objects, not fields
    | {"temporal_log"}  # a forwarded core line's own record (its fields are in the message)
)
# the SDK's context keys → our field names
_ACTIVITY_FIELDS = {
    "workflow_id": "workflow_id",
    "workflow_run_id": "run_id",
    "workflow_type": "workflow_type",
    "activity_type": "activity",
    "activity_id": "activity_id",
    "attempt": "attempt",
    "task_queue": "task_queue",
    "namespace": "namespace",
}
_WORKFLOW_FIELDS = {
    "workflow_id": "workflow_id",
    "run_id": "run_id",
    "workflow_type": "workflow_type",
    "attempt": "attempt",
    "task_queue": "task_queue",
    "namespace": "namespace",
    "update_id": "update_id",
    "update_name": "update_name",
}
CORE_FIELDS = ("time", "level", "logger", "message")
_OURS = "_ratesync_handler"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (see the module's docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(temporal_context(record))
        core = getattr(record, "temporal_log", None)  # a line of the Temporal core's own
        if core is not None and getattr(core, "target", None):
            line["target"] = core.target
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in line and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def temporal_context(record: logging.LogRecord) -> dict[str, Any]:
    """The workflow/activity fields of a record logged through the SDK's loggers."""
    out: dict[str, Any] = {}
    workflow = getattr(record, "temporal_workflow", None)
    if isinstance(workflow, dict):
        out.update({_WORKFLOW_FIELDS[k]: v for k, v in workflow.items() if k in _WORKFLOW_FIELDS})
    act = getattr(record, "temporal_activity", None)
    if isinstance(act, dict):
        out.update({_ACTIVITY_FIELDS[k]: v for k, v in act.items() if k in _ACTIVITY_FIELDS})
    return {k: v for k, v in out.items() if v is not None}


def core_logging(fmt: Literal["text", "json"]) -> LoggingConfig:
    """The Temporal core's own lines (poll errors, a lost server): with ``json`` forwarded to
    the ``temporalio.core`` logger, so they are JSON objects like every other line; with
    ``text`` the SDK's default (plain lines on stderr). Core WARN and up either way."""
    from temporalio.runtime import LogForwardingConfig, LoggingConfig

    if fmt != "json":
        return LoggingConfig.default
    forward = LogForwardingConfig(
        logger=logging.getLogger("temporalio.core"),
        append_target_to_name=False,  # the core's module is the `target` field instead
        prepend_target_on_message=False,
    )
    return LoggingConfig(filter=LoggingConfig.default.filter, forwarding=forward)


def formatter(fmt: Literal["text", "json"]) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)


def install(level: str, fmt: Literal["text", "json"], stream: IO[str] | None = None) -> None:
    """The process's log handler on the root logger (replacing one an earlier call put there;
    others, such as a test's capture, stay), at ``level``, in ``fmt``. With ``json`` the SDK's
    loggers stop appending their context to the message text (it is in fields of its own)."""
    from temporalio import activity, workflow

    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(fmt))
    setattr(handler, _OURS, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    structured = fmt == "json"
    activity.logger.activity_info_on_message = not structured
    workflow.logger.workflow_info_on_message = not structured
