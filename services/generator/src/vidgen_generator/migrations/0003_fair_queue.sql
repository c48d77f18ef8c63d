-- fair queue: a priority per submission, an index for the fair claim order

ALTER TABLE submissions ADD COLUMN priority smallint NOT NULL DEFAULT 1 CHECK (priority IN (0, 1, 2));

-- The claim (store.due) walks the (model, user) queues of pending rows by a skip scan of this
-- index and reads each queue's rows in its order (priority first, then age), index-only.
CREATE INDEX submissions_fair ON submissions (model, user_id, priority DESC, created_at, generation_id, attempt) INCLUDE (retry_at) WHERE state = 'pending';
