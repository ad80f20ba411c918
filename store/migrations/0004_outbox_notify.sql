-- Wake dispatchers whenever outbox work is added, without a NOTIFY round trip per caller.
CREATE FUNCTION taskjuice_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('taskjuice_outbox', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION taskjuice_outbox_notify();
