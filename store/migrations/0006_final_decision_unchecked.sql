-- tasks.final_decision_id is written by the same statement that inserts the decision it
-- points to (a decision, a cancel, or a timeout sweep), so the foreign key only re-checked
-- what that statement had just done, once per ended task: about a tenth of the sweeper's
-- time. decisions.task_id keeps its foreign key: every audit row names a real task.
ALTER TABLE tasks DROP CONSTRAINT IF EXISTS tasks_final_decision_id_fkey;
