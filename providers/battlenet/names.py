"""What may be put into a Battle.net URL: a region, and realm/guild/character slugs.

The region is substituted into the API *host* (``https://{region}.api.blizzard.com``), slugs
into path segments. Whatever reaches either from a command line, a workflow input or an
upstream roster is checked here first: only ``us, eu, kr, tw, cn`` as a region, and a slug is
letters, digits and hyphens (any script: ``festung-der-stürme``, ``гордунни``), so it can
neither leave its segment (``/``, ``\\``, ``%2F``), climb (``..``), nor start a query or a
fragment (``?``, ``#``). A refusal is :class:`BadInput`: one line, nothing sent.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from providers.errors import BadInput

REGIONS: tuple[str, ...] = ("us", "eu", "kr", "tw", "cn")
MAX_SLUG_LENGTH = 64  # realm slugs and guild names are far shorter (names: 2-12 letters)


def _shown(value: Any) -> str:
    """A value for an error line: repr (no raw newline or control character), cut short."""
    text = repr(value)
    return text if len(text) <= 48 else text[:45] + "..."


def check_region(region: Any) -> str:
    """``region`` itself if it is a Battle.net region, else :class:`BadInput`."""
    if isinstance(region, str) and region in REGIONS:
        return region
    raise BadInput(
        f"battlenet: region {_shown(region)} is not one of {', '.join(REGIONS)}; "
        "use one of them (e.g. --region eu)"
    )


def _slug_char(ch: str) -> bool:
    # letters (L*), combining marks (M*: an NFD "é"), digits (N*) and the hyphen
    return ch == "-" or unicodedata.category(ch)[0] in "LMN"


def valid_slug(value: Any) -> bool:
    """True when ``value`` can be one path segment as it is: a non-empty string of at most
    MAX_SLUG_LENGTH letters, digits and hyphens."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_SLUG_LENGTH
        and all(_slug_char(ch) for ch in value)
    )


def check_slug(value: Any, what: str) -> str:
    """``value`` if :func:`valid_slug`, else :class:`BadInput` naming ``what`` ("realm")."""
    if valid_slug(value):
        return str(value)
    raise BadInput(
        f"battlenet: {what} {_shown(value)} is not a valid name or slug (letters, digits and "
        f"hyphens, at most {MAX_SLUG_LENGTH}); check the {what}"
    )


def slugify(name: str) -> str:
    """Guild/realm slug from a name as users write it: lower-case, apostrophes and brackets
    dropped, spaces to hyphens (``Aggra (Português)`` → ``aggra-português``). The result may
    still be invalid (``../x``): :func:`check_slug` it before use."""
    kept = name.strip().lower()
    for dropped in ("'", "\u2019", "(", ")"):
        kept = kept.replace(dropped, "")
    return "-".join(kept.split())


def character_slug(name: str) -> str:
    """A character's path name: its name, lower-case (WoW names are letters only)."""
    return name.strip().lower()
