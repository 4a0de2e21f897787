"""A user's environment for the embedded servers: no DATABASE_URL / TEMPORAL_ADDRESS, a DATA_DIR
of the test's own and free ports (tests stop what runs there with `runtime.stop_servers`)."""

from __future__ import annotations

import os
from pathlib import Path

import runtime


def embedded_env(data_dir: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "TEMPORAL_ADDRESS"}},
        "DATA_DIR": str(data_dir),
        "EMBEDDED_POSTGRES_PORT": str(runtime.free_port()),
        "EMBEDDED_TEMPORAL_PORT": str(runtime.free_port()),
        "EMBEDDED_TEMPORAL_UI_PORT": str(runtime.free_port()),
    }
