-- A pending task's clock moves out of `tasks` into its own narrow table.
--
-- While `tasks` was indexed on expires_at and remind_at, with partial indexes on status,
-- every decision and every sweep that ended or escalated a task changed an indexed column:
-- a full (non-HOT) update that wrote a new entry into each of the table's indexes. With the
-- clock here, nothing a decision or a sweep changes in `tasks` is indexed, and its updates
-- stay on their page (HOT) when the page has room: the fill factor leaves that room, enough
-- for every task on a page to change once before the page is pruned (a sweep catching up
-- after an outage ends whole pages of tasks in one transaction).
--
-- A task has a row here exactly while it is pending: written with the task, moved on by an
-- escalation, deleted by the statement that ends the task.
CREATE TABLE task_timers (
    task_id    uuid PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    -- The tier this clock runs for; a sweep applies only while the task is still at it.
    tier       integer NOT NULL,
    expires_at timestamptz NOT NULL,
    -- When the tier's approvers get their one reminder; NULL once sent, or for none.
    remind_at  timestamptz
);
CREATE INDEX task_timers_due ON task_timers (expires_at);
CREATE INDEX task_timers_remind ON task_timers (remind_at) WHERE remind_at IS NOT NULL;

INSERT INTO task_timers (task_id, tier, expires_at, remind_at)
SELECT id, tier, expires_at, remind_at FROM tasks WHERE status = 'pending';

DROP INDEX tasks_due;
DROP INDEX tasks_remind;
ALTER TABLE tasks DROP COLUMN remind_at;
ALTER TABLE tasks SET (fillfactor = 50);

-- Every audit row is written by the statement that updates (and so has locked) its task; the
-- foreign key re-checked that the task exists, row by row, for a tenth of a sweep's time.
-- Tasks are never deleted by the service; an operator purging old tasks deletes their
-- decisions too (see README, "Data retention").
ALTER TABLE decisions DROP CONSTRAINT IF EXISTS decisions_task_id_fkey;
