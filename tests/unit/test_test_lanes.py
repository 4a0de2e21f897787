"""The lane lists of tests/conftest.py name files that exist: a renamed test file would silently
leave the untimed group and run later, alone, lengthening CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import conftest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", [*conftest._STURDY, *conftest._CALM_SERVERS, *conftest._CALM])
def test_every_lane_entry_names_a_test_file_or_folder(path: str) -> None:
    assert (ROOT / path).exists(), f"{path} in tests/conftest.py does not exist"


def test_no_test_is_in_two_lanes() -> None:
    assert not set(conftest._STURDY) & set(conftest._CALM_SERVERS)
