-- TaskCreated 2.0 names the task's watchers. Rows written before have none here: the task
-- projection's version went up with this column, so `chronicle serve` rebuilds the table
-- from the store, where version 1.0 events are upcast (their creator watches the task).
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS watchers text[] NOT NULL DEFAULT '{}';
