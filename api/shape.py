"""What the read API returns, parsed from the stored documents (pure functions, no I/O).

The mirror keeps each upstream answer whole (JSONB) next to the columns a site filters on; a
page needs a few fields of it. These functions pick them, tolerant of what an upstream leaves
out (a field missing or of another type is ``None``, never an error: the answer was stored as
the API gave it, and a site's page must still render).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any


def _get(doc: Any, *path: str | int) -> Any:
    for step in path:
        if isinstance(step, int):
            if not isinstance(doc, list) or not -len(doc) <= step < len(doc):
                return None
            doc = doc[step]
        else:
            if not isinstance(doc, dict):
                return None
            doc = doc.get(step)
    return doc


def _name(doc: Any, *path: str) -> Any:
    """A Battle.net reference's name (``{"name": ...}``, or a localised name map)."""
    value = _get(doc, *path, "name")
    if isinstance(value, dict):  # a namespace without locale: {"en_US": ...}
        return value.get("en_US") or next(iter(value.values()), None)
    return value


def freshness(last_synced_at: datetime | None, staleness: float | None, now: datetime) -> dict:
    """The two fields every entity carries: when it was last stored from upstream, and whether
    that is older than the provider's staleness (never synced: stale)."""
    if last_synced_at is None:
        stale = True
    elif staleness is None:
        stale = False
    else:
        stale = now - last_synced_at > timedelta(seconds=staleness)
    return {"last_synced_at": iso(last_synced_at), "stale": stale}


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat().replace("+00:00", "Z")


def equipped_items(equipment: Any) -> list[dict[str, Any]]:
    items = _get(equipment, "equipped_items")
    if not isinstance(items, list):
        return []
    return [
        {
            "slot": _get(item, "slot", "type"),
            "item_id": _get(item, "item", "id"),
            "name": item.get("name") if isinstance(item.get("name"), str) else _name(item, "item"),
            "quality": _get(item, "quality", "type"),
            "item_level": _get(item, "level", "value"),
        }
        for item in items
        if isinstance(item, dict)
    ]


def professions(doc: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for group in ("primaries", "secondaries"):
        entries = _get(doc, group)
        if not isinstance(entries, list):
            continue
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            listed = entry.get("tiers")
            tiers: list[Any] = listed if isinstance(listed, list) else []
            out.append(
                {
                    "name": _name(entry, "profession"),
                    "id": _get(entry, "profession", "id"),
                    "primary": group == "primaries",
                    # old-style secondaries carry the points at the top level, no tiers
                    "skill_points": entry.get("skill_points"),
                    "max_skill_points": entry.get("max_skill_points"),
                    "tiers": [
                        {
                            "name": _name(t, "tier"),
                            "skill_points": t.get("skill_points"),
                            "max_skill_points": t.get("max_skill_points"),
                        }
                        for t in tiers
                        if isinstance(t, dict)
                    ],
                }
            )
    return out


def member_realm(member_json: Any) -> Any:
    return _get(member_json, "character", "realm", "slug")


def message_content(message_json: Any) -> dict[str, Any]:
    return {
        "content": _get(message_json, "content"),
        "author": _get(message_json, "author", "username"),
        "thread_id": _get(message_json, "thread", "id"),
    }


def snowflake(value: int | None) -> str | None:
    """Discord ids as strings, as Discord gives them (a JavaScript number loses digits)."""
    return None if value is None else str(value)
