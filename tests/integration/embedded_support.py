"""A user's environment for the embedded servers: no DATABASE_URL / TEMPORAL_ADDRESS, a DATA_DIR
of the test's own and free ports (tests stop what runs there with `runtime.stop_servers`)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

import runtime


def embedded_env(data_dir: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "TEMPORAL_ADDRESS"}},
        "DATA_DIR": str(data_dir),
        "EMBEDDED_POSTGRES_PORT": str(runtime.free_port()),
        "EMBEDDED_TEMPORAL_PORT": str(runtime.free_port()),
        "EMBEDDED_TEMPORAL_UI_PORT": str(runtime.free_port()),
    }


def stop_leftovers(base: Path) -> list[Path]:
    """Stop the shared servers still running in any DATA_DIR under ``base`` (a session's
    temporary directory) and return those DATA_DIRs: a test that ran starter.py or worker.py
    with the embedded servers and did not stop them would leave them to the whole CI run."""
    left: list[Path] = []
    for data_dir in sorted({p.parent for p in base.rglob("*.pid") if p.parent.is_dir()}):
        if runtime.running_servers(data_dir):
            runtime.stop_servers(data_dir)
            left.append(data_dir)
    return left


@pytest.fixture(scope="session", autouse=True)
def no_shared_server_left(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The embedded servers outlive the commands that start them (runtime.py): whatever a test
    left running under this session's temporary directory is stopped at the end, and named
    (used by tests/integration/conftest.py and tests/e2e/conftest.py)."""
    yield
    for data_dir in stop_leftovers(tmp_path_factory.getbasetemp()):
        warnings.warn(f"a test left the shared servers of {data_dir} running", stacklevel=1)
