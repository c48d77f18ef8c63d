-- finished tasks index

-- The purge deletes finished tasks older than the retention, oldest first, in small batches:
-- a range of this index, not a scan of every task ever tracked.
CREATE INDEX tracked_tasks_done ON tracked_tasks (finished_at) WHERE state = 'done';
