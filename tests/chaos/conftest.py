"""The chaos suite: real processes and servers, faults injected while a sync runs.

`pytest -m chaos` runs the quick form of every scenario (CI runs it with the rest of the
suite); `python -m bench.chaos` runs the long form and prints the table kept in CHAOS.md.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "chaos: a chaos scenario (real servers and processes, faults injected)"
    )
