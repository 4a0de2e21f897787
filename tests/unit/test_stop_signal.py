"""worker.StopSignal stops the worker even when its output is gone (a closed pipe or terminal)."""

from __future__ import annotations

import asyncio
import signal
import sys

import pytest

from worker import StopSignal


class ClosedPipe:
    def write(self, _text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_signal_stops_the_worker_when_stdout_is_a_closed_pipe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def run() -> StopSignal:
        stop = StopSignal(asyncio.get_running_loop(), announce="stopping on {signal}")
        try:
            monkeypatch.setattr(sys, "stdout", ClosedPipe())
            stop._caught(signal.SIGTERM)
            await asyncio.wait_for(stop.event.wait(), 1.0)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                asyncio.get_running_loop().remove_signal_handler(sig)
        return stop

    stop = asyncio.run(run())
    assert stop.received == signal.SIGTERM and stop.exit_code == 0
