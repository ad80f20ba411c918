-- The installation that serves a Slack team, read under the team's shared rotation lock, in
-- one round trip.
--
-- Every Slack call of the sender first finds the installation serving its team (the team's
-- own, else its organisation's org-wide one), then, holding the team's rotation lock shared
-- for a transaction, reads its token: a reader waits only while a refresh is in flight, then
-- reads the token that refresh saved. That took five round trips (the key, BEGIN, the lock,
-- the read, COMMIT). In a function, each statement after the lock's wait takes a new snapshot
-- and so sees what the refresher committed, and the lock lasts until the end of the caller's
-- transaction, which for a statement on its own is the statement: one round trip, the same
-- guarantee. The lock's key is the one `store.installations.team_lock` takes.
CREATE FUNCTION taskjuice_serving_installation(ent text, team text)
RETURNS SETOF slack_installations LANGUAGE plpgsql AS $$
DECLARE
    serving record;
BEGIN
    SELECT i.enterprise_id, i.team_id INTO serving
    FROM slack_installations i
    WHERE (coalesce(i.enterprise_id, '') = coalesce(ent, '') AND i.team_id = team)
       OR (ent IS NOT NULL AND i.enterprise_id = ent AND i.is_enterprise_install)
    ORDER BY i.is_enterprise_install LIMIT 1;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock_shared(hashtextextended(
        'slack-team/' || coalesce(serving.enterprise_id, '') || '/'
        || coalesce(serving.team_id, ''), 0));
    RETURN QUERY
        SELECT * FROM slack_installations i
        WHERE coalesce(i.enterprise_id, '') = coalesce(serving.enterprise_id, '')
          AND coalesce(i.team_id, '') = coalesce(serving.team_id, '');
END
$$;
