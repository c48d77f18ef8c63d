-- fair queue indexes: built without blocking the writes to generations
-- mode: concurrently
-- Moved here from migration 0004, which built them in its transaction: on a large table that
-- held every generate request until the build ended. IF NOT EXISTS: a database migrated
-- before has them already.

-- The queue of one model, in the order the fair-share query reads it.
CREATE INDEX CONCURRENTLY IF NOT EXISTS generations_queued
    ON generations (model, user_id, priority DESC, created_at, id) WHERE status = 'queued';

CREATE INDEX CONCURRENTLY IF NOT EXISTS generations_running
    ON generations (model, user_id) WHERE status = 'generating';

-- Recent task times per model and duration (the estimates' distribution).
CREATE INDEX CONCURRENTLY IF NOT EXISTS generations_learned
    ON generations (model, duration, completed_at DESC)
    WHERE status = 'completed' AND task_ended_at IS NOT NULL;
