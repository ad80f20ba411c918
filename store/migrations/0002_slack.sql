-- Slack: the email ↔ user cache, and deliveries planned before they are sent.

CREATE TABLE slack_users (
    team_id    text NOT NULL,
    user_id    text NOT NULL,
    email      text,
    tz         text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX slack_users_email ON slack_users (team_id, lower(email));

-- A delivery row is written when a message is planned (status 'queued') and completed with the
-- channel and ts once posted, so an outcome that arrives first still finds every message.
ALTER TABLE deliveries
    ADD COLUMN status     text NOT NULL DEFAULT 'sent' CHECK (status IN ('queued', 'sent', 'failed')),
    ADD COLUMN last_error text,
    -- Who it is for, fixed when planned: an approver id, or a channel id.
    ADD COLUMN recipient  text NOT NULL DEFAULT '';
-- Planning the same message twice (a change handled again after a crash) adds nothing.
CREATE UNIQUE INDEX deliveries_once ON deliveries (task_id, channel, purpose, tier, recipient);
