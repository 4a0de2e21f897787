"""The providers this build knows: one line each (README, "Adding a provider")."""

from __future__ import annotations

from providers.battlenet.spec import SPEC as BATTLENET
from providers.discord.spec import SPEC as DISCORD
from providers.spec import ProviderSpec
from providers.zwift.spec import SPEC as ZWIFT

SPECS: tuple[ProviderSpec, ...] = (
    BATTLENET,
    DISCORD,
    ZWIFT,
)


def names() -> list[str]:
    return [s.name for s in SPECS]


def spec(name: str) -> ProviderSpec:
    """The spec of ``name``; ValueError naming the known ones otherwise."""
    for found in SPECS:
        if found.name == name:
            return found
    raise ValueError(f"unknown provider {name!r}; known: {', '.join(names())}")
