-- The outbox claim walks `outbox_due` in order and stops at its limit, whatever the planner's
-- statistics say.
--
-- Planned from statistics gathered while the outbox was (nearly) empty - a new install, or a
-- quiet spell after old items were forgotten - the claim read every due item, looked up each
-- one's ordering key and sorted them all to take the first few: every claim cost time in
-- proportion to the backlog, just when there was one (a burst of clicks, Slack back after an
-- outage), until autovacuum happened to analyze the table again. Sorting is the one step such
-- a plan needs and the ordered walk does not, so the claim switches sorting off for its own
-- statement; nothing else runs with that setting.
--
-- Only the oldest pending item of an ordering key is claimable: a post before its updates.
CREATE FUNCTION taskjuice_claim_outbox(claim_limit integer, lease float8, worker text)
RETURNS SETOF outbox LANGUAGE sql SET enable_sort = off AS $$
    WITH due AS (
        SELECT o.id FROM outbox o
        WHERE o.status = 'pending' AND o.next_attempt_at <= now()
          AND (o.ordering_key IS NULL OR NOT EXISTS (
                SELECT 1 FROM outbox p
                WHERE p.ordering_key = o.ordering_key AND p.status = 'pending' AND p.id < o.id))
        ORDER BY o.next_attempt_at, o.id
        LIMIT claim_limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE outbox o
    SET attempts = o.attempts + 1, claimed_by = worker,
        next_attempt_at = now() + make_interval(secs => lease)
    FROM due WHERE o.id = due.id
    RETURNING o.*
$$;
