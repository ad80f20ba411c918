-- Approval tasks, their approvers and audit trail, deliveries, the outbox, idempotency keys,
-- workspace routing and alert state.

CREATE TABLE tasks (
    id                  uuid PRIMARY KEY,
    workspace           text NOT NULL,
    run_id              text NOT NULL,
    workflow            jsonb NOT NULL,
    step                text,
    summary             text NOT NULL,
    details             jsonb NOT NULL DEFAULT '{}',
    reversibility       text NOT NULL CHECK (reversibility IN ('safe', 'recoverable', 'irreversible')),
    required_approvals  integer NOT NULL CHECK (required_approvals >= 1),
    requested_by        jsonb,
    allow_self_approval boolean NOT NULL DEFAULT false,
    timeout_policy      text NOT NULL CHECK (timeout_policy IN ('deny', 'proceed', 'escalate')),
    deliver             jsonb NOT NULL,
    extra               jsonb NOT NULL DEFAULT '{}',
    content_hash        text NOT NULL,
    status              text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'approved', 'denied', 'expired', 'cancelled')),
    resolution          text CHECK (resolution IN ('proceed', 'deny')),
    tier                integer NOT NULL DEFAULT 0,
    tier_count          integer NOT NULL CHECK (tier_count >= 1),
    expires_at          timestamptz NOT NULL,
    remind_before       integer,
    remind_default      boolean NOT NULL DEFAULT true,
    -- When the current tier's approvers get their one reminder; NULL once sent, or for none.
    remind_at           timestamptz,
    final_decision_id   bigint,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    finished_at         timestamptz,
    CHECK ((status = 'pending') = (resolution IS NULL))
);
CREATE INDEX tasks_list ON tasks (created_at DESC, id DESC);
CREATE INDEX tasks_workspace_list ON tasks (workspace, created_at DESC, id DESC);
CREATE INDEX tasks_due ON tasks (expires_at) WHERE status = 'pending';
CREATE INDEX tasks_remind ON tasks (remind_at) WHERE status = 'pending' AND remind_at IS NOT NULL;

-- When a tier that runs from `starts` to `expires` reminds its approvers: `remind_before`
-- seconds before expiry if the request says so, otherwise (by default) when 20% of the window
-- remains but at least five minutes before; never at or before the tier's start.
CREATE FUNCTION taskjuice_remind_at(
    starts timestamptz, expires timestamptz, remind_before integer, remind_default boolean
) RETURNS timestamptz LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN r > starts THEN r END FROM (SELECT CASE
        WHEN remind_before IS NOT NULL THEN expires - make_interval(secs => remind_before)
        WHEN remind_default THEN expires - greatest((expires - starts) * 0.2, interval '5 minutes')
    END AS r) AS reminder
$$;

CREATE TABLE approver_tiers (
    task_id    uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    tier       integer NOT NULL,
    expires_in integer,
    PRIMARY KEY (task_id, tier)
);

CREATE TABLE approvers (
    id            bigserial PRIMARY KEY,
    task_id       uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    tier          integer NOT NULL,
    email         text,
    slack_user_id text,
    slack_team_id text,
    CHECK (email IS NOT NULL OR slack_user_id IS NOT NULL)
);
CREATE INDEX approvers_task ON approvers (task_id, tier);

-- The audit trail: every vote and every transition, one row each.
CREATE TABLE decisions (
    id                  bigserial PRIMARY KEY,
    task_id             uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    tier                integer NOT NULL,
    approver_id         bigint REFERENCES approvers (id),
    action              text NOT NULL
                        CHECK (action IN ('approve', 'deny', 'expire', 'proceed', 'escalate', 'cancel')),
    via                 text NOT NULL
                        CHECK (via IN ('slack', 'email_link', 'email_reply', 'timeout', 'api')),
    actor_email         text,
    actor_slack_user_id text,
    actor_slack_team_id text,
    reason              text,
    client              jsonb NOT NULL DEFAULT '{}',
    decided_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX decisions_task ON decisions (task_id, id);
-- One vote per approver per tier: a double click cannot count twice towards a quorum.
CREATE UNIQUE INDEX decisions_one_vote ON decisions (task_id, tier, approver_id)
    WHERE approver_id IS NOT NULL;

ALTER TABLE tasks ADD FOREIGN KEY (final_decision_id) REFERENCES decisions (id);

-- Where a task was shown, so later updates find the message.
CREATE TABLE deliveries (
    id              bigserial PRIMARY KEY,
    task_id         uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    approver_id     bigint REFERENCES approvers (id),
    tier            integer NOT NULL DEFAULT 0,
    channel         text NOT NULL CHECK (channel IN ('slack', 'email')),
    purpose         text NOT NULL DEFAULT 'request',
    slack_team_id   text,
    slack_channel   text,
    slack_ts        text,
    mail_to         text,
    mail_message_id text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deliveries_task ON deliveries (task_id);

-- Everything that must reach the outside world, written in the transaction that caused it.
CREATE TABLE outbox (
    id              bigserial PRIMARY KEY,
    kind            text NOT NULL,
    -- Items sharing a key are sent one at a time, in id order (a post before its updates).
    ordering_key    text,
    task_id         uuid,
    payload         jsonb NOT NULL,
    message_id      text NOT NULL UNIQUE,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    claimed_by      text,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
CREATE INDEX outbox_due ON outbox (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX outbox_ordering ON outbox (ordering_key, id) WHERE status = 'pending';
CREATE INDEX outbox_dead ON outbox (id) WHERE status = 'dead';

CREATE TABLE idempotency_keys (
    scope        text NOT NULL,
    key          text NOT NULL,
    request_hash text NOT NULL,
    status       integer,
    response     jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);

CREATE TABLE workspaces (
    workspace     text PRIMARY KEY,
    slack_team_id text,
    slack_channel text,
    alert_emails  text[] NOT NULL DEFAULT '{}',
    thresholds    numeric[] NOT NULL DEFAULT '{80,90}',
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Every alert event as received, for the record.
CREATE TABLE alert_events (
    id          bigserial PRIMARY KEY,
    workspace   text NOT NULL,
    kind        text NOT NULL,
    payload     jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_events_workspace ON alert_events (workspace, id);

-- One row per thing an alert message is about; its state decides whether to post, update or
-- stay quiet, and the Slack message it was shown in is kept beside it.
CREATE TABLE alert_state (
    id            bigserial PRIMARY KEY,
    workspace     text NOT NULL,
    kind          text NOT NULL,
    subject       text NOT NULL,
    state         text NOT NULL,
    data          jsonb NOT NULL DEFAULT '{}',
    version       integer NOT NULL DEFAULT 1,
    slack_team_id text,
    slack_channel text,
    slack_ts      text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace, kind, subject)
);
