"""The provider registry is the one place providers are listed: the generic parts name none."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from providers.registry import SPECS, spec
from providers.spec import load

ROOT = Path(__file__).resolve().parents[2]
# Every spelling a provider goes by in code: names, titles, abbreviations, setting prefixes.
PROVIDER_WORDS = re.compile(r"battle\.?net|bnet|discord|pvp|zwift|channel|guild", re.IGNORECASE)


@pytest.mark.parametrize("path", ["worker.py", "cli/scheduler.py", "storage/status.py"])
def test_generic_modules_name_no_provider(path):
    text = (ROOT / path).read_text()
    found = sorted({m.group(0) for m in PROVIDER_WORDS.finditer(text)})
    assert not found, f"{path} names providers: {found}"


def test_every_spec_resolves_to_its_parts():
    names = [s.name for s in SPECS]
    assert len(names) == len(set(names))
    for provider in SPECS:
        assert spec(provider.name) is provider
        assert provider.kinds and provider.buckets
        for path in provider.workflows:
            assert load(path), path
        assert callable(load(provider.activities))
        assert callable(load(provider.status))
        plan = load(provider.plan)()
        for kind in provider.kinds:
            assert plan.default_priority(kind.name) == kind.priority


def test_an_unknown_provider_is_one_line_naming_the_known_ones():
    with pytest.raises(ValueError) as info:
        spec("battle.net")
    message = str(info.value)
    assert "\n" not in message and all(s.name in message for s in SPECS)


def test_every_workflow_of_every_provider_is_registered_with_the_worker():
    from worker import WORKFLOWS

    for provider in SPECS:
        for path in provider.workflows:
            assert set(load(path)) <= set(WORKFLOWS)
