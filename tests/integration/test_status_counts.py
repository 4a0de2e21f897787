"""Issue 11 item 8: `status`'s character counts are disjoint and never exceed `known`.

A character stored once and later answering 403/404 keeps its old profile and is private: it
was counted in both `with_profile` and `private_or_missing` (183 + 148 > 190 known).
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from storage import battlenet as db
from storage.db import create_engine

pytestmark = [pytest.mark.integration]


async def test_character_counts_are_disjoint(database_url):
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO characters (region, realm, name_slug, name, is_private, "
                    "profile_json, last_synced_at) VALUES "
                    "('eu','r','stored','Stored', false, '{}', now()),"
                    "('eu','r','gone','Gone', true, '{}', now()),"  # stored, then 404
                    "('eu','r','private','Private', true, NULL, now()),"
                    "('eu','r','new','New', false, NULL, NULL)"
                )
            )
        async with engine.connect() as conn:
            chars = (await db.status(conn))["characters"]
    finally:
        await engine.dispose()
    assert chars == {"known": 4, "with_profile": 1, "private_or_missing": 2, "never_synced": 1}
    parts = chars["with_profile"] + chars["private_or_missing"] + chars["never_synced"]
    assert parts <= chars["known"]
