-- Who has opened the bot's App Home: their Home is refreshed when a request that concerns
-- them changes, so it never shows a decided request as waiting. The partial indexes find,
-- from a task's few approvers, those among them who use the Home.
ALTER TABLE slack_users ADD COLUMN home_seen_at timestamptz;
CREATE INDEX slack_users_home_user ON slack_users (user_id) WHERE home_seen_at IS NOT NULL;
CREATE INDEX slack_users_home_email ON slack_users (lower(email)) WHERE home_seen_at IS NOT NULL;
