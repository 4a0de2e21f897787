"""Discord's learned state shared by every worker process on one bot token (issue 12).

- ``discord_routes``: the route template → ``X-RateLimit-Bucket`` hash map one process learned,
  so another does not spend its first request of a route learning it again.
- ``discord_invalid_requests``: each process's invalid answers (401, 403, 429 but ``shared``)
  per second of the database clock, so the circuit breaker counts the answers of every
  process: Discord bans the IP (shared by the processes of one machine, and often of several)
  at 10,000 in 10 minutes, whoever sent them.

Both are keyed by the token's fingerprint (a hash, never the token). ``discord_share`` is a
process's one call per second: push what it learned and counted, get what the others did.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = [
    """
    CREATE TABLE discord_routes (
        fingerprint text NOT NULL,
        route text NOT NULL,
        bucket text NOT NULL,
        learned_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (fingerprint, route)
    )
    """,
    """
    CREATE TABLE discord_invalid_requests (
        fingerprint text NOT NULL,
        client text NOT NULL,
        second bigint NOT NULL,
        answers integer NOT NULL CHECK (answers > 0),
        PRIMARY KEY (fingerprint, second, client)
    )
    """,
]

SHARE_FUNCTION = """
CREATE FUNCTION discord_share(
    p_fingerprint text, p_client text, p_routes text[], p_buckets text[],
    p_ages double precision[], p_window double precision
) RETURNS TABLE (db_now double precision, routes text[], buckets text[],
                 ages double precision[], answers integer[])
LANGUAGE plpgsql AS $fn$
DECLARE
    v_now double precision := extract(epoch FROM clock_timestamp());
BEGIN
    INSERT INTO discord_routes AS r (fingerprint, route, bucket)
    SELECT p_fingerprint, x.route, x.bucket FROM unnest(p_routes, p_buckets) AS x(route, bucket)
    ON CONFLICT (fingerprint, route)
    DO UPDATE SET bucket = EXCLUDED.bucket, learned_at = now()
    WHERE r.bucket <> EXCLUDED.bucket;
    INSERT INTO discord_invalid_requests AS d (fingerprint, client, second, answers)
    SELECT p_fingerprint, p_client, floor(v_now - a)::bigint, count(*)
    FROM unnest(p_ages) AS a GROUP BY 3
    ON CONFLICT (fingerprint, second, client) DO UPDATE SET answers = d.answers + EXCLUDED.answers;
    DELETE FROM discord_invalid_requests d
    WHERE d.fingerprint = p_fingerprint AND d.second < floor(v_now - p_window);
    RETURN QUERY SELECT v_now,
        (SELECT coalesce(array_agg(r.route ORDER BY r.route), '{}') FROM discord_routes r
          WHERE r.fingerprint = p_fingerprint),
        (SELECT coalesce(array_agg(r.bucket ORDER BY r.route), '{}') FROM discord_routes r
          WHERE r.fingerprint = p_fingerprint),
        (SELECT coalesce(array_agg(greatest(0, v_now - d.second - 1) ORDER BY d.second DESC), '{}')
           FROM discord_invalid_requests d
          WHERE d.fingerprint = p_fingerprint AND d.client <> p_client),
        (SELECT coalesce(array_agg(d.answers ORDER BY d.second DESC), '{}')
           FROM discord_invalid_requests d
          WHERE d.fingerprint = p_fingerprint AND d.client <> p_client);
END
$fn$;
"""


def upgrade() -> None:
    for statement in TABLES:
        op.execute(statement)
    op.execute(SHARE_FUNCTION)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS discord_share")
    op.execute("DROP TABLE IF EXISTS discord_invalid_requests, discord_routes")
