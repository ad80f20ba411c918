-- Email: magic links, reply addresses, and inbound messages already handled.

-- One link per approver and tier; the token in the URL is this row's id, signed.
CREATE TABLE magic_links (
    id           bigserial PRIMARY KEY,
    task_id      uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    approver_id  bigint NOT NULL REFERENCES approvers (id) ON DELETE CASCADE,
    tier         integer NOT NULL,
    content_hash text NOT NULL,
    used_at      timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (task_id, approver_id, tier)
);

-- The local part of a per-approver Reply-To address.
CREATE TABLE reply_tokens (
    token       text PRIMARY KEY,
    task_id     uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    approver_id bigint NOT NULL REFERENCES approvers (id) ON DELETE CASCADE,
    tier        integer NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (task_id, approver_id, tier)
);

-- Inbound mail already handled, so a message delivered twice decides once.
CREATE TABLE inbound_messages (
    message_key text PRIMARY KEY,
    outcome     text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

-- Provider webhook tokens already seen (replay protection).
CREATE TABLE inbound_webhook_tokens (
    token   text PRIMARY KEY,
    seen_at timestamptz NOT NULL DEFAULT now()
);
