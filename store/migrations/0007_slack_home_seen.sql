-- Who has opened the bot's App Home: their Home is refreshed when a request that concerns
-- them changes, so it never shows a decided request as waiting.
ALTER TABLE slack_users ADD COLUMN home_seen_at timestamptz;
