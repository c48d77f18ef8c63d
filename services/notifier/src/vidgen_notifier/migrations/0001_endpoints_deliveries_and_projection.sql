-- endpoints, deliveries and projection

CREATE TABLE endpoints (
    id text PRIMARY KEY,
    user_id text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('registered', 'request')),
    generation_id text,
    url text NOT NULL,
    events jsonb NOT NULL,
    description text,
    enabled boolean NOT NULL DEFAULT true,
    disabled_reason text,
    disabled_at timestamptz,
    secret_sealed text,
    previous_secret_sealed text,
    previous_expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX endpoints_user ON endpoints (user_id, created_at) WHERE kind = 'registered';

CREATE UNIQUE INDEX endpoints_request ON endpoints (generation_id) WHERE kind = 'request';

CREATE TABLE user_secrets (
    user_id text PRIMARY KEY,
    secret_sealed text NOT NULL,
    previous_secret_sealed text,
    previous_expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE watched_generations (
    generation_id text PRIMARY KEY,
    user_id text,
    project_id text,
    status text NOT NULL,
    progress double precision NOT NULL DEFAULT 0,
    video_key text,
    thumbnail_key text,
    error_code text,
    error_message text,
    cost_credits int,
    created_at timestamptz,
    started_at timestamptz,
    completed_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE held_events (
    event_id text PRIMARY KEY,
    generation_id text NOT NULL,
    event_type text NOT NULL,
    data jsonb NOT NULL,
    occurred_at timestamptz NOT NULL,
    traceparent text,
    tracestate text,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX held_events_generation ON held_events (generation_id);

CREATE TABLE deliveries (
    id text PRIMARY KEY,
    seq bigserial NOT NULL UNIQUE,
    webhook_id text NOT NULL,
    endpoint_id text NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    user_id text NOT NULL,
    generation_id text NOT NULL,
    event_id text,
    event_type text NOT NULL,
    occurred_at timestamptz NOT NULL,
    data jsonb NOT NULL,
    status text NOT NULL CHECK (status IN ('pending', 'delivered', 'failed', 'disabled')),
    attempts int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    claim_token text,
    last_error text,
    redelivery_of text,
    delivered_at timestamptz,
    traceparent text,
    tracestate text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX deliveries_once ON deliveries (webhook_id) WHERE redelivery_of IS NULL;

CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';

CREATE INDEX deliveries_order ON deliveries (endpoint_id, generation_id, seq)
    WHERE status = 'pending';

CREATE INDEX deliveries_endpoint ON deliveries (endpoint_id, seq);

CREATE TABLE delivery_attempts (
    id bigserial PRIMARY KEY,
    delivery_id text NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    at timestamptz NOT NULL,
    finished_at timestamptz,
    status_code int,
    latency_ms int,
    error text
);

CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, id);
