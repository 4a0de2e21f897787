"""A slow window's places another process holds are not a wait of a whole period (issue 12).

``rate_limit_sync`` reports, per window, when the next cooling places free up; a process short
of its share takes that as its wait. In a slow window (an hour) that was wrong while another
live process still held places: those come back within a renewal or two (spare ones given back,
used ones cooled), long before the spent places cool. A sync asked for a place with a short
``max_wait``, read "an hour", and slept durably for the hour with most of the budget unspent.
Now the time is reported only when nobody else holds places of that slow window; otherwise it
is unknown (NULL) and the process looks again at its next call.

The function is 0005's with that one expression changed (applied as a checked substitution, so
the rest stays 0005's text).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_NEXT_FREE = """v_next := v_next || (SELECT min(k.free_at) FROM rate_limit_cooling k
                             WHERE k.bucket = p_bucket AND k.win = i - 1 AND k.free_at > v_now);"""
_NEXT_FREE_UNLESS_HELD = """v_next := v_next || CASE
            WHEN p_periods[i] >= 5.0 AND v_others > 0 THEN NULL
            ELSE (SELECT min(k.free_at) FROM rate_limit_cooling k
                  WHERE k.bucket = p_bucket AND k.win = i - 1 AND k.free_at > v_now) END;"""


def _substituted(sql: str, old: str, new: str) -> str:
    if sql.count(old) != 1:
        raise RuntimeError(f"migration 0009: expected one {old[:40]!r}… in 0005's function")
    return sql.replace(old, new)


def _function_0005() -> str:
    path = Path(__file__).with_name("0005_rate_limit_buckets.py")
    spec = importlib.util.spec_from_file_location("ratesync_migration_0005", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return _substituted(module.SYNC_FUNCTION, "CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")


def upgrade() -> None:
    op.execute(_substituted(_function_0005(), _NEXT_FREE, _NEXT_FREE_UNLESS_HELD))


def downgrade() -> None:
    op.execute(_function_0005())
