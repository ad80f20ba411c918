-- Distributed mode: the app installed in many Slack teams. One live row per Slack team (or per
-- Enterprise Grid organisation, for an org-wide install, whose team_id is NULL) holds the
-- latest bot token and which TaskJuice workspace the team is bound to.
-- Every token column, and the incoming-webhook URL (itself a credential), holds a Fernet
-- ciphertext: the keys (SLACK_TOKEN_KEYS) never reach the database.
CREATE TABLE slack_installations (
    id                                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    enterprise_id                       text,
    enterprise_name                     text,
    enterprise_url                      text,
    team_id                             text,
    team_name                           text,
    is_enterprise_install               boolean NOT NULL DEFAULT false,
    app_id                              text,
    bot_id                              text,
    bot_user_id                         text,
    bot_scopes                          text[] NOT NULL DEFAULT '{}',
    bot_token                           text,
    bot_refresh_token                   text,
    bot_token_expires_at                timestamptz,
    -- when the current rotating token was issued: its lifetime decides when it is refreshed
    bot_token_issued_at                 timestamptz,
    user_id                             text,
    token_type                          text,
    incoming_webhook_url                text,
    incoming_webhook_channel            text,
    incoming_webhook_channel_id         text,
    incoming_webhook_configuration_url  text,
    installed_at                        timestamptz NOT NULL,
    workspace                           text,
    status                              text NOT NULL DEFAULT 'active',
    revoked_reason                      text,
    installed_by_user_id                text,
    installed_by_email                  text,
    updated_at                          timestamptz NOT NULL DEFAULT now(),
    CHECK (status IN ('active', 'revoked')),
    CHECK ((status = 'revoked') = (revoked_reason IS NOT NULL)),
    CHECK (revoked_reason IN ('app_uninstalled', 'tokens_revoked', 'invalid_auth')),
    CHECK (installed_by_email IS NULL OR installed_by_user_id IS NOT NULL)
);
-- NULL is a key value here (no enterprise; an org-wide install has no team).
CREATE UNIQUE INDEX slack_installations_team
    ON slack_installations ((coalesce(enterprise_id, '')), (coalesce(team_id, '')));
-- A TaskJuice workspace is bound to at most one Slack team.
CREATE UNIQUE INDEX slack_installations_workspace
    ON slack_installations (workspace) WHERE workspace IS NOT NULL;

-- The people who installed the app in a team, with their user tokens (if any scopes were
-- asked for them), so a lookup by installing user finds that person's install.
CREATE TABLE slack_installers (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    installation_id        bigint NOT NULL REFERENCES slack_installations ON DELETE CASCADE,
    user_id                text NOT NULL,
    user_token             text,
    user_scopes            text[] NOT NULL DEFAULT '{}',
    user_refresh_token     text,
    user_token_expires_at  timestamptz,
    installed_at           timestamptz NOT NULL,
    UNIQUE (installation_id, user_id)
);

-- OAuth `state` values: single use, valid 30 minutes by the database clock, and carrying the
-- TaskJuice workspace the install link was made for (NULL: an install not started from one).
CREATE TABLE slack_oauth_states (
    state       text PRIMARY KEY,
    workspace   text,
    expires_at  timestamptz NOT NULL DEFAULT now() + interval '30 minutes'
);
CREATE INDEX slack_oauth_states_expiry ON slack_oauth_states (expires_at);
