-- Which Slack team of an installation a TaskJuice workspace is bound to. For a team install it
-- is the installation's own team; an org-wide Enterprise Grid install (team_id NULL) serves
-- every team of the organisation, and its workspace is bound to the installing user's team.
ALTER TABLE slack_installations ADD COLUMN bound_team_id text;
UPDATE slack_installations SET bound_team_id = team_id WHERE workspace IS NOT NULL;
