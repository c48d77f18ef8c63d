-- learnt refill: how long after a task's end was seen the next waiting generation of the
-- mode: concurrently
-- (the name above goes on: "...model was submitted", the estimates' slot turnover.)
-- The queue view reads the model's latest submissions and, for each, the latest task end
-- before it. Built without blocking the writes to generations; a database migrated before
-- this migration ran that way has them already (IF NOT EXISTS).
CREATE INDEX CONCURRENTLY IF NOT EXISTS generations_model_submitted
    ON generations (model, submitted_at DESC) WHERE submitted_at IS NOT NULL;
CREATE INDEX CONCURRENTLY IF NOT EXISTS generations_model_task_ended
    ON generations (model, task_ended_at) WHERE task_ended_at IS NOT NULL;
