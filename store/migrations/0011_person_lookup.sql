-- A decision looks up every name of the people it compares (the voter, the tier's voters,
-- the requester) in the Slack user cache, by Slack user id and by email, whatever the team.
CREATE INDEX slack_users_user ON slack_users (user_id);
CREATE INDEX slack_users_any_email ON slack_users (lower(email)) WHERE email IS NOT NULL;
