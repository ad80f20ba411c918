-- The DM channel the bot has with each Slack user, per team: conversations.open answers the
-- same channel every time, so it is asked once per person rather than once per post (Tier 3,
-- 50 a minute per team, is otherwise the bound of every fan-out).
CREATE TABLE slack_dm_channels (
    team_id    text NOT NULL,
    user_id    text NOT NULL,
    channel_id text NOT NULL,
    PRIMARY KEY (team_id, user_id)
);
