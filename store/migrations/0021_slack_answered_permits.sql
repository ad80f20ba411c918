-- A permit counts until Slack answered its call, when that is sooner than its hold's end; the
-- caller first in line need not wait for its promised slot when a permit frees before it; and
-- a caller back after its slot is not sent to the end of the line.
--
-- Until now the ledger kept when each permit was granted and counted it over the window plus
-- the permit's hold (how long a leased permit may wait for its call): a call may leave up to a
-- hold after its grant, so the next window could only start a hold later. But most calls
-- leave at once and are answered within milliseconds, and whatever Slack answered it had
-- received. So `granted` now holds, for each permit, the latest time Slack may have received
-- its call: the grant plus the hold at first, lowered to the answer's time once the process
-- that made the call reports it (with its next ask of that budget, so no round trip is
-- added). A permit then frees a window after that time: a Tier 3 minute's second fifty calls
-- start about a hold (1.2 s) sooner, and a channel's next post a quarter of a pace sooner,
-- with the same guarantee — no `count` calls reach Slack within any window of `seconds`. A
-- slot promised before such answers were reported may lie later than the permit it waits for
-- now frees: the caller first in line then comes for that permit (the next post to a channel,
-- say, one interval after the last one's answer rather than after its grant and hold).
--
-- A promised caller can come back after its slot (a busy process brings its item back late),
-- and find the permit taken. It was placed behind every promise still ahead, as a newcomer:
-- for a Tier 3 method in its second minute, that is the third minute. Promises are now kept
-- for 10 s past their slot, and a caller back late goes before the promises of its own urgency.
--
-- The ledger's entries were grant times: each is moved to the end of the longest hold (2 s),
-- which is never sooner than it counted before.
UPDATE slack_budgets
SET granted = ARRAY(SELECT g + interval '2 seconds' FROM unnest(granted) AS g ORDER BY g);

-- Up to `want` permits of (team, scope) such that at most `p_count` calls reach Slack in any
-- window of `p_seconds`. A permit granted now counts until now + `p_hold`
-- (`counted_until`, returned), or until the time given for it in `answered_at` (its entry
-- being `answered_was`), if sooner. When none is granted, `wait` is the seconds until the
-- caller's slot, promised as in migration 0020 (or until the block ends).
CREATE FUNCTION taskjuice_slack_permits(
    p_team text, p_scope text, p_count integer, p_seconds float8, p_hold float8, want integer,
    p_priority smallint, p_item bigint, answered_was timestamptz[], answered_at timestamptz[],
    OUT granted integer, OUT wait float8, OUT counted_until timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    budget slack_budgets;
    at timestamptz;
    counted timestamptz[];
    kept timestamptz[];
    promises timestamptz[];
    promises_priority smallint[];
    promises_to bigint[];
    ahead timestamptz[];
    mine timestamptz;
    late boolean;
    line timestamptz[];
    slot timestamptz;
    n integer;
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
    -- Calls Slack answered count until their answer (one entry each, never later).
    counted := budget.granted;
    FOR i IN 1 .. coalesce(least(cardinality(answered_was), cardinality(answered_at)), 0) LOOP
        n := array_position(counted, answered_was[i]);
        IF n IS NOT NULL AND answered_at[i] < counted[n] THEN
            counted[n] := answered_at[i];
        END IF;
    END LOOP;
    kept := ARRAY(SELECT g FROM unnest(counted) AS g
                  WHERE g > at - make_interval(secs => p_seconds) ORDER BY g);
    SELECT min(p.slot) INTO mine
    FROM unnest(budget.promised, budget.promised_to) AS p(slot, item)
    WHERE p.slot > at AND p.item = p_item;
    granted := greatest(0, least(want, p_count - cardinality(kept)));
    -- The promises still ahead, and those passed less than 10 s ago (their callers may yet
    -- come back late); less the caller's own when it is granted a permit now.
    SELECT coalesce(array_agg(p.slot ORDER BY p.slot), '{}'),
           coalesce(array_agg(p.priority ORDER BY p.slot), '{}'),
           coalesce(array_agg(p.item ORDER BY p.slot), '{}')
    INTO promises, promises_priority, promises_to
    FROM unnest(budget.promised, budget.promised_priority, budget.promised_to)
         AS p(slot, priority, item)
    WHERE p.slot > at - interval '10 seconds'
      AND (granted = 0 OR p_item IS NULL OR p.item IS DISTINCT FROM p_item);
    ahead := ARRAY(SELECT s FROM unnest(promises) AS s WHERE s > at ORDER BY s);
    late := mine IS NULL AND p_item IS NOT NULL AND EXISTS (
        SELECT FROM unnest(promises, promises_to) AS p(slot, item)
        WHERE p.item = p_item AND p.slot <= at);
    IF granted > 0 THEN
        counted_until := at + make_interval(secs => p_hold);
        kept := kept || array_fill(counted_until, ARRAY[granted]);
        wait := 0;
    ELSIF mine IS NOT NULL THEN
        -- Back early for its slot: it is still the caller's. First in line, it need not wait
        -- past the next permit to free, which answers reported since the promise may have
        -- brought before the slot.
        wait := extract(epoch FROM mine - at);
        IF NOT EXISTS (SELECT FROM unnest(ahead) AS a(slot) WHERE a.slot < mine) THEN
            wait := greatest(0, least(wait, extract(epoch FROM
                kept[cardinality(kept) - p_count + 1] + make_interval(secs => p_seconds) - at)));
        END IF;
    ELSE
        -- The schedule so far: the permits in the window, then the slots promised to callers
        -- at least as urgent (each counting a hold past its slot); the next slot frees a window
        -- after the one `p_count` back. A caller whose slot passed before it came back, the
        -- permit gone to another, goes before the promises of its own urgency rather than
        -- behind them all (for a Tier 3 method, the next minute): a caller promised the
        -- permit it then takes is late in turn and takes the next; each loses a slot, none a
        -- window.
        line := ARRAY(SELECT x FROM (
                          SELECT g AS x FROM unnest(kept) AS g
                          UNION ALL
                          SELECT p.slot + make_interval(secs => p_hold)
                          FROM unnest(promises, promises_priority) AS p(slot, priority)
                          WHERE p.slot > at AND (p.priority < p_priority
                                                 OR (p.priority = p_priority AND NOT late))) AS l
                      ORDER BY x);
        slot := line[cardinality(line) - p_count + 1] + make_interval(secs => p_seconds);
        IF late OR cardinality(ahead) < 2 * p_count THEN
            SELECT coalesce(array_agg(p.slot ORDER BY p.slot), '{}'),
                   coalesce(array_agg(p.priority ORDER BY p.slot), '{}'),
                   coalesce(array_agg(p.item ORDER BY p.slot), '{}')
            INTO promises, promises_priority, promises_to
            FROM unnest(promises || slot, promises_priority || p_priority,
                        promises_to || p_item) AS p(slot, priority, item)
            WHERE p.slot > at OR p.item IS DISTINCT FROM p_item;  -- the one it missed goes
        ELSE
            -- beyond the promises kept: back somewhere in the window after the last, spread
            -- out, to be promised a slot then
            slot := slot + make_interval(secs => random() * p_seconds);
        END IF;
        wait := greatest(0, extract(epoch FROM slot - at));
    END IF;
    UPDATE slack_budgets
    SET granted = kept, promised = promises, promised_priority = promises_priority,
        promised_to = promises_to
    WHERE team = p_team AND scope = p_scope;
END
$$;

-- The previous version's call (migration 0020: its window already includes its hold) goes on
-- working during a rolling update: its permits count from their grant over that window.
CREATE OR REPLACE FUNCTION taskjuice_slack_permits(
    p_team text, p_scope text, p_count integer, window_seconds float8, want integer,
    p_priority smallint, p_item bigint, OUT granted integer, OUT wait float8)
LANGUAGE sql AS $$
    SELECT p.granted, p.wait
    FROM taskjuice_slack_permits(p_team, p_scope, p_count, window_seconds, 0, want, p_priority,
                                 p_item, '{}', '{}') AS p
$$;
