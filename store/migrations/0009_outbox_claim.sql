-- The outbox claim reads only what it takes, whatever the planner's statistics say.
--
-- Planned while the outbox was (nearly) empty - a new install, a quiet spell after old items
-- were forgotten, or simply the first claim a connection made - the claim read every due item,
-- looked up each one's ordering key by scanning the table and sorted them all to take the first
-- few, then found the claimed rows by scanning the table again: every claim cost time in
-- proportion to the backlog, just when there was one (a burst of clicks, Slack back after an
-- outage), until the table was analyzed again. Such plans need sorts or sequential scans, and
-- the walk of `outbox_due` in order with index lookups needs neither, so the claim switches
-- both off for its own statement; nothing else runs with those settings. The claimed rows are
-- updated through an array of their ids, which only an index lookup can serve.
--
-- Only the oldest pending item of an ordering key is claimable: a post before its updates.
CREATE FUNCTION taskjuice_claim_outbox(claim_limit integer, lease float8, worker text)
RETURNS SETOF outbox LANGUAGE sql SET enable_sort = off SET enable_seqscan = off AS $$
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
    WHERE o.id = ANY (ARRAY(SELECT id FROM due))
    RETURNING o.*
$$;
