-- What each Slack message shows now: a digest of the text and blocks the last post or
-- chat.update sent. An update that would show the same again is not sent (a burst of votes
-- whose first update already carried them all costs no further call).
ALTER TABLE deliveries ADD COLUMN slack_shown text;
