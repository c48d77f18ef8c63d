-- outbox relay lease and broker marks

-- One row: who relays now (its backend and heartbeat, so a standby can take over from a
-- holder that stopped moving), and what the broker was last known to hold.
CREATE TABLE outbox_relay (
    id int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    holder text NOT NULL,
    backend_pid int NOT NULL,
    heartbeat_at timestamptz NOT NULL,
    broker jsonb NOT NULL DEFAULT '{}',
    verified_at timestamptz
);

CREATE INDEX outbox_published ON outbox (published_at) WHERE published_at IS NOT NULL;
