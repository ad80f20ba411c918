-- Slack egress: a budget shared by every replica, urgent work first, workspaces in turn.
-- (docs/decisions/0006-shared-slack-budget.md)

-- Whose turn an item waits for, and how urgent it is within that turn. `tenant` is the
-- TaskJuice workspace of the item's task or alert ('' for work of no workspace: App Home
-- refreshes and private answers that name no task). `priority`: 0 urgent (a click's private
-- answer, a new request's first delivery, and the fan-outs that lead to them), 1 normal
-- (reminders, callbacks, mail), 2 message updates, 3 App Home refreshes.
ALTER TABLE outbox
    ADD COLUMN tenant text NOT NULL DEFAULT '',
    ADD COLUMN priority smallint NOT NULL DEFAULT 1 CHECK (priority BETWEEN 0 AND 3);

-- Every writer of the outbox (the store's batch statements included) gets both from the row
-- it writes, so no statement has to name them.
CREATE FUNCTION taskjuice_outbox_defaults() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.tenant = '' THEN
        IF NEW.task_id IS NOT NULL THEN
            NEW.tenant := coalesce((SELECT workspace FROM tasks WHERE id = NEW.task_id), '');
        ELSIF NEW.payload ? 'alert_id' THEN
            NEW.tenant := coalesce((SELECT workspace FROM alert_state
                                    WHERE id = (NEW.payload->>'alert_id')::bigint), '');
        END IF;
    END IF;
    NEW.priority := CASE NEW.kind
        WHEN 'slack.ephemeral' THEN 0
        WHEN 'task.changed' THEN 0
        WHEN 'alert.changed' THEN 0
        WHEN 'slack.post' THEN
            CASE (SELECT purpose FROM deliveries
                  WHERE id = (NEW.payload->>'delivery_id')::bigint)
                WHEN 'reminder' THEN 1 ELSE 0 END
        WHEN 'slack.update' THEN 2
        WHEN 'slack.alert' THEN 2
        WHEN 'slack.home' THEN 3
        ELSE NEW.priority END;
    RETURN NEW;
END
$$;

CREATE TRIGGER outbox_defaults BEFORE INSERT ON outbox
    FOR EACH ROW EXECUTE FUNCTION taskjuice_outbox_defaults();

-- Due work per tenant and priority, oldest first: the claim walks this index, one range per
-- (tenant, priority); its leading column also lists the tenants with work (a skip scan).
CREATE INDEX outbox_turns ON outbox (tenant, priority, next_attempt_at, id)
    WHERE status = 'pending';

-- The claim serves tenants in turn: up to `per_tenant` items of each tenant with due work
-- (most urgent first, then oldest), round after round until `claim_limit` items are taken or
-- nothing more is due, starting with the tenants after `after_tenant` (where the caller's
-- previous claim stopped). Only the oldest pending item of an ordering key is claimable. As in
-- migration 0009, sorting and sequential scans are off for the claim alone: every statement
-- walks an index range in order, whatever the statistics say.
DROP FUNCTION taskjuice_claim_outbox(integer, float8, text);

CREATE FUNCTION taskjuice_claim_outbox(
    claim_limit integer, lease float8, worker text, per_tenant integer, after_tenant text)
RETURNS SETOF outbox LANGUAGE plpgsql SET enable_sort = off SET enable_seqscan = off AS $$
DECLARE
    tenants text[];
    chosen bigint[] := '{}';
    took bigint[];
    turn text;
    progress boolean := true;
BEGIN
    tenants := ARRAY(
        WITH RECURSIVE walk(tenant) AS (
            (SELECT o.tenant FROM outbox o WHERE o.status = 'pending' AND o.tenant >= ''
             ORDER BY o.tenant LIMIT 1)
            UNION ALL
            SELECT (SELECT o.tenant FROM outbox o
                    WHERE o.status = 'pending' AND o.tenant > w.tenant
                    ORDER BY o.tenant LIMIT 1)
            FROM walk w WHERE w.tenant IS NOT NULL
        )
        SELECT tenant FROM walk WHERE tenant IS NOT NULL);
    tenants := ARRAY(SELECT t FROM unnest(tenants) AS t WHERE t > after_tenant)
            || ARRAY(SELECT t FROM unnest(tenants) AS t WHERE t <= after_tenant);
    WHILE progress AND cardinality(chosen) < claim_limit LOOP
        progress := false;
        FOREACH turn IN ARRAY tenants LOOP
            EXIT WHEN cardinality(chosen) >= claim_limit;
            took := ARRAY(
                SELECT d.id
                FROM unnest('{0,1,2,3}'::smallint[]) AS p(priority)
                CROSS JOIN LATERAL (
                    SELECT o.id FROM outbox o
                    WHERE o.status = 'pending' AND o.tenant = turn
                      AND o.priority = p.priority AND o.next_attempt_at <= now()
                      AND o.id <> ALL (chosen)
                      AND (o.ordering_key IS NULL OR NOT EXISTS (
                            SELECT 1 FROM outbox q
                            WHERE q.ordering_key = o.ordering_key AND q.status = 'pending'
                              AND q.id < o.id))
                    ORDER BY o.next_attempt_at, o.id
                    LIMIT least(per_tenant, claim_limit - cardinality(chosen))
                    FOR UPDATE SKIP LOCKED
                ) d
                LIMIT least(per_tenant, claim_limit - cardinality(chosen)));
            IF cardinality(took) > 0 THEN
                chosen := chosen || took;
                progress := true;
            END IF;
        END LOOP;
    END LOOP;
    RETURN QUERY
        UPDATE outbox o
        SET attempts = o.attempts + 1, claimed_by = worker,
            next_attempt_at = now() + make_interval(secs => lease)
        WHERE o.id = ANY (chosen)
        RETURNING o.*;
END
$$;

-- The egress budget. One row per (Slack team, scope): a Web API method, or `channel:<id>` for
-- the pace of posts to one channel. `granted` holds when each permit still inside the window
-- was granted, oldest first; `blocked_until` is set by a 429's Retry-After.
CREATE TABLE slack_budgets (
    team          text NOT NULL,
    scope         text NOT NULL,
    granted       timestamptz[] NOT NULL DEFAULT '{}',
    blocked_until timestamptz,
    PRIMARY KEY (team, scope)
);

-- Grant up to `want` permits of (team, scope) such that at most `count` are granted in any
-- window of `window_seconds`; returns how many, and when none, the seconds until one frees
-- (or the block ends). The row lock serialises the replicas asking for one scope.
CREATE FUNCTION taskjuice_slack_permits(
    p_team text, p_scope text, p_count integer, window_seconds float8, want integer,
    OUT granted integer, OUT wait float8)
LANGUAGE plpgsql AS $$
DECLARE
    budget slack_budgets;
    at timestamptz;
    kept timestamptz[];
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
    granted := greatest(0, least(want, p_count - cardinality(kept)));
    IF granted > 0 THEN
        kept := kept || array_fill(at, ARRAY[granted]);
        wait := 0;
    ELSE
        -- a permit frees when the one `p_count` places back leaves the window
        wait := greatest(0, extract(epoch FROM kept[cardinality(kept) - p_count + 1]
                                    + make_interval(secs => window_seconds) - at));
    END IF;
    UPDATE slack_budgets SET granted = kept WHERE team = p_team AND scope = p_scope;
END
$$;

-- A 429: nobody calls (team, scope) for `seconds`.
CREATE FUNCTION taskjuice_slack_block(p_team text, p_scope text, seconds float8)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO slack_budgets (team, scope, blocked_until)
    VALUES (p_team, p_scope, clock_timestamp() + make_interval(secs => seconds))
    ON CONFLICT (team, scope) DO UPDATE
    SET blocked_until = greatest(slack_budgets.blocked_until, EXCLUDED.blocked_until)
$$;
