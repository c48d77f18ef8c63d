-- fair queue: a priority per submission, an index for the fair claim order

ALTER TABLE submissions ADD COLUMN priority smallint NOT NULL DEFAULT 1 CHECK (priority IN (0, 1, 2));

-- The claim ranks each user's due pending rows per model (priority first, then age): this
-- index hands them over in that order, with the columns the claim reads.
CREATE INDEX submissions_fair ON submissions (model, user_id, priority DESC, created_at, generation_id, attempt) INCLUDE (retry_at) WHERE state = 'pending';
