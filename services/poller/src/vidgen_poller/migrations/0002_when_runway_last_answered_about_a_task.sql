-- when Runway last answered about a task

ALTER TABLE tracked_tasks ADD COLUMN answered_at timestamptz;
