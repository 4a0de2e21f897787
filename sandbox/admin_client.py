"""Read a running sandbox's admin endpoints (counters, ground truth) from async code."""

from __future__ import annotations

from typing import Any

import httpx


async def admin(url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """GET `/_admin/<path>`, or POST `body` to it; the decoded JSON answer."""
    async with httpx.AsyncClient(timeout=30) as http:
        if body is None:
            response = await http.get(f"{url}/_admin/{path}")
        else:
            response = await http.post(f"{url}/_admin/{path}", json=body)
        response.raise_for_status()
        return response.json()
