-- Slack messages within Slack's limits (contract §7): coalesced updates and lost posts.
--
-- `slack_updated_at`: when the message's last chat.update left, so the next update of a burst
-- waits a moment and carries everything that happened meanwhile (bot/slack/delivery.py).
-- `slack_lost_from` / `slack_lost_to`: a post whose answer was lost (the connection dropped
-- or timed out after the request was sent) ran in this span; the retry looks for it there,
-- by its metadata, in at most one narrow conversations.history read.
ALTER TABLE deliveries
    ADD COLUMN slack_updated_at timestamptz,
    ADD COLUMN slack_lost_from  timestamptz,
    ADD COLUMN slack_lost_to    timestamptz;
