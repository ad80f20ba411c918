-- A caller the budget turns away is promised a slot of its own: the next one that no earlier
-- caller of its priority or a more urgent one was promised. Before, every caller turned away
-- was told when the *next* permit frees, so fifty deferred calls came back together at that
-- moment, one got the permit and the others went round again, each time costing a claim and
-- a render, until their turn happened to come. Now they come back one per freeing permit, in
-- the order they asked. A promise is advice, not a reservation: a permit that is free when
-- asked for is granted, and a caller that finds its slot taken is promised the next.
-- `promised` holds the promised times still ahead, `promised_priority` the outbox priority of
-- each (0 urgent .. 3 App Home), so a more urgent caller is never placed behind the promises
-- of less urgent ones, and `promised_to` the outbox item each was promised to (NULL: a call
-- outside the outbox): an item that comes back early, on any replica, finds its slot still
-- its own, and one granted a permit before its slot gives the slot up. At most two windows'
-- worth of promises are kept; a caller beyond them is told to come back at a random moment of
-- the window after the last one, and is promised its slot then.
ALTER TABLE slack_budgets
    ADD COLUMN promised timestamptz[] NOT NULL DEFAULT '{}',
    ADD COLUMN promised_priority smallint[] NOT NULL DEFAULT '{}',
    ADD COLUMN promised_to bigint[] NOT NULL DEFAULT '{}';

DROP FUNCTION taskjuice_slack_permits(text, text, integer, float8, integer);

-- Grant up to `want` permits of (team, scope) such that at most `count` are granted in any
-- window of `window_seconds`; returns how many, and when none, the seconds until the caller's
-- slot (or until the block ends). The row lock serialises the replicas asking for one scope.
CREATE FUNCTION taskjuice_slack_permits(
    p_team text, p_scope text, p_count integer, window_seconds float8, want integer,
    p_priority smallint, p_item bigint, OUT granted integer, OUT wait float8)
LANGUAGE plpgsql AS $$
DECLARE
    budget slack_budgets;
    at timestamptz;
    kept timestamptz[];
    ahead timestamptz[];
    ahead_priority smallint[];
    ahead_to bigint[];
    mine timestamptz;
    line timestamptz[];
    slot timestamptz;
BEGIN
    INSERT INTO slack_budgets (team, scope) VALUES (p_team, p_scope) ON CONFLICT DO NOTHING;
    SELECT * INTO budget FROM slack_budgets
    WHERE team = p_team AND scope = p_scope FOR UPDATE;
    at := clock_timestamp();
    IF budget.blocked_until > at THEN
        granted := 0;
        wait := extract(epoch FROM budget.blocked_until - at);
        RETURN;
    END IF;
    kept := ARRAY(SELECT g FROM unnest(budget.granted) AS g
                  WHERE g > at - make_interval(secs => window_seconds));
    SELECT min(p.slot) INTO mine
    FROM unnest(budget.promised, budget.promised_to) AS p(slot, item)
    WHERE p.slot > at AND p.item = p_item;
    granted := greatest(0, least(want, p_count - cardinality(kept)));
    -- the promises still ahead, less the caller's own when it is granted a permit now
    SELECT coalesce(array_agg(p.slot ORDER BY p.slot), '{}'),
           coalesce(array_agg(p.priority ORDER BY p.slot), '{}'),
           coalesce(array_agg(p.item ORDER BY p.slot), '{}')
    INTO ahead, ahead_priority, ahead_to
    FROM unnest(budget.promised, budget.promised_priority, budget.promised_to)
         AS p(slot, priority, item)
    WHERE p.slot > at AND (granted = 0 OR p_item IS NULL OR p.item IS DISTINCT FROM p_item);
    IF granted > 0 THEN
        kept := kept || array_fill(at, ARRAY[granted]);
        wait := 0;
    ELSIF mine IS NOT NULL THEN
        -- back early for its slot: it is still the caller's
        wait := extract(epoch FROM mine - at);
    ELSE
        -- The schedule so far: the permits in the window, then the slots promised to callers
        -- at least as urgent; the next slot frees a window after the one `p_count` back.
        line := kept || ARRAY(SELECT p.slot
                              FROM unnest(ahead, ahead_priority) AS p(slot, priority)
                              WHERE p.priority <= p_priority ORDER BY p.slot);
        slot := line[cardinality(line) - p_count + 1] + make_interval(secs => window_seconds);
        IF cardinality(ahead) < 2 * p_count THEN
            ahead := ahead || slot;
            ahead_priority := ahead_priority || p_priority;
            ahead_to := ahead_to || p_item;
        ELSE
            -- beyond the promises kept: back somewhere in the window after the last, spread
            -- out, to be promised a slot then
            slot := slot + make_interval(secs => random() * window_seconds);
        END IF;
        wait := greatest(0, extract(epoch FROM slot - at));
    END IF;
    UPDATE slack_budgets
    SET granted = kept, promised = ahead, promised_priority = ahead_priority,
        promised_to = ahead_to
    WHERE team = p_team AND scope = p_scope;
END
$$;
