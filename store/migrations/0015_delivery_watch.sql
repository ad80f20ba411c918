-- Whether a request reached its approvers (docs/contract.md §8).
--
-- A delivery records when its channel accepted it (Slack post accepted, SMTP accepted), and a
-- request mail the token of its envelope sender, so a bounce finds the mail it is about.
ALTER TABLE deliveries
    ADD COLUMN sent_at      timestamptz,
    -- When `last_error` was written (a transient error keeps the delivery queued).
    ADD COLUMN error_at     timestamptz,
    ADD COLUMN bounce_token text;
CREATE UNIQUE INDEX deliveries_bounce ON deliveries (bounce_token) WHERE bounce_token IS NOT NULL;
UPDATE deliveries SET sent_at = updated_at WHERE status = 'sent';

-- One row per task and tier whose delivery is watched: written when the tier's messages are
-- planned, looked at by the sweeper at `check_at` (NULL once nothing is left to do for it).
CREATE TABLE delivery_watch (
    task_id          uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    tier             integer NOT NULL,
    started_at       timestamptz NOT NULL DEFAULT now(),
    -- A channel still failing transiently at this time moves the approver to the other one.
    failover_at      timestamptz NOT NULL,
    -- Nobody reached by then: `approval.undeliverable`.
    grace_at         timestamptz NOT NULL,
    check_at         timestamptz,
    -- When some approver of the tier was first reached (NULL: nobody yet).
    reached_at       timestamptz,
    undeliverable_at timestamptz,
    PRIMARY KEY (task_id, tier)
);
CREATE INDEX delivery_watch_due ON delivery_watch (check_at) WHERE check_at IS NOT NULL;
