-- submissions and cancels

CREATE TABLE submissions (
    generation_id text NOT NULL,
    attempt int NOT NULL CHECK (attempt >= 1),
    user_id text NOT NULL,
    project_id text NOT NULL,
    image_key text NOT NULL,
    image_content_type text NOT NULL,
    prompt text NOT NULL,
    model text NOT NULL,
    ratio text NOT NULL,
    duration int NOT NULL,
    seed bigint,
    state text NOT NULL CHECK (state IN ('pending', 'claimed', 'intent', 'submitted', 'failed', 'cancelled')),
    tries int NOT NULL DEFAULT 0,
    retry_at timestamptz NOT NULL,
    claim_token text,
    lease_until timestamptz,
    intent_at timestamptz,
    runway_task_id text UNIQUE,
    submitted_at timestamptz,
    estimated_cost_credits int,
    task_ended_at timestamptz,
    cost_credits int,
    error_code text,
    error_message text,
    traceparent text,
    tracestate text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (generation_id, attempt)
);

CREATE INDEX submissions_due ON submissions (retry_at) WHERE state = 'pending';

CREATE INDEX submissions_in_flight ON submissions (model) WHERE state IN ('claimed', 'intent', 'submitted') AND task_ended_at IS NULL;

CREATE INDEX submissions_intents ON submissions (intent_at) WHERE state = 'intent';

CREATE TABLE generator_cancels (
    generation_id text PRIMARY KEY,
    requested_at timestamptz NOT NULL
);
