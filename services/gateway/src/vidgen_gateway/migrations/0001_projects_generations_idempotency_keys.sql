-- projects, generations, idempotency keys

CREATE TABLE projects (
    id text PRIMARY KEY,
    user_id text NOT NULL,
    image_key text NOT NULL,
    content_type text NOT NULL,
    width int NOT NULL,
    height int NOT NULL,
    size_bytes bigint NOT NULL,
    sha256 text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX projects_user ON projects (user_id, created_at DESC);

CREATE TABLE generations (
    id text PRIMARY KEY,
    user_id text NOT NULL,
    project_id text NOT NULL,
    status text NOT NULL DEFAULT 'queued' CHECK (status IN
        ('queued', 'generating', 'processing', 'completed', 'failed', 'cancelled')),
    progress double precision NOT NULL DEFAULT 0
        CHECK (progress >= 0 AND progress <= 1),
    prompt text NOT NULL,
    model text NOT NULL,
    ratio text NOT NULL,
    duration int NOT NULL,
    seed bigint,
    metadata jsonb NOT NULL DEFAULT '{}',
    image_key text NOT NULL,
    image_content_type text NOT NULL,
    runway_task_id text,
    attempt int,
    video_key text,
    thumbnail_key text,
    video_size_bytes bigint,
    video_sha256 text,
    video_duration_s double precision,
    video_width int,
    video_height int,
    error_code text,
    error_message text,
    user_message text,
    runway_failure_code text,
    failed_stage text,
    cost_credits int,
    cost_final boolean NOT NULL DEFAULT false,
    cancel_requested_at timestamptz,
    version bigint NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz
);

CREATE INDEX generations_user_newest ON generations (user_id, created_at DESC, id DESC);

CREATE INDEX generations_project_newest ON generations (user_id, project_id, created_at DESC, id DESC);

CREATE INDEX generations_in_flight ON generations (user_id) WHERE status IN ('queued', 'generating', 'processing');

CREATE TABLE idempotency_keys (
    user_id text NOT NULL,
    key text NOT NULL,
    request_hash text NOT NULL,
    generation_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);
