-- why a pending submission is held back (besides a busy slot), so that GenerationWaiting is
-- sent once per change of reason, and every replica sees the same holds

ALTER TABLE submissions ADD COLUMN wait_reason text
    CHECK (wait_reason IN ('waiting_for_capacity', 'daily_cap_reached', 'organization_out_of_credits'));
ALTER TABLE submissions ADD COLUMN wait_until timestamptz;

-- The rows held now (a daily cap, short credits): the caps every claim pass reads, the rows it
-- releases, the waiting gauge. Empty when nothing is held, so these cost nothing then.
CREATE INDEX submissions_held ON submissions (model, wait_until)
    WHERE state = 'pending' AND wait_reason IN ('daily_cap_reached', 'organization_out_of_credits');

-- The claim (store.due) skips rows held for credits: it must still read the queues index-only.
DROP INDEX submissions_fair;
CREATE INDEX submissions_fair ON submissions (model, user_id, priority DESC, created_at, generation_id, attempt) INCLUDE (retry_at, wait_reason) WHERE state = 'pending';
