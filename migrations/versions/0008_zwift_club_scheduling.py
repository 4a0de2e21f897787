"""ZwiftRacing club scheduling (issue 13): which club's scheduler serves an event or a rider
added by hand, and what the results pass learned.

- ``zwift_events.club_id``: the club whose scheduler keeps the event fresh (``track event``);
  the public API lists no events, so each is tracked for a club. Indexed with ``starts_at``:
  a pass selects a club's events by how soon they start.
- ``zwift_events.results_checked_at``: the last time results were asked for and not there yet
  (the API answers 404 until an event has finished), so a results pass asks again only later.
- ``zwift_riders.added_for_club``: a rider added by hand (``add rider``) is folded into that
  club's next bulk refresh even when the rider is not a member of it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE zwift_events ADD COLUMN club_id bigint")
    op.execute("ALTER TABLE zwift_events ADD COLUMN results_checked_at timestamptz")
    op.execute("CREATE INDEX ix_zwift_events_club_starts ON zwift_events (club_id, starts_at)")
    op.execute("ALTER TABLE zwift_riders ADD COLUMN added_for_club bigint")
    op.execute(
        "CREATE INDEX ix_zwift_riders_added_for ON zwift_riders (added_for_club, rider_id) "
        "WHERE added_for_club IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_zwift_riders_added_for")
    op.execute("ALTER TABLE zwift_riders DROP COLUMN IF EXISTS added_for_club")
    op.execute("DROP INDEX IF EXISTS ix_zwift_events_club_starts")
    op.execute("ALTER TABLE zwift_events DROP COLUMN IF EXISTS results_checked_at")
    op.execute("ALTER TABLE zwift_events DROP COLUMN IF EXISTS club_id")
