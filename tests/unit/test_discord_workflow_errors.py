"""How ChannelSync names a failure it parks: every cause gives a plain string type."""

from __future__ import annotations

from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    RetryState,
    TimeoutError,
    TimeoutType,
)

from workflows.kernel import cause_message as _cause_message
from workflows.kernel import cause_type as _cause_type


def _activity_error(cause: BaseException) -> ActivityError:
    err = ActivityError(
        "activity failed", scheduled_event_id=5, started_event_id=6, identity="w",
        activity_type="discord_sync_channel_pages", activity_id="1",
        retry_state=RetryState.MAXIMUM_ATTEMPTS_REACHED,
    )  # fmt: skip
    err.__cause__ = cause
    return err


def test_a_heartbeat_timeout_is_named_as_a_string_not_an_enum():
    err = _activity_error(TimeoutError("timed out", type=TimeoutType.HEARTBEAT,
                                       last_heartbeat_details=[]))  # fmt: skip
    assert _cause_type(err) == "Timeout:HEARTBEAT"
    assert isinstance(_cause_type(err), str)


def test_application_errors_keep_their_type_and_message():
    err = _activity_error(ApplicationError("discord: 502 on channel 1", type="Transient"))
    assert (_cause_type(err), _cause_message(err)) == ("Transient", "discord: 502 on channel 1")


def test_other_causes_are_named_by_class():
    assert _cause_type(_activity_error(CancelledError("cancelled"))) == "CancelledError"
