-- Who is looking a Slack identity up right now (users.lookupByEmail of an address,
-- conversations.open of a user), per team: one replica at a time, so that several deliveries
-- to one person spend one Tier 3 call, not one each. A claim lapses at `until`.
CREATE UNLOGGED TABLE slack_lookups (
    team_id text        NOT NULL,
    key     text        NOT NULL,
    token   text        NOT NULL,
    until   timestamptz NOT NULL,
    PRIMARY KEY (team_id, key)
);
