-- shown estimates: the estimate last shown for each unfinished generation, by any replica
-- The time left a user watches must only shrink, whichever gateway replica answers the next
-- read (a client polling behind a load balancer moves between them). Each read holds its
-- estimate to this row's plus the time since, and writes it back, in one statement (see
-- vidgen_gateway.queue). UNLOGGED: it is a hold for display, not a record; a PostgreSQL crash
-- empties it and the next reads start afresh. Rows go when their generation ends.
CREATE UNLOGGED TABLE shown_estimates (
    generation_id text PRIMARY KEY,
    shown_at timestamptz NOT NULL,
    position int NOT NULL,             -- queuePosition shown (0 once started: a real start)
    free boolean NOT NULL,             -- shown for a cause that may move it back (cap, credits)
    start_at timestamptz,
    done_at timestamptz NOT NULL,
    done90_at timestamptz
);
