-- Optimistic concurrency for decisions: every decision (vote or outcome) bumps the task's
-- version, and is written only if the version it was decided against is still current. A
-- decision is then two statements (read, conditional write) with no row lock held between.
ALTER TABLE tasks ADD COLUMN version integer NOT NULL DEFAULT 0;
