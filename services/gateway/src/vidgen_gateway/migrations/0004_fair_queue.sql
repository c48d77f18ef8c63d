-- fair queue: priority, when a task started and ended, each model's concurrency

-- A generation's order among its user's waiting ones: 0 low, 1 normal, 2 high. Between
-- users the slots go round-robin (see vidgen_gateway.queue, which mirrors the generator).
ALTER TABLE generations ADD COLUMN priority smallint NOT NULL DEFAULT 1
    CHECK (priority BETWEEN 0 AND 2);

-- When the Runway task of the current attempt was submitted, and when it was seen to end
-- (VideoReady): the learned task times behind the estimates.
ALTER TABLE generations ADD COLUMN submitted_at timestamptz;

ALTER TABLE generations ADD COLUMN task_ended_at timestamptz;

-- The queue's indexes on generations are built by migration 0008, without blocking writes
-- (a database migrated before has them from here: 0008 then finds them).

-- How many tasks of a model the generator lets run at once (from TaskSubmitted).
CREATE TABLE model_capacity (
    model text PRIMARY KEY,
    slots int NOT NULL CHECK (slots >= 1),
    updated_at timestamptz NOT NULL
);

-- accept_generation (migration 0002) also stores the priority, read from the request's
-- metadata (same signature: one round trip as before).
CREATE OR REPLACE FUNCTION accept_generation(
    p_user text, p_project text, p_key text, p_hash text, p_key_valid_after timestamptz,
    p_since timestamptz, p_max_in_flight bigint, p_rate_limit bigint,
    p_id text, p_prompt text, p_model text, p_ratio text, p_duration int, p_seed bigint,
    p_metadata jsonb, p_image_key text, p_now timestamptz,
    p_event_id text, p_event_type text, p_topic text, p_event_key bytea, p_value bytea,
    p_headers jsonb
) RETURNS TABLE (
    inserted boolean, project_id text, image_key text, content_type text,
    request_hash text, earlier_id text, key_created_at timestamptz,
    in_flight bigint, recent bigint, oldest timestamptz
) LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('generate:' || p_user)); -- the user's lock
    SELECT p.id, p.image_key, p.content_type INTO project_id, image_key, content_type
      FROM projects p WHERE p.id = p_project AND p.user_id = p_user; -- ownership
    SELECT k.request_hash, k.generation_id, k.created_at
      INTO request_hash, earlier_id, key_created_at
      FROM idempotency_keys k WHERE k.user_id = p_user AND k.key = p_key; -- the key
    SELECT count(*) INTO in_flight FROM generations g
     WHERE g.user_id = p_user AND g.status IN ('queued', 'generating', 'processing'); -- limit
    SELECT count(*), min(g.created_at) INTO recent, oldest FROM generations g
     WHERE g.user_id = p_user AND g.created_at > p_since; -- rate window
    inserted := false; -- until written
    IF key_created_at IS NOT NULL AND key_created_at >= p_key_valid_after THEN
        RETURN NEXT; RETURN; -- a replay or a conflict: the caller answers
    END IF; -- a valid key
    IF project_id IS NULL OR image_key IS NULL OR coalesce(content_type, '') = ''
       OR image_key IS DISTINCT FROM p_image_key
       OR in_flight >= p_max_in_flight OR recent >= p_rate_limit THEN
        RETURN NEXT; RETURN; -- refused (or the caller's project details were stale)
    END IF; -- checks
    IF key_created_at IS NOT NULL THEN
        DELETE FROM idempotency_keys k WHERE k.user_id = p_user AND k.key = p_key; -- expired
    END IF; -- expired key
    INSERT INTO generations (id, user_id, project_id, status, prompt, model, ratio, duration,
                             seed, metadata, image_key, image_content_type, created_at,
                             updated_at, priority)
    VALUES (p_id, p_user, p_project, 'queued', p_prompt, p_model, p_ratio, p_duration, p_seed,
            p_metadata, image_key, content_type, p_now, p_now,
            CASE p_metadata->>'priority' WHEN 'high' THEN 2 WHEN 'low' THEN 0 ELSE 1 END
            ); -- the generation
    IF p_key IS NOT NULL THEN
        INSERT INTO idempotency_keys (user_id, key, request_hash, generation_id, created_at)
        VALUES (p_user, p_key, p_hash, p_id, p_now); -- its key
    END IF; -- with a key
    INSERT INTO outbox (event_id, event_type, topic, key, value, headers)
    VALUES (p_event_id, p_event_type, p_topic, p_event_key, p_value, p_headers); -- the event
    PERFORM pg_notify('vidgen_outbox_' || current_schema(), ''); -- wake the relay at commit
    inserted := true; -- done
    RETURN NEXT; -- the row
END
$$;
