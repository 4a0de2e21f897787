"""One rate budget shared by every worker process (RATE_LIMIT_BACKEND=postgres, issue 12).

A bucket (one provider credential, named by a fingerprint, never the credential) has windows
"N per T". Its places are either *leased* to a live process (`rate_limit_leases`: a standing
count the process reuses locally, each place held from a request's start until one period after
its answer) or *cooling* (`rate_limit_cooling`: given back or used up, free again at `free_at`).
A process renews its leases every fraction of a second; one that stops (SIGKILL) has its places
turned into cooling ones at expiry + one period + a grace second, as if it had used them all at
the last moment. Every time is the database server's clock (epoch seconds of
``clock_timestamp()``), so skewed worker clocks cannot overfill a window.

Everything a process does to its budget is one call of ``rate_limit_sync`` (one round trip,
under the bucket row's lock): turn expired leases into cooling places, take back what the caller
gives (free places at once, used places as cooling ones), compute the caller's fair target from
every live client's demand (manual demand first, the rest shared by lane weight), grant up to it,
and report when more places free up. It notifies `ratesync_limit` so that other processes learn
of a pause, a manual demand or freed places at once.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TABLES = """
CREATE TABLE rate_limit_buckets (
    bucket text PRIMARY KEY,
    provider text NOT NULL,
    fingerprint text NOT NULL,
    windows jsonb NOT NULL,
    paused_until double precision NOT NULL DEFAULT 0,
    manual_until double precision NOT NULL DEFAULT 0,
    statements bigint NOT NULL DEFAULT 0,
    requests bigint NOT NULL DEFAULT 0,
    rate_limited bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE rate_limit_clients (
    bucket text NOT NULL REFERENCES rate_limit_buckets ON DELETE CASCADE,
    client text NOT NULL,
    host text NOT NULL,
    pid integer NOT NULL,
    lane smallint NOT NULL,
    waiting integer[] NOT NULL,
    demand integer[] NOT NULL,
    seen_at double precision NOT NULL,
    expires_at double precision NOT NULL,
    PRIMARY KEY (bucket, client)
);
CREATE TABLE rate_limit_leases (
    bucket text NOT NULL REFERENCES rate_limit_buckets ON DELETE CASCADE,
    client text NOT NULL,
    win smallint NOT NULL,
    period double precision NOT NULL,
    places integer NOT NULL CHECK (places >= 0),
    expires_at double precision NOT NULL,
    PRIMARY KEY (bucket, win, client)
);
CREATE TABLE rate_limit_cooling (
    bucket text NOT NULL REFERENCES rate_limit_buckets ON DELETE CASCADE,
    win smallint NOT NULL,
    free_at double precision NOT NULL,
    places integer NOT NULL CHECK (places > 0),
    PRIMARY KEY (bucket, win, free_at)
);
"""

# Lane weights (Priority // 10): backfill 1, bulk 2, incremental 4, urgent 8; manual (>= 40)
# demand is served first, whole. GRACE: how long after its lease expired a request of a dead
# process may still arrive.
SYNC_FUNCTION = """
CREATE FUNCTION rate_limit_sync(
    p_bucket text, p_provider text, p_fingerprint text,
    p_limits integer[], p_periods double precision[],
    p_client text, p_host text, p_pid integer,
    p_lease double precision, p_lane integer, p_waiting integer[],
    p_want integer[], p_give integer[], p_cool integer[], p_cool_age double precision[],
    p_requests integer, p_pause double precision,
    p_manual_hold double precision, p_reserve integer, p_release boolean
) RETURNS TABLE (
    db_now double precision, places integer[], targets integer[],
    next_free double precision[], paused_until double precision,
    manual_until double precision
) LANGUAGE plpgsql AS $fn$
DECLARE
    v_now double precision := extract(epoch FROM clock_timestamp());
    b rate_limit_buckets%ROWTYPE;
    n integer := coalesce(array_length(p_limits, 1), 0);
    v_manual boolean := p_lane >= 40 AND NOT p_release;
    v_was_manual boolean;
    v_margin constant double precision := 0.005;
    v_grace constant double precision := 1.0;
    v_gran double precision;
    v_own integer; v_others integer; v_cool integer; v_free integer; v_spent integer;
    v_keep integer;
    v_target integer; v_want integer; v_grant integer; v_rest integer; v_manual_sum integer;
    v_weight double precision; v_left double precision; v_share double precision;
    v_given integer := 0; v_unmet boolean := false;
    v_places integer[] := '{}'; v_targets integer[] := '{}';
    v_next double precision[] := '{}';
    c record;
BEGIN
    INSERT INTO rate_limit_buckets (bucket, provider, fingerprint, windows)
    VALUES (p_bucket, p_provider, p_fingerprint,
            (SELECT jsonb_agg(jsonb_build_array(l, p))
               FROM unnest(p_limits, p_periods) AS w(l, p)))
    ON CONFLICT (bucket) DO NOTHING;
    SELECT * INTO b FROM rate_limit_buckets r WHERE r.bucket = p_bucket FOR UPDATE;
    v_was_manual := b.manual_until > v_now;

    -- leases nobody renewed: their places cool down as if used at the last moment
    WITH gone AS (
        DELETE FROM rate_limit_leases l
        WHERE l.bucket = p_bucket AND l.expires_at < v_now
        RETURNING l.win, l.expires_at + l.period + v_grace AS free_at, l.places
    )
    INSERT INTO rate_limit_cooling AS k (bucket, win, free_at, places)
    SELECT p_bucket, g.win, g.free_at, sum(g.places) FROM gone g
    WHERE g.places > 0 AND g.free_at > v_now GROUP BY g.win, g.free_at
    ON CONFLICT ON CONSTRAINT rate_limit_cooling_pkey
    DO UPDATE SET places = k.places + EXCLUDED.places;
    DELETE FROM rate_limit_cooling k WHERE k.bucket = p_bucket AND k.free_at <= v_now;
    DELETE FROM rate_limit_clients k
    WHERE k.bucket = p_bucket AND k.expires_at < v_now AND k.client <> p_client;

    UPDATE rate_limit_buckets r SET
        statements = r.statements + 1,
        requests = r.requests + p_requests,
        paused_until = CASE WHEN p_pause > 0 THEN greatest(r.paused_until, v_now + p_pause)
                            ELSE r.paused_until END,
        rate_limited = r.rate_limited + (p_pause > 0)::integer,
        manual_until = CASE WHEN v_manual THEN greatest(r.manual_until, v_now + p_manual_hold)
                            ELSE r.manual_until END,
        updated_at = now()
    WHERE r.bucket = p_bucket RETURNING * INTO b;

    IF p_release THEN
        DELETE FROM rate_limit_clients k WHERE k.bucket = p_bucket AND k.client = p_client;
    ELSE
        INSERT INTO rate_limit_clients AS k
            (bucket, client, host, pid, lane, waiting, demand, seen_at, expires_at)
        VALUES (p_bucket, p_client, p_host, p_pid, p_lane, p_waiting, p_want, v_now,
                v_now + p_lease)
        ON CONFLICT ON CONSTRAINT rate_limit_clients_pkey DO UPDATE SET
            lane = EXCLUDED.lane, waiting = EXCLUDED.waiting, demand = EXCLUDED.demand,
            seen_at = EXCLUDED.seen_at, expires_at = EXCLUDED.expires_at;
    END IF;

    FOR i IN 1..n LOOP
        SELECT l.places INTO v_own FROM rate_limit_leases l
        WHERE l.bucket = p_bucket AND l.win = i - 1 AND l.client = p_client;
        v_own := coalesce(v_own, 0);
        -- places given back, or used ones over our share cooling down in a fast window (a
        -- share shrunk for a manual request is given back so: the manual process must hear of
        -- it, not wait for its next renewal; a slow window's cooled places are spent)
        IF (p_give[i] > 0 AND v_own > 0 OR p_cool[i] > 0 AND p_periods[i] < 5.0) AND EXISTS (
            SELECT 1 FROM rate_limit_clients k
            LEFT JOIN rate_limit_leases l
              ON l.bucket = k.bucket AND l.client = k.client AND l.win = i - 1
            WHERE k.bucket = p_bucket AND k.client <> p_client AND k.expires_at >= v_now
              AND k.demand[i] > coalesce(l.places, 0)) THEN
            v_given := v_given + least(v_own, p_give[i] + p_cool[i]);  -- someone waits
        END IF;
        v_own := greatest(0, v_own - p_give[i] - p_cool[i]);
        IF p_cool[i] > 0 THEN
            v_gran := greatest(0.001, p_periods[i] / 1000.0);
            INSERT INTO rate_limit_cooling AS k (bucket, win, free_at, places)
            VALUES (p_bucket, i - 1,
                    ceil((v_now - p_cool_age[i] + p_periods[i] + v_margin) / v_gran) * v_gran,
                    p_cool[i])
            ON CONFLICT ON CONSTRAINT rate_limit_cooling_pkey
            DO UPDATE SET places = k.places + EXCLUDED.places;
        END IF;
        SELECT coalesce(sum(l.places), 0) INTO v_others FROM rate_limit_leases l
        WHERE l.bucket = p_bucket AND l.win = i - 1 AND l.client <> p_client;
        SELECT coalesce(sum(k.places), 0) INTO v_cool FROM rate_limit_cooling k
        WHERE k.bucket = p_bucket AND k.win = i - 1 AND k.free_at > v_now;
        v_free := p_limits[i] - v_own - v_others - v_cool;

        -- the caller's fair share of the window among the clients that want places now
        SELECT coalesce(sum(k.demand[i]), 0) INTO v_manual_sum FROM rate_limit_clients k
        WHERE k.bucket = p_bucket AND k.expires_at >= v_now AND k.lane >= 40;
        v_rest := p_limits[i] - least(p_limits[i], v_manual_sum);
        -- a slow window's cooling places are spent (used places go back at every call, free
        -- an hour later): the shares are of what is left, or a process holding the rest
        -- would keep it from a manual request and from every newcomer (providers/shared_limit
        -- SLOW_PERIOD)
        v_spent := CASE WHEN p_periods[i] >= 5.0 THEN v_cool ELSE 0 END;
        v_rest := greatest(0, v_rest - v_spent);
        -- the reserve for manual requests: whole while one is active, one place otherwise,
        -- so the first manual request is served at its first call instead of waiting for the
        -- other processes to hear of it and give a place back
        v_keep := CASE WHEN b.manual_until > v_now THEN p_reserve ELSE least(1, p_reserve) END;
        IF v_keep > 0 THEN
            v_rest := least(v_rest, greatest(0, p_limits[i] - v_spent - v_keep));
            IF NOT v_manual THEN v_free := v_free - v_keep; END IF;
        END IF;
        IF v_manual THEN
            v_target := p_want[i];
        ELSE
            v_target := 0;
            SELECT coalesce(sum(power(2, greatest(k.lane, 0) / 10)), 0) INTO v_weight
            FROM rate_limit_clients k
            WHERE k.bucket = p_bucket AND k.expires_at >= v_now AND k.lane < 40
              AND k.demand[i] > 0;
            v_left := v_rest;
            FOR c IN
                SELECT k.client, k.demand[i] AS d, power(2, greatest(k.lane, 0) / 10) AS w
                FROM rate_limit_clients k
                WHERE k.bucket = p_bucket AND k.expires_at >= v_now AND k.lane < 40
                  AND k.demand[i] > 0
                ORDER BY k.demand[i] / power(2, greatest(k.lane, 0) / 10), k.client
            LOOP
                v_share := CASE WHEN v_weight > 0 THEN v_left * c.w / v_weight ELSE 0 END;
                IF c.d <= v_share THEN
                    v_share := c.d;
                END IF;
                IF c.client = p_client THEN
                    v_target := greatest(1, floor(v_share)::integer);
                    EXIT;
                END IF;
                v_left := v_left - v_share;
                v_weight := v_weight - c.w;
            END LOOP;
        END IF;
        v_want := CASE WHEN p_release THEN 0 ELSE least(p_want[i], v_target) END;
        v_grant := greatest(0, least(v_want - v_own, v_free));
        v_own := v_own + v_grant;
        IF v_own > 0 THEN
            INSERT INTO rate_limit_leases AS l (bucket, client, win, period, places, expires_at)
            VALUES (p_bucket, p_client, i - 1, p_periods[i], v_own, v_now + p_lease)
            ON CONFLICT ON CONSTRAINT rate_limit_leases_pkey DO UPDATE SET
                places = EXCLUDED.places, period = EXCLUDED.period,
                expires_at = EXCLUDED.expires_at;
        ELSE
            DELETE FROM rate_limit_leases l
            WHERE l.bucket = p_bucket AND l.win = i - 1 AND l.client = p_client;
        END IF;
        IF v_own < v_want THEN
            v_unmet := true;
        END IF;
        v_places := v_places || v_own;
        v_targets := v_targets || v_target;
        v_next := v_next || (SELECT min(k.free_at) FROM rate_limit_cooling k
                             WHERE k.bucket = p_bucket AND k.win = i - 1 AND k.free_at > v_now);
    END LOOP;

    IF p_pause > 0 THEN
        PERFORM pg_notify('ratesync_limit', p_bucket || ' pause ' || (b.paused_until - v_now));
    ELSIF v_manual AND (NOT v_was_manual OR v_unmet) THEN
        PERFORM pg_notify('ratesync_limit', p_bucket || ' manual');
    ELSIF v_given > 0 THEN
        PERFORM pg_notify('ratesync_limit', p_bucket || ' freed');
    END IF;

    RETURN QUERY SELECT v_now, v_places, v_targets, v_next, b.paused_until, b.manual_until;
END
$fn$;
"""


def upgrade() -> None:
    for statement in TABLES.split(";"):
        if statement.strip():
            op.execute(statement)
    op.execute(SYNC_FUNCTION)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS rate_limit_sync")
    op.execute(
        "DROP TABLE IF EXISTS rate_limit_cooling, rate_limit_leases, rate_limit_clients, "
        "rate_limit_buckets"
    )
