-- transfers

CREATE TABLE transfers (
    generation_id text PRIMARY KEY,
    user_id text NOT NULL,
    runway_task_id text NOT NULL,
    state text NOT NULL CHECK (state IN ('downloading', 'stored',
        'waiting_for_url', 'retrying', 'completed', 'failed')),
    video_key text NOT NULL,
    thumbnail_key text,
    event_id text NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    failures integer NOT NULL DEFAULT 0,
    url_refreshes integer NOT NULL DEFAULT 0,
    requests integer NOT NULL DEFAULT 0,
    resumes integer NOT NULL DEFAULT 0,
    restarts integer NOT NULL DEFAULT 0,
    size_bytes bigint,
    sha256 text,
    etag text,
    content_type text,
    duration_seconds double precision,
    width integer,
    height integer,
    codec text,
    error_code text,
    error_message text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz
);

CREATE INDEX transfers_state ON transfers (state) WHERE state NOT IN ('completed', 'failed');
