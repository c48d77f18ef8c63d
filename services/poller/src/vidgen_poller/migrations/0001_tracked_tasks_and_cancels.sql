-- tracked tasks and cancels

CREATE TABLE tracked_tasks (
    runway_task_id text PRIMARY KEY,
    generation_id text NOT NULL,
    user_id text NOT NULL,
    model text NOT NULL,
    duration int NOT NULL,
    attempt int NOT NULL,
    submitted_at timestamptz NOT NULL,
    state text NOT NULL CHECK (state IN ('active', 'refresh', 'done')),
    status text NOT NULL DEFAULT 'SUBMITTED',
    progress double precision NOT NULL DEFAULT 0,
    reported_status text,
    reported_progress double precision,
    active_since_s double precision NOT NULL DEFAULT 0,
    last_not_running_s double precision,
    last_poll_s double precision,
    p1_at_s double precision,
    p1 double precision,
    p2_at_s double precision,
    p2 double precision,
    throttled_streak int NOT NULL DEFAULT 0,
    was_throttled boolean NOT NULL DEFAULT false,
    polls int NOT NULL DEFAULT 0,
    errors int NOT NULL DEFAULT 0,
    next_poll_at timestamptz NOT NULL,
    claim_token text,
    cancel_requested boolean NOT NULL DEFAULT false,
    deadline_at timestamptz NOT NULL,
    estimated_cost_credits int,
    cost_credits int,
    output_urls jsonb,
    failure text,
    failure_code text,
    duration_s double precision,
    finished_at timestamptz,
    traceparent text,
    tracestate text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX tracked_tasks_due ON tracked_tasks (next_poll_at) WHERE state IN ('active', 'refresh');

CREATE INDEX tracked_tasks_generation ON tracked_tasks (generation_id);

CREATE INDEX tracked_tasks_durations ON tracked_tasks (finished_at) WHERE duration_s IS NOT NULL;

CREATE TABLE poller_cancels (
    generation_id text PRIMARY KEY,
    requested_at timestamptz NOT NULL
);
