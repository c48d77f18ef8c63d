-- wait reason: why the generator holds a queued generation back (GenerationWaiting)

-- daily_cap_reached or organization_out_of_credits (NULL: only a busy slot, or not waiting),
-- and when the wait should end, if known. Cleared when its task is submitted.
ALTER TABLE generations ADD COLUMN wait_reason text
    CHECK (wait_reason IN ('daily_cap_reached', 'organization_out_of_credits'));

ALTER TABLE generations ADD COLUMN wait_until timestamptz;
