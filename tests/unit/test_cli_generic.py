"""The generic verbs know providers only through the registry: their source names none."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from providers.registry import SPECS

ROOT = Path(__file__).resolve().parents[2]
# every verb module but the provider modules (cli/<provider>.py, cli/<provider>_*.py) and the
# Battle.net demo
GENERIC = sorted(
    p.relative_to(ROOT).as_posix()
    for p in (ROOT / "cli").glob("*.py")
    if p.stem.split("_")[0] not in {s.name for s in SPECS} | {"demo"}
)


def _provider_words() -> set[str]:
    words = {"bnet", "pvp", "blizzard", "wow", "zwift"}
    for spec in SPECS:
        words |= {spec.name, spec.title, spec.scope, spec.scope_option.lstrip("-")}
        words |= {spec.default_scope or "", *(k.cadence_setting or "" for k in spec.kinds)}
        words |= {k.name for k in spec.kinds if k.entity}  # "character", "guild"…
    return {w.lower() for w in words if w}


def test_the_generic_modules_are_the_ones_expected():
    assert "cli/scheduler.py" in GENERIC and "cli/sync.py" in GENERIC
    assert {"cli/track.py", "cli/add.py", "cli/status.py", "cli/reset.py"} <= set(GENERIC)


@pytest.mark.parametrize("path", GENERIC)
def test_generic_verb_module_names_no_provider(path):
    text = (ROOT / path).read_text().lower()
    found = sorted(w for w in _provider_words() if re.search(rf"(?<![a-z]){re.escape(w)}", text))
    assert not found, f"{path} names {found}: take it from the provider's spec or cli module"


def test_every_provider_declares_its_cli_module():
    for spec in SPECS:
        assert spec.cli == f"cli.{spec.name}:COMMANDS"
        assert (ROOT / "cli" / f"{spec.name}.py").exists()
