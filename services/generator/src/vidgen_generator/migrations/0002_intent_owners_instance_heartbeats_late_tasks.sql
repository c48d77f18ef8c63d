-- intent owners, instance heartbeats, late tasks

ALTER TABLE submissions ADD COLUMN owner text;

CREATE TABLE generator_instances (
    instance_id text PRIMARY KEY,
    started_at timestamptz NOT NULL DEFAULT now(),
    last_seen timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE late_tasks (
    runway_task_id text PRIMARY KEY,
    generation_id text NOT NULL,
    attempt int NOT NULL,
    reason text NOT NULL,
    outcome text NOT NULL DEFAULT 'to_cancel'
        CHECK (outcome IN ('to_cancel', 'cancelled', 'cancel_failed')),
    tries int NOT NULL DEFAULT 0,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX late_tasks_to_cancel ON late_tasks (updated_at) WHERE outcome = 'to_cancel';
